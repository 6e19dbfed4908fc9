"""`hwq verify RUN_DIR [--top K]`: QAT-verify the best Pareto policies of a finished search."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd

from hwq.cli.options import json_option
from hwq.cli.output import emit_json, emit_table
from hwq.display import records
from hwq.errors import UserError


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--top", "top", type=int, default=3, show_default=True,
              help="How many front policies to verify (the best compromises first).")
@click.option("--epochs", type=int, help="QAT epochs (default: the run's --verify-epochs).")
@click.option("--executor", type=click.Choice(["serial", "process", "ray"]), default="serial")
@click.option("--address", help="Ray cluster address (with --executor ray).")
@json_option
def verify(run_dir: str, top: int, epochs: int | None, executor: str, address: str | None,
           as_json: bool) -> None:
    """Fine-tune the best Pareto policies of RUN_DIR with distillation into verify.parquet."""
    from hwq.runs import Run, RunWriter
    from hwq.search.executors import make_executor
    from hwq.search.problem import OBJECTIVES
    from hwq.search.run import SearchConfig, _read_config, _verify, prepare

    if top < 1:
        raise UserError(f"--top: expected 1 or more, found {top}")
    path = Path(run_dir)
    run = Run.open(path)
    front = run.pareto
    if front is None or not len(front):
        raise UserError(f"{path}: the run has no Pareto front yet (pareto.parquet)")
    config = SearchConfig.from_dict(_read_config(path))
    config.verify_top = top
    if epochs is not None:
        config.verify_epochs = epochs
    prep = prepare(config)
    cols = []
    for name in prep.problem.objectives:
        col, maximise = OBJECTIVES[name]
        cols.append(-front[col].to_numpy(float) if maximise else front[col].to_numpy(float))
    F = np.stack(cols, axis=1)
    writer = RunWriter.resume(path)
    before = run.verify
    with make_executor(executor, address=address) as pool:
        _verify(prep, writer, front, F, top, pool)
    table = Run.open(path).verify
    if before is not None and len(before) and table is not None:
        # keep earlier verifications of other policies; a re-verified policy takes the new row
        merged = pd.concat([before, table]).drop_duplicates("policy_id", keep="last")
        writer.write_verify(merged.reset_index(drop=True))
        table = merged
    if table is None:
        raise UserError(f"{path}: nothing verified (QAT needs trained weights and data)")
    rows = records(table)
    if as_json:
        emit_json(rows)
    else:
        emit_table(rows)
