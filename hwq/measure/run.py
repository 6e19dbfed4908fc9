"""`hwq measure MODEL --runtime R [--bits ...] [--threads N] [--no-end-to-end] -o DIR`: every
distinct layer shape of MODEL timed alone at every requested pair the runtime can run (the rest
reported), written as a `lut` profile; then (by default) the whole network timed at its uniform
and mixed policies, the lut kind's network terms fitted, and predictions compared."""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwq.errors import UserError
from hwq.measure import profile_writer as pw
from hwq.measure.backend import DEFAULT_INT8_FORM, MeasureBackend, get_backend
from hwq.measure.end_to_end import (
    NetworkCase,
    export_hwq,
    export_quantize_static,
    fp32_optimized,
    network_cases,
)
from hwq.measure.fit import NetworkTermsFit, fit_boundary, fit_glue, layers_sum
from hwq.measure.reference import SpeedReference, choose_reference, speed_of
from hwq.measure.shapes import distinct_shapes
from hwq.measure.timing import CLOCKS, STATISTICS, TimingOptions, time_interleaved
from hwq.quant.int8_outputs import INT8_OUTPUTS_KEY, REQUANTIZED

log = logging.getLogger("hwq")
DEFAULT_PAIRS: tuple[tuple[int, int], ...] = ((32, 32), (8, 8))
LAYER_TIMING = TimingOptions(warmup=3, min_repeats=15, max_repeats=400, min_seconds=0.6)
NETWORK_TIMING = TimingOptions(warmup=3, min_repeats=15, max_repeats=300, min_seconds=1.5)
LAYER_GROUP = 8  # layers timed in turns (and written) together
ROUNDS = 8  # turns per group (more turns spread a layer's samples over time: repeatability)
INT8_FORM_TAGS = {"hwq": "hwq-requantized"}  # measured.csv's name of an int8 form
NETWORK_ROUNDS = 5


@dataclass
class MeasureResult:
    """What `measure` wrote and found."""

    out_dir: Path
    profile: Path
    measured: int  # rows measured by this call (the rest resumed)
    resumed: int
    skipped: list[dict[str, Any]] = field(default_factory=list)
    end_to_end: pd.DataFrame | None = None


def parse_pairs(text: str | None) -> list[tuple[int, int]]:
    """`8x8,32x32` -> [(8, 8), (32, 32)] (None: DEFAULT_PAIRS)."""
    if not text:
        return list(DEFAULT_PAIRS)
    from hwq.units import parse_pairs as parse

    return parse(text)


def load_network(model: str, model_args: Mapping[str, Any] | None, input_shape: str | None,
                 weights: str | None) -> tuple[Any, Any, Any, str]:
    """(LayerGraph, module or None, example input or None, input shape text)."""
    from hwq.model_source import is_layer_file

    if is_layer_file(model):
        from hwq.graph import LayerGraph

        if input_shape:
            raise UserError(f"{model}: --input-shape does not apply to a layer file")
        graph = LayerGraph.read(model)
        return graph, None, None, "the layer file's"
    from hwq.model_source import example_input
    from hwq.models import load_model, natural_input_shape
    from hwq.models.loading import load_weights, parse_input_shape
    from hwq.tracing import trace

    module = load_model(model, **dict(model_args or {})).eval()
    if weights:
        load_weights(module, weights)
    shape = parse_input_shape(input_shape) if input_shape else natural_input_shape(model)
    example = example_input(module, tuple(shape), "float32")
    graph = trace(module, example, model_name=model.split(":")[-1])
    return graph, module, example, ",".join(str(s) for s in shape)


