"""BitFusion cost model: an exact, Numba-compiled re-implementation of the public BitFusion
simulator's tiling/dataflow optimizer (hsharma35/bitfusion, `bf_e_conf.ini`), as restated in
reference/bitfusion_model.md §5-§6 and §11.

For every (layer, weight bits, activation bits) the search is exhaustive over the 120 orders of the
tile loops B, OW, OH, IC, OC and over power-of-two tile sizes capped at each dimension (OC in
multiples of the array width M except for the im2col first layer).  A tiling is rejected when a
tile exceeds half of its buffer (strict ">").  DRAM traffic follows the simulator's greedy
"promotion" through the loop nest; the output tensor has a fill and a drain stream of 32-bit
partial sums.  The inner dataflow (IS/OS/WS) is chosen by the smallest buffer-traffic proxy with
ties IS, OS, WS.  The objective is lexicographic: minimum total cycles, then minimum energy.

Extensions that reduce exactly to the reference:

* non-square outputs (OH != OW) tile OH and OW independently; each axis reads (O-1)*S+K input
  rows/columns; square outputs tie oh = ow exactly like the reference;
* non-square kernels use KH*KW wherever the reference uses K*K;
* a grouped conv costs `groups` times one IC/g -> OC/g conv (every additive column is scaled);
* 1-bit operands compute like 2-bit ones (pf rule) but move 1 bit;
* the off-chip width may be a non-integer bits/cycle figure: transfers take
  ceil(float(bits) / width) cycles, the simulator's own ceil_a_by_b;
* an embedding's lookup (`im2col` = MODE_LOOKUP) uses no array and no tiling: its looked-up rows
  (B·OH·OC values at w bits) are read and its output (as many values at a bits) written through
  the off-chip interface, cycles = stall cycles = ceil(bits / width), energy = DRAM energy only;
  its schedule details (tiles, buffer traffic, perf_factor) are 0 and its `loop_order` and
  `dataflow` say `lookup`.

Speed (results are identical to the plain search; tests/cost_models/test_bitfusion_properties.py
compares them with a plain transcription of §5-§6):

* phase 1 computes the order-independent quantities of every fitting tiling once (footprints,
  compute cycles and a lower bound on the total: compute + prologue/epilogue of the bare tiles,
  and all-tensors-once DRAM traffic / bandwidth); phase 2 evaluates tilings in order of that
  bound and stops as soon as the bound exceeds the best total found;
* the 120 loop orders collapse onto the distinct orders of the loops with more than one trip
  (a one-trip loop multiplies nothing and never changes residency); they are walked depth-first
  from the innermost loop, so orders sharing inner loops reuse their promotion state, and once no
  tensor is resident every order of the remaining outer loops gives the same statistics, so that
  whole subtree is evaluated once;
* identical (shape, bits) rows of a call are solved once, grouped convs are solved per group;
* every job of a call runs in one Numba call (parallel over jobs for larger tables); results
  persist in `bitfusion_memo.py`'s cache.

The layouts of the parameter vector (`PARAM_NAMES` and its index constants, filled from a profile)
and of the outputs (`OUT_COLUMNS`) belong to the kind, `bitfusion.py`; this module holds the
kernels.
"""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
from numba import njit, prange

from hwq import cache
from hwq.cost_models import bitfusion_memo
from hwq.cost_models.bitfusion import (
    ARRAY_COLS,
    ARRAY_ROWS,
    CORE_PJ,
    IBUF,
    MAX_BITS,
    MIN_BITS,
    MODE_LOOKUP,
    OBUF,
    OFFCHIP_BW,
    OFFCHIP_PJ,
    OUT_COLUMNS,
    PARAM_NAMES,
    PSUM_BITS,
    WBUF,
)

MODEL_VERSION = "bitfusion-2"  # part of the cache key: bump when results change

_COL = {name: i for i, name in enumerate(OUT_COLUMNS)}
N_OUT = len(OUT_COLUMNS)
# Columns that add up over the groups of a grouped conv (everything but the schedule).
ADDITIVE_COLUMNS: tuple[str, ...] = OUT_COLUMNS[: _COL["tile_b"]]

LAYER_COLUMNS: tuple[str, ...] = ("kernel_h", "kernel_w", "out_h", "out_w", "stride_h",
                                  "stride_w", "in_channels", "out_channels", "batch", "groups",
                                  "im2col")

