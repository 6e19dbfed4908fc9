"""`hwq.measure.measure` with a fake fast runtime: the single-layer models are built, identical
shapes measured once, the profile written validates and prices the graph, unsupported pairs are
reported, and an interrupted run resumes (no timing is asserted)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from hwq.errors import UserError
from hwq.measure.run import ROUNDS, measure
from hwq.measure.shapes import distinct_shapes
from hwq.measure.single_layer import build_model
from hwq.model_source import load_graph
from hwq.profile import load_profile
from hwq.tables import cost_table
from tests.measure.fake_backend import FAST, FakeBackend

MODEL = "tests.small_models:Residual"
SHAPE = "2,3,8,8"


def _measure(out, backend=None, bits="32x32,8x8,4x32"):
    backend = backend or FakeBackend()
    result = measure(MODEL, out, bits=bits, input_shape=SHAPE, end_to_end=False,
                     backend=backend, layer_timing=FAST)
    return result, backend


def test_fake_runtime_builds_every_shape_once_and_the_profile_prices_the_graph(tmp_path, capsys):
    result, backend = _measure(tmp_path / "m")
    table = pd.read_csv(tmp_path / "m" / "measured.csv")
    # Residual: c1 3->8, c2 8->8, c3 8->8 1x1, fc 512->10: four shapes, two runnable pairs each;
    # first the reference layer, the one of most MACs (c2) at fp32; every layer in a fresh
    # session in each of the ROUNDS turns (the reference once more per turn)
    reference = backend.built[0]
    assert len(set(backend.built)) == 8 == len(table) == result.measured
    assert reference[0].label() == "conv 8->8 8x8 k3x3 s1 g1 b2" and reference[1] == (32, 32)
    counts = Counter(backend.built)
    assert counts.pop(reference) == 2 * ROUNDS and set(counts.values()) == {ROUNDS}
    assert sorted({(int(w), int(a)) for w, a in zip(table.w_bits, table.a_bits)}) == [(8, 8),
                                                                                     (32, 32)]
    assert set(table.statistic) == {"median cpu int8:runtime"}
    assert set(table.runtime) == {"fake 1.0"}
    # the empty model's run, measured once, is taken off every layer (never below 0)
    assert len(set(table.overhead_s)) == 1 and (table.batch == 2).all()
    # one group of 8: the reference's median is its only time, so no row is scaled
    assert len(set(table.reference_s)) == 1
    assert (table.latency_s == (table.median_s - table.overhead_s).clip(lower=0)).all()
    # 4x32 is reported for each shape, never faked
    skipped = pd.read_csv(tmp_path / "m" / "skipped.csv")
    assert len(skipped) == 4 and set(skipped.w_bits) == {4}
    assert "fake has no conv kernel at W4A32" in capsys.readouterr().err
    assert len(result.skipped) == 4
    prof = load_profile(result.profile)
    assert prof.kind == "lut" and prof.get("measurement.runtime") == "fake 1.0"
    # no end-to-end runs: of the network terms only the run's own cost
    assert prof.data["network"] == {"run_s": table.overhead_s.iloc[0]}
    graph = load_graph(MODEL, input_shape=(2, 3, 8, 8))
    t = cost_table(graph, prof, [(32, 32), (8, 8)])
    by_key = {tuple(r[:13]): r[13] for r in table.itertuples(index=False)}
    for i, shape in enumerate(distinct_shapes(graph)):
        for j, pair in enumerate(t.pairs):
            assert t.values["latency_s"][i, j] == by_key[(*shape.key(), *pair)]


def test_identical_shapes_are_measured_once(tmp_path):
    from hwq.graph import LayerGraph

    rows = [dict(name=f"l{i}", op="conv", batch=1, in_channels=8, out_channels=8, in_h=8, in_w=8,
                 out_h=8, out_w=8, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1,
                 pad_w=1, groups=1) for i in range(3)]
    path = tmp_path / "layers.csv"
    LayerGraph.from_frame(pd.DataFrame(rows)).to_csv(path)
    backend = FakeBackend()
    result = measure(str(path), tmp_path / "m", bits="8x8", backend=backend, layer_timing=FAST)
    assert len(set(backend.built)) == 1 and result.measured == 1  # the layer is the reference


def test_an_interrupted_measurement_resumes(tmp_path):
    first, _ = _measure(tmp_path / "m", bits="32x32")
    assert first.measured == 4
    again, backend = _measure(tmp_path / "m", bits="32x32,8x8")
    assert (again.resumed, again.measured) == (4, 4)
    # the reference (fp32) is timed again beside the new rows; only 8x8 rows are measured
    assert backend.built[0][1] == (32, 32)
    assert {b for b in backend.built if b[1] == (8, 8)} == {(s, (8, 8)) for s, _ in set(
        backend.built)}
    assert len(pd.read_csv(tmp_path / "m" / "measured.csv")) == 8


def test_another_runtime_does_not_resume_a_table(tmp_path):
    _measure(tmp_path / "m", bits="32x32")
    other = FakeBackend(threads=2)
    with pytest.raises(UserError, match="measured with fake 1.0, 1 thread"):
        _measure(tmp_path / "m", other, bits="32x32")


def test_nothing_runnable_is_an_error(tmp_path):
    with pytest.raises(UserError, match="can run none of its layers at 4x32"):
        _measure(tmp_path / "m", bits="4x32")


def test_unknown_runtime_names_the_known_ones():
    from hwq.measure.backend import get_backend

    with pytest.raises(UserError, match="expected one of onnxruntime, onnxruntime-cuda"):
        get_backend("tflite")


def test_interleaved_timing_summary():
    from hwq.measure.timing import _summary

    t = _summary(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 1, 1e-9)
    assert (t.median_s, t.p10_s, t.spread) == (3.0, 1.4, 2.0 / 3.0)
    assert t.value("median") == 3.0 and t.value("p10") == 1.4


def test_every_turn_times_a_fresh_callable():
    """`renew`: turn 1 times the callables given, each later turn a fresh one from its factory,
    warmed up before its samples."""
    from hwq.measure.timing import TimingOptions, time_interleaved

    calls: Counter = Counter()
    made: list[int] = []

    def factory(tag):
        def make():
            made.append(tag)
            n = len(made)
            return lambda: calls.update([(tag, n)])
        return make

    first = [lambda: calls.update([("a", 0)]), lambda: calls.update([("b", 0)])]
    opts = TimingOptions(warmup=2, min_repeats=3, max_repeats=3, min_seconds=0.0,
                         min_sample_s=0.0)
    ts = time_interleaved(first, opts, rounds=3, renew=[factory("a"), factory("b")])
    assert made == ["a", "b", "a", "b"]  # turns 2 and 3
    assert all(t.repeats == 3 for t in ts)
    # turn 1: warm-up, one call to size the samples, then its samples; later turns each
    # warm up a fresh callable before theirs (one sample of `inner` calls each)
    assert {k for k in calls if k[1]} == {("a", 1), ("b", 2), ("a", 3), ("b", 4)}
    assert calls[("a", 1)] == 2 + ts[0].inner * 1
    with pytest.raises(ValueError, match="renew: expected 2 factories, found 1"):
        time_interleaved(first, opts, rounds=2, renew=[factory("a")])


def test_a_coarse_clock_sizes_samples_from_many_calls():
    """A clock that advances in 1 ms steps (while reporting 1 ns) reads 0 for one 5 us call:
    the samples are sized from 1,000 calls (5 ms), not from that 0 (ten million calls)."""
    from hwq.errors import HwqError
    from hwq.measure.timing import calls_per_sample

    now = [0.0]

    def call():
        now[0] += 5e-6

    def coarse():
        return (now[0] // 1e-3) * 1e-3

    assert calls_per_sample(call, coarse, 0.01) == 2000
    assert calls_per_sample(call, lambda: now[0], 0.01) == 2000  # an exact clock: the same
    with pytest.raises(HwqError, match="the clock did not advance"):
        calls_per_sample(lambda: None, lambda: 0.0, 0.01)


def test_cpu_clock_needs_one_thread(tmp_path):
    with pytest.raises(UserError, match="--clock cpu: only with --threads 1"):
        measure(MODEL, tmp_path / "m", input_shape=SHAPE, end_to_end=False,
                backend=FakeBackend(threads=2), clock="cpu", layer_timing=FAST)
    result = measure(MODEL, tmp_path / "m", input_shape=SHAPE, bits="32x32", end_to_end=False,
                     backend=FakeBackend(threads=2), layer_timing=FAST)
    table = pd.read_csv(result.out_dir / "measured.csv")
    assert set(table.statistic) == {"median wall int8:runtime"}


def test_hwq_form_times_every_int8_layer_as_the_export_runs_it(tmp_path):
    """`--int8-form hwq`: every 8x8 row times hwq's requantized u8 x u8 form, each shape once;
    both forms write a profile whose int8 layers requantize their outputs."""
    backend = FakeBackend(int8_form="hwq")
    result = measure(MODEL, tmp_path / "m", bits="8x8", input_shape=SHAPE, end_to_end=False,
                     backend=backend, layer_timing=FAST)
    assert set(backend.forms) == {"hwq"} and result.measured == 4
    model = build_model(backend.built[1][0], (8, 8), int8_form="hwq")
    assert {t.data_type for t in model.graph.initializer if t.name == "w_q"} == {2}  # UINT8
    table = pd.read_csv(tmp_path / "m" / "measured.csv")
    assert set(table.statistic) == {"median cpu int8:hwq-requantized"}
    assert load_profile(result.profile).get("measurement.int8_outputs") == "requantized"
    # a table of the runtime form is not resumed as the hwq form's
    _measure(tmp_path / "r", bits="8x8")
    with pytest.raises(UserError, match="int8:runtime"):
        measure(MODEL, tmp_path / "r", bits="8x8", input_shape=SHAPE, end_to_end=False,
                backend=FakeBackend(int8_form="hwq"), layer_timing=FAST)


def test_the_reference_layer_is_timed_with_every_group_and_its_drift_reported(
        tmp_path, monkeypatch, caplog):
    """Groups of two layers, each timed beside the reference layer: its times over the groups
    (one per group) give the drift the profile records and a warning past 10 %; the layers'
    own times are not scaled by it."""
    import hwq.measure.run as run
    from hwq.measure import reference as ref
    from hwq.measure.timing import Timing

    graph = load_graph(MODEL, input_shape=(2, 3, 8, 8))
    shape, pair = ref.choose_reference(graph, [(8, 8), (32, 32)], FakeBackend())
    speed = ref.speed_of([{"reference_s": 1.0}, {"reference_s": 1.0}, {"reference_s": 1.2},
                          {"reference_s": 1.5}], shape, pair)
    assert (speed.median_s, speed.groups) == (1.2, 3) and np.isclose(speed.drift, 0.5)
    assert ref.choose_reference(graph, [(4, 32)], FakeBackend()) is None
    monkeypatch.setattr(run, "LAYER_GROUP", 2)
    times = iter(range(1, 100))
    monkeypatch.setattr(run, "time_interleaved", lambda fns, options=None, rounds=3, renew=None: [
        Timing(float(next(times)), 0.0, 0.0, 1, 1, 1e-9) for _ in fns])
    with caplog.at_level("WARNING", logger="hwq"):
        result, _ = _measure(tmp_path / "m", bits="32x32,8x8")
    table = pd.read_csv(tmp_path / "m" / "measured.csv")
    # the empty model took 1; each group of 3 runners, the reference first: 2, 5, 8, 11
    assert list(table.reference_s) == [2.0, 2.0, 5.0, 5.0, 8.0, 8.0, 11.0, 11.0]
    assert list(table.latency_s) == [2.0, 3.0, 5.0, 6.0, 8.0, 9.0, 11.0, 12.0]
    text = load_profile(result.profile).get("measurement.reference")
    assert "conv 8->8 8x8 k3x3 s1 g1 b2 at W32A32" in text and "varied by 450.0%" in text
    assert "took times 450% apart" in caplog.text


def test_whole_networks_are_timed_in_fresh_sessions_beside_the_reference(tmp_path):
    """End to end with the fake runtime: every network case is a session again in each of the
    NETWORK_ROUNDS turns (its exported file still there), and the reference layer is timed
    beside them."""
    from hwq.measure.run import NETWORK_ROUNDS

    backend = FakeBackend(int8_form="hwq")
    result = measure(MODEL, tmp_path / "m", bits="32x32,8x8", input_shape=SHAPE,
                     backend=backend, layer_timing=FAST, network_timing=FAST)
    e2e = result.end_to_end
    assert e2e is not None and len(e2e) == len(set(backend.networks))
    assert Counter(backend.networks) == {name: NETWORK_ROUNDS for name in set(backend.networks)}
    reference = backend.built[0]
    # the reference: in every turn of every layer group, and of the networks
    assert Counter(backend.built)[reference] >= ROUNDS + NETWORK_ROUNDS
