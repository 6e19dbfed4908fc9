"""Progress bars and step messages on stderr (DESIGN.md §7: stdout carries only the result).

Bars are drawn with rich on stderr, and only when stderr is a terminal and the user did not pass
`-q` (`hwq -q ...`); otherwise every call here is silent and costs nothing. Step messages go to
the `hwq` logger (stderr, hidden by `-q`).

    from hwq.progress import progress, step

    with progress("plotting", total=4) as bar:
        for ...:
            bar.advance()
    step("exporting %s", path)

A search shows one bar of generations with the evaluations so far and the front's size:

    with generation_bar("nsga2 on bitfusion", total=n_gen, done=start) as bar:
        for gen in range(start, n_gen):
            ...
            bar.advance(front=len(archive), evaluations=evaluations)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

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


class Bar(Protocol):
    """What `progress` yields: advance by steps, or change the description or position."""

    def advance(self, n: float = 1) -> None: ...

    def update(self, *, description: str | None = None, completed: float | None = None) -> None: ...


class GenerationBar(Protocol):
    """What `generation_bar` yields: one generation done, with the run's totals so far."""

    def advance(self, *, front: int, evaluations: int) -> None: ...


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
) -> Iterator[Bar]:
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


class _SilentGenerations:
    def advance(self, *, front: int, evaluations: int) -> None:
        pass


class _Generations:
    def __init__(self, prog: Any, task: Any) -> None:
        self._prog, self._task = prog, task

    def advance(self, *, front: int, evaluations: int) -> None:
        self._prog.update(self._task, advance=1, front=front, evals=evaluations)


@contextmanager
def generation_bar(
    label: str, total: int, done: int = 0, *, quiet: bool | None = None
) -> Iterator[GenerationBar]:
    """A search's bar on stderr: `label`, generations `done`/`total`, "N evaluated · front M",
    elapsed time; it stays on screen when the search ends. Silent when stderr is not a terminal
    or with `-q` (or `quiet=True`)."""
    if not enabled(quiet):
        yield _SilentGenerations()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("generations · {task.fields[evals]} evaluated · front {task.fields[front]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with prog:
        yield _Generations(
            prog, prog.add_task(label, total=total, completed=done, evals=0, front=0)
        )


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
