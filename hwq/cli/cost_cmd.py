"""`hwq cost` (totals of one policy) and `hwq table` (the cost table)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from hwq.cli.options import json_option, model_options, resolve_graph
from hwq.cli.output import emit_json, emit_mapping, emit_table
from hwq.display import display_mapping, display_rows, records
from hwq.errors import UserError

PER_LAYER_COLUMNS = (
    "layer",
    "w_bits",
    "a_bits",
    "macs",
    "bops",
    "weight_bytes",
    "cycles",
    "latency_s",
    "energy_pj",
    "feasible",
)


@click.command()
@click.option("--device", "-d", required=True, help="Profile name or YAML path.")
@click.option(
    "--model",
    "-m",
    "model",
    required=True,
    help="Zoo name, package.module:factory, or a saved layer file.",
)
@model_options
@click.option("--bits", help="Uniform pair W,A (weights first), e.g. 4,8.")
@click.option(
    "--policy", "policy_file", type=click.Path(dir_okay=False), help="A policy JSON file."
)
@click.option("--batch", type=int, help="Price at this batch size.")
@click.option("--per-layer", is_flag=True, help="Also list every layer's costs.")
@click.option(
    "--force", is_flag=True, help="Apply a --policy whose graph_hash is another model's."
)
@json_option
def cost(
    device: str,
    model: str,
    model_args: tuple[str, ...],
    input_shape: str | None,
    input_dtype: str | None,
    weights: str | None,
    bits: str | None,
    policy_file: str | None,
    batch: int | None,
    per_layer: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Costs of MODEL on DEVICE at one policy: totals, and per layer with --per-layer."""
    from hwq.allowed_bits import check_layers
    from hwq.policy import Policy
    from hwq.policy_eval import evaluate
    from hwq.profile import load_profile
    from hwq.tables import cost_table
    from hwq.units import parse_pair

    if (bits is None) == (policy_file is None):
        raise UserError("give exactly one of --bits W,A or --policy FILE")
    prof = load_profile(device)
    policy = Policy.read(policy_file) if policy_file else Policy.uniform(*parse_pair(bits or ""))
    g = resolve_graph(model, model_args, input_shape, weights, input_dtype)
    if policy_file and policy.graph_hash and policy.graph_hash != g.graph_hash and not force:
        raise UserError(
            f"--policy {policy_file}: graph_hash {policy.graph_hash} is not the graph_hash of "
            f"model {g.model or model} ({g.graph_hash}): the policy was made for another model "
            "(--force applies it anyway)"
        )
    pairs_arr = policy.to_array(g)
    check_layers(prof, g.names, pairs_arr, where=f"--policy {policy_file}" if policy_file
                 else f"--bits {bits}")
    pairs = sorted({(int(w), int(a)) for w, a in pairs_arr})
    table = cost_table(g, prof, pairs, batch)
    totals = evaluate(table, pairs_arr[None]).iloc[0].to_dict()
    doc: dict[str, object] = {"device": prof.name, "model": g.model or model, "totals": totals}
    if as_json:  # what the totals leave out (LSTM, ConvTranspose, Conv3d, ...), at --batch
        priced = g.with_batch(batch) if batch is not None else g
        cov = priced.coverage
        traced_batch = int(g.column("batch")[0]) if len(g) else 1
        unsupported = sum(u.macs for u in g.unsupported) * (batch or traced_batch) // traced_batch
        totals["unsupported_macs"] = (int(cov["unsupported_macs"]) if cov is not None
                                      else int(unsupported))
        totals["coverage"] = cov
    rows = []
    if per_layer:
        df = table.to_pandas()
        chosen = {(n, int(w), int(a)) for n, (w, a) in zip(g.names, pairs_arr)}
        mask = [(r.layer, r.w_bits, r.a_bits) in chosen for r in df.itertuples()]
        rows = records(df[mask])
        doc["layers"] = rows
    if as_json:
        emit_json(doc)
        return
    if rows:
        emit_table(display_rows(rows, PER_LAYER_COLUMNS))
        click.echo("")
    if totals.get("feasible") and not totals.get("infeasible_reason"):
        totals.pop("infeasible_reason", None)  # nothing to say
    emit_mapping({"device": prof.name, "model": doc["model"], "policy_id": policy.id(g),
                  **display_mapping(totals)})


@click.command()
@click.option("--device", "-d", required=True, help="Profile name or YAML path.")
@click.option(
    "--model",
    "-m",
    "model",
    required=True,
    help="Zoo name, package.module:factory, or a saved layer file.",
)
@model_options
@click.option("--bits", help="Pairs WxA, e.g. 8x8,4x4 (default: the profile's search pairs).")
@click.option("--batch", type=int, help="Price at this batch size.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write FILE: .parquet, .csv, .npy (--format haq) or .json (--format apq).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "haq", "apq"]),
    default=None,
    help="Output format (default: from -o's suffix, else table).",
)
@json_option
def table(
    device: str,
    model: str,
    model_args: tuple[str, ...],
    input_shape: str | None,
    input_dtype: str | None,
    weights: str | None,
    bits: str | None,
    batch: int | None,
    output: str | None,
    fmt: str | None,
    as_json: bool,
) -> None:
    """The cost table of MODEL on DEVICE: one row per (layer, w_bits, a_bits)."""
    from hwq.profile import load_profile
    from hwq.tables import cost_table
    from hwq.units import parse_pairs
    from hwq.writable import check_file

    if output:
        check_file(output, "-o")
    if output and fmt not in ("haq", "apq") and Path(output).suffix.lower() not in (
        ".parquet", ".csv"):
        raise UserError(f"-o {output}: expected a .parquet or .csv file (or --format haq|apq)")
    prof = load_profile(device)
    g = resolve_graph(model, model_args, input_shape, weights, input_dtype)
    fmt = "json" if as_json and fmt is None else fmt
    pairs = parse_pairs(bits) if bits else None
    if fmt == "haq" and pairs is None:
        pairs = [(w, a) for w in range(1, 9) for a in range(1, 9)]
    t = cost_table(g, prof, pairs, batch)
    if fmt in ("haq", "apq"):
        from hwq.table_layouts import to_apq, to_haq

        if not output:
            raise UserError(f"--format {fmt} needs -o FILE")
        if fmt == "haq":
            np.save(output, to_haq(t))
        else:
            Path(output).write_text(json.dumps(to_apq(t), indent=1))
        click.echo(f"hwq: wrote {fmt.upper()} table to {output}", err=True)
        return
    df = t.to_pandas()
    if output:
        suffix = Path(output).suffix.lower()
        if suffix == ".parquet":
            t.to_parquet(output)
        elif suffix == ".csv":
            df.to_csv(output, index=False)
        else:
            raise UserError(f"-o {output}: expected a .parquet or .csv file (or --format haq|apq)")
        click.echo(f"hwq: wrote {len(df)} rows to {output}", err=True)
        if fmt is None:
            return
    if fmt == "json":
        emit_json(records(df))
    elif fmt == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        emit_table(records(df))
