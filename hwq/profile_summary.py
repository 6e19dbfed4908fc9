"""What a device profile implies per (w_bits, a_bits) pair: peak MACs/s and energy per MAC.

`hwq profile show` prints these so that a user sees at a glance what a profile means to the cost
model, before pricing a network with it. Nothing here is a second model of the devices: the numbers
come from the kind's own cost model (`hwq.cost_table`, the `cost_models` registry), so a change to a
model or to a profile shows up here too.

* Every other kind (`bitfusion`, `bit_serial`, `gpu`, `mcu`, ...) prices one synthetic,
  compute-bound layer, `SYNTHETIC_LAYER`: a 3x3 convolution, batch 64, 128x128 output, 4096 -> 4096
  channels (1.58e14 MACs; every dimension a power of two, so arrays, GEMM tiles and fusion groups of
  power-of-two sizes divide it exactly; GPU waves over a non-power-of-two SM count round up by
  less than 0.1 %). Then

      peak_macs_per_s         = MACs / (compute_cycles / clock_hz)  (else MACs / latency_s)
      energy_per_mac_pj       = energy_core_pj / MACs               (compute only)
      total_energy_per_mac_pj = energy_pj / MACs                    (buffers and DRAM too)

  The peak is the rate of the compute units alone: memory stalls are left out (a real layer's
  rate is at most this). It is the rate of a standard convolution: a kind whose fully-connected
  or depthwise layers follow another law (Loom's and Stripes' `fc_law`, an MCU's per-layer-type
  cycles) runs those at their own rate. A GPU's figure includes `efficiency.compute`, and its
  core energy is the power term (idle included). The total energy is that of this one layer
  (its reuse of buffered data), not a property of the device alone.
* A kind with its own `summary` (a measured kind, `lut`, has no model to extrapolate with) reports
  its own figures: for `lut` those of its table, per pair the fastest measured shape (see
  `cost_models/lut.py`, `summarize`).

The pairs are all supported pairs when there are at most `MAX_ALL_PAIRS` of them, else all
combinations of `bits.search_default` (the pairs a search uses by default).

A calibrated profile (any kind with a `calibration` block, hwq.profile_schema.CALIBRATION) also
has a fit report: `calibration_targets` lists each target with its residual (model / measured - 1;
none for a prediction) and `calibration_lines` says it in words, for a kind's `runtime` hook
(`hwq profile show` prints those lines).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hwq.cost_models.kind import kind
from hwq.errors import CostModelError
from hwq.graph import LayerGraph
from hwq.profile import DeviceProfile

MAX_ALL_PAIRS = 16

SYNTHETIC_LAYER: dict[str, Any] = {
    "name": "synthetic_conv3x3",
    "op": "conv",
    "batch": 64,
    "in_channels": 4096,
    "out_channels": 4096,
    "out_h": 128,
    "out_w": 128,
    "kernel_h": 3,
    "kernel_w": 3,
    "stride_h": 1,
    "stride_w": 1,
    "pad_h": 1,
    "pad_w": 1,
    "groups": 1,
    "reads_input": False,  # not the network's first layer (BitFusion would im2col it)
}
SYNTHETIC_BASIS = (
    "cost model on a compute-bound 3x3 conv (batch 64, 128x128 output, 4096->4096 channels): "
    "peak = MACs / compute time (stalls left out), energy_per_mac = core energy / MACs, "
    "total_energy_per_mac = all energy / MACs on that layer"
)


@dataclass(frozen=True)
class PairSummary:
    """One (w_bits, a_bits) pair; None where the profile implies no figure (`note` says why)."""

    w_bits: int
    a_bits: int
    peak_macs_per_s: float | None
    energy_per_mac_pj: float | None
    total_energy_per_mac_pj: float | None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProfileSummary:
    """The pairs of one profile and how their figures were obtained (`basis`)."""

    profile: str
    kind: str
    basis: str
    pairs: list[PairSummary] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.pairs]


def summary_pairs(profile: DeviceProfile) -> list[tuple[int, int]]:
    """Every supported pair when there are at most MAX_ALL_PAIRS, else the search default pairs."""
    weights, acts = profile.bits.weights, profile.bits.activations
    if len(weights) * len(acts) <= MAX_ALL_PAIRS:
        return [(int(w), int(a)) for w in weights for a in acts]
    return profile.default_pairs()


def summarize(
    profile: DeviceProfile, pairs: Sequence[tuple[int, int]] | None = None
) -> ProfileSummary:
    """Peak MACs/s and energy per MAC of `profile` at `pairs` (default: `summary_pairs`)."""
    chosen = [(int(w), int(a)) for w, a in (pairs if pairs is not None else summary_pairs(profile))]
    chosen = list(dict.fromkeys(chosen))
    own = kind(profile.kind).summary
    if own is not None:  # a measured kind (lut) reports its own figures
        figures = own(profile, chosen)
        return ProfileSummary(profile.name, profile.kind, figures.basis, [
            PairSummary(w, a, f.peak_macs_per_s, f.energy_per_mac_pj, f.total_energy_per_mac_pj,
                        f.note)
            for (w, a), f in zip(chosen, figures.figures)])
    return _summarize_model(profile, chosen)


def synthetic_graph() -> LayerGraph:
    """The one-layer graph every modelled kind is priced on."""
    return LayerGraph.from_frame(pd.DataFrame([SYNTHETIC_LAYER]), source="synthetic layer")


# -- kinds with a cost model -----------------------------------------------------------------------
def _summarize_model(profile: DeviceProfile, pairs: list[tuple[int, int]]) -> ProfileSummary:
    from hwq.tables import cost_table

    graph = synthetic_graph()
    try:
        table = cost_table(graph, profile, bits=pairs)
    except CostModelError:
        table = None  # a pair the model refuses fails the whole call: price pair by pair below
    out: list[PairSummary] = []
    for k, (w, a) in enumerate(pairs):
        if table is not None:
            out.append(_pair_from(profile, w, a, table.values, table.feasible, k))
            continue
        try:
            one = cost_table(graph, profile, bits=[(w, a)])
        except CostModelError as exc:
            out.append(PairSummary(w, a, None, None, None, _refusal(str(exc))))
            continue
        out.append(_pair_from(profile, w, a, one.values, one.feasible, 0))
    return ProfileSummary(profile.name, profile.kind, SYNTHETIC_BASIS, out)


def _refusal(message: str) -> str:
    """The cost model's refusal without the synthetic layer's name (it is not the user's layer)."""
    prefix = f"layer {SYNTHETIC_LAYER['name']}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _pair_from(
    profile: DeviceProfile,
    w: int,
    a: int,
    values: dict[str, np.ndarray],
    feasible: np.ndarray,
    k: int,
) -> PairSummary:
    macs = float(values["macs"][0, k])
    compute = float(values["compute_cycles"][0, k])
    latency = float(values["latency_s"][0, k])
    note = None
    if not bool(feasible[0, k]):
        return PairSummary(w, a, None, None, None,
                           "infeasible on the synthetic layer (nothing fits the buffers)")
    if profile.clock_hz and math.isfinite(compute) and compute > 0:
        peak = macs / (compute / float(profile.clock_hz))
    elif math.isfinite(latency) and latency > 0:
        peak = macs / latency
        note = "from latency (no compute cycles)"
    else:
        peak = math.nan
        note = "the cost model gives no time for this pair"
    core = _finite(float(values["energy_core_pj"][0, k]) / macs)
    total = _finite(float(values["energy_pj"][0, k]) / macs)
    return PairSummary(w, a, _finite(peak), core, total, note)


