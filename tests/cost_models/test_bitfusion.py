"""hwq.cost_models.bitfusion_table: a profile whose buffers hold no tile is a user error."""

from __future__ import annotations

import pandas as pd
import pytest

import hwq
from hwq.errors import CostModelError
from hwq.graph import LayerGraph


def test_nothing_fits_names_the_layer_and_pair(tmp_path):
    # 1 KB of weight buffer holds a W8 tile of a 16x32 array (half-buffer rule), not a W2 one:
    # at 2 bits a fusion unit does 16 MACs, so a tile has 16x the weights
    f = tmp_path / "tiny.yaml"
    f.write_text("extends: bitfusion\nname: tiny\nbuffers:\n  wbuf: {size_bytes: 1024}\n")
    graph = LayerGraph.from_frame(pd.DataFrame([
        {"name": "first", "op": "conv", "in_channels": 16, "out_channels": 32, "out_h": 8,
         "kernel_h": 1, "reads_input": False},
        {"name": "second", "op": "conv", "in_channels": 64, "out_channels": 64, "out_h": 8,
         "kernel_h": 3, "reads_input": False},
    ]))
    profile = hwq.load_profile(f)
    assert hwq.cost_table(graph, profile, bits=[(8, 8)]).feasible.all()
    with pytest.raises(CostModelError, match=r"^layer first: no tiling at W2A2 fits .* tiny"):
        hwq.cost_table(graph, profile, bits=[(8, 8), (2, 2)])
