"""`hwq graph MODEL [-o layers.parquet|.csv] [--json]`"""

from __future__ import annotations

import click

from hwq.cli.options import json_option, model_options, resolve_graph
from hwq.cli.output import emit_json, emit_table
from hwq.display import records

TABLE_COLUMNS = (
    "name",
    "op",
    "in_channels",
    "out_channels",
    "out_h",
    "out_w",
    "kernel_h",
    "stride_h",
    "groups",
    "macs",
    "weight_params",
    "inputs",
)


@click.command()
@click.argument("model")
@model_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Save the layer graph (.parquet or .csv) for torch-free cost queries.",
)
@json_option
def graph(
    model: str,
    model_args: tuple[str, ...],
    input_shape: str | None,
    input_dtype: str | None,
    weights: str | None,
    output: str | None,
    as_json: bool,
) -> None:
    """The quantizable layers of MODEL (zoo name, package.module:factory, or layer file)."""
    if output:
        from hwq.writable import check_file

        check_file(output, "-o")
    g = resolve_graph(model, model_args, input_shape, weights, input_dtype)
    if output:
        g.save(output)
        click.echo(f"hwq: wrote {len(g)} layers to {output}", err=True)
    frame = g.to_frame()
    if as_json:
        emit_json(
            {
                "model": g.model or model,
                "specialised": g.specialised,
                "totals": g.totals(),
                "layers": records(frame),
                "edges": [list(e) for e in g.edges],
                "unsupported": [u.to_dict() for u in g.unsupported],
                "coverage": g.coverage,
            }
        )
        return
    emit_table(records(frame), TABLE_COLUMNS)
    t = g.totals()
    click.echo(
        f"# {t['layers']} layers, {t['macs'] / 1e9:.4g} GMACs, "
        f"{t['weight_params'] / 1e6:.4g} M weights"
        + (", specialised to the example input" if g.specialised else "")
    )
    for u in g.unsupported:
        click.echo(f"# unsupported: {u.name} ({u.type}, {u.macs:,} MACs): {u.reason}")
    if g.coverage is not None:
        c = g.coverage
        click.echo(f"# coverage: the layers hold {100 * c['fraction']:.2f}% of the model's "
                   f"{c['reference_macs']:,} MACs counted at the aten level")