def measure(
    model: str,
    out_dir: str | Path,
    *,
    runtime: str = "onnxruntime",
    bits: str | None = None,
    threads: int = 1,
    input_shape: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    weights: str | None = None,
    end_to_end: bool = True,
    statistic: str = "median",
    clock: str | None = None,
    int8_form: str = DEFAULT_INT8_FORM,
    backend: MeasureBackend | None = None,
    layer_timing: TimingOptions = LAYER_TIMING,
    network_timing: TimingOptions = NETWORK_TIMING,
) -> MeasureResult:
    """Measure MODEL's layers (and whole network) with `runtime`; write DIR (module doc)."""
    from hwq.progress import progress, step

    out = Path(out_dir)
    if statistic not in STATISTICS:
        raise UserError(f"--statistic: expected one of {', '.join(STATISTICS)}, "
                        f"found {statistic!r}")
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a directory")
    backend = backend or get_backend(runtime, threads, int8_form)
    clock = clock or ("cpu" if backend.threads == 1 else "wall")
    if clock not in CLOCKS:
        raise UserError(f"--clock: expected one of {', '.join(CLOCKS)}, found {clock!r}")
    if clock == "cpu" and backend.threads != 1:
        raise UserError(f"--clock cpu: only with --threads 1 (the calling thread's CPU time "
                        f"misses the work of the runtime's other threads), found --threads "
                        f"{backend.threads}")
    layer_timing = replace(layer_timing, clock=clock)
    network_timing = replace(network_timing, clock=clock)
    pairs = parse_pairs(bits)
    graph, module, example, shape_text = load_network(model, model_args, input_shape, weights)
    info = backend.describe()
    runtime_label = info.get("runtime", backend.name)
    out.mkdir(parents=True, exist_ok=True)
    # int8 form `hwq` is requantized since hwq's export requantizes int8 outputs on measured
    # devices: its tag refuses a table whose `int8:hwq` rows timed the old ConvInteger form
    tag = f"{statistic} {clock} int8:{INT8_FORM_TAGS.get(backend.int8_form, backend.int8_form)}"
    rows = pw.read_table(out, runtime_label, backend.threads, tag)
    done = {_row_key(r) for r in rows}
    resumed = len(rows)
    skipped: list[dict[str, Any]] = []
    todo = []
    for shape in distinct_shapes(graph):
        for pair in pairs:
            reason = backend.why_not(shape.op, pair)
            if reason:
                skipped.append({"op": shape.op, "shape": shape.label(), "w_bits": pair[0],
                                "a_bits": pair[1], "reason": reason})
            elif (*shape.key(), *pair) not in done:
                todo.append((shape, pair))
    for s in skipped:
        print(f"hwq: skipped: {s['shape']} at W{s['w_bits']}A{s['a_bits']}: {s['reason']}",
              file=sys.stderr)
    pw.write_rows(out / pw.SKIPPED, skipped, pw.SKIPPED_COLUMNS)
    step("measuring %d layer shape(s) x pair(s) with %s (%d resumed)", len(todo), runtime_label,
         resumed)
    overhead = time_interleaved([backend.empty_runner()], layer_timing, ROUNDS)[0]
    run_s = overhead.value(statistic)
    step("one run of an empty model takes %.3g s (subtracted from every layer's time)", run_s)
    reference = choose_reference(graph, pairs, backend)
    speed: SpeedReference | None = None
    if todo and reference:  # a row to measure is a pair the backend runs: there is a reference
        step("reference layer (timed beside every group, for the machine's speed): "
             "%s at W%dA%d", reference[0].label(), *reference[1])
    with progress(f"measuring layers ({backend.name})", total=len(todo)) as bar:
        for start in range(0, len(todo), LAYER_GROUP):
            group = todo[start:start + LAYER_GROUP]
            makers = [partial(backend.layer_runner, shape, pair)
                      for shape, pair in [reference, *group]]
            ref_t, *timings = time_interleaved([make() for make in makers], layer_timing,
                                               ROUNDS, renew=makers)
            for (shape, pair), t in zip(group, timings):
                rows.append({**dict(zip(pw.KEY_COLUMNS, (*shape.key(), *pair))),
                             "latency_s": max(t.value(statistic) - run_s, 0.0),
                             "overhead_s": run_s, "median_s": t.median_s,
                             "p10_s": t.p10_s, "spread": round(t.spread, 4),
                             "reference_s": ref_t.value(statistic),
                             "repeats": t.repeats,
                             "statistic": tag,
                             "runtime": runtime_label,
                             "threads": backend.threads})
            pw.write_rows(out / pw.TABLE, rows, pw.TABLE_COLUMNS)  # resumable from here
            bar.advance(len(group))
    if rows and reference:
        speed = speed_of(rows, *reference)
        _report_speed(speed)
    if not rows:
        raise UserError(f"{model}: {backend.name} can run none of its layers at "
                        f"{', '.join(f'{w}x{a}' for w, a in pairs)}: nothing measured")
    pw.write_rows(out / pw.TABLE, rows, pw.TABLE_COLUMNS)
    name = f"{Path(model).stem if '/' in model else model.split(':')[-1]}-{backend.name}"
    command = (f"hwq measure {model} --input-shape {shape_text} --runtime {backend.name} "
               f"--bits {','.join(f'{w}x{a}' for w, a in pairs)} --threads {backend.threads}"
               + ("" if backend.int8_form == DEFAULT_INT8_FORM
                  else f" --int8-form {backend.int8_form}"))
    record = pw.measurement_record(info, command)
    # the int8 layers were measured with their outputs requantized (both int8 forms): hwq's
    # fake-quant model and export on this profile do the same (hwq.quant.output_quant)
    record[INT8_OUTPUTS_KEY[1]] = REQUANTIZED
    record["timing"] = (
        f"per layer: {layer_timing.warmup} warm-up runs, then >= {layer_timing.min_repeats} "
        f"runs and >= {layer_timing.min_seconds} s in {ROUNDS} turns, each in a fresh session, "
        f"beside up to {LAYER_GROUP - 1} other layers, {clock} clock; latency_s = the "
        f"{statistic} of the runs less overhead_s, the same figure of an empty model's run "
        "(median_s, p10_s and spread = interquartile range / median in measured.csv); "
        "reference_s = the same figure of the reference layer in the same group")
    if speed:
        record["reference"] = (
            f"{speed.label()}, timed beside every group of layers: median {speed.median_s:.4g} s, "
            f"varied by {speed.drift:.1%} over {speed.groups} group(s) (the machine's speed: "
            "a layer's time is no more repeatable than this)")
    if skipped:
        record["skipped"] = f"{len(skipped)} shape x pair(s) the runtime cannot run: {pw.SKIPPED}"
    description = f"{model} layers measured with {runtime_label} on {pw.cpu_model()}"
    run_only = {"run_s": run_s}
    run_source = f"the {statistic} time of one run of an empty model"
    profile = pw.write_profile(out, pw.profile_doc(name, description, record, run_only,
                                                   run_source))
    result = MeasureResult(out, profile, len(todo), resumed, skipped)
    if not end_to_end:
        return result
    if module is None:
        step("no end-to-end runs: %s is a layer file (no network to export)", model)
        return result
    other_ops = sorted(set(graph.frame["op"]) - {"conv", "linear"})
    if other_ops:
        step("no end-to-end runs: the whole-network exporters handle conv and linear layers "
             "only, the graph has %s rows", ", ".join(other_ops))
        return result
    covered = [p for p in pairs if not any((s["w_bits"], s["a_bits"]) == p for s in skipped)]
    if not covered:
        step("no end-to-end runs: no pair was measured for every layer")
        return result
    from hwq.profile import load_profile
    from hwq.tables import cost_table

    table = cost_table(graph, load_profile(profile), covered)
    layer_latency = table.values["latency_s"]
    cases = network_cases(len(graph), covered, backend.int8_form)
    timings, ref_t = _time_networks(backend, graph, module, example, cases, network_timing,
                                    reference)
    if speed and speed.median_s > 0 and ref_t is not None:
        step("beside the networks the reference layer took %.1f%% of its median time beside "
             "the layers", 100 * ref_t.value(statistic) / speed.median_s)
    measured = [t.value(statistic) for t in timings]
    terms = _fit(graph, layer_latency, covered, cases, measured, run_s)
    int8_by = "hwq's export" if backend.int8_form == "hwq" else "onnxruntime's quantize_static"
    timed = (f"whole networks timed in turns ({clock} clock), {network_timing.warmup} warm-up "
             f"runs, the {statistic} of >= {network_timing.min_repeats} runs and >= "
             f"{network_timing.min_seconds} s each, beside the reference layer")
    fit_source = {
        "glue_s_per_element": (f"fitted per pair on the uniform runs (fp32: hwq's export; "
                               f"int8: {int8_by}); {timed}"),
        "boundary_s_per_element": f"fitted on the alternating policy ({int8_by}); {timed}",
        "run_s": run_source,
    }
    profile = pw.write_profile(out, pw.profile_doc(name, description, record,
                                                   terms.to_profile(), fit_source))
    result.profile = profile
    result.end_to_end = _compare(graph, load_profile(profile), covered, layer_latency, cases,
                                 measured, timings)
    pw.write_rows(out / pw.END_TO_END, result.end_to_end.to_dict("records"),
                  pw.END_TO_END_COLUMNS)
    return result


