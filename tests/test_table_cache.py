"""A repeated cost-table query is a lookup in the persistent cache, with identical results."""

from __future__ import annotations

import pandas as pd
import torch

import hwq
from tests.small_models import Residual


def test_cached_table_equals_fresh(tmp_cache, monkeypatch):
    graph = hwq.trace(Residual(), torch.zeros(2, 3, 8, 8))
    profile = hwq.load_profile("bitfusion")
    first = hwq.cost_table(graph, profile, bits=[(8, 8), (2, 4)])
    files = list((tmp_cache / "tables").glob("*.npz"))
    assert len(files) == 1
    second = hwq.cost_table(graph, profile, bits=[(8, 8), (2, 4)])
    pd.testing.assert_frame_equal(first.to_pandas(), second.to_pandas())
    monkeypatch.setenv("HWQ_NO_CACHE", "1")
    fresh = hwq.cost_table(graph, profile, bits=[(8, 8), (2, 4)])
    pd.testing.assert_frame_equal(first.to_pandas(), fresh.to_pandas())
    files[0].write_bytes(b"damaged")
    monkeypatch.delenv("HWQ_NO_CACHE")
    again = hwq.cost_table(graph, profile, bits=[(8, 8), (2, 4)])
    pd.testing.assert_frame_equal(first.to_pandas(), again.to_pandas())
