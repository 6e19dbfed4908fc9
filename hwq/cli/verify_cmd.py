"""`hwq verify RUN_DIR [--top K]`: QAT-verify the best Pareto policies of a finished search."""

from __future__ import annotations

import click

from hwq.cli.options import json_option
from hwq.cli.output import emit_json, emit_table
from hwq.display import display_rows, records
from hwq.search.config import SearchConfig
from hwq.search.executors import EXECUTORS


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--top", "top", type=int, default=SearchConfig.verify_top, show_default=True,
              help="How many front policies to verify (the best compromises first).")
@click.option("--epochs", type=int, help="QAT epochs (default: the run's --verify-epochs).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="serial")
@click.option("--address", help="Ray cluster address (with --executor ray).")
@json_option
def verify(run_dir: str, top: int, epochs: int | None, executor: str, address: str | None,
           as_json: bool) -> None:
    """Fine-tune the best Pareto policies of RUN_DIR with distillation into verify.parquet."""
    from hwq.verify import verify_run

    table = verify_run(run_dir, top, epochs, executor, address)
    rows = records(table)
    if as_json:
        emit_json(rows)
    else:
        emit_table(display_rows(rows))
