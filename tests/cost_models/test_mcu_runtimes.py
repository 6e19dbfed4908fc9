"""mcu kind with runtimes (issue 17): the runtime table, where a profile's figures come from, and
the laws — a layer runs at its class's figure plus the glue of its outputs, a linear layer is
bound by its weight reads from flash, energy = board power x time."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import hwq
from hwq.cost_models import mcu
from hwq.cost_models.kind import kind
from hwq.cost_models.mcu_runtime import (
    CORES,
    DEFAULT_RUNTIME,
    KERNEL_CLASSES,
    RUNTIMES,
    parse,
    problems,
    runtime_table,
)
from hwq.errors import ProfileError
from hwq.graph import LayerGraph
from hwq.profile import list_profiles, load_profile, validate_file

BOARDS = ("stm32f746", "stm32h7a3", "stm32l4r5", "nrf5340", "stm32u575")
CALIBRATED = ("stm32f746-plumerai", "stm32h7a3-xcubeai73", "stm32h7a3-xcubeai90",
              "stm32l4r5-tflm", "stm32l4r5-xcubeai73", "stm32l4r5-cmsisnn", "nrf5340-cmsisnn",
              "stm32u575-xcubeai73")
MCU_PROFILES = [n for n in list_profiles() if load_profile(n).kind == "mcu"]


def one(row: dict) -> LayerGraph:
    return LayerGraph.from_frame(pd.DataFrame([row]))


def values(graph: LayerGraph, profile, pairs=((8, 8),)) -> dict:
    w = np.array([p[0] for p in pairs], np.int64)
    a = np.array([p[1] for p in pairs], np.int64)
    return dict(mcu.price(graph, profile, w, a).values)


# -- the table -------------------------------------------------------------------------------------
def test_table_covers_every_runtime_on_every_cortex_core():
    table = runtime_table()
    for runtime in ("tflm", "cmsis-nn", "x-cube-ai-7.3", "x-cube-ai-9.0", "plumerai"):
        assert table.cores_of(runtime) == ("cortex-m4", "cortex-m7", "cortex-m33"), runtime
    fitted = {(e.runtime, e.core) for e in table.entries.values() if e.basis == "fitted"}
    assert fitted == {("plumerai", "cortex-m7"), ("x-cube-ai-7.3", "cortex-m7"),
                      ("x-cube-ai-9.0", "cortex-m7"), ("tflm", "cortex-m4"),
                      ("x-cube-ai-7.3", "cortex-m4"), ("cmsis-nn", "cortex-m4"),
                      ("cmsis-nn", "cortex-m33"), ("x-cube-ai-7.3", "cortex-m33")}
    for e in table.entries.values():
        assert e.source and set(e.cycles_per_mac) == set(KERNEL_CLASSES)
        assert (len(e.residuals) == 2) == (e.basis == "fitted")  # IC and KWS on its board
        assert all(abs(r.residual) < 0.15 for r in e.residuals)


def test_a_runtime_is_faster_on_the_m7_than_on_the_m4():
    table = runtime_table()
    for runtime in ("tflm", "cmsis-nn", "x-cube-ai-7.3"):
        m4 = table.entry(runtime, "cortex-m4").cycles_per_mac["conv"]
        m7 = table.entry(runtime, "cortex-m7").cycles_per_mac["conv"]
        assert m7 < m4, runtime
    # on one core the runtime moves the figures several-fold (issue 17: 704 ms vs 227 ms)
    m4 = {rt: table.entry(rt, "cortex-m4").cycles_per_mac["conv"] for rt in RUNTIMES
          if table.entry(rt, "cortex-m4") is not None}
    assert m4["tflm"] / m4["x-cube-ai-7.3"] > 3


def test_a_bad_table_is_refused():
    doc = {"schema_version": 1, "runtimes": {"tvm": {}}}
    assert problems(doc)
    with pytest.raises(ValueError, match="mcu_runtimes.yaml"):
        parse(doc)


# -- where the figures come from -------------------------------------------------------------------
def test_existing_profiles_keep_their_own_figures():
    for name, runtime in (("stm32h743", "cmsis-nn"), ("nrf52840", "cmsis-nn"),
                          ("gap8", "pulp-nn"), ("stm32f746", "cmsis-nn")):
        p = load_profile(name)
        figs = mcu.figures(p)
        assert figs.entry is None and figs.glue_cycles_per_element == 0.0
        assert figs.runtime == runtime and p.get("runtime") == runtime
        info = kind("mcu").runtime(p)
        assert info.named and "own cycles_per_mac" in info.provenance[0]


def test_a_profile_without_runtime_is_cmsis_nn_with_its_own_figures(tmp_path):
    # a user's profile written before runtimes existed: no runtime, no core, its own figures
    p = load_profile(write(tmp_path, "extends: stm32h743\nname: old\nruntime: ~\ncore: ~\n"))
    assert p.get("runtime", None) is None and "runtime" not in p.sources
    info = kind("mcu").runtime(p)
    assert info.name == DEFAULT_RUNTIME == "cmsis-nn" and not info.named
    g = one(LAYERS["conv"])
    assert values(g, p)["cycles"][0, 0] == math.ceil(16 * 32 * 64 * 9 * 4.3)


@pytest.mark.parametrize("name", CALIBRATED)
def test_calibrated_profiles_take_the_table_entry_of_their_runtime_and_core(name):
    p = load_profile(name)
    figs = mcu.figures(p)
    e = runtime_table().entry(p.get("runtime"), p.get("core"))
    assert figs.entry == e and e.basis == "fitted"
    assert figs.kernels[(8, 8)].tolist() == [e.cycles_per_mac[c] for c in KERNEL_CLASSES]
    assert figs.glue_cycles_per_element == e.glue_cycles_per_element
    info = kind("mcu").runtime(p)
    assert info.name == p.get("runtime") and info.named
    assert any("fitted by benchmarks/calibrate_devices.py" in line for line in info.provenance)
    assert sum("measured" in line for line in info.provenance) == 2


def test_boards_with_one_core_share_a_runtimes_figures(tmp_path):
    # the STM32U575 and the nRF5340 are both Cortex-M33: under one runtime only the board differs
    f = tmp_path / "u5-cmsis.yaml"
    f.write_text("extends: stm32u575\nname: u5-cmsis\nruntime: cmsis-nn\n")
    a, b = mcu.figures(load_profile(f)), mcu.figures(load_profile("nrf5340-cmsisnn"))
    assert a.entry == b.entry and a.glue_cycles_per_element == b.glue_cycles_per_element


def test_int4_weights_follow_the_runtime():
    # CMSIS-NN unpacks int4 weights (1.7x); X-CUBE-AI has no int4 kernels: int8 speed
    cmsis = mcu.figures(load_profile("stm32l4r5-cmsisnn")).kernels
    assert np.allclose(cmsis[(4, 8)], cmsis[(8, 8)] * 1.7)
    assert (4, 8) not in mcu.figures(load_profile("stm32l4r5-xcubeai73")).kernels


def write(tmp_path, text: str, name: str = "p.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


@pytest.mark.parametrize(("text", "needle"), [
    ("extends: stm32f746-plumerai\nname: x\ncore: ~\n", "core: expected the core whose plumerai"),
    ("extends: stm32f746-plumerai\nname: x\ncore: ri5cy\n",
     "core: expected a core the runtime table has figures of for plumerai"),
    ("extends: stm32l4r5\nname: x\nruntime: pulp-nn\n",
     "for pulp-nn (none) or the profile's own cycles_per_mac, found 'cortex-m4'"),
    ("extends: stm32l4r5\nname: x\nruntime: tvm\n", "runtime: expected one of tflm, cmsis-nn"),
    ("extends: stm32l4r5\nname: x\nmemory: {flash_line_bytes: ~}\n",
     "memory.flash_line_bytes: expected a value beside memory.flash_wait_states"),
])
def test_profile_rules(tmp_path, text, needle):
    found = validate_file(write(tmp_path, text))
    assert any(needle in p for p in found), found
    with pytest.raises(ProfileError):
        load_profile(write(tmp_path, text, "again.yaml"))


# -- the laws --------------------------------------------------------------------------------------
LAYERS = {
    "conv": dict(name="c", op="conv", in_channels=16, out_channels=32, out_h=8, in_h=8,
                 kernel_h=3),
    "depthwise": dict(name="dw", op="conv", in_channels=32, out_channels=32, groups=32, out_h=8,
                      in_h=8, kernel_h=3),
    "pointwise": dict(name="pw", op="conv", in_channels=32, out_channels=64, out_h=8, in_h=8,
                      kernel_h=1),
    "fc": dict(name="fc", op="linear", in_channels=64, out_channels=10),
}


@pytest.mark.parametrize("name", CALIBRATED)
@pytest.mark.parametrize("cls", list(LAYERS))
def test_a_layer_runs_at_its_class_figure_plus_its_glue(name, cls):
    p = load_profile(name)
    e = runtime_table().entry(p.get("runtime"), p.get("core"))
    g = one(LAYERS[cls])
    macs, outs = float(g.frame["macs"][0]), float(g.frame["out_elems"][0])
    v = values(g, p)
    expected = math.ceil(macs * e.cycles_per_mac[cls] + outs * e.glue_cycles_per_element)
    assert v["cycles"][0, 0] == v["compute_cycles"][0, 0] == expected  # no flash bound at int8
    assert v["latency_s"][0, 0] == pytest.approx(expected / p.clock_hz)


def test_depthwise_runs_at_its_class_efficiency_not_the_convs():
    p = load_profile("stm32l4r5-xcubeai73")
    e = runtime_table().entry("x-cube-ai-7.3", "cortex-m4")
    dw = one(LAYERS["depthwise"])
    as_conv = one({**LAYERS["depthwise"], "name": "c", "groups": 1, "in_channels": 1})
    assert dw.frame["macs"][0] == as_conv.frame["macs"][0]  # the same MACs and outputs
    ratio = (values(dw, p)["cycles"][0, 0] - 2048 * e.glue_cycles_per_element) / (
        values(as_conv, p)["cycles"][0, 0] - 2048 * e.glue_cycles_per_element)
    assert ratio == pytest.approx(e.cycles_per_mac["depthwise"] / e.cycles_per_mac["conv"],
                                  rel=1e-3)
    assert ratio == pytest.approx(2.0, rel=1e-3)  # the optimised kernels' class-ratio prior


def slow_flash(tmp_path, wait_states: int = 31):
    """stm32l4r5-xcubeai73 with a flash slower than its fc kernel: (31 + 1) / 8 = 4 cycles/B."""
    return load_profile(write(tmp_path, f"extends: stm32l4r5-xcubeai73\nname: slow\n"
                                        f"memory: {{flash_wait_states: {wait_states}}}\n"))


def test_a_linear_layer_at_batch_1_is_bound_by_its_weight_reads(tmp_path):
    p = slow_flash(tmp_path)
    e = runtime_table().entry("x-cube-ai-7.3", "cortex-m4")
    g = one(dict(name="fc", op="linear", in_channels=640, out_channels=128))
    v = values(g, p, [(8, 8), (4, 8), (2, 8)])
    glue = 128 * e.glue_cycles_per_element
    reads = 640 * 128 * np.array([8, 4, 2]) / 8  # each weight read once, at its stored bits
    compute = 640 * 128 * e.cycles_per_mac["fc"]  # no int4 kernels: int8 speed at every width
    assert v["cycles"][0].tolist() == np.ceil(np.maximum(reads * 4.0, compute) + glue).tolist()
    assert v["cycles"][0, 0] == math.ceil(reads[0] * 4.0 + glue)  # bound by flash, not MACs
    assert v["compute_cycles"][0].tolist() == [math.ceil(compute + glue)] * 3
    assert np.array_equal(v["stall_cycles"], v["cycles"] - v["compute_cycles"])
    assert v["stall_cycles"][0, 2] == 0  # 2-bit weights: the MACs bound it again
    # on the shipped flash ((5 + 1) / 8 = 0.75 cycles/B) the int8 fc kernel is the bound
    shipped = values(g, load_profile("stm32l4r5-xcubeai73"))
    assert shipped["cycles"][0, 0] == math.ceil(compute + glue)
    assert mcu.flash_cycles_per_byte(load_profile("stm32l4r5-xcubeai73")) == 0.75


def test_the_flash_bound_reads_weights_per_sample_and_never_binds_a_matmul(tmp_path):
    p = slow_flash(tmp_path)
    fc = dict(name="fc", op="linear", in_channels=640, out_channels=128)
    one_sample = values(one(fc), p)["cycles"][0, 0]
    four = values(one({**fc, "batch": 4}), p)["cycles"][0, 0]
    assert four == pytest.approx(4 * one_sample, abs=1)
    mm = one(dict(name="m", op="matmul", in_channels=640, out_channels=128, out_h=1))
    e = runtime_table().entry("x-cube-ai-7.3", "cortex-m4")
    v = values(mm, p)
    assert v["stall_cycles"][0, 0] == 0  # its second operand is an activation in SRAM
    assert v["cycles"][0, 0] == math.ceil(640 * 128 * e.cycles_per_mac["fc"]
                                          + 128 * e.glue_cycles_per_element)


@pytest.mark.parametrize("name", MCU_PROFILES)
def test_energy_is_board_power_times_time(name):
    p = load_profile(name)
    g = LayerGraph.from_frame(pd.DataFrame(list(LAYERS.values())))
    v = values(g, p, [(8, 8), (4, 4)])
    assert np.allclose(v["energy_pj"], p.get("power.active_w") * v["latency_s"] * 1e12,
                       rtol=1e-12)
    assert np.array_equal(v["energy_core_pj"], v["energy_pj"])


def test_power_belongs_to_the_profile_not_the_runtime():
    a, b = load_profile("stm32h7a3-xcubeai73"), load_profile("stm32h7a3-xcubeai90")
    assert a.clock_hz == b.clock_hz and a.get("power.active_w") != b.get("power.active_w")


# -- every new profile prices the four models ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_graphs() -> dict:
    from hwq.model_source import load_graph

    return {n: load_graph(n) for n in ("mlperf_tiny_ic", "mlperf_tiny_vww", "mlperf_tiny_kws",
                                       "mlperf_tiny_ad")}


@pytest.mark.parametrize("name", [*BOARDS, *CALIBRATED])
def test_the_four_models_price_on_every_new_profile(name, tiny_graphs):
    p = load_profile(name)
    for model, g in tiny_graphs.items():
        table = hwq.cost_table(g, p)
        v = table.values
        for col in ("cycles", "latency_s", "energy_pj"):
            assert np.all(np.isfinite(v[col])) and np.all(v[col] > 0), (name, model, col)
        totals = hwq.evaluate(table, np.full((1, len(g), 2), 8)).iloc[0]
        assert totals["feasible"], (name, model, totals["infeasible_reason"])


def test_cores_are_named():
    assert set(CORES) >= {"cortex-m4", "cortex-m7", "cortex-m33"}
    assert {load_profile(b).get("core") for b in BOARDS} == {"cortex-m4", "cortex-m7",
                                                             "cortex-m33"}


def test_the_docs_example_prices_a_derived_runtime_on_a_shipped_board(tmp_path):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "mcu-runtimes.md").read_text()
    block = doc.split("```yaml\n")[1].split("```")[0]
    text = "\n".join(line[3:] if line.startswith("   ") else line for line in block.splitlines())
    p = load_profile(write(tmp_path, text + "\n", "stm32u575-tflm.yaml"))
    figs = mcu.figures(p)
    assert (figs.runtime, figs.core, figs.entry.basis) == ("tflm", "cortex-m33", "derived")
    assert figs.entry == runtime_table().entry("tflm", "cortex-m33")
