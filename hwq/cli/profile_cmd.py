"""`hwq profile list | show NAME | validate FILE...`"""

from __future__ import annotations

import sys

import click

from hwq.cli.options import json_option
from hwq.cli.output import emit_json, emit_table
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
@json_option
def show_cmd(name: str, as_json: bool) -> None:
    """The resolved profile NAME (a shipped name or a YAML path)."""
    from hwq.profile import load_profile

    p = load_profile(name)
    if as_json:
        emit_json({"name": p.name, "kind": p.kind, "sha256": p.sha256, "profile": dict(p.data)})
    else:
        sys.stdout.write(f"# sha256: {p.sha256}\n")
        sys.stdout.write(p.to_yaml())


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
