"""Atomic file writes, the one helper every writer of the package uses (run directories, layer
files, cost-table caches, trained-model caches).

A reader never sees a half-written file: the content goes to a unique temporary file in the
target's directory, is flushed to disk, and is renamed over the target (atomic on one file
system). A failed write removes its temporary file and leaves the old target untouched; a Ctrl-C
during a write (main thread) is held until the write has finished or been undone, so an interrupt
never leaves a temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".", ".tmp"  # `.NAME.<random>.tmp` beside NAME


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT while the block runs (in the main thread; elsewhere a no-op), then deliver it
    to the handler that was installed (the default one raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *, fsync: bool = True
) -> Path:
    """Call `write(fh)` on a temporary binary file beside `path`, then rename it to `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with interrupts_held():
        fd, tmp = tempfile.mkstemp(
            prefix=f"{TEMPORARY_PREFIX}{target.name}.", suffix=TEMPORARY_SUFFIX, dir=target.parent
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                if fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    return target


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    return write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def remove_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer left under `directory` (recursively); returns
    them."""
    found = sorted(Path(directory).rglob(f"{TEMPORARY_PREFIX}*{TEMPORARY_SUFFIX}"))
    for f in found:
        f.unlink(missing_ok=True)
    return found
