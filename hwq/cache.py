"""Where hwq keeps its persistent caches, the switch that turns them off, and what is in them
(`hwq cache list|clear`).

`$HWQ_CACHE_DIR` (default `platformdirs.user_cache_dir("hwq")`) holds the cached cost tables
(`tables/`), the per-layer results of the expensive cost models (e.g. `bitfusion/`) and the
trained bundled models (`models/`); `HWQ_NO_CACHE=1` turns the cost caches off (e.g. for
benchmarks). Everything there is derived and is made again when missing. An entry that is
expensive to make (a trained model) is made under `locked(path)` and written atomically
(`hwq.atomic`), so concurrent processes neither race nor see half a file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hwq.errors import UserError


def disabled() -> bool:
    return os.environ.get("HWQ_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    root = os.environ.get("HWQ_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("hwq")
    return Path(root)


LOCK_SUFFIX = ".lock"


@contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[bool]:
    """An exclusive lock between processes on the cache entry `path`, held inside the block:
    `fcntl.flock` on the file `path + ".lock"` beside it (created, and kept, there), so two
    processes that would make the same entry make it once, one after the other. Yields whether
    the lock is held: False where no lock file can be made (a read-only cache, a platform
    without `fcntl`), and the block then runs unlocked."""
    target = Path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system
        yield False
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fh = open(target.with_name(target.name + LOCK_SUFFIX), "a+b")  # noqa: SIM115
    except OSError:
        yield False
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class CacheSection:
    """One top-level folder of the cache: its name, path, files and bytes."""

    name: str
    path: Path
    files: int
    bytes: int


def sections() -> list[CacheSection]:
    """The cache's top-level folders, by name (an absent cache has none)."""
    root = cache_dir()
    if not root.is_dir():
        return []
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = [f for f in sub.rglob("*") if f.is_file()]
        out.append(CacheSection(sub.name, sub, len(files), sum(f.stat().st_size for f in files)))
    return out


def clear(names: Sequence[str] = ()) -> list[CacheSection]:
    """Remove the named sections (all when none is named); returns what was removed. A name
    the cache does not hold is a UserError listing the ones it does."""
    present = {s.name: s for s in sections()}
    unknown = [n for n in names if n not in present]
    if unknown:
        raise UserError(
            f"hwq cache clear: no section {', '.join(unknown)} in {cache_dir()} "
            f"(present: {', '.join(present) or 'none'})"
        )
    chosen = [present[n] for n in names] if names else list(present.values())
    for section in chosen:
        shutil.rmtree(section.path)
    return chosen
