"""Known totals of the zoo's layer graphs (MACs for one 224x224 image, conv + linear)."""

from __future__ import annotations

import pytest
import torch

import hwq
from hwq.graph import same_input_groups


@pytest.mark.parametrize(
    ("name", "layers", "macs"),
    [("resnet18", 21, 1_814_073_344), ("resnet50", 54, 4_089_184_256),
     ("mobilenet_v2", 53, 300_774_272)],
)
def test_known_totals(name, layers, macs):
    model = hwq.load_model(name)
    g = hwq.trace(model, torch.zeros(1, 3, 224, 224))
    totals = g.totals()
    assert totals["layers"] == layers
    assert totals["macs"] == macs
    assert totals["weight_params"] == sum(
        m.weight.numel() for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    )
    assert not g.specialised and g.unsupported == ()
    assert g.coverage == {"reference_macs": totals["macs"], "graph_macs": totals["macs"],
                          "unsupported_macs": 0, "fraction": 1.0}


def test_resnet18_residual_edges_and_same_input():
    g = hwq.trace(hwq.load_model("resnet18"), torch.zeros(1, 3, 224, 224))
    edges = set(g.edges)
    # a block's first conv and its downsample read the same tensor
    assert ("layer1.1.conv2", "layer2.0.conv1") in edges
    assert ("layer1.1.conv2", "layer2.0.downsample.0") in edges
    # the residual add: layer2.1.conv1 reads conv2 and the downsample branch
    assert ("layer2.0.downsample.0", "layer2.1.conv1") in edges
    assert ("layer2.0.conv2", "layer2.1.conv1") in edges
    groups = [sorted(g.names[i] for i in grp) for grp in same_input_groups(g) if len(grp) > 1]
    assert ["layer2.0.conv1", "layer2.0.downsample.0"] in groups
    assert g.to_frame().set_index("name").loc["conv1", "reads_input"]


def test_mobilenet_depthwise_rows():
    g = hwq.trace(hwq.load_model("mobilenet_v2"), torch.zeros(1, 3, 224, 224))
    df = g.to_frame().set_index("name")
    dw = df.loc["features.2.conv.1.0"]
    assert dw["groups"] == dw["in_channels"] == dw["out_channels"] == 96
    assert dw["weight_params"] == 96 * 9


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_hooks_fallback_finds_the_same_graph_as_fx(name):
    from hwq.tracing import trace_fx, trace_hooks

    model = hwq.load_model(name).eval()
    x = torch.zeros(2, 3, 64, 64)
    fx, hooks = trace_fx(model, x), trace_hooks(model, x)
    assert hooks.specialised and not fx.specialised
    assert hooks.graph_hash == fx.graph_hash
    assert hooks.edges == fx.edges