# Tile loops in the simulator's naming; an order lists them outer to inner.
LOOP_NAMES: tuple[str, ...] = ("B", "OW", "OH", "IC", "OC")
_PERMS = np.array(list(itertools.permutations(range(5))), dtype=np.int64)  # [120, 5]


def _representative_orders() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each mask of loops with more than one trip, the loop orders that stay distinct once
    the one-trip loops are dropped (a one-trip loop multiplies nothing and keeps residency).

    Returns, per mask: seq [32, 120, 5], the multi-trip loops of each distinct order from the
    innermost outwards, sorted so that orders sharing inner loops are adjacent; shared [32, 120],
    how many innermost loops an order shares with the previous one (their promotion state is
    reused); code [32, 120], the index in LOOP_ORDER_NAMES of one full order it stands for; and
    counts [32].
    """
    seq = np.zeros((32, 120, 5), dtype=np.int64)
    shared = np.zeros((32, 120), dtype=np.int64)
    code = np.zeros((32, 120), dtype=np.int64)
    counts = np.zeros(32, dtype=np.int64)
    for mask in range(32):
        first: dict[tuple[int, ...], int] = {}
        for i, perm in enumerate(_PERMS.tolist()):
            inner_out = tuple(loop for loop in reversed(perm) if mask >> loop & 1)
            first.setdefault(inner_out, i)
        prev: tuple[int, ...] = ()
        for k, inner_out in enumerate(sorted(first)):
            seq[mask, k, :len(inner_out)] = inner_out
            common = 0
            while common < min(len(prev), len(inner_out)) and prev[common] == inner_out[common]:
                common += 1
            shared[mask, k] = common
            code[mask, k] = first[inner_out]
            prev = inner_out
        counts[mask] = len(first)
    # skip[mask, q, d]: the first order after q that does not share q's d innermost loops.
    skip = np.zeros((32, 120, 6), dtype=np.int64)
    for mask in range(32):
        n = int(counts[mask])
        for q in range(n):
            for d in range(6):
                nxt = q + 1
                while nxt < n and shared[mask, nxt] >= d:
                    nxt += 1
                skip[mask, q, d] = nxt
    return seq, shared, code, counts, skip


_ORDER_SEQ, _ORDER_SHARED, _ORDER_CODE, _ORDER_COUNTS, _ORDER_SKIP = _representative_orders()
LOOP_ORDER_NAMES: list[str] = [" > ".join(LOOP_NAMES[i] for i in p) for p in _PERMS]
DATAFLOW_NAMES: tuple[str, ...] = ("input_stationary", "output_stationary", "weight_stationary")
# The labels of a priced table's codes: a lookup's loop order and dataflow are both `lookup`.
LOOKUP_LABEL = "lookup"
LOOP_ORDER_LABELS: tuple[str, ...] = (*LOOP_ORDER_NAMES, LOOKUP_LABEL)
DATAFLOW_LABELS: tuple[str, ...] = (*DATAFLOW_NAMES, LOOKUP_LABEL)
LOOKUP_ORDER, LOOKUP_DATAFLOW = len(LOOP_ORDER_NAMES), len(DATAFLOW_NAMES)

# Which tile loop indexes which tensor (bitfusion_model.md §6), as used by the kernel:
#   act: B, OW, OH, IC (not OC);  wgt: IC, OC;  out: B, OW, OH, OC (not IC).


# ----------------------------------------------------------------------------- Numba kernels


@njit(cache=True, inline="always")
def _cd(x, y):
    return (x + y - 1) // y


@njit(cache=True, inline="always")
def _cdf(x, y):
    """ceil(x / y) for bits over the off-chip width, as the simulator computes it
    (int(math.ceil(float(a) / b))), so a non-integer bits/cycle figure is priced too."""
    return np.int64(math.ceil(x / y))


@njit(cache=True)
def _pow2_caps(dim, mult):
    """min(2^k * mult, dim) for k = 0 .. ceil(log2(ceil(dim / mult))), without duplicates."""
    n = 1
    top = _cd(dim, mult)
    while (1 << (n - 1)) < top:
        n += 1
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        out[k] = min((1 << k) * mult, dim)
    return out


@njit(cache=True)
def _solve_one(kh, kw, oh_dim, ow_dim, sh, sw, ic_dim, oc_dim, batch, im2col, wb, ab, params,
               o_seq, o_shared, o_code, o_counts, o_skip, out):
    n_rows = np.int64(params[ARRAY_ROWS])
    m_cols = np.int64(params[ARRAY_COLS])
    pmax = np.int64(params[MAX_BITS])
    pmin = np.int64(params[MIN_BITS])
    psum = np.int64(params[PSUM_BITS])
    half_w = params[WBUF] * 8.0 / 2.0  # each buffer: size, read pJ/bit, write pJ/bit
    half_a = params[IBUF] * 8.0 / 2.0
    half_o = params[OBUF] * 8.0 / 2.0
    e_wr, e_ww = params[WBUF + 1], params[WBUF + 2]
    e_ir, e_iw = params[IBUF + 1], params[IBUF + 2]
    e_or, e_ow = params[OBUF + 1], params[OBUF + 2]
    bw = params[OFFCHIP_BW]  # float: the simulator's ceil(float(bits) / if_width)
    e_dram = params[OFFCHIP_PJ]
    e_core = params[CORE_PJ]

    pf = (pmax // max(ab, pmin)) * (pmax // max(wb, pmin))
    npf = n_rows * pf
    kk = kh * kw
    square = oh_dim == ow_dim

    bs = _pow2_caps(batch, 1)
    ohs = _pow2_caps(oh_dim, 1)
    ows = _pow2_caps(ow_dim, 1)
    ics = _pow2_caps(ic_dim, 1)
    if im2col:
        ocs = _pow2_caps(oc_dim, 1)
    else:
        ocs = _pow2_caps(oc_dim, m_cols)

    trips = np.empty(5, dtype=np.int64)
    # Promotion state after the d innermost multi-trip loops (d = 0..5) for act, wgt, out:
    # traffic, resident chunk, still resident.
    st_ta = np.empty(6, dtype=np.int64)
    st_ra = np.empty(6, dtype=np.int64)
    st_pa = np.empty(6, dtype=np.bool_)
    st_tw = np.empty(6, dtype=np.int64)
    st_rw = np.empty(6, dtype=np.int64)
    st_pw = np.empty(6, dtype=np.bool_)
    st_to = np.empty(6, dtype=np.int64)
    st_ro = np.empty(6, dtype=np.int64)
    st_po = np.empty(6, dtype=np.bool_)

    # Phase 1: every tiling that fits, with an order-independent lower bound on its cycles.
    cap = bs.shape[0] * ohs.shape[0] * ows.shape[0] * ics.shape[0] * ocs.shape[0]
    cand = np.empty((cap, 5), dtype=np.int64)
    bound = np.empty(cap, dtype=np.int64)
    n_cand = 0
    for ib in range(bs.shape[0] - 1, -1, -1):
        b = bs[ib]
        nb = _cd(batch, b)
        for ioh in range(ohs.shape[0] - 1, -1, -1):
            oh = ohs[ioh]
            noh = _cd(oh_dim, oh)
            for iow in range(ows.shape[0] - 1, -1, -1):
                ow = ows[iow]
                if square and ow != oh:
                    continue
                now = _cd(ow_dim, ow)
                o_sp = ow * oh * b * psum
                for iic in range(ics.shape[0] - 1, -1, -1):
                    ic = ics[iic]
                    nic = _cd(ic_dim, ic)
                    if im2col:
                        a_t = ow * oh * kk * ic * b * ab
                    else:
                        a_t = (kw + (ow - 1) * sw) * (kh + (oh - 1) * sh) * ic * b * ab
                    if a_t > half_a:
                        continue
                    min_a = a_t * nb * now * noh * nic
                    red = _cd(kk * ic, npf)
                    for ioc in range(ocs.shape[0] - 1, -1, -1):
                        oc = ocs[ioc]
                        noc = _cd(oc_dim, oc)
                        ocb = _cd(oc, m_cols)
                        w_t = red * npf * oc * wb
                        o_t = o_sp * ocb * m_cols
                        if w_t > half_w or o_t > half_o:
                            continue
                        n_t = nb * noh * now * nic * noc
                        if im2col:
                            compute = n_t * b * oh * ow * ocb * red
                        else:
                            compute = n_t * b * ocb * ow * oh * kk * _cd(ic, npf)
                        # total >= compute + prologue + epilogue (resident chunks >= tiles), and
                        # total >= DRAM traffic / bandwidth, where every tensor moves at least
                        # once per tile of the loops that index it.
                        min_w = w_t * nic * noc
                        min_o = o_t * nb * now * noh * noc
                        lb = max(compute + _cdf(a_t + w_t + o_t, bw) + _cdf(o_t, bw),
                                 _cdf(min_a + min_w + 2 * min_o, bw))
                        cand[n_cand, 0] = b
                        cand[n_cand, 1] = oh
                        cand[n_cand, 2] = ow
                        cand[n_cand, 3] = ic
                        cand[n_cand, 4] = oc
                        bound[n_cand] = lb
                        n_cand += 1

    # Phase 2: full evaluation in order of the bound, until the bound exceeds the best total.
    rank = np.argsort(bound[:n_cand], kind="mergesort")
    found = False
    best_total = np.int64(0)
    best_energy = 0.0
    for r in range(n_cand):
        k = rank[r]
        if found and bound[k] > best_total:
            break
        b = cand[k, 0]
        oh = cand[k, 1]
        ow = cand[k, 2]
        ic = cand[k, 3]
        oc = cand[k, 4]
        nb = _cd(batch, b)
        noh = _cd(oh_dim, oh)
        now = _cd(ow_dim, ow)
        nic = _cd(ic_dim, ic)
        noc = _cd(oc_dim, oc)
        cpad = _cd(oc, m_cols) * m_cols
        if im2col:
            a_t = ow * oh * kk * ic * b * ab
        else:
            a_t = (kw + (ow - 1) * sw) * (kh + (oh - 1) * sh) * ic * b * ab
        w_t = _cd(kk * ic, npf) * npf * oc * wb
        o_t = ow * oh * cpad * b * psum
        n_t = nb * noh * now * nic * noc
        if im2col:
            compute = n_t * b * oh * ow * _cd(oc, m_cols) * _cd(kk * ic, npf)
        else:
            compute = n_t * b * _cd(oc, m_cols) * ow * oh * kk * _cd(ic, npf)

        # Inner dataflow (order independent)
        if im2col:
            r_red = _cd(ic * kk, npf) * npf
        else:
            r_red = _cd(ic, npf) * npf * kk
        s_p = b * oh * ow
        is_e = r_red * s_p * (ab + cpad * (wb + psum))
        os_e = cpad * s_p * (psum + r_red * (ab + wb))
        ws_e = r_red * cpad * (wb + s_p * (ab + psum))
        mn = min(is_e, min(os_e, ws_e))
        mac_t = kk * ic * oh * ow * b * oc
        if is_e == mn:
            dflow = 0
            in_act_r = n_t * kk * ic * oh * ow * b * ab
            in_wgt_r = n_t * mac_t * wb
            in_out = n_t * mac_t * psum
        elif os_e == mn:
            dflow = 1
            in_act_r = n_t * mac_t * ab
            in_wgt_r = n_t * mac_t * wb
            in_out = n_t * oc * oh * ow * b * psum
        else:
            dflow = 2
            in_act_r = n_t * mac_t * ab
            in_wgt_r = n_t * kk * ic * oc * wb
            in_out = n_t * mac_t * psum

        trips[0] = nb
        trips[1] = now
        trips[2] = noh
        trips[3] = nic
        trips[4] = noc
        st_ta[0] = a_t
        st_ra[0] = a_t
        st_pa[0] = True
        st_tw[0] = w_t
        st_rw[0] = w_t
        st_pw[0] = True
        st_to[0] = o_t
        st_ro[0] = o_t
        st_po[0] = True
        mask = 0
        m_active = 0
        for j in range(5):
            if trips[j] > 1:
                mask |= 1 << j
                m_active += 1

        q = 0
        n_orders = o_counts[mask]
        while q < n_orders:
            q_next = q + 1
            depth = m_active
            for d in range(o_shared[mask, q], m_active):
                loop = o_seq[mask, q, d]
                n = trips[loop]
                ta, ra, pa = st_ta[d], st_ra[d], st_pa[d]
                tw, rw, pw = st_tw[d], st_rw[d], st_pw[d]
                to, ro, po = st_to[d], st_ro[d], st_po[d]
                # act: indexed by every loop but OC
                if not pa:
                    ta *= n
                elif loop != 4:
                    ta *= n
                    if ta > half_a:
                        pa = False
                    else:
                        ra = ta
                # wgt: indexed by IC and OC
                if not pw:
                    tw *= n
                elif loop >= 3:
                    tw *= n
                    if tw > half_w:
                        pw = False
                    else:
                        rw = tw
                # out: indexed by every loop but IC
                if not po:
                    to *= n
                elif loop != 3:
                    to *= n
                    if to > half_o:
                        po = False
                    else:
                        ro = to
                st_ta[d + 1], st_ra[d + 1], st_pa[d + 1] = ta, ra, pa
                st_tw[d + 1], st_rw[d + 1], st_pw[d + 1] = tw, rw, pw
                st_to[d + 1], st_ro[d + 1], st_po[d + 1] = to, ro, po
                if not (pa or pw or po):
                    # No tensor is resident any more: every outer loop multiplies all three
                    # whatever its position, so all orders sharing these inner loops are equal.
                    depth = d + 1
                    q_next = o_skip[mask, q, depth]
                    break
            rest = np.int64(1)
            for d in range(depth, m_active):
                rest *= trips[o_seq[mask, q, d]]
            tr_a = st_ta[depth] * rest
            tr_w = st_tw[depth] * rest
            tr_o = st_to[depth] * rest
            init = st_ra[depth] + st_rw[depth] + st_ro[depth]
            final = st_ro[depth]
            order = o_code[mask, q]
            q = q_next
            dram_r = tr_a + tr_w + tr_o
            dram_w = tr_o
            latency = _cdf(init, bw) + _cdf(final, bw)
            mid = _cdf(dram_r + dram_w - init - final, bw)
            stalls = max(0, mid - compute) + latency
            total = compute + stalls
            if found and total > best_total:
                continue
            obuf_r = tr_o + in_out
            obuf_w = tr_o + in_out
            e_c = compute * e_core
            e_w = in_wgt_r * e_wr + tr_w * e_ww
            e_i = in_act_r * e_ir + tr_a * e_iw
            e_o = obuf_r * e_or + obuf_w * e_ow
            e_d = dram_r * e_dram + dram_w * e_dram
            energy = e_c + in_wgt_r * e_wr
            energy += tr_w * e_ww
            energy += in_act_r * e_ir
            energy += tr_a * e_iw
            energy += obuf_r * e_or
            energy += obuf_w * e_ow
            energy += dram_r * e_dram
            energy += dram_w * e_dram
            if found and total == best_total and not energy < best_energy:
                continue
            found = True
            best_total = total
            best_energy = energy
            out[0] = total
            out[1] = compute
            out[2] = stalls
            out[3] = energy
            out[4] = e_c
            out[5] = e_i + e_w + e_o
            out[6] = e_d
            out[7] = e_i
            out[8] = e_w
            out[9] = e_o
            out[10] = dram_r
            out[11] = dram_w
            out[12] = in_act_r
            out[13] = tr_a
            out[14] = in_wgt_r
            out[15] = tr_w
            out[16] = obuf_r
            out[17] = obuf_w
            out[18] = b
            out[19] = oh
            out[20] = ow
            out[21] = ic
            out[22] = oc
            out[23] = nb
            out[24] = noh
            out[25] = now
            out[26] = nic
            out[27] = noc
            out[28] = order
            out[29] = dflow
            out[30] = pf
    return found


@njit(cache=True)
def _lookup_one(oh_dim, oc_dim, batch, wb, ab, params, out):
    """An embedding's lookup: its rows read at wb, its output written at ab, off-chip only (no
    array work: compute, buffers, tiles and perf_factor 0)."""
    values = batch * oh_dim * oc_dim
    dram_r = values * wb
    dram_w = values * ab
    cycles = _cdf(dram_r + dram_w, params[OFFCHIP_BW])
    e_d = (dram_r + dram_w) * params[OFFCHIP_PJ]
    out[:] = 0.0
    out[0] = cycles
    out[2] = cycles
    out[3] = e_d
    out[6] = e_d
    out[10] = dram_r
    out[11] = dram_w
    out[28] = LOOKUP_ORDER
    out[29] = LOOKUP_DATAFLOW


@njit(cache=True)
def _solve_range(jobs, params, o_seq, o_shared, o_code, o_counts, o_skip, out, j):
    r = jobs[j]
    if r[9] == MODE_LOOKUP:
        _lookup_one(r[2] * r[3], r[7], r[8], r[10], r[11], params, out[j])
        return
    _solve_one(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11],
               params, o_seq, o_shared, o_code, o_counts, o_skip, out[j])


@njit(cache=True, parallel=True)
def _solve_jobs_parallel(jobs, params, o_seq, o_shared, o_code, o_counts, o_skip):
    """jobs int64 [J, 12]: kh, kw, oh, ow, sh, sw, ic, oc, batch, im2col, w, a (one group)."""
    n = jobs.shape[0]
    out = np.full((n, 31), np.nan)
    for j in prange(n):
        _solve_range(jobs, params, o_seq, o_shared, o_code, o_counts, o_skip, out, j)
    return out


@njit(cache=True)
def _solve_jobs_serial(jobs, params, o_seq, o_shared, o_code, o_counts, o_skip):
    n = jobs.shape[0]
    out = np.full((n, 31), np.nan)
    for j in range(n):
        _solve_range(jobs, params, o_seq, o_shared, o_code, o_counts, o_skip, out, j)
    return out


# Below this many distinct jobs one thread is faster: a parallel launch waits for every worker,
# which on a loaded machine costs a scheduler quantum (milliseconds) per call.
PARALLEL_MIN_JOBS = 16


# ----------------------------------------------------------------------------- Python API


# Parameters the kernel uses as integers (array geometry, widths) and as positive sizes.
_INT_PARAMS = ("array_rows", "array_cols", "max_bits", "min_bits", "partial_sum_bits")
_POSITIVE_PARAMS = _INT_PARAMS + ("wbuf_size_bytes", "ibuf_size_bytes", "obuf_size_bytes",
                                  "offchip_bandwidth_bits_per_cycle")


def _check_params(params: np.ndarray) -> None:
    named = dict(zip(PARAM_NAMES, params.tolist()))
    bad = [f"{k}={v}" for k, v in named.items() if not math.isfinite(v)
           or (k in _POSITIVE_PARAMS and v <= 0) or v < 0
           or (k in _INT_PARAMS and v != int(v))]
    if bad:
        raise ValueError("invalid bitfusion parameters (integers >= 1 for the array and widths, "
                         "sizes and bandwidth > 0, energies >= 0): " + ", ".join(bad))
    if named["min_bits"] > named["max_bits"]:
        raise ValueError(f"invalid bitfusion parameters: min_bits={named['min_bits']} > "
                         f"max_bits={named['max_bits']}")


def _check_inputs(layers: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray,
                  params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    layers = np.ascontiguousarray(np.asarray(layers, dtype=np.int64))
    if layers.ndim != 2 or layers.shape[1] != len(LAYER_COLUMNS):
        raise ValueError(f"layers must be int64 [L, {len(LAYER_COLUMNS)}] "
                         f"({', '.join(LAYER_COLUMNS)}), got shape {layers.shape}")
    w_bits = np.ascontiguousarray(np.asarray(w_bits, dtype=np.int64).ravel())
    a_bits = np.ascontiguousarray(np.asarray(a_bits, dtype=np.int64).ravel())
    if w_bits.shape != a_bits.shape:
        raise ValueError(f"w_bits and a_bits differ in length: {w_bits.size} vs {a_bits.size}")
    params = np.ascontiguousarray(np.asarray(params, dtype=np.float64))
    if params.shape != (len(PARAM_NAMES),):
        raise ValueError(f"params must have {len(PARAM_NAMES)} entries ({', '.join(PARAM_NAMES)})")
    _check_params(params)
    max_bits = int(params[MAX_BITS])
    for p, (w, a) in enumerate(zip(w_bits.tolist(), a_bits.tolist())):
        if not (1 <= w <= max_bits and 1 <= a <= max_bits):
            raise ValueError(
                f"bit pair row {p}: W{w}A{a} is outside 1..{max_bits} bits per operand "
                f"(BitFusion's perf factor is 0 there; the reference simulator cannot price it)"
            )
    for i, row in enumerate(layers.tolist()):
        kh, kw, oh, ow, sh, sw, ic, oc, b, g, im2col = row
        if min(kh, kw, oh, ow, sh, sw, ic, oc, b, g) < 1 or im2col not in (0, 1, MODE_LOOKUP):
            raise ValueError(f"layer row {i}: invalid values {dict(zip(LAYER_COLUMNS, row))}")
        if ic % g or oc % g:
            raise ValueError(f"layer row {i}: groups={g} does not divide in_channels={ic} and "
                             f"out_channels={oc}")
    return layers, w_bits, a_bits, params


def params_digest(params: np.ndarray) -> str:
    h = hashlib.sha256(MODEL_VERSION.encode())
    h.update(np.ascontiguousarray(params, dtype=np.float64).tobytes())
    return h.hexdigest()


def _dedupe(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (first-seen order) and the index of each row among them."""
    seen: dict[tuple[int, ...], int] = {}
    inverse = np.fromiter((seen.setdefault(tuple(r), len(seen)) for r in rows.tolist()),
                          dtype=np.int64, count=rows.shape[0])
    distinct = np.array(list(seen), dtype=np.int64).reshape(len(seen), rows.shape[1])
    return np.ascontiguousarray(distinct), inverse


