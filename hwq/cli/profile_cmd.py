"""`hwq profile list | show NAME | validate FILE...`"""

from __future__ import annotations

import sys
import textwrap

import click

from hwq.cli.options import json_option
from hwq.cli.output import emit_json, emit_table
from hwq.display import format_table
from hwq.errors import ProfileError


@click.group()
def profile() -> None:
    """Device profiles: list the shipped ones, show one, validate a file."""


@profile.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """The shipped device profiles."""
    from hwq.profile import list_profiles, load_profile

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        rows.append({"name": p.name, "kind": p.kind, "runtime": p.data.get("runtime"),
                     "description": p.description})
    if as_json:
        emit_json(rows)
    else:
        emit_table(rows)


@profile.command("show")
@click.argument("name")
@click.option(
    "--bits",
    help="Pairs WxA for the peak MACs/s and energy per MAC table, e.g. 8x8,4x4 (default: every "
    "supported pair when there are at most 16, else the profile's search pairs).",
)
@json_option
def show_cmd(name: str, bits: str | None, as_json: bool) -> None:
    """The resolved profile NAME (a shipped name or a YAML path), then what it implies per
    (w_bits, a_bits) pair: peak MACs/s and energy per MAC, from the kind's cost model."""
    from hwq.profile import load_profile
    from hwq.profile_summary import calibration_targets, summarize
    from hwq.units import parse_pairs

    p = load_profile(name)
    summary = summarize(p, parse_pairs(bits) if bits else None)
    targets = calibration_targets(p)
    if as_json:
        emit_json({"name": p.name, "kind": p.kind, "sha256": p.sha256, "profile": dict(p.data),
                   "pairs": summary.rows(), "pairs_basis": summary.basis,
                   "runtime": p.data.get("runtime"), "calibration_targets": targets})
        return
    sys.stdout.write(f"# sha256: {p.sha256}\n")
    sys.stdout.write(p.to_yaml())
    _write_calibration(p.to_dict(), targets)
    # The table is written as YAML comments: stdout stays a loadable profile.
    header = f"What the profile implies per (w_bits, a_bits) pair, from the {summary.basis}:"
    sys.stdout.write("\n")
    for line in textwrap.wrap(header, width=96):
        sys.stdout.write(f"# {line}\n")
    columns = list(PAIR_COLUMNS)
    if any(row["note"] for row in summary.rows()):
        columns.append("note")
    for line in format_table(summary.rows(), columns, _pair_cell):
        sys.stdout.write(f"# {line}".rstrip() + "\n")


def _write_calibration(data: dict, targets: list[dict]) -> None:
    """The fit report of a calibrated profile, as YAML comments: runtime, what was fitted on
    what, and each target's residual."""
    cal = data.get("calibration")
    if not isinstance(cal, dict):
        return
    head = f"Calibration (runtime {data['runtime']}): " if "runtime" in data else "Calibration: "
    head += f"fitted {', '.join(cal['fitted'])}"
    if "carried_from" in cal:
        head += f", carried unchanged from {cal['carried_from']}"
    sys.stdout.write("\n")
    for text in (head, f"on: {cal['data']}", f"method: {cal['method']}"):
        for line in textwrap.wrap(text, width=96):
            sys.stdout.write(f"# {line}\n")
    rows = [{**t, "residual": "-" if t["residual"] is None else f"{t['residual']:+.1%}"}
            for t in targets]
    if rows:
        for line in format_table(rows, CALIBRATION_COLUMNS, _pair_cell):
            sys.stdout.write(f"# {line}".rstrip() + "\n")


CALIBRATION_COLUMNS = ("name", "role", "unit", "measured", "model", "residual")


PAIR_COLUMNS = ("w_bits", "a_bits", "peak_macs_per_s", "energy_per_mac_pj",
                "total_energy_per_mac_pj")


def _pair_cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@profile.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@json_option
def validate_cmd(files: tuple[str, ...], as_json: bool) -> None:
    """Validate profile FILES; every problem is reported, exit 2 if any."""
    from hwq.profile import validate_file

    problems: dict[str, list[str]] = {f: validate_file(f) for f in files}
    if as_json:
        emit_json({f: {"valid": not p, "problems": p} for f, p in problems.items()})
    else:
        for f, p in problems.items():
            if not p:
                click.echo(f"{f}: valid")
    bad = [line for p in problems.values() for line in p]
    if bad:
        raise ProfileError(bad)
