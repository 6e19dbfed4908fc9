"""Checks that an output can be written, made before any work (training, a search), so a
read-only or blocked output is one `UserError` naming it, not a failure after minutes of work.
The checks leave nothing behind: a probe file or directory is removed at once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hwq.errors import UserError


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_dir(path: str | os.PathLike[str], what: str) -> None:
    """Refuse a directory that cannot be created, or written into if it exists. `what` names
    the option (`--output-dir`)."""
    target = Path(path)
    base = _nearest_existing(target)
    if not base.is_dir():
        raise UserError(f"{what} {target}: cannot create a directory there: {base} is a file, "
                        "expected a directory")
    try:
        if target.exists():
            with tempfile.TemporaryFile(dir=target):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".hwq-probe-", dir=base))
    except OSError as exc:
        where = target if target.exists() else base
        raise UserError(f"{what} {target}: expected a writable directory, but {where} is not "
                        f"writable ({exc.strerror})") from None


def check_file(path: str | os.PathLike[str], what: str) -> None:
    """Refuse an output file that cannot be written: its directory (created if missing) is
    not writable, or the path is a directory or a read-only file."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{what} {target}: expected a file path, found a directory")
    check_dir(target.parent if str(target.parent) else ".", what)
    if target.exists() and not os.access(target, os.W_OK):
        raise UserError(f"{what} {target}: expected a writable file, found a read-only one")
