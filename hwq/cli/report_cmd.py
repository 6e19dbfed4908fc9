"""`hwq report`, `hwq runs list|show`, `hwq compare`, `hwq export` (reading and handing off runs).

stdout carries only the result (a table, or one JSON document with `--json`); progress and
messages go to stderr (silent with `-q` or when stderr is not a terminal).
"""

from __future__ import annotations

from typing import Any

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory for the report (default: RUN_DIR/report).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def report(run_dir: str, out_dir: str | None, as_json: bool) -> None:
    """Plots and an HTML page of a run: pareto.png, hypervolume.png, bits.png, index.html."""
    from hwq.cli.output import emit_json, emit_table
    from hwq.progress import progress, step
    from hwq.report import make_report
    from hwq.writable import check_dir

    if out_dir:
        check_dir(out_dir, "-o")
    with progress("writing the report", total=4) as bar:
        files = make_report(run_dir, out_dir, progress_bar=bar)
    if as_json:
        emit_json({k: str(v) for k, v in files.items()})
    else:
        emit_table([{"file": k, "path": str(v)} for k, v in files.items()])
    step("open %s in a browser", files["index"])


@click.group("runs")
def runs() -> None:
    """List run directories and show one run."""


@runs.command("list")
@click.argument("root", required=False, default="runs", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON list of run summaries.")
def runs_list(root: str, as_json: bool) -> None:
    """Runs under ROOT (default ./runs): status, algorithm, budget, front size."""
    from hwq.cli.output import emit_json, emit_table
    from hwq.report import list_rows

    rows = list_rows(root)
    if as_json:
        emit_json(rows)
        return
    cols = [
        "run_dir",
        "run_id",
        "status",
        "algorithm",
        "device",
        "model",
        "generations",
        "evaluations",
        "front_size",
        "started_at",
    ]
    emit_table(rows, cols)


@runs.command("show")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON document: {"run_id", "status", "algorithm", "device", "model", "generations", '
    '"evaluations", "front_size", "best": {objective: value}, "verified": [rows]}.',
)
def runs_show(run_dir: str, as_json: bool) -> None:
    """What ran, its status and budget, the front and the verification results."""
    import sys

    from hwq.cli.output import emit_json, emit_mapping, emit_table
    from hwq.display import display_rows
    from hwq.report import best_quantities, front_rows, run_summary
    from hwq.runs import Run

    run = Run.open(run_dir)
    summary = run_summary(run)
    if as_json:
        emit_json(summary)
        return
    meta = run.meta
    head: dict[str, Any] = {k: summary[k] for k in ("run_id", "status", "algorithm", "device")}
    head["model"] = summary["model"]
    head["objectives"] = ", ".join(meta.get("objectives") or [])
    total = meta.get("generations")
    head["generations"] = f"{summary['generations']}/{total}" if total else summary["generations"]
    head["evaluations"] = summary["evaluations"]
    head["front_size"] = summary["front_size"]
    head["started_at"] = meta.get("started_at")
    head["finished_at"] = meta.get("finished_at")
    for name, text in best_quantities(run, summary["best"]).items():
        head[f"best {name}"] = text
    emit_mapping(head)
    sys.stdout.write("\nfront:\n")
    emit_table(front_rows(run))
    if summary["verified"]:
        sys.stdout.write("\nverified:\n")
        emit_table(display_rows(summary["verified"]))


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False),
    default="compare.png",
    show_default=True,
    help="The comparison plot (PNG).",
)
@click.option(
    "--x",
    "x_objective",
    default=None,
    help="One panel with this cost objective on the x axis (default: one panel per cost "
    "objective the runs share, up to three).",
)
@click.option(
    "--log-x/--linear-x",
    "log_x",
    default=None,
    help="Logarithmic or linear x axes (default: log where the values span two decades).",
)
@click.option("--json", "as_json", is_flag=True, help="The table as JSON.")
def compare(
    run_dirs: tuple[str, ...], out: str, x_objective: str | None, log_x: bool | None,
    as_json: bool,
) -> None:
    """Several runs side by side: one plot of their fronts and one table of their results."""
    from hwq.cli.output import emit_json, emit_table
    from hwq.compare import compare_runs
    from hwq.progress import progress, step
    from hwq.writable import check_file

    check_file(out, "-o")
    with progress("comparing runs", total=None):
        table, path, scales = compare_runs(list(run_dirs), out, x_objective=x_objective,
                                           log_x=log_x)
    if as_json:
        emit_json({"plot": str(path), "x_scale": scales, "runs": table})
    else:
        emit_table(table)
    step("plot: %s", path)


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--policy", "policy_id", required=True, help="A policy id of the run's front.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "onnx", "torch", "llama-cpp", "hf-quant-config"]),
    default="json",
    show_default=True,
)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--opset",
    type=int,
    default=21,
    show_default=True,
    help="ONNX opset (21+: int4/uint4 QDQ; below: 4-bit values in int8/uint8).",
)
@click.option(
    "--onnx-form",
    type=click.Choice(["integer", "qdq"]),
    default="integer",
    show_default=True,
    help="integer: quantized layers as onnxruntime integer kernels (QLinearConv where the "
    "output feeds one 8-bit quantizer, else ConvInteger/MatMulInteger; batch norms folded); "
    "qdq: QuantizeLinear/DequantizeLinear around float convolutions (exact, slower).",
)
@click.option(
    "--from",
    "source",
    type=click.Choice(["qat", "ptq"]),
    default=None,
    help="The weights of an onnx or torch export: qat, the fine-tuned model verification saved "
    "(RUN_DIR/verified/<policy_id>.pt), or ptq, the calibrated post-training model (default: qat "
    "where the policy was verified, else ptq).",
)
def export(run_dir: str, policy_id: str, fmt: str, out: str, opset: int, onnx_form: str,
           source: str | None) -> None:
    """Hand a policy off: its JSON, an ONNX model with QuantizeLinear/DequantizeLinear at the
    policy's bits, a torch state dict with the quantization parameters, llama.cpp --tensor-type
    lines (llama-cpp) or a compressed-tensors quantization_config (hf-quant-config)."""
    from hwq.cli.output import emit_mapping
    from hwq.export import export_run
    from hwq.progress import progress
    from hwq.writable import check_file

    check_file(out, "-o")
    with progress(f"exporting {policy_id} as {fmt}", total=None):
        info = export_run(run_dir, policy_id, fmt, out, opset=opset, source=source,
                          onnx_form=onnx_form)
    emit_mapping(info)
