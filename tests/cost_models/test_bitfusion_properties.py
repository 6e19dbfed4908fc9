"""Properties of the `bitfusion` cost model (hypothesis, modest example counts).

Besides invariants of the outputs, the pruned Numba search is compared with a plain Python
transcription of reference/bitfusion_model.md §5-§6 (every tiling, every one of the 120 orders, no
pruning) on small random layers, square and non-square, under the reference configuration and
under random parameter vectors (bigger/smaller arrays, buffers, widths, bandwidths, energies).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import hwq.cost_models.bitfusion_kernel as bf
from hwq.cost_models.bitfusion import (
    OUT_COLUMNS,
    PARAM_NAMES,
    params_from_profile,
    reference_params,
)
from hwq.profile import DeviceProfile

PARAMS = reference_params()
COL = {name: i for i, name in enumerate(OUT_COLUMNS)}
ADDITIVE = [COL[c] for c in bf.ADDITIVE_COLUMNS]
STATS = ["cycles", "compute_cycles", "stall_cycles", "dram_read_bits", "dram_write_bits",
         "ibuf_read_bits", "ibuf_write_bits", "wbuf_read_bits", "wbuf_write_bits",
         "obuf_read_bits", "obuf_write_bits"]
ENERGY_PARAMS = [i for i, n in enumerate(PARAM_NAMES) if "pj" in n]
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
BRUTE = settings(max_examples=30, deadline=None, derandomize=True,
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


@st.composite
def param_vectors(draw):
    """Random valid configurations around the reference one (array, widths, buffers, link)."""
    pmax, pmin = draw(st.sampled_from([(8, 2), (8, 1), (4, 1), (4, 2), (8, 4), (16, 4)]))
    energy = st.floats(0.001, 1.0, allow_nan=False)
    values = {
        "array_rows": draw(st.sampled_from([2, 4, 8, 16, 32])),
        "array_cols": draw(st.sampled_from([4, 8, 16, 32, 64])),
        "max_bits": pmax, "min_bits": pmin,
        "partial_sum_bits": draw(st.sampled_from([16, 24, 32])),
        "offchip_bandwidth_bits_per_cycle": draw(st.sampled_from([16, 64, 25.6, 192, 512])),
        "offchip_energy_pj_per_bit": draw(st.floats(1.0, 30.0)),
        "core_energy_pj_per_cycle": draw(st.floats(1.0, 1000.0)),
    }
    for buf in ("wbuf", "ibuf", "obuf"):
        values[f"{buf}_size_bytes"] = draw(st.sampled_from([1024, 4096, 16384, 65536, 262144]))
        values[f"{buf}_read_pj_per_bit"] = draw(energy)
        values[f"{buf}_write_pj_per_bit"] = draw(energy)
    return np.array([float(values[n]) for n in PARAM_NAMES])


@st.composite
def configured_bits(draw):
    """(params, w, a) with the widths inside the configuration's 1..max_bits."""
    params = draw(param_vectors())
    top = int(params[PARAM_NAMES.index("max_bits")])
    return params, draw(st.integers(1, top)), draw(st.integers(1, top))


def run(rows, w, a, params=PARAMS):
    return bf.simulate(np.asarray(rows, dtype=np.int64), np.atleast_1d(w), np.atleast_1d(a),
                       params, use_cache=False)


# ------------------------------------------------------------------------ plain transcription

DEPS = {"B": ("act", "out"), "OW": ("act", "out"), "OH": ("act", "out"),
        "IC": ("act", "wgt"), "OC": ("wgt", "out")}


