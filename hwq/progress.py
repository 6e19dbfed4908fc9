"""Progress bars and step messages on stderr (DESIGN.md §7: stdout carries only the result).

Bars are drawn with rich on stderr, and only when stderr is a terminal and the user did not pass
`-q` (`hwq -q ...`); otherwise every call here is silent and costs nothing. Step messages go to
the `hwq` logger (stderr, hidden by `-q`).

    from hwq.progress import progress, step

    with progress("plotting", total=4) as bar:
        for ...:
            bar.advance()
    step("exporting %s", path)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("hwq")


def quiet_requested() -> bool:
    """True when the user asked for silence: `hwq -q` (the click root context) or the `hwq`
    logger set above INFO."""
    try:
        import click

        ctx = click.get_current_context(silent=True)
    except ImportError:  # pragma: no cover - click is a dependency
        ctx = None
    if ctx is not None:
        root = ctx.find_root()
        if root.params.get("quiet"):
            return True
    hwq_log = logging.getLogger("hwq")
    return hwq_log.level > logging.INFO if hwq_log.level else False


def enabled(quiet: bool | None = None) -> bool:
    """Whether progress bars are drawn: stderr is a terminal and not quiet."""
    if quiet is None:
        quiet = quiet_requested()
    if quiet:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # closed or replaced stderr
        return False


class _Silent:
    """The no-op bar used when progress is off."""

    def advance(self, n: float = 1) -> None:
        pass

    def update(self, *, description: str | None = None, completed: float | None = None) -> None:
        pass


class _Bar:
    def __init__(self, prog: Any, task: Any) -> None:
        self._prog, self._task = prog, task

    def advance(self, n: float = 1) -> None:
        self._prog.advance(self._task, n)

    def update(self, *, description: str | None = None, completed: float | None = None) -> None:
        kw: dict[str, Any] = {}
        if description is not None:
            kw["description"] = description
        if completed is not None:
            kw["completed"] = completed
        self._prog.update(self._task, **kw)


@contextmanager
def progress(
    description: str, total: float | None = None, *, quiet: bool | None = None
) -> Iterator[_Bar | _Silent]:
    """A rich progress bar on stderr (a spinner when `total` is None); silent when stderr is not
    a terminal or with `-q`. The bar disappears when the block ends."""
    if not enabled(quiet):
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [SpinnerColumn(), TextColumn("[progress.description]{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as prog:
        yield _Bar(prog, prog.add_task(description, total=total))


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over `items` with a progress bar (see `progress`)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress(description, total) as bar:
        for item in items:
            yield item
            bar.advance()


def step(message: str, *args: Any) -> None:
    """A one-line message on stderr (the `hwq` logger at INFO; hidden by `-q`)."""
    log.info(message, *args)