def calibration_targets(profile: DeviceProfile) -> list[dict[str, Any]]:
    """The `calibration.targets` of a profile, each with `residual` = model / measured - 1 (None
    for a prediction, which has no measured value); [] for a profile without calibration."""
    cal = profile.to_dict().get("calibration")
    if not isinstance(cal, dict):
        return []
    out = []
    for target in cal.get("targets") or []:
        row = {k: target.get(k) for k in ("name", "role", "unit", "measured", "model")}
        measured = row["measured"]
        row["residual"] = float(row["model"]) / float(measured) - 1 if measured else None
        out.append(row)
    return out


def calibration_lines(profile: DeviceProfile) -> tuple[str, ...]:
    """The fit report of a profile's `calibration` block: what was fitted on what and how, then
    one line per target with its residual; () for a profile without calibration."""
    cal = profile.to_dict().get("calibration")
    if not isinstance(cal, dict):
        return ()
    carried = f" (carried unchanged from {cal['carried_from']})" if "carried_from" in cal else ""
    lines = [f"fitted: {', '.join(cal['fitted'])}{carried}", f"on: {cal['data']}",
             f"method: {cal['method']}"]
    for t in calibration_targets(profile):
        if t["residual"] is None:
            lines.append(f"  {t['name']} ({t['role']}): {t['model']:.5g} {t['unit']}, no "
                         "measured row")
        else:
            lines.append(f"  {t['name']} ({t['role']}): measured {t['measured']:.5g} "
                         f"{t['unit']}, model {t['model']:.5g} ({t['residual']:+.1%})")
    return tuple(lines)
