"""`hwq measure MODEL --runtime onnxruntime [--bits ...] [--threads 1] [--no-end-to-end] -o DIR`"""

from __future__ import annotations

import click

from hwq.cli.output import emit_table
from hwq.display import display_rows
from hwq.measure.backend import DEFAULT_INT8_FORM, INT8_FORMS


@click.command()
@click.argument("model")
@click.option("--runtime", default="onnxruntime", show_default=True,
              help="Measuring runtime: onnxruntime (CPU), onnxruntime-cuda, "
                   "onnxruntime-tensorrt.")
@click.option("--bits", help="Pairs to measure, WxA list (default 32x32,8x8; 4x32 = int4 "
                             "weight-only linear layers).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="The runtime's intra- and inter-op threads (recorded in the profile).")
@click.option("--input-shape", metavar="N,...", help="Example input shape (default: the zoo "
                                                     "model's natural input).")
@click.option("--model-arg", "model_args", multiple=True, metavar="K=V",
              help="Keyword argument for the model factory (repeatable).")
@click.option("--weights", type=click.Path(dir_okay=False), help="A state dict to load.")
@click.option("--end-to-end/--no-end-to-end", default=True, show_default=True,
              help="Also time the whole network and fit the profile's network terms.")
@click.option("--statistic", type=click.Choice(["median", "p10"]), default="median",
              show_default=True,
              help="The figure kept per layer and network: the median of the runs, or their "
                   "10th percentile (a machine shared with other work).")
@click.option("--clock", type=click.Choice(["cpu", "wall"]),
              help="What times a run: the calling thread's CPU time (the default with --threads "
                   "1: unaffected by other processes) or wall time (the default otherwise).")
@click.option("--int8-form", type=click.Choice(list(INT8_FORMS)), default=DEFAULT_INT8_FORM,
              show_default=True,
              help="How 8x8 layers are timed (both requantize the output: QLinearConv / "
                   "QGemm): hwq = as hwq export --format onnx writes them on a measured device "
                   "(u8 x u8 weights, exact on every CPU; what a search on the profile "
                   "exports), runtime = as onnxruntime's quantize_static writes them by default "
                   "(u8 x s8 weights: faster, but on x86 CPUs without VNNI its int16 pair sums "
                   "saturate).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for profile.yaml, measured.csv, end_to_end.csv (resumes).")
def measure(model: str, runtime: str, bits: str | None, threads: int, input_shape: str | None,
            model_args: tuple[str, ...], weights: str | None, end_to_end: bool,
            statistic: str, clock: str | None, int8_form: str, out_dir: str) -> None:
    """Measure MODEL's layers on this machine with a real runtime: a lut profile in DIR."""
    from hwq.measure.run import measure as run_measure
    from hwq.models.loading import parse_model_args

    result = run_measure(model, out_dir, runtime=runtime, bits=bits, threads=threads,
                         input_shape=input_shape, model_args=parse_model_args(model_args),
                         weights=weights, end_to_end=end_to_end, statistic=statistic,
                         clock=clock, int8_form=int8_form)
    if result.end_to_end is not None:
        rows = result.end_to_end.to_dict("records")
        emit_table(display_rows(rows, ("policy", "exporter", "int8_layers", "fits",
                                       "measured_s", "predicted_s", "layers_sum_s", "error")))
        click.echo("")
    click.echo(f"profile: {result.profile}")
    click.echo(f"measured: {result.measured} new, {result.resumed} resumed, "
               f"{len(result.skipped)} skipped (see {result.out_dir / 'skipped.csv'})")
