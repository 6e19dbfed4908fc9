"""Where hwq keeps its persistent caches, the switch that turns them off, and what is in them
(`hwq cache list|clear`).

`$HWQ_CACHE_DIR` (default `platformdirs.user_cache_dir("hwq")`) holds the cached cost tables
(`tables/`), the per-layer results of the expensive cost models (e.g. `bitfusion/`) and the
trained bundled models (`models/`); `HWQ_NO_CACHE=1` turns the cost caches off (e.g. for
benchmarks). Everything there is derived and is made again when missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
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
