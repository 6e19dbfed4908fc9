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
        rows.append({"name": p.name, "kind": p.kind, "description": p.description})
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
    from hwq.profile_summary import summarize
    from hwq.units import parse_pairs

    p = load_profile(name)
    summary = summarize(p, parse_pairs(bits) if bits else None)
    if as_json:
        emit_json({"name": p.name, "kind": p.kind, "sha256": p.sha256, "profile": dict(p.data),
                   "pairs": summary.rows(), "pairs_basis": summary.basis})
        return
    sys.stdout.write(f"# sha256: {p.sha256}\n")
    sys.stdout.write(p.to_yaml())
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
