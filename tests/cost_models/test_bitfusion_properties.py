"""Properties of the `bitfusion` cost model (hypothesis, modest example counts).

Besides invariants of the outputs, the pruned Numba search is compared with a plain Python
transcription of reference/bitfusion_model.md §5-§6 (every tiling, every one of the 120 orders, no
pruning) on small random layers, square and non-square.
"""

from __future__ import annotations

import itertools
import math

import hwq.cost_models.bitfusion as bf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PARAMS = bf.reference_params()
COL = {name: i for i, name in enumerate(bf.OUT_COLUMNS)}
ADDITIVE = [COL[c] for c in bf.ADDITIVE_COLUMNS]
STATS = ["cycles", "compute_cycles", "stall_cycles", "dram_read_bits", "dram_write_bits",
         "ibuf_read_bits", "ibuf_write_bits", "wbuf_read_bits", "wbuf_write_bits",
         "obuf_read_bits", "obuf_write_bits"]
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

bits = st.integers(1, 8)


@st.composite
def layers(draw, max_dim=64, square=None, groups=False):
    kh = draw(st.sampled_from([1, 1, 3, 5, 7]))
    sq = draw(st.booleans()) if square is None else square
    kw = kh if sq else draw(st.sampled_from([1, 3, 5]))
    oh = draw(st.integers(1, max_dim // 2))
    ow = oh if sq else draw(st.integers(1, max_dim // 2))
    sh = draw(st.integers(1, 2))
    sw = sh if sq else draw(st.integers(1, 2))
    g = draw(st.sampled_from([1, 2, 4])) if groups else 1
    ic = g * draw(st.integers(1, max_dim))
    oc = g * draw(st.integers(1, 2 * max_dim))
    batch = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    im2col = int(draw(st.integers(0, 4)) == 0)
    return [kh, kw, oh, ow, sh, sw, ic, oc, batch, g, im2col]


def run(rows, w, a, params=PARAMS):
    return bf.simulate(np.asarray(rows, dtype=np.int64), np.atleast_1d(w), np.atleast_1d(a),
                       params, use_cache=False)


# ------------------------------------------------------------------------ plain transcription


def brute_force(row, wb, ab):
    """§5-§6 verbatim (OH/OW tiled independently when the output is not square)."""
    kh, kw, oh_d, ow_d, sh, sw, ic_d, oc_d, batch, _g, im2col = row
    n, m, pmax, pmin, psum = 16, 32, 8, 2, 32
    half = {"act": 32768 * 4, "wgt": 65536 * 4, "out": 16384 * 4}
    e = {"wr": 0.02136565625, "ww": 0.02891615625, "ir": 0.059474375, "iw": 0.1137040625,
         "or": 0.0331553125, "ow": 0.0730840625, "dram": 15.0, "core": 235.104}
    bw = 192
    pf = (pmax // max(ab, pmin)) * (pmax // max(wb, pmin))
    npf = n * pf
    kk = kh * kw

    def cd(x, y):
        return -(-x // y)

    def caps(dim, mult=1):
        k_max = math.ceil(math.log2(cd(dim, mult))) if dim > mult else 0
        return sorted({min((1 << k) * mult, dim) for k in range(k_max + 1)})

    deps = {"B": ("act", "out"), "OW": ("act", "out"), "OH": ("act", "out"),
            "IC": ("act", "wgt"), "OC": ("wgt", "out")}
    best = None
    spatial = ([(o, o) for o in caps(oh_d)] if oh_d == ow_d
               else list(itertools.product(caps(oh_d), caps(ow_d))))
    for b, (oh, ow), ic, oc in itertools.product(caps(batch), spatial, caps(ic_d),
                                                 caps(oc_d, 1 if im2col else m)):
        w_t = cd(kk * ic, npf) * npf * oc * wb
        a_t = (ow * oh * kk * ic * b * ab if im2col
               else (kw + (ow - 1) * sw) * (kh + (oh - 1) * sh) * ic * b * ab)
        o_t = ow * oh * cd(oc, m) * m * b * psum
        if w_t > half["wgt"] or a_t > half["act"] or o_t > half["out"]:
            continue
        trips = {"B": cd(batch, b), "OW": cd(ow_d, ow), "OH": cd(oh_d, oh),
                 "IC": cd(ic_d, ic), "OC": cd(oc_d, oc)}
        n_t = math.prod(trips.values())
        if im2col:
            compute = n_t * b * oh * ow * cd(oc, m) * cd(kk * ic, npf)
            r = cd(kk * ic, npf) * npf
        else:
            compute = n_t * b * cd(oc, m) * ow * oh * kk * cd(ic, npf)
            r = cd(ic, npf) * npf * kk
        c, s_p = cd(oc, m) * m, b * oh * ow
        proxies = [r * s_p * (ab + c * (wb + psum)), c * s_p * (psum + r * (ab + wb)),
                   r * c * (wb + s_p * (ab + psum))]
        flow = proxies.index(min(proxies))
        mac = kk * ic * oh * ow * b * oc
        ibuf_r = [n_t * kk * ic * oh * ow * b * ab, n_t * mac * ab, n_t * mac * ab][flow]
        wbuf_r = [n_t * mac * wb, n_t * mac * wb, n_t * kk * ic * oc * wb][flow]
        obuf_in = [n_t * mac * psum, n_t * oc * oh * ow * b * psum, n_t * mac * psum][flow]
        for order in itertools.permutations(["B", "OW", "OH", "IC", "OC"]):
            traffic = {"act": a_t, "wgt": w_t, "out": o_t}
            resident = dict(traffic)
            promote = {"act": True, "wgt": True, "out": True}
            for loop in reversed(order):
                for x in traffic:
                    if not promote[x]:
                        traffic[x] *= trips[loop]
                    elif x in deps[loop]:
                        traffic[x] *= trips[loop]
                        if traffic[x] > half[x]:
                            promote[x] = False
                        else:
                            resident[x] = traffic[x]
            dram_r = traffic["act"] + traffic["wgt"] + traffic["out"]
            dram_w = traffic["out"]
            init = sum(resident.values())
            final = resident["out"]
            mid = cd(dram_r + dram_w - init - final, bw)
            stalls = max(0, mid - compute) + cd(init, bw) + cd(final, bw)
            stats = {
                "cycles": compute + stalls, "compute_cycles": compute, "stall_cycles": stalls,
                "dram_read_bits": dram_r, "dram_write_bits": dram_w,
                "ibuf_read_bits": ibuf_r, "ibuf_write_bits": traffic["act"],
                "wbuf_read_bits": wbuf_r, "wbuf_write_bits": traffic["wgt"],
                "obuf_read_bits": obuf_in + traffic["out"],
                "obuf_write_bits": obuf_in + traffic["out"],
            }
            energy = (compute * e["core"] + wbuf_r * e["wr"] + traffic["wgt"] * e["ww"]
                      + ibuf_r * e["ir"] + traffic["act"] * e["iw"]
                      + stats["obuf_read_bits"] * e["or"] + stats["obuf_write_bits"] * e["ow"]
                      + (dram_r + dram_w) * e["dram"])
            key = (stats["cycles"], energy)
            if best is None or key < best[0]:
                best = (key, stats)
    return best[0][1], best[1]


BRUTE = settings(max_examples=30, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


def _check_against_transcription(row, wb, ab):
    energy, stats = brute_force(row, wb, ab)
    got = run([row], wb, ab)[0, 0]
    for name in STATS:
        assert got[COL[name]] == stats[name], (name, row, wb, ab)
    assert got[COL["energy_pj"]] == pytest.approx(energy, rel=1e-12)


@given(layers(max_dim=32, square=True), bits, bits)
@BRUTE
def test_square_matches_plain_transcription(row, wb, ab):
    """Square rows given through the per-axis fields reproduce the reference square model."""
    _check_against_transcription(row, wb, ab)


@given(layers(max_dim=16, square=False), bits, bits)
@BRUTE
def test_nonsquare_matches_plain_transcription(row, wb, ab):
    """Independent OH/OW tiles; with h == w this is the square model (previous test)."""
    _check_against_transcription(row, wb, ab)


# ------------------------------------------------------------------------ invariants


@given(st.lists(layers(groups=True), min_size=1, max_size=4),
       st.lists(st.tuples(bits, bits), min_size=1, max_size=4))
@SETTINGS
def test_outputs_finite_nonnegative_and_consistent(rows, pairs):
    w = np.array([p[0] for p in pairs])
    a = np.array([p[1] for p in pairs])
    out = run(rows, w, a)
    assert out.shape == (len(rows), len(pairs), len(bf.OUT_COLUMNS))
    assert np.isfinite(out).all()
    assert (out >= 0).all()
    c = {name: out[..., i] for i, name in enumerate(bf.OUT_COLUMNS)}
    np.testing.assert_array_equal(c["cycles"], c["compute_cycles"] + c["stall_cycles"])
    assert (c["compute_cycles"] > 0).all()
    np.testing.assert_allclose(c["energy_pj"],
                               c["energy_core_pj"] + c["energy_sram_pj"] + c["energy_dram_pj"],
                               rtol=1e-12)
    np.testing.assert_allclose(c["energy_sram_pj"],
                               c["energy_ibuf_pj"] + c["energy_wbuf_pj"] + c["energy_obuf_pj"],
                               rtol=1e-12)
    np.testing.assert_allclose(c["energy_dram_pj"],
                               15.0 * (c["dram_read_bits"] + c["dram_write_bits"]), rtol=1e-12)
    np.testing.assert_allclose(c["energy_core_pj"], 235.104 * c["compute_cycles"], rtol=1e-12)
    # Output fill and drain streams are equal; DRAM reads hold them plus weights and inputs.
    assert (c["dram_read_bits"] >= c["dram_write_bits"]).all()
    np.testing.assert_array_equal(c["dram_read_bits"], c["ibuf_write_bits"]
                                  + c["wbuf_write_bits"] + c["dram_write_bits"])
    assert np.isin(c["dataflow"], [0, 1, 2]).all()
    assert ((c["loop_order"] >= 0) & (c["loop_order"] < 120)).all()
    # Identical rows are memoised but must come out identical.
    np.testing.assert_array_equal(run(rows + rows, w, a)[len(rows):], out)


@given(layers(groups=False), st.sampled_from([2, 3, 4, 8]), bits, bits)
@SETTINGS
def test_grouped_conv_is_groups_times_one_group(row, g, wb, ab):
    single = list(row)
    grouped = list(row)
    grouped[6], grouped[7], grouped[9] = row[6] * g, row[7] * g, g
    s, gr = run([single, grouped], wb, ab)[:, 0]
    np.testing.assert_array_equal(gr[ADDITIVE][:3], g * s[ADDITIVE][:3])
    np.testing.assert_allclose(gr[ADDITIVE], g * s[ADDITIVE], rtol=1e-12)
    np.testing.assert_array_equal(gr[len(ADDITIVE):], s[len(ADDITIVE):])


@given(layers(square=True), bits, bits)
@SETTINGS
def test_square_rows_tie_the_spatial_tiles(row, wb, ab):
    out = run([row], wb, ab)[0, 0]
    assert out[COL["tile_oh"]] == out[COL["tile_ow"]]


@given(layers(square=False), bits, bits)
@SETTINGS
def test_height_width_swap_is_symmetric(row, wb, ab):
    kh, kw, oh, ow, sh, sw = row[:6]
    swapped = [kw, kh, ow, oh, sw, sh] + row[6:]
    a, b = run([row, swapped], wb, ab)[:, 0]
    for name in STATS:
        assert a[COL[name]] == b[COL[name]], name
    assert a[COL["energy_pj"]] == pytest.approx(b[COL["energy_pj"]], rel=1e-12)


def test_bits_validation_names_row_and_bits():
    with pytest.raises(ValueError, match=r"row 2: W9A4"):
        run([[1, 1, 1, 1, 1, 1, 8, 8, 1, 1, 0]], np.array([8, 4, 9]), np.array([8, 4, 4]))


def test_bad_groups_rejected():
    with pytest.raises(ValueError, match="groups=3"):
        run([[3, 3, 8, 8, 1, 1, 8, 9, 1, 3, 0]], 8, 8)


def test_api_surface():
    assert len(bf.LOOP_ORDER_NAMES) == 120 == len(set(bf.LOOP_ORDER_NAMES))
    assert bf.LOOP_ORDER_NAMES[0] == "B > OW > OH > IC > OC"
    assert len(bf.PARAM_NAMES) == PARAMS.size
    for required in ("cycles", "compute_cycles", "stall_cycles", "energy_pj", "energy_core_pj",
                     "energy_sram_pj", "energy_dram_pj", "dram_read_bits", "dram_write_bits",
                     "ibuf_read_bits", "ibuf_write_bits", "wbuf_read_bits", "wbuf_write_bits",
                     "obuf_read_bits", "obuf_write_bits", "tile_b", "tile_oh", "tile_ow",
                     "tile_ic", "tile_oc", "loop_order", "dataflow"):
        assert required in bf.OUT_COLUMNS
    empty = run(np.zeros((0, 11), dtype=np.int64), 8, 8)
    assert empty.shape == (0, 1, len(bf.OUT_COLUMNS))
