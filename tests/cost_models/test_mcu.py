"""mcu kind: hand-computed layers per type, kernel fallbacks, 16-bit error, network terms."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.cost_models import mcu
from hwq.errors import CostModelError
from hwq.graph import LayerGraph
from hwq.profile import load_profile

ROWS = [
    dict(name="c", op="conv", in_channels=16, out_channels=32, out_h=8, in_h=10, kernel_h=3),
    dict(name="dw", op="conv", in_channels=32, out_channels=32, groups=32, out_h=8, in_h=10,
         kernel_h=3),
    dict(name="pw", op="conv", in_channels=32, out_channels=64, out_h=8, in_h=8, kernel_h=1),
    dict(name="fc", op="linear", in_channels=64, out_channels=10),
]


def graph(rows=ROWS):
    return LayerGraph.from_frame(pd.DataFrame(rows))


def price(device, w, a, rows=ROWS):
    """The priced columns by name, and `feasible`."""
    out = mcu.price(graph(rows), load_profile(device), np.array(w, np.int64),
                    np.array(a, np.int64))
    return {**out.values, **out.details, "feasible": out.feasible}


def network_terms(table, pairs, peak):
    fit = mcu.network_terms(table, pairs, peak)
    return fit.feasible, fit.reasons, fit.columns["overflow_bytes"]


def test_stm32h743_hand_computed():
    r = price("stm32h743", [8], [8])
    macs = np.array([16 * 32 * 64 * 9, 32 * 64 * 9, 32 * 64 * 64, 640])
    cpm = np.array([4.3, 6.0, 3.8, 4.8])
    assert np.array_equal(r["cycles"][:, 0], np.ceil(macs * cpm))
    assert np.all(r["stall_cycles"] == 0)
    assert r["latency_s"][0, 0] == pytest.approx(r["cycles"][0, 0] / 480e6)
    assert r["energy_pj"][0, 0] == pytest.approx(0.5 * r["latency_s"][0, 0] * 1e12)
    assert r["feasible"].all()


def test_kernel_fallbacks():
    r = price("stm32h743", [8, 4, 3, 4], [8, 8, 8, 4])
    # int4 weights: implied w4a8 = w8a8 x 1.7 unpack overhead; w3 and w4a4 use it too
    assert r["cycles"][0, 1] == np.ceil(16 * 32 * 64 * 9 * 4.3 * 1.7)
    assert r["cycles"][0, 2] == r["cycles"][0, 1] == r["cycles"][0, 3]
    g = price("gap8", [8, 4, 2, 4, 3], [8, 4, 2, 8, 3])
    assert g["cycles"][0, 2] == np.ceil(16 * 32 * 64 * 9 * 0.1429)
    assert g["cycles"][0, 3] == g["cycles"][0, 0]  # w4a8: no such kernel, w8a8 compute
    assert g["cycles"][0, 4] == g["cycles"][0, 1]  # w3a3 runs on the w4a4 kernel


def test_16_bit_layer_is_an_error_naming_the_layer():
    with pytest.raises(CostModelError, match="layer c"):
        price("stm32h743", [16], [8])


def test_network_terms_flash_overflow():
    g = graph([dict(name="fc", op="linear", in_channels=1024, out_channels=2048)])
    prof = load_profile("stm32h743")
    table = SimpleNamespace(graph=g, profile=prof)
    pairs = np.array([[[8, 8]], [[4, 8]]])
    ok, reasons, over = network_terms(table, pairs, np.array([1000.0, 1000.0]))
    expected = 1024 * 2048 + 65536 - 2097152
    assert list(ok) == [False, True]
    assert over[0] == expected and over[1] == 0
    assert reasons[0] == f"flash overflow {expected} B" and reasons[1] == ""
    ok, reasons, over = network_terms(table, pairs[1:], np.array([600000.0]))
    assert not ok[0] and over[0] == 600000 + 16384 - 524288 and "sram" in reasons[0]


def test_im2col_buffer_counts_in_sram():
    table = SimpleNamespace(graph=graph(), profile=load_profile("stm32h743"))
    assert mcu.im2col_bytes(table.graph) == 2 * 2 * 16 * 9
    _, _, over = network_terms(table, np.full((1, 4, 2), 8), np.array([524288.0 - 16384]))
    assert over[0] == 2 * 2 * 16 * 9


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["stm32h743", "stm32f746", "nrf52840", "gap8"]),
       st.integers(1, 8), st.integers(1, 8), st.integers(1, 64), st.integers(1, 64))
def test_finite_non_negative(device, w, a, ic, oc):
    rows = [dict(name="x", op="conv", in_channels=ic, out_channels=oc, out_h=4, in_h=6,
                 kernel_h=3), dict(name="fc", op="linear", in_channels=ic, out_channels=oc)]
    r = price(device, [w], [a], rows)
    for col, v in r.items():
        assert np.all(np.isfinite(v)) and np.all(v >= 0), col
