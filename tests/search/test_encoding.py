"""Decisions <-> per-layer pairs: layouts, pins, ties, round trips and errors."""

from __future__ import annotations

import numpy as np
import pytest

from hwq.errors import UserError
from hwq.graph import same_input_groups
from hwq.search.encoding import Encoding, parse_pin_specs

PRODUCT = [(w, a) for w in (2, 4, 8) for a in (2, 4, 8)]


def test_product_layout_two_genes_per_layer(digits_graph):
    enc = Encoding(digits_graph, PRODUCT)
    n = len(digits_graph)
    assert enc.mode == "product" and enc.n_var == 2 * n
    assert list(enc.xu[:2]) == [2, 2]
    X = np.zeros((1, enc.n_var), dtype=int)
    X[0, 0], X[0, 1] = 2, 1  # first layer W8A4
    pairs = enc.decode(X)
    assert pairs.shape == (1, n, 2)
    assert tuple(pairs[0, 0]) == (8, 4) and tuple(pairs[0, 1]) == (2, 2)


def test_pairs_layout_sorted_by_cost(digits_graph):
    enc = Encoding(digits_graph, [(8, 8), (4, 4), (4, 8)])
    assert enc.mode == "pairs"
    assert enc.choices == [(4, 4), (4, 8), (8, 8)]
    assert enc.n_var == len(digits_graph)


def test_round_trip_random(digits_graph):
    enc = Encoding(digits_graph, PRODUCT, parse_pin_specs(["first,last=8"], digits_graph))
    rng = np.random.default_rng(0)
    X = rng.integers(enc.xl, enc.xu + 1, size=(50, enc.n_var))
    pairs = enc.decode(X)
    assert np.array_equal(enc.encode(pairs), X)
    assert np.array_equal(enc.decode(enc.encode(pairs)), pairs)


def test_pins_first_last(digits_graph):
    pins = parse_pin_specs(["first,last=8"], digits_graph)
    assert pins == {0: (8, 8), len(digits_graph) - 1: (8, 8)}
    enc = Encoding(digits_graph, PRODUCT, pins)
    assert enc.n_groups == len(digits_graph) - 2
    pairs = enc.decode(np.zeros((3, enc.n_var), dtype=int))
    assert (pairs[:, 0] == 8).all() and (pairs[:, -1] == 8).all()
    assert (pairs[:, 1:-1] == 2).all()
    assert parse_pin_specs([f"{digits_graph.names[2]}=4x8"], digits_graph) == {2: (4, 8)}


def test_tie_same_input_shares_bits(digits_graph):
    enc = Encoding(digits_graph, PRODUCT, tie="same-input")
    tied = [g for g in same_input_groups(digits_graph) if len(g) > 1]
    assert tied, "digits_resnet has a block conv and its downsampling conv on one tensor"
    assert enc.n_groups == len(digits_graph) - sum(len(g) - 1 for g in tied)
    rng = np.random.default_rng(1)
    pairs = enc.decode(rng.integers(enc.xl, enc.xu + 1, size=(20, enc.n_var)))
    for g in tied:
        assert (pairs[:, g] == pairs[:, g[:1]]).all()


@pytest.mark.parametrize(
    "spec, message",
    [
        (["nosuchlayer=8"], "nosuchlayer"),
        (["first=8", "first=4"], "pinned twice"),
        (["first=banana"], "BITS"),
        (["first=9"], "bits"),
    ],
)
def test_pin_errors_name_the_problem(digits_graph, spec, message):
    with pytest.raises(UserError, match=message):
        parse_pin_specs(spec, digits_graph)


def test_encode_rejects_off_pin_policy(digits_graph):
    enc = Encoding(digits_graph, PRODUCT, {0: (8, 8)})
    bad = np.full((1, len(digits_graph), 2), 4)
    with pytest.raises(UserError, match=digits_graph.names[0]):
        enc.encode(bad)


def _token_graph(tail_matmul: bool = False):
    """An embedding, one attention block (q, k, v, scores, context, o) and an LM head; with
    `tail_matmul`, a last product of the head's output with itself (a matmul row)."""
    import pandas as pd

    from hwq.graph import LayerGraph
    from tests.token_graphs import token_rows

    rows = token_rows(keys=5)
    if tail_matmul:
        rows.append({"name": "sim.matmul0", "op": "matmul", "in_channels": 32,
                     "out_channels": 5, "inputs": "head", "second_inputs": "head"})
    df = pd.DataFrame(rows)
    df["out_h"] = 5
    return LayerGraph.from_frame(df)


def test_pins_first_last_are_weight_layers_of_a_token_model():
    g = _token_graph()
    assert parse_pin_specs(["first,last=8"], g) == {0: (8, 8), g.index_of("head"): (8, 8)}
    g = _token_graph(tail_matmul=True)
    assert g.names[-1] == "sim.matmul0"
    pins = parse_pin_specs(["first=4x8", "last=8"], g)
    assert pins == {g.index_of("emb"): (4, 8), g.index_of("head"): (8, 8)}
    enc = Encoding(g, PRODUCT, pins)
    assert enc.n_groups == len(g) - 2  # the matmul rows are decisions like any layer
    pairs = enc.decode(np.full((1, enc.n_var), 0))
    assert tuple(pairs[0, -1]) == (2, 2) and tuple(pairs[0, g.index_of("head")]) == (8, 8)
    # a matmul row can still be pinned by name
    assert parse_pin_specs(["attn.matmul0=8"], g) == {g.index_of("attn.matmul0"): (8, 8)}


def test_pin_first_without_a_weight_layer_is_an_error():
    import pandas as pd

    from hwq.graph import LayerGraph

    g = LayerGraph.from_frame(pd.DataFrame([
        {"name": "m", "op": "matmul", "in_channels": 4, "out_channels": 4, "out_h": 4}]))
    with pytest.raises(UserError, match="no weight layer"):
        parse_pin_specs(["first,last=8"], g)