def solve_table(layers: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray,
                params: np.ndarray) -> np.ndarray:
    """The uncached computation: float64 [L, P, len(OUT_COLUMNS)] in one Numba call."""
    n_layers, n_pairs = layers.shape[0], w_bits.shape[0]
    result = np.empty((n_layers, n_pairs, N_OUT), dtype=np.float64)
    if n_layers == 0 or n_pairs == 0:
        return result
    groups = layers[:, 9]
    single = layers[:, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]].copy()
    single[:, 6] //= groups
    single[:, 7] //= groups
    # Jobs are (distinct single-group shape) x (distinct bit pair): identical rows solved once.
    u_layers, inv_l = _dedupe(single)
    pairs = np.stack([w_bits, a_bits], axis=1)
    u_pairs, inv_p = _dedupe(pairs)
    n_ul, n_up = u_layers.shape[0], u_pairs.shape[0]
    jobs = np.empty((n_ul * n_up, 12), dtype=np.int64)
    jobs[:, :10] = np.repeat(u_layers, n_up, axis=0)
    jobs[:, 10:] = np.tile(u_pairs, (n_ul, 1))
    kernel = _solve_jobs_parallel if jobs.shape[0] >= PARALLEL_MIN_JOBS else _solve_jobs_serial
    solved = kernel(jobs, params, _ORDER_SEQ, _ORDER_SHARED, _ORDER_CODE,
                    _ORDER_COUNTS, _ORDER_SKIP)
    if np.isnan(solved[:, 0]).any():
        bad = jobs[np.isnan(solved[:, 0])][0]
        raise ValueError(f"no tiling fits the buffers for layer (one group) "
                         f"{dict(zip(LAYER_COLUMNS[:9] + ('im2col', 'w', 'a'), bad.tolist()))}")
    flat = solved.reshape(n_ul, n_up, N_OUT)[inv_l][:, inv_p]
    n_add = len(ADDITIVE_COLUMNS)
    flat[:, :, :n_add] *= groups[:, None, None].astype(np.float64)
    result[:] = flat
    return result


