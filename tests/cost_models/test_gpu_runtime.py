"""GPU runtimes (issue 17): the tensorrt profiles against the T4 MLPerf rows, the carried profiles,
the batch law, the saturation and per-precision efficiency formulas, the runtime and calibration
keys, and the fit report of `hwq profile show`/`list`.

Every number checked on a shipped profile is priced as shipped (no fitting here); the measured
values come from benchmarks/data/mlperf_resnet50_t4.csv, the copy of the rows the calibration
(benchmarks/calibrate_devices.py --family gpu) used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hwq.cli import cli
from hwq.cost_models import gpu
from hwq.cost_models.gpu_calibration import (
    FIGURES,
    network_figures,
    network_latency_s,
    params_latency,
    profile_latency,
)
from hwq.errors import ProfileError
from hwq.graph import LayerGraph
from hwq.model_source import load_graph
from hwq.profile import list_profiles, load_profile, validate_file
from hwq.profile_summary import calibration_targets
from hwq.tables import cost_table

CSV = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "mlperf_resnet50_t4.csv"
TENSORRT = ("t4-tensorrt", "a100-tensorrt", "h100-tensorrt", "jetson-orin-tensorrt")
RUNTIME_KEYS = ("runtime", "gemm_tile", "efficiency", "saturation_ctas_per_sm")
# measured row -> the figure it is compared with, and the tolerance
T4_TARGETS = {("int8", "SingleStream", "p90_latency"): ("resnet50_int8_batch1_latency", 0.15),
              ("int8", "Offline", "throughput"): ("resnet50_int8_batch256_throughput", 0.15),
              ("int4_conv1_int8", "Offline", "throughput"):
                  ("resnet50_int4_batch256_throughput", 0.20)}


@pytest.fixture(scope="module")
def resnet50() -> LayerGraph:
    return load_graph("resnet50", input_shape=(1, 3, 224, 224))


@pytest.fixture(scope="module")
def figures(resnet50) -> dict[str, dict[str, float]]:
    """FIGURES of every tensorrt profile as shipped, through hwq.cost_table."""
    return {name: network_figures(profile_latency(load_profile(name), resnet50))
            for name in TENSORRT}


def test_t4_tensorrt_reproduces_the_mlperf_rows(figures):
    rows = pd.read_csv(CSV)
    seen = set()
    for r in rows.itertuples():
        key = (r.precision, r.scenario, r.metric)
        if key not in T4_TARGETS:
            continue
        name, tolerance = T4_TARGETS[key]
        assert FIGURES[name][0] == r.unit
        assert abs(figures["t4-tensorrt"][name] / r.value - 1) <= tolerance, (name, r.value)
        seen.add(key)
    assert seen == set(T4_TARGETS)


def test_batch_256_throughput_is_not_256_times_batch_1(resnet50):
    """Throughput grows with the batch (launches amortised, SMs filled) and saturates: at 256 it
    is well above batch 1's but far below 256 times it; doubling the batch from 1 to 2 adds
    over 50 %, from 128 to 256 under 10 %."""
    for name in TENSORRT:
        latency = profile_latency(load_profile(name), resnet50)
        thr = {b: b / float(latency(b)[:, 0].sum()) for b in (1, 2, 8, 32, 128, 256)}
        values = list(thr.values())
        assert all(x < y * (1 + 1e-9) for x, y in zip(values, values[1:])), (name, thr)
        assert 2 * thr[1] < thr[256] < 256 * thr[1] / 4, (name, thr)
        assert thr[256] / thr[128] < 1.1 < 1.5 < thr[2] / thr[1], (name, thr)


def test_carried_profiles_share_the_t4_runtime():
    """The runtime's parameters are fitted once (t4-tensorrt) and carried unchanged: every
    tensorrt profile holds the same values, and its device figures are its own."""
    t4 = load_profile("t4-tensorrt").to_dict()
    for name in TENSORRT[1:]:
        p = load_profile(name).to_dict()
        assert {k: p[k] for k in RUNTIME_KEYS} == {k: t4[k] for k in RUNTIME_KEYS}, name
        assert p["calibration"]["carried_from"] == "t4-tensorrt"
        assert p["calibration"]["fitted"] == t4["calibration"]["fitted"]
        assert p["sm_count"] != t4["sm_count"]
        assert {t["role"] for t in p["calibration"]["targets"]} == {"predicted"}
    assert "carried_from" not in t4["calibration"]
    assert load_profile("a100-tensorrt").get("memory.dram_bytes_per_s") == 1935e9  # PCIe 80GB


def test_calibration_blocks_match_the_cost_model(figures, resnet50):
    """What a profile says its model gives is what the cost model gives (to the digits
    written), for the tensorrt figures and the t4 (tvm) networks at batch 8."""
    nets = {f"{n}_{b}_batch8_latency": (n, i) for n in ("resnet18", "resnet50")
            for i, b in enumerate(("w8a8", "w4a4"))}
    prm = gpu.params_from_profile(load_profile("t4"))
    graphs = {"resnet18": load_graph("resnet18", input_shape=(8, 3, 224, 224)),
              "resnet50": resnet50.with_batch(8)}
    tvm = {name: network_latency_s(prm, graphs[n])[i] * 1e3 for name, (n, i) in nets.items()}
    checked = 0
    for name in list_profiles():
        for t in calibration_targets(load_profile(name)):
            got = figures[name][t["name"]] if name in figures else tvm[t["name"]]
            assert t["model"] == pytest.approx(got, rel=1e-3), (name, t["name"])
            checked += 1
    assert checked == 3 * len(TENSORRT) + 4


def test_profile_and_parameter_paths_agree(resnet50):
    p = load_profile("h100-tensorrt")
    a = network_figures(profile_latency(p, resnet50))
    b = network_figures(params_latency(gpu.params_from_profile(p), resnet50))
    assert a == pytest.approx(b, rel=1e-12)


# -- the formulas -------------------------------------------------------------------------------
CONV = dict(name="c", op="conv", batch=1, in_channels=512, out_channels=512, out_h=7, in_h=7,
            kernel_h=3, pad_h=1)


def priced(profile, w, a, row=CONV):
    g = LayerGraph.from_frame(pd.DataFrame([row]))
    return gpu.price(g, profile, np.array(w, np.int64), np.array(a, np.int64)).values


def test_saturation_and_per_precision_efficiency_by_hand():
    """Batch 1, 7x7x512 -> 512 3x3 conv on t4-tensorrt: 1 x 8 tiles of 64x64 on 40 SMs is one
    wave, under the 2.473 CTAs per SM that saturate, so the compute time is 2.473 tile times
    at the int8 (int4) efficiency."""
    p = load_profile("t4-tensorrt")
    e8, e4 = p.get("efficiency.compute.int8"), p.get("efficiency.compute.int4")
    s = p.get("saturation_ctas_per_sm")
    r = priced(p, [8, 4], [8, 4])
    k = 512 * 9
    tc8 = s * 2 * 64 * 64 * k / (130e12 / 40) / e8
    tc4 = s * 2 * 64 * 64 * k / (260e12 / 40) / e4  # K = 4608 is a multiple of 128 too
    assert r["compute_cycles"][0, 0] == pytest.approx(tc8 * 1.59e9)
    assert r["compute_cycles"][0, 1] == pytest.approx(tc4 * 1.59e9)
    mem8 = (512 * 512 * 9 + 512 * 49 + 512 * 49) / (320e9 * 0.8)
    assert r["latency_s"][0, 0] == pytest.approx(max(tc8, mem8) + 5e-6)
    # at batch 64 the same layer has 49 x 8 tiles, 10 waves > 2.473: saturated, waves count
    big = priced(p, [8], [8], {**CONV, "batch": 64})
    tiles = np.ceil(64 * 49 / 64) * 8
    assert big["compute_cycles"][0, 0] == pytest.approx(
        np.ceil(tiles / 40) * 2 * 64 * 64 * k / (130e12 / 40) / e8 * 1.59e9)


def test_defaults_price_as_before(tmp_path):
    """No `runtime`, no `saturation_ctas_per_sm` and one compute efficiency: today's model
    (saturation 1, the one efficiency at every precision); a per-precision mapping equal to the
    single value prices the same."""
    t4 = load_profile("t4")
    base = tmp_path / "plain.yaml"
    base.write_text("extends: t4\nname: plain\nruntime: ~\n")
    mapped = tmp_path / "mapped.yaml"
    e = t4.get("efficiency.compute")
    mapped.write_text(f"extends: t4\nname: mapped\nsaturation_ctas_per_sm: 1\n"
                      f"efficiency: {{compute: {{int8: {e}, int4: {e}, fp16: {e}}}}}\n")
    graph = load_graph("resnet18", input_shape=(1, 3, 224, 224))
    ref = cost_table(graph, t4).values["latency_s"]
    for path in (base, mapped):
        p = load_profile(path)
        assert np.array_equal(cost_table(graph, p).values["latency_s"], ref), path
    assert gpu.runtime(load_profile(base)) == "generic" and gpu.runtime(t4) == "tvm"


@pytest.mark.parametrize("body, fragment", [
    ("runtime: onnx\n", "runtime"),
    ("saturation_ctas_per_sm: 0.5\n", "saturation_ctas_per_sm"),
    ("efficiency: {compute: {int8: 0.5, fp32: 0.5}}\n", "efficiency.compute"),
    ("calibration: {fitted: [efficiency.nothing], data: x, method: y}\n",
     "calibration.fitted[0]"),
    ("calibration: {fitted: [efficiency], data: x, method: y, targets: "
     "[{name: a, unit: ms, role: predicted, model: 1, measured: 2}]}\n",
     "calibration.targets[0]"),
    ("calibration: {fitted: [efficiency], data: x, method: y, targets: "
     "[{name: a, unit: ms, role: fitted, model: 1}]}\n", "calibration.targets[0]"),
])
def test_bad_runtime_keys_are_named(tmp_path, body, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text("extends: t4-tensorrt\nname: bad\n" + body)
    problems = validate_file(path)
    assert any(fragment in p and "bad.yaml:3" in p for p in problems), problems
    with pytest.raises(ProfileError):
        load_profile(path)


# -- the display --------------------------------------------------------------------------------
def run(*args: str):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.stdout


def test_profile_list_shows_the_runtime():
    rows = {r["name"]: r for r in json.loads(run("profile", "list", "--json"))}
    assert rows["t4"]["runtime"] == "tvm" and rows["t4-tensorrt"]["runtime"] == "tensorrt"
    assert {rows[n]["runtime"] for n in ("a100", "h100", "jetson-orin")} == {"generic"}


def test_profile_show_prints_the_fit_report():
    text = run("profile", "show", "t4-tensorrt")
    assert "# runtime: tensorrt (named by the profile)" in text
    assert "#   fitted: efficiency.compute.int8, efficiency.compute.int4" in text
    assert ("resnet50_int8_batch1_latency (fitted): measured 1.086 ms, model 1.086 (+0.0%)"
            in text)
    assert "carried unchanged from t4-tensorrt" in run("profile", "show", "a100-tensorrt")
    doc = json.loads(run("profile", "show", "t4", "--json"))
    assert doc["runtime"]["name"] == "tvm" and doc["runtime"]["named"]
    held = next(x for x in doc["runtime"]["provenance"] if "resnet50_w4a4" in x)
    assert held.endswith("measured 5.8 ms, model 4.48 (-22.8%)") and "(held_out)" in held
    generic = json.loads(run("profile", "show", "a100", "--json"))["runtime"]
    assert generic["name"] == "generic" and "not calibrated" in generic["provenance"][0]
    t = {t["name"]: t for t in calibration_targets(load_profile("t4"))}
    r50 = t["resnet50_w8a8_batch8_latency"]
    assert r50["residual"] == pytest.approx(r50["model"] / r50["measured"] - 1)
