"""The `lut` kind on the published T4 ResNet-18 measurements (docs/examples)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import hwq
from hwq.errors import CostModelError, UserError
from hwq.graph import LayerGraph

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "t4_resnet18_lut.yaml"
REFERENCE = EXAMPLE.with_name("t4_resnet18_measured.csv")


@pytest.fixture(scope="module")
def resnet18_b8():
    return hwq.trace(hwq.load_model("resnet18"), torch.zeros(8, 3, 224, 224))


def test_measured_layers_price_exactly(resnet18_b8):
    profile = hwq.load_profile(EXAMPLE)
    ref = pd.read_csv(REFERENCE)
    covered = resnet18_b8.to_frame()
    covered = covered[covered["name"].isin(ref["layer"])].drop(columns="inputs")
    graph = LayerGraph.from_frame(covered)
    table = hwq.cost_table(graph, profile, bits=[(4, 4), (8, 8)]).to_pandas()
    merged = table.merge(ref, left_on=["layer", "w_bits", "a_bits"],
                         right_on=["layer", "w_bits", "a_bits"], suffixes=("", "_ref"))
    assert len(merged) == len(ref) == 38
    assert (merged["latency_s"] == merged["latency_s_ref"]).all()
    assert merged["cycles"].isna().all()


def test_lookup_outside_the_table_names_the_layer(resnet18_b8):
    profile = hwq.load_profile(EXAMPLE)
    with pytest.raises(CostModelError, match="conv1"):
        hwq.cost_table(resnet18_b8, profile, bits=[(4, 4)])
    covered = resnet18_b8.to_frame()
    covered = covered[covered["name"] == "layer2.0.conv1"].drop(columns="inputs")
    graph = LayerGraph.from_frame(covered)
    # W4A8 is within the profile's bits (4, 8) but was not measured
    with pytest.raises(CostModelError, match=r"layer2.0.conv1: no measurement at W4A8"):
        hwq.cost_table(graph, profile, bits=[(4, 8)])
    # W2A2 is outside the profile's bits: refused like on any device (hwq.allowed_bits)
    with pytest.raises(UserError, match=r"2x2: w_bits=2 is not supported by device "
                                        r"t4-resnet18-measured"):
        hwq.cost_table(graph, profile, bits=[(2, 2)])
    with pytest.raises(CostModelError, match="batch 1"):
        hwq.cost_table(graph, profile, bits=[(4, 4)], batch=1)


def test_default_pairs_are_the_measured_ones():
    # search_default [4, 8] on both sides, but the table measured W4A4 and W8A8 only
    assert hwq.load_profile(EXAMPLE).default_pairs() == [(4, 4), (8, 8)]
