"""NEMO's batched GNN decodes: the dense adjacency forms against hand values, the batched numpy
pass against the torch-geometric networks themselves, the initialisation against theirs, and
the batched re-variation of GNN members."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hwq.search.encoding import Encoding
from hwq.search.gnn import GNNDecoder, edge_index, node_features, parameter_layout
from hwq.search.gnn_batched import DenseGraph, augmented, gcn_normalised
from hwq.search.species import SpeciesParams, make_species

PRODUCT = [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]


def test_dense_graph_forms_by_hand():
    # path 0 - 1 - 2, both directions
    g = DenseGraph(np.array([[0, 1, 1, 2], [1, 0, 2, 1]]), 3)
    # GCN: self loops of weight 1, degrees 2, 3, 2
    d = np.array([2.0, 3.0, 2.0])
    a = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=float)
    assert np.allclose(g.gcn, a / np.sqrt(d[:, None] * d[None, :]), atol=1e-7)
    # improved: self loops of weight 2, degrees 3, 4, 3
    d2 = np.array([3.0, 4.0, 3.0])
    a2 = a + np.eye(3)
    assert np.allclose(g.gcn_improved, a2 / np.sqrt(d2[:, None] * d2[None, :]), atol=1e-7)
    assert np.array_equal(g.att, a)
    # (A + I)^2 off the diagonal: 0-1 two paths (0-0-1, 0-1-1), 0-2 one path (0-1-2)
    assert np.array_equal(g.augmented, [[0, 2, 1], [2, 0, 2], [1, 2, 0]])
    # an existing self loop keeps its weight
    assert np.allclose(gcn_normalised(np.array([[3.0, 1.0], [1.0, 0.0]]), 2.0),
                       [[3 / 4, 1 / np.sqrt(12)], [1 / np.sqrt(12), 2 / 3]])
    assert np.array_equal(augmented(np.zeros((2, 2))), np.zeros((2, 2)))


def _reference_logits(dec: GNNDecoder, W: np.ndarray) -> np.ndarray:
    import torch
    from torch.nn.utils import vector_to_parameters

    net = dec.reference_network()
    net.eval()
    x, ei = torch.from_numpy(dec.features), torch.from_numpy(dec.edges)
    out = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for w in W:
            vector_to_parameters(torch.from_numpy(w.copy()), net.parameters())
            out.append(net(x, ei).numpy())
    return np.stack(out)


@pytest.mark.parametrize(
    "arch,model",
    [("gcn", "digits_resnet"), ("gat", "digits_resnet"), ("unet", "digits_resnet"),
     ("unet", "resnet18")],  # pooling twice on a graph with branches
)
def test_batched_pass_equals_torch_geometric(arch, model):
    from hwq.model_source import load_graph

    graph = load_graph(model)
    dec = GNNDecoder(arch, node_features(graph), edge_index(graph), 6)
    net = dec.reference_network()
    names = [(k, tuple(v.shape)) for k, v in net.named_parameters()]
    assert names == [(k, s) for k, s, _ in dec.layout]
    rng = np.random.default_rng(1)
    W = dec.init_weights(5, rng)
    # members far from their initialisation too (evolved weights)
    W[2:] *= rng.normal(1.0, 1.0, size=W[2:].shape).astype(np.float32)
    got = dec.logits(W)
    ref = _reference_logits(dec, W)
    assert got.shape == (5, len(graph), 6) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    # each member's logits do not depend on the batch it is decoded in
    assert np.allclose(dec.logits(W[3:4])[0], got[3], atol=1e-6)


@pytest.mark.parametrize("arch", ["gcn", "gat", "unet"])
def test_initialisation_follows_torch_geometric(arch, digits_graph):
    import torch
    from torch.nn.utils import parameters_to_vector

    dec = GNNDecoder(arch, node_features(digits_graph), edge_index(digits_graph), 4)
    ours = dec.init_weights(100, np.random.default_rng(0))
    torch.manual_seed(0)
    theirs = np.stack([parameters_to_vector(dec.reference_network().parameters())
                       .detach().numpy() for _ in range(100)])
    start = 0
    for name, shape, bound in dec.layout:
        size = int(np.prod(shape))
        o, t = ours[:, start:start + size], theirs[:, start:start + size]
        start += size
        assert np.abs(o).max() <= bound + 1e-7, name
        assert np.abs(t).max() <= bound + 1e-7, name
        if bound == 0:
            assert not o.any() and not t.any(), name
        else:  # uniform in [-bound, bound]: standard deviation bound / sqrt(3)
            assert o.std() == pytest.approx(bound / np.sqrt(3), rel=0.15), name
            assert t.std() == pytest.approx(bound / np.sqrt(3), rel=0.15), name
    assert start == dec.n_params == ours.shape[1]


def test_layout_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="unknown GNN architecture"):
        parameter_layout("sage", 4, 2)


def test_batched_revary_changes_every_member_and_keeps_the_rest(digits_graph):
    enc = Encoding(digits_graph, PRODUCT)
    (sp,) = make_species(["gnn-gcn"], enc, SpeciesParams(), "dataflow")
    rng = np.random.default_rng(4)
    W = sp.init(12, rng)
    before = W.copy()
    strong = sp.revary(W, rng, attempt=4)
    assert strong.shape == W.shape and np.array_equal(W, before)  # the input is not changed
    assert (strong != W).any(axis=1).mean() > 0.9  # scale 16: nearly every member moves
    mild = sp.revary(W, rng, attempt=0)
    # a stronger attempt changes more entries
    assert (strong != W).sum() > 3 * (mild != W).sum()


def test_a_nemo_search_on_tables_imports_neither_torch_nor_torch_geometric(tmp_path, r18_layers):
    import subprocess
    import sys

    code = (
        "import sys, hwq.search as hs\n"
        "from hwq.sensitivity_files import PUBLISHED\n"
        f"hs(device='bitfusion', model={r18_layers!r}, sensitivity=str(PUBLISHED['resnet18']),"
        " objectives='sensitivity,bops', bits='4x4,8x8', pin='first,last=8', population=10,"
        f" generations=2, verify_top=0, output_dir={str(tmp_path / 'run')!r})\n"
        "print('torch' in sys.modules, 'torch_geometric' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