SPEED_WARNING = 0.10  # a reference drift above this is worth a warning


def _report_speed(speed: SpeedReference) -> None:
    from hwq.progress import step

    step("reference layer: median %.3g s over %d group(s), varied by %.1f%%", speed.median_s,
         speed.groups, 100 * speed.drift)
    if speed.drift > SPEED_WARNING:
        log.warning("the same layer (%s) took times %.0f%% apart in the groups of this "
                    "measurement: the machine's speed changed while it ran (another process, "
                    "frequency scaling, a shared host), and a layer's time is no more repeatable "
                    "than that; measure on an idle machine", speed.label(), 100 * speed.drift)


def _row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (str(row["op"]), *(int(row[c]) for c in pw.KEY_COLUMNS[1:]))


def _time_networks(backend: MeasureBackend, graph: Any, module: Any, example: Any,
                   cases: list[NetworkCase], timing: TimingOptions,
                   reference: tuple[Any, tuple[int, int]] | None) -> tuple[list[Any], Any]:
    """Every case's network timing, in turns (each in fresh sessions) with the reference layer;
    the reference's timing apart (None without a reference)."""
    from hwq.measure.onnxruntime_backend import activation_type
    from hwq.progress import progress, step

    names = list(graph.names)
    feeds = {"input": example.numpy().astype(np.float32)}
    makers: list[Callable[[], Callable[[], object]]] = []
    with tempfile.TemporaryDirectory(prefix="hwq-measure-") as tmp:
        d = Path(tmp)
        with progress("exporting whole networks", total=len(cases)) as bar:
            fp32 = export_hwq(module, example, names, np.full((len(names), 2), 32),
                              d / "fp32.onnx")
            fp32_opt: Path | None = None
            for i, case in enumerate(cases):
                path = d / f"case{i}.onnx"
                if case.exporter == "hwq":  # as on the profile (measurement.int8_outputs)
                    export_hwq(module, example, names, case.policy, path,
                               requantize_outputs=True)
                else:
                    fp32_opt = fp32_opt or fp32_optimized(fp32, d / "fp32_opt.onnx")
                    export_quantize_static(
                        fp32_opt, example, names, case.policy,
                        getattr(backend, "activation", activation_type()), path,
                        "uint8" if case.exporter == "quantize_static_u8" else "int8")
                makers.append(partial(backend.network_runner, path, feeds))
                bar.advance()
        if reference is not None:
            makers.append(partial(backend.layer_runner, *reference))
        # every turn in fresh sessions, as the layers (hwq.measure.timing)
        step("timing %d whole-network runs in turns", len(cases))
        timings = time_interleaved([make() for make in makers], timing, NETWORK_ROUNDS,
                                   renew=makers)
    if reference is None:
        return timings, None
    return timings[:-1], timings[-1]


