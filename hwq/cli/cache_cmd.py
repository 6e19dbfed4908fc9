"""`hwq cache list|clear`: what the persistent cache holds (cost tables, cost-model memos,
trained bundled models), and removing it."""

from __future__ import annotations

import click

from hwq.cli.options import json_option


@click.group("cache")
def cache() -> None:
    """The persistent cache ($HWQ_CACHE_DIR): cost tables, cost-model memos, trained models."""


@cache.command("list")
@json_option
def cache_list(as_json: bool) -> None:
    """Each cache section with its files and size."""
    from hwq.cache import cache_dir, sections
    from hwq.cli.output import emit_json, emit_table

    rows = [{"section": s.name, "files": s.files, "bytes": s.bytes, "path": str(s.path)}
            for s in sections()]
    if as_json:
        emit_json({"cache_dir": str(cache_dir()), "sections": rows})
    else:
        emit_table(rows or [{"section": "(empty)", "files": 0, "bytes": 0,
                             "path": str(cache_dir())}])


@cache.command("clear")
@click.argument("sections", nargs=-1)
@json_option
def cache_clear(sections: tuple[str, ...], as_json: bool) -> None:
    """Remove SECTIONS of the cache (e.g. tables, models); all of it when none is named.
    Everything there is made again when needed."""
    from hwq.cache import clear
    from hwq.cli.output import emit_json, emit_table

    removed = clear(sections)
    rows = [{"section": s.name, "files": s.files, "bytes": s.bytes} for s in removed]
    if as_json:
        emit_json({"removed": rows})
    else:
        emit_table(rows or [{"section": "(nothing to remove)", "files": 0, "bytes": 0}])
