"""`hwq search`: the Pareto front of task quality against a device's costs (DESIGN.md §4, §6, §7).

With nothing but `--device bitfusion` it searches `digits_resnet` (trained on first use) for
accuracy, latency, energy and weight memory with NEMO, verifies the 3 best compromises by QAT
and prints the front. Progress goes to stderr, the front (a table, or JSON with --json) to
stdout, everything else to the run directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hwq.cli.options import json_option


def _search_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One click option per SearchConfig field, in declaration order (the config is the one
    definition of names, types, defaults and help); a default shows as `[default: ...]`."""
    from dataclasses import fields

    from hwq.search.config import SearchConfig, default_text

    for f in reversed(fields(SearchConfig)):
        meta = f.metadata
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        decls = [flag, *([meta["short"]] if meta["short"] else []), f.name]
        kwargs: dict[str, Any] = {"help": meta["help"]}
        shown = default_text(f)
        if shown:
            kwargs["help"] += f"  [default: {shown}]"
        if meta["is_flag"]:
            kwargs["is_flag"] = True
            kwargs["default"] = None
        elif meta["choices"]:
            kwargs["type"] = click.Choice(meta["choices"])
        elif meta["path"]:
            kwargs["type"] = click.Path(dir_okay=meta["path"] == "dir",
                                        file_okay=meta["path"] == "file")
        elif meta["cli_type"] is not None:
            kwargs["type"] = meta["cli_type"]
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if meta["multiple"]:
            kwargs["multiple"] = True
        func = click.option(*decls, **kwargs)(func)
    return func


@click.command()
@_search_options
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --output-dir from its last complete generation.",
)
@json_option
@click.pass_context
def search(ctx: click.Context, resume: bool, as_json: bool, **opts: Any) -> None:
    """Search per-layer (weight, activation) bits for the Pareto front of quality vs costs."""
    from hwq.search.config import SearchConfig
    from hwq.search.driver import run_search

    given = {
        name: (value or None) if isinstance(value, tuple) else value
        for name, value in opts.items()
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    config = SearchConfig.from_options(**given)
    if not resume:
        config.validate()  # --device is required
    quiet = logging.getLogger("hwq").level >= logging.ERROR
    run = run_search(config, resume=resume, given=given, progress=not quiet)
    _print_front(run, as_json)


def _print_front(run: Any, as_json: bool) -> None:
    from hwq.cli.output import emit_json, emit_table
    from hwq.display import SEARCH_FRONT, front_table, records, weight_layer_mask

    meta = run.meta
    if as_json:
        front = run.pareto
        doc = {
            "run_dir": str(Path(run.path)),
            "run_id": meta.get("run_id"),
            "status": meta.get("status"),
            "algorithm": meta.get("algorithm"),
            "device": meta.get("device"),
            "model": meta.get("model"),
            "objectives": meta.get("objectives"),
            "generations": meta.get("generations_done"),
            "evaluations": meta.get("evaluations"),
            "front_size": len(front),
            "front": records(front),
            "verified": records(run.verify),
        }
        emit_json(doc)
        return
    rows = front_table(run.pareto, run.verify, [], SEARCH_FRONT,
                       weight_layers=weight_layer_mask(run.layers.column("op")))
    emit_table(rows)
    logging.getLogger("hwq").info(
        "run directory: %s (%d evaluations, front of %d)",
        run.path,
        int(meta.get("evaluations") or 0),
        len(rows),
    )