def _cd(x, y):
    return -(-x // y)


def _caps(dim, mult=1):
    k_max = math.ceil(math.log2(_cd(dim, mult))) if dim > mult else 0
    return sorted({min((1 << k) * mult, dim) for k in range(k_max + 1)})


def _config(params):
    p = dict(zip(PARAM_NAMES, params.tolist()))
    return p, {"act": p["ibuf_size_bytes"] * 8 / 2, "wgt": p["wbuf_size_bytes"] * 8 / 2,
               "out": p["obuf_size_bytes"] * 8 / 2}


def evaluate(row, wb, ab, params, tiling, order):
    """§6 verbatim for one tiling (b, oh, ow, ic, oc) and one order (outer to inner), or None
    when a tile does not fit half of its buffer.  Returns (stats dict, energy in pJ)."""
    kh, kw, oh_d, ow_d, sh, sw, ic_d, oc_d, batch, _g, im2col = row
    p, half = _config(params)
    n, m, psum = int(p["array_rows"]), int(p["array_cols"]), int(p["partial_sum_bits"])
    pmax, pmin = int(p["max_bits"]), int(p["min_bits"])
    bw = p["offchip_bandwidth_bits_per_cycle"]
    b, oh, ow, ic, oc = tiling
    pf = (pmax // max(ab, pmin)) * (pmax // max(wb, pmin))
    npf = n * pf
    kk = kh * kw
    w_t = _cd(kk * ic, npf) * npf * oc * wb
    a_t = (ow * oh * kk * ic * b * ab if im2col
           else (kw + (ow - 1) * sw) * (kh + (oh - 1) * sh) * ic * b * ab)
    o_t = ow * oh * _cd(oc, m) * m * b * psum
    if w_t > half["wgt"] or a_t > half["act"] or o_t > half["out"]:
        return None
    trips = {"B": _cd(batch, b), "OW": _cd(ow_d, ow), "OH": _cd(oh_d, oh),
             "IC": _cd(ic_d, ic), "OC": _cd(oc_d, oc)}
    n_t = math.prod(trips.values())
    if im2col:
        compute = n_t * b * oh * ow * _cd(oc, m) * _cd(kk * ic, npf)
        r = _cd(kk * ic, npf) * npf
    else:
        compute = n_t * b * _cd(oc, m) * ow * oh * kk * _cd(ic, npf)
        r = _cd(ic, npf) * npf * kk
    c, s_p = _cd(oc, m) * m, b * oh * ow
    proxies = [r * s_p * (ab + c * (wb + psum)), c * s_p * (psum + r * (ab + wb)),
               r * c * (wb + s_p * (ab + psum))]
    flow = proxies.index(min(proxies))
    mac = kk * ic * oh * ow * b * oc
    ibuf_r = [n_t * kk * ic * oh * ow * b * ab, n_t * mac * ab, n_t * mac * ab][flow]
    wbuf_r = [n_t * mac * wb, n_t * mac * wb, n_t * kk * ic * oc * wb][flow]
    obuf_in = [n_t * mac * psum, n_t * oc * oh * ow * b * psum, n_t * mac * psum][flow]

    traffic = {"act": a_t, "wgt": w_t, "out": o_t}
    resident = dict(traffic)
    promote = {"act": True, "wgt": True, "out": True}
    for loop in reversed(order):
        for x in traffic:
            if not promote[x]:
                traffic[x] *= trips[loop]
            elif x in DEPS[loop]:
                traffic[x] *= trips[loop]
                if traffic[x] > half[x]:
                    promote[x] = False
                else:
                    resident[x] = traffic[x]
    dram_r = traffic["act"] + traffic["wgt"] + traffic["out"]
    dram_w = traffic["out"]
    init = sum(resident.values())
    final = resident["out"]
    mid = math.ceil((dram_r + dram_w - init - final) / bw)
    stalls = max(0, mid - compute) + math.ceil(init / bw) + math.ceil(final / bw)
    stats = {
        "cycles": compute + stalls, "compute_cycles": compute, "stall_cycles": stalls,
        "dram_read_bits": dram_r, "dram_write_bits": dram_w,
        "ibuf_read_bits": ibuf_r, "ibuf_write_bits": traffic["act"],
        "wbuf_read_bits": wbuf_r, "wbuf_write_bits": traffic["wgt"],
        "obuf_read_bits": obuf_in + traffic["out"],
        "obuf_write_bits": obuf_in + traffic["out"],
        "dataflow": flow,
    }
    # Stats.get_energy's order of summation: core, wbuf, ibuf, obuf, dram.
    energy = compute * p["core_energy_pj_per_cycle"]
    energy += wbuf_r * p["wbuf_read_pj_per_bit"]
    energy += traffic["wgt"] * p["wbuf_write_pj_per_bit"]
    energy += ibuf_r * p["ibuf_read_pj_per_bit"]
    energy += traffic["act"] * p["ibuf_write_pj_per_bit"]
    energy += stats["obuf_read_bits"] * p["obuf_read_pj_per_bit"]
    energy += stats["obuf_write_bits"] * p["obuf_write_pj_per_bit"]
    energy += (dram_r + dram_w) * p["offchip_energy_pj_per_bit"]
    return stats, energy


def brute_force(row, wb, ab, params=PARAMS):
    """Every tiling x every order (OH/OW tiled independently when the output is not square);
    the lexicographic (cycles, energy) minimum, or None when nothing fits."""
    _kh, _kw, oh_d, ow_d, _sh, _sw, ic_d, oc_d, batch, _g, im2col = row
    m = int(params[PARAM_NAMES.index("array_cols")])
    spatial = ([(o, o) for o in _caps(oh_d)] if oh_d == ow_d
               else list(itertools.product(_caps(oh_d), _caps(ow_d))))
    best = None
    for b, (oh, ow), ic, oc in itertools.product(_caps(batch), spatial, _caps(ic_d),
                                                 _caps(oc_d, 1 if im2col else m)):
        if evaluate(row, wb, ab, params, (b, oh, ow, ic, oc), tuple(DEPS)) is None:
            continue  # does not fit (order independent)
        for order in itertools.permutations(["B", "OW", "OH", "IC", "OC"]):
            stats, energy = evaluate(row, wb, ab, params, (b, oh, ow, ic, oc), order)
            key = (stats["cycles"], energy)
            if best is None or key < best[0]:
                best = (key, stats)
    return best


def _check_against_transcription(row, wb, ab, params=PARAMS):
    best = brute_force(row, wb, ab, params)
    if best is None:
        with pytest.raises(ValueError, match="no tiling fits"):
            run([row], wb, ab, params)
        return
    (_, energy), stats = best
    got = run([row], wb, ab, params)[0, 0]
    for name in STATS:
        assert got[COL[name]] == stats[name], (name, row, wb, ab, params.tolist())
    assert got[COL["energy_pj"]] == pytest.approx(energy, rel=1e-12)
    _check_reported_schedule(row, wb, ab, params, got)


def _check_reported_schedule(row, wb, ab, params, got):
    """The reported tiling, loop order and dataflow reproduce the reported statistics."""
    tiling = tuple(int(got[COL[c]]) for c in ("tile_b", "tile_oh", "tile_ow", "tile_ic",
                                               "tile_oc"))
    order = bf.LOOP_ORDER_NAMES[int(got[COL["loop_order"]])].split(" > ")
    stats, energy = evaluate(row, wb, ab, params, tiling, order)
    for name in STATS + ["dataflow"]:
        assert got[COL[name]] == stats[name], (name, row, wb, ab, tiling, order)
    assert got[COL["energy_pj"]] == pytest.approx(energy, rel=1e-12)
    kh, kw, oh_d, ow_d, _sh, _sw, ic_d, oc_d, batch, _g, _im2col = row
    for col, dim, tile in zip(("ntiles_b", "ntiles_oh", "ntiles_ow", "ntiles_ic", "ntiles_oc"),
                              (batch, oh_d, ow_d, ic_d, oc_d), tiling):
        assert got[COL[col]] == _cd(dim, tile)


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


@given(layers(max_dim=16), configured_bits())
@BRUTE
def test_random_configurations_match_plain_transcription(row, cfg):
    """Other arrays, widths, buffer sizes (including ones nothing fits in), bandwidths (also
    non-integer bits/cycle) and energies: still the exhaustive optimum."""
    params, wb, ab = cfg
    _check_against_transcription(row, wb, ab, params)


# ------------------------------------------------------------------------ invariants


def _fits(rows, params, w, a):
    try:
        return run(rows, w, a, params)
    except ValueError as exc:
        assert "no tiling fits" in str(exc)
        assume(False)


@given(st.lists(layers(groups=True), min_size=1, max_size=4),
       st.lists(st.tuples(bits, bits), min_size=1, max_size=4),
       st.one_of(st.just(PARAMS), param_vectors()))
@SETTINGS
def test_outputs_finite_nonnegative_and_consistent(rows, pairs, params):
    top = int(params[PARAM_NAMES.index("max_bits")])
    pairs = [(min(w, top), min(a, top)) for w, a in pairs]
    w = np.array([p[0] for p in pairs])
    a = np.array([p[1] for p in pairs])
    out = _fits(rows, params, w, a)
    pv = dict(zip(PARAM_NAMES, params.tolist()))
    assert out.shape == (len(rows), len(pairs), len(OUT_COLUMNS))
    assert np.isfinite(out).all()
    assert (out >= 0).all()
    c = {name: out[..., i] for i, name in enumerate(OUT_COLUMNS)}
    np.testing.assert_array_equal(c["cycles"], c["compute_cycles"] + c["stall_cycles"])
    assert (c["compute_cycles"] > 0).all()
    np.testing.assert_allclose(c["energy_pj"],
                               c["energy_core_pj"] + c["energy_sram_pj"] + c["energy_dram_pj"],
                               rtol=1e-12)
    np.testing.assert_allclose(c["energy_sram_pj"],
                               c["energy_ibuf_pj"] + c["energy_wbuf_pj"] + c["energy_obuf_pj"],
                               rtol=1e-12)
    np.testing.assert_allclose(c["energy_dram_pj"], pv["offchip_energy_pj_per_bit"]
                               * (c["dram_read_bits"] + c["dram_write_bits"]), rtol=1e-12)
    np.testing.assert_allclose(c["energy_core_pj"],
                               pv["core_energy_pj_per_cycle"] * c["compute_cycles"], rtol=1e-12)
    # Output fill and drain streams are equal; DRAM reads hold them plus weights and inputs.
    assert (c["dram_read_bits"] >= c["dram_write_bits"]).all()
    np.testing.assert_array_equal(c["dram_read_bits"], c["ibuf_write_bits"]
                                  + c["wbuf_write_bits"] + c["dram_write_bits"])
    # Stall cycles are at least the prologue/epilogue of one bare tile set.
    assert (c["stall_cycles"] >= 1).all()
    assert np.isin(c["dataflow"], [0, 1, 2]).all()
    assert ((c["loop_order"] >= 0) & (c["loop_order"] < 120)).all()
    # Identical rows are memoised but must come out identical.
    np.testing.assert_array_equal(run(rows + rows, w, a, params)[len(rows):], out)


@given(layers(groups=False), st.sampled_from([2, 3, 4, 8]), configured_bits())
@SETTINGS
def test_grouped_conv_is_groups_times_one_group(row, g, cfg):
    """Under the model a grouped conv is g independent, identical convs run one after another:
    each is a separate simulation, so every count, cycle and energy is g times one group."""
    params, wb, ab = cfg
    single = list(row)
    grouped = list(row)
    grouped[6], grouped[7], grouped[9] = row[6] * g, row[7] * g, g
    s, gr = _fits([single, grouped], params, wb, ab)[:, 0]
    n_exact = ADDITIVE.index(COL["energy_pj"])
    np.testing.assert_array_equal(gr[ADDITIVE][:n_exact], g * s[ADDITIVE][:n_exact])
    np.testing.assert_allclose(gr[ADDITIVE], g * s[ADDITIVE], rtol=1e-12)
    np.testing.assert_array_equal(gr[len(ADDITIVE):], s[len(ADDITIVE):])
    # ... and g separate rows priced one by one add up to the same.
    np.testing.assert_allclose(_fits([single] * g, params, wb, ab)[:, 0].sum(axis=0)[ADDITIVE],
                               gr[ADDITIVE], rtol=1e-12)


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


@given(layers(groups=True), configured_bits(), st.floats(0.01, 100.0))
@SETTINGS
def test_energy_constants_only_break_ties(row, cfg, scale):
    """Cycles are the primary objective: other energy constants never change them.  Scaling every
    constant by a power of two keeps every float comparison, hence the whole schedule."""
    params, wb, ab = cfg
    base = _fits([row], params, wb, ab)[0, 0]
    other = params.copy()
    other[ENERGY_PARAMS] *= scale
    assert run([row], wb, ab, other)[0, 0, COL["cycles"]] == base[COL["cycles"]]
    doubled = params.copy()
    doubled[ENERGY_PARAMS] *= 2.0
    got = run([row], wb, ab, doubled)[0, 0]
    energy_cols = [i for n, i in COL.items() if n.startswith("energy_")]
    np.testing.assert_array_equal(got[energy_cols], 2.0 * base[energy_cols])
    rest = [i for i in range(len(OUT_COLUMNS)) if i not in energy_cols]
    np.testing.assert_array_equal(got[rest], base[rest])


@given(layers(groups=True), configured_bits())
@SETTINGS
def test_more_bandwidth_never_costs_cycles(row, cfg):
    """For every schedule, total = max(compute, mid) + prologue + epilogue is non-increasing in
    the off-chip width, so the optimum is too."""
    params, wb, ab = cfg
    base = _fits([row], params, wb, ab)[0, 0]
    wider = params.copy()
    wider[PARAM_NAMES.index("offchip_bandwidth_bits_per_cycle")] *= 2
    got = run([row], wb, ab, wider)[0, 0]
    assert got[COL["cycles"]] <= base[COL["cycles"]]
    assert got[COL["compute_cycles"]] <= got[COL["cycles"]]


# ------------------------------------------------------------------------ validation and API


def test_bits_validation_names_row_and_bits():
    with pytest.raises(ValueError, match=r"row 2: W9A4"):
        run([[1, 1, 1, 1, 1, 1, 8, 8, 1, 1, 0]], np.array([8, 4, 9]), np.array([8, 4, 4]))


def test_bits_limited_by_the_configured_max_bits():
    params = PARAMS.copy()
    params[PARAM_NAMES.index("max_bits")] = 4
    params[PARAM_NAMES.index("min_bits")] = 1
    run([[1, 1, 1, 1, 1, 1, 8, 8, 1, 1, 0]], 4, 1, params)
    with pytest.raises(ValueError, match=r"row 0: W5A4"):
        run([[1, 1, 1, 1, 1, 1, 8, 8, 1, 1, 0]], 5, 4, params)


def test_bad_groups_rejected():
    with pytest.raises(ValueError, match="groups=3"):
        run([[3, 3, 8, 8, 1, 1, 8, 9, 1, 3, 0]], 8, 8)


@pytest.mark.parametrize("name,value", [("array_rows", 0), ("array_cols", 16.5),
                                        ("min_bits", 9), ("wbuf_size_bytes", 0),
                                        ("obuf_read_pj_per_bit", -0.1),
                                        ("offchip_bandwidth_bits_per_cycle", float("nan"))])
def test_bad_params_rejected(name, value):
    params = PARAMS.copy()
    params[PARAM_NAMES.index(name)] = value
    with pytest.raises(ValueError, match=name):
        run([[1, 1, 1, 1, 1, 1, 8, 8, 1, 1, 0]], 8, 8, params)


def test_nothing_fits_is_an_error():
    params = PARAMS.copy()
    params[PARAM_NAMES.index("wbuf_size_bytes")] = 64  # 256 bits: not one 16x32 weight tile
    with pytest.raises(ValueError, match="no tiling fits"):
        run([[3, 3, 8, 8, 1, 1, 64, 64, 1, 1, 0]], 8, 8, params)


def test_params_from_profile_order():
    data = {
        "array": {"rows": 1, "cols": 2, "max_bits": 3, "min_bits": 4, "partial_sum_bits": 5},
        "buffers": {"wbuf": {"size_bytes": 6, "read_pj_per_bit": 7, "write_pj_per_bit": 8},
                    "ibuf": {"size_bytes": 9, "read_pj_per_bit": 10, "write_pj_per_bit": 11},
                    "obuf": {"size_bytes": 12, "read_pj_per_bit": 13, "write_pj_per_bit": 14}},
        "offchip": {"bandwidth_bits_per_cycle": 15, "energy_pj_per_bit": 16},
        "core": {"energy_pj_per_cycle": 17},
    }
    vec = params_from_profile(DeviceProfile(data))
    assert vec.dtype == np.float64
    np.testing.assert_array_equal(vec, np.arange(1, 18, dtype=np.float64))


def test_api_surface():
    assert len(bf.LOOP_ORDER_NAMES) == 120 == len(set(bf.LOOP_ORDER_NAMES))
    assert bf.LOOP_ORDER_NAMES[0] == "B > OW > OH > IC > OC"
    assert len(PARAM_NAMES) == PARAMS.size
    for required in ("cycles", "compute_cycles", "stall_cycles", "energy_pj", "energy_core_pj",
                     "energy_sram_pj", "energy_dram_pj", "dram_read_bits", "dram_write_bits",
                     "ibuf_read_bits", "ibuf_write_bits", "wbuf_read_bits", "wbuf_write_bits",
                     "obuf_read_bits", "obuf_write_bits", "tile_b", "tile_oh", "tile_ow",
                     "tile_ic", "tile_oc", "loop_order", "dataflow"):
        assert required in OUT_COLUMNS
    empty = run(np.zeros((0, 11), dtype=np.int64), 8, 8)
    assert empty.shape == (0, 1, len(OUT_COLUMNS))