def simulate(layers: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray, params: np.ndarray,
             use_cache: bool = True) -> np.ndarray:
    """Price every layer row at every (w_bits[p], a_bits[p]) pair.

    layers: int64 [L, 11] in LAYER_COLUMNS order (FC as K = S = 1, OH = tokens, OW = 1; im2col
    = 1 for the layer reading the model input, MODE_LOOKUP (2) for an embedding's lookup).
    Returns float64 [L, P, len(OUT_COLUMNS)] (energies in pJ, traffic in bits, loop_order
    indexes LOOP_ORDER_LABELS, dataflow DATAFLOW_LABELS: 0=IS, 1=OS, 2=WS, 3=lookup).  Bits outside
    1..max_bits raise ValueError.  Results persist in the memo cache unless use_cache is False or
    HWQ_NO_CACHE=1.
    """
    layers, w_bits, a_bits, params = _check_inputs(layers, w_bits, a_bits, params)
    if not use_cache or cache.disabled():
        return solve_table(layers, w_bits, a_bits, params)
    return bitfusion_memo.cached_table(layers, w_bits, a_bits, params, params_digest(params), N_OUT,
                             lambda ly, w, a: solve_table(ly, w, a, params))


__all__ = ["LOOP_ORDER_NAMES", "DATAFLOW_NAMES", "LAYER_COLUMNS", "simulate", "solve_table"]

