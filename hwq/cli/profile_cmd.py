"""`hwq profile list | show NAME | validate FILE...`"""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import click

from hwq.cli.options import json_option
from hwq.cli.output import emit_json, emit_table
from hwq.display import format_table
from hwq.errors import ProfileError

if TYPE_CHECKING:
    from hwq.cost_models.kind import RuntimeInfo
    from hwq.profile import DeviceProfile


@click.group()
def profile() -> None:
    """Device profiles: list the shipped ones, show one, validate a file."""


@profile.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """The shipped device profiles: name, kind, runtime (the one its figures belong to; - for a
    kind without runtimes) and description."""
    from hwq.profile import list_profiles, load_profile

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        info = runtime_of(p)
        rows.append({"name": p.name, "kind": p.kind, "runtime": info.name if info else "-",
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
    from hwq.profile_summary import summarize
    from hwq.units import parse_pairs

    p = load_profile(name)
    summary = summarize(p, parse_pairs(bits) if bits else None)
    info = runtime_of(p)
    fitted = calibration_sources(p)
    if as_json:
        emit_json({"name": p.name, "kind": p.kind, "sha256": p.sha256, "profile": dict(p.data),
                   "runtime": None if info is None else {
                       "name": info.name, "named": info.named,
                       "provenance": list(info.provenance)},
                   "calibration": fitted,
                   "pairs": summary.rows(), "pairs_basis": summary.basis})
        return
    sys.stdout.write(f"# sha256: {p.sha256}\n")
    sys.stdout.write(p.to_yaml())
    # runtime and calibration provenance, as YAML comments like the table below
    if info is not None or fitted:
        sys.stdout.write("\n")
    if info is not None:
        how = "named by the profile" if info.named else "the kind's default"
        sys.stdout.write(f"# runtime: {info.name} ({how})\n")
        for line in info.provenance:
            for part in textwrap.wrap(line, width=94, subsequent_indent="    "):
                sys.stdout.write(f"#   {part}\n")
    if fitted:
        sys.stdout.write("# calibrated figures of the profile:\n")
        for key, source in fitted.items():
            for part in textwrap.wrap(f"{key}: {source}", width=94, subsequent_indent="    "):
                sys.stdout.write(f"#   {part}\n")
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


def runtime_of(p: DeviceProfile) -> RuntimeInfo | None:
    """The kind's RuntimeInfo of profile `p`, or None for a kind without runtimes."""
    from hwq.cost_models.kind import kind

    hook = kind(p.kind).runtime
    return None if hook is None else hook(p)


def calibration_sources(p: DeviceProfile) -> dict[str, str]:
    """The profile's figures whose source says they were fitted (key path -> source)."""
    return {k: v for k, v in p.sources.items() if str(v).startswith("fitted")}


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
