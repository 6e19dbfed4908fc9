"""Where hwq keeps its persistent caches, and the switch that turns them off.

`$HWQ_CACHE_DIR` (default `platformdirs.user_cache_dir("hwq")`) holds the cached cost tables
(`tables/`) and the per-layer results of the expensive cost models (e.g. `bitfusion/`);
`HWQ_NO_CACHE=1` turns every persistent cache off (e.g. for benchmarks).
"""

from __future__ import annotations

import os
from pathlib import Path


def disabled() -> bool:
    return os.environ.get("HWQ_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    root = os.environ.get("HWQ_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("hwq")
    return Path(root)
