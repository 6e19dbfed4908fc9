"""Device-independent metrics against hand-computed layers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.cost_models.metrics import layer_bops, layer_weight_bytes

BITS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 16, 32])


def test_bops_by_hand():
    # conv 3x3, 64 -> 64 on a 56x56 output, batch 1: 56*56*64*64*9 MACs
    macs = np.array([56 * 56 * 64 * 64 * 9, 512 * 1000], dtype=np.int64)
    bops = layer_bops(macs, np.array([4, 32]), np.array([8, 32]), False)
    assert bops[0, 0] == 115_605_504 * 32
    assert bops[1, 1] == 512_000 * 1024  # FP32 counts 32 x 32
    assert layer_bops(macs, np.array([4]), np.array([8]), True)[0, 0] == 115_605_504 * 8


def test_weight_bytes_is_an_exact_fraction():
    params = np.array([27, 3 * 3 * 3 * 64], dtype=np.int64)
    wb = layer_weight_bytes(params, np.array([3, 8]))
    assert wb[0, 0] == 27 * 3 / 8 == 10.125  # not rounded per layer
    assert wb[1, 1] == 1728


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=5), BITS, BITS)
def test_bops_formula(macs, w, a):
    arr = np.array(macs, dtype=np.int64)
    out = layer_bops(arr, np.array([w]), np.array([a]), False)[:, 0]
    np.testing.assert_array_equal(out, arr.astype(np.float64) * w * a)
