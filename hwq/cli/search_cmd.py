"""`hwq search`: the Pareto front of task quality against a device's costs (DESIGN.md §4, §6, §7).

With nothing but `--device bitfusion` it searches `digits_resnet` (trained on first use) for
accuracy, latency, energy and weight memory with NEMO, verifies the 3 best compromises by QAT
and prints the front. Progress goes to stderr, the front (a table, or JSON with --json) to
stdout, everything else to the run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from hwq.cli.options import json_option
from hwq.errors import UserError

ALGORITHMS = ("nemo", "nsga2", "random", "ilp", "greedy")
EXECUTORS = ("serial", "process", "ray")


@click.command()
@click.option("--device", "-d", help="Profile name or YAML path (required unless --resume).")
@click.option(
    "--model",
    "-m",
    help="Zoo name, package.module:factory, or a saved layer file  [default: digits_resnet]",
)
@click.option(
    "--algorithm",
    type=click.Choice(ALGORITHMS),
    help="Search algorithm  [default: nemo]",
)
@click.option(
    "--objectives",
    metavar="LIST",
    help="Comma list of accuracy, sensitivity, weight_memory, activation_memory, bops, latency, "
    "energy  [default: accuracy,latency,energy,weight_memory; sensitivity first with "
    "--sensitivity]",
)
@click.option(
    "--sensitivity",
    type=click.Path(dir_okay=False),
    help="Sensitivity table: layer,w_bits,a_bits,sensitivity (a_bits may be empty) or a HAWQ-V3 "
    "file.",
)
@click.option(
    "--max",
    "max_",
    multiple=True,
    metavar="NAME=VALUE",
    help="Constraint, repeatable: latency=2ms, energy=5uJ, weight_memory=256KiB, "
    "activation_memory=64KiB, bops=10G, sensitivity=0.5.",
)
@click.option(
    "--pin",
    multiple=True,
    metavar="NAMES=BITS",
    help="Pin layers (first, last or names, comma-separated) to BITS (8 = W8A8, or WxA); "
    "repeatable, e.g. --pin first,last=8.",
)
@click.option(
    "--tie",
    type=click.Choice(["none", "same-input"]),
    help="same-input: layers reading the same tensor share their bits  [default: none]",
)
@click.option(
    "--bits",
    metavar="WxA,...",
    help="Allowed pairs, e.g. 4x4,8x8  [default: the profile's search_default combinations]",
)
@click.option(
    "--generations",
    type=int,
    help="Generations (generation 0 is the initial population)  [default: 25]",
)
@click.option(
    "--population", type=int, help="Population per generation, total over species  [default: 40]"
)
@click.option("--seed", type=int, help="The one seed of all the search's randomness  [default: 0]")
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False),
    help="Run directory  [default: runs/<YYYYmmdd-HHMMSS>-<model>-<device>]",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --output-dir from its last complete generation.",
)
@click.option(
    "--executor", type=click.Choice(EXECUTORS), help="Where quality jobs run  [default: serial]"
)
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray).")
@click.option(
    "--workers", type=int, help="Processes / Ray CPUs for quality jobs  [default: all cores]"
)
@click.option(
    "--verify-top", type=int, help="Verify this many front policies by QAT; 0 skips  [default: 3]"
)
@click.option("--verify-epochs", type=int, help="QAT epochs per verified policy  [default: 3]")
@click.option(
    "--species",
    metavar="LIST",
    help="NEMO species: all, direct, gnn, or names among direct-round, direct-floor, gnn-gcn, "
    "gnn-gat, gnn-unet  [default: all]",
)
@click.option("--fixed-sizes", is_flag=True, help="NEMO ablation: equal species sizes (no UCB).")
@click.option(
    "--graph",
    "graph_mode",
    type=click.Choice(["dataflow", "chain"]),
    help="Edges the GNN species read: the data flow, or NEMO's chain  [default: dataflow]",
)
@click.option(
    "--model-arg",
    "model_args",
    multiple=True,
    metavar="K=V",
    help="Model factory argument (repeatable).",
)
@click.option("--input-shape", metavar="N,C,H,W", help="Example input shape.")
@click.option("--weights", type=click.Path(dir_okay=False), help="State dict of the trained model.")
@click.option(
    "--data", metavar="package.module:factory", help="(train, val, test) loaders for --weights."
)
@json_option
@click.pass_context
def search(ctx: click.Context, **opts: Any) -> None:
    """Search per-layer (weight, activation) bits for the Pareto front of quality vs costs."""
    from hwq.search.run import SearchConfig, check_resume_options, run_search

    given = {
        name: value
        for name, value in opts.items()
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    as_json = opts.pop("as_json")
    resume = opts["resume"]
    if resume:
        if not opts["output_dir"]:
            raise UserError("--resume needs --output-dir DIR of the run to continue")
        check_resume_options(opts["output_dir"], _config_fields(given))
        config = SearchConfig(device=opts["device"] or "")
        config.output_dir = opts["output_dir"]
        config.executor = opts["executor"] or "serial"
        config.address = opts["address"]
        config.workers = opts["workers"]
        config.verify_top = opts["verify_top"]  # type: ignore[assignment]
        config.verify_epochs = opts["verify_epochs"]  # type: ignore[assignment]
    else:
        if not opts["device"]:
            raise UserError(
                "--device is required (a profile name such as bitfusion, or a YAML path)"
            )
        config = SearchConfig(device=opts["device"], **_config_fields(opts, defaults=True))
    quiet = logging.getLogger("hwq").level >= logging.ERROR
    run = run_search(config, resume=resume, progress=not quiet)
    _print_front(run, as_json)


def _config_fields(opts: dict[str, Any], defaults: bool = False) -> dict[str, Any]:
    """CLI options -> SearchConfig fields (only those given, unless `defaults`)."""
    from hwq.models.loading import parse_input_shape, parse_model_args
    from hwq.search.run import SearchConfig

    base = SearchConfig(device="")
    out: dict[str, Any] = {}
    mapping = {
        "model": "model",
        "algorithm": "algorithm",
        "sensitivity": "sensitivity",
        "tie": "tie",
        "bits": "bits",
        "generations": "generations",
        "population": "population",
        "seed": "seed",
        "output_dir": "output_dir",
        "executor": "executor",
        "address": "address",
        "workers": "workers",
        "verify_top": "verify_top",
        "verify_epochs": "verify_epochs",
        "fixed_sizes": "fixed_sizes",
        "graph_mode": "graph",
        "gnn_features": "gnn_features",
        "weights": "weights",
        "data": "data",
    }
    for opt, field in mapping.items():
        if opts.get(opt) is not None:
            out[field] = opts[opt]
        elif defaults:
            out[field] = getattr(base, field)
    if opts.get("objectives"):
        out["objectives"] = [o.strip() for o in opts["objectives"].split(",") if o.strip()]
    if opts.get("species"):
        out["species"] = [s.strip() for s in opts["species"].split(",") if s.strip()]
    if opts.get("max_"):
        out["max"] = list(opts["max_"])
    if opts.get("pin"):
        out["pin"] = list(opts["pin"])
    if opts.get("model_args"):
        out["model_args"] = parse_model_args(opts["model_args"])
    if opts.get("input_shape"):
        shape = parse_input_shape(opts["input_shape"])
        out["input_shape"] = list(shape) if shape else None
    if defaults and not out.get("model"):
        out["model"] = base.model
    return out


def _print_front(run: Any, as_json: bool) -> None:
    from hwq.cli.output import emit_json, emit_table
    from hwq.display import SEARCH_FRONT, front_table, records

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
    rows = front_table(run.pareto, run.verify, [], SEARCH_FRONT)
    emit_table(rows)
    logging.getLogger("hwq").info(
        "run directory: %s (%d evaluations, front of %d)",
        run.path,
        int(meta.get("evaluations") or 0),
        len(rows),
    )