def _fit(graph: Any, layer_latency: np.ndarray, pairs: list[tuple[int, int]],
         cases: list[NetworkCase], measured: list[float], run_s: float) -> NetworkTermsFit:
    uniform = {}
    for case, t in zip(cases, measured):
        if case.fits.startswith("glue"):
            uniform[(int(case.policy[0, 0]), int(case.policy[0, 1]))] = t
    glue = fit_glue(graph, layer_latency, pairs, uniform, run_s)
    boundary = None
    for case, t in zip(cases, measured):
        if case.fits == "boundary":
            boundary = fit_boundary(graph, layer_latency, pairs, glue, case.policy, t, run_s)
    return NetworkTermsFit(glue, boundary, run_s)


def _compare(graph: Any, profile: Any, pairs: list[tuple[int, int]], layer_latency: np.ndarray,
             cases: list[NetworkCase], measured: list[float],
             timings: list[Any]) -> pd.DataFrame:
    from hwq.policy_eval import evaluate
    from hwq.tables import cost_table

    table = cost_table(graph, profile, pairs)
    predicted = evaluate(table, np.stack([c.policy for c in cases]))["latency_s"].to_numpy()
    rows = []
    for case, m, t, pred in zip(cases, measured, timings, predicted):
        rows.append({
            "policy": case.name, "exporter": case.exporter,
            "int8_layers": int((case.policy[:, 0] == 8).sum()), "layers": len(graph),
            "fits": case.fits, "measured_s": m, "median_s": t.median_s,
            "spread": round(t.spread, 4),
            "layers_sum_s": layers_sum(layer_latency, pairs, case.policy),
            "predicted_s": float(pred), "error": float(pred / m - 1),
        })
    return pd.DataFrame(rows, columns=list(pw.END_TO_END_COLUMNS))
