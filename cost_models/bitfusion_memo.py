"""BitFusion's persistent per-layer-row result memo (its tiling search is the expensive one).

A result row is keyed by (layer row, weight bits, activation bits, sha256 of the parameter bytes).
Rows live under `cache.cache_dir()` (`$HWQ_CACHE_DIR`) in
`<namespace>/<params digest>/<sha256 of the layer row>.npy`, one float64 array per layer row whose
lines are `[w, a, *outputs]`.  Writes are atomic (a unique temporary file, then `os.replace`), so
concurrent writers can at worst drop each other's new lines, never corrupt a file.
Rows already read or written by this process are also kept in memory (keyed by file path, so
another `HWQ_CACHE_DIR` is another cache).  `HWQ_NO_CACHE=1` disables both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hwq.atomic import write_atomic
from hwq.cache import cache_dir

NAMESPACE = "bitfusion"
MEMORY_ROWS = 16384  # layer rows kept in memory (each holds its (w, a) results)

_memory: dict[Path, dict[tuple[int, int], np.ndarray]] = {}


def _row_path(base: Path, row: np.ndarray) -> Path:
    digest = hashlib.sha256(np.ascontiguousarray(row, dtype=np.int64).tobytes()).hexdigest()
    return base / f"{digest}.npy"


def _remember(path: Path, entries: dict[tuple[int, int], np.ndarray]) -> None:
    if len(_memory) >= MEMORY_ROWS:
        _memory.clear()
    _memory[path] = entries


def _lookup(path: Path, n_out: int) -> dict[tuple[int, int], np.ndarray]:
    got = _memory.get(path)
    if got is None:
        got = _load(path, n_out)
        _remember(path, got)
    return got


def _load(path: Path, n_out: int) -> dict[tuple[int, int], np.ndarray]:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return {}
    if arr.ndim != 2 or arr.shape[1] != n_out + 2:
        return {}
    return {(int(r[0]), int(r[1])): r[2:] for r in arr}


def _store(path: Path, entries: dict[tuple[int, int], np.ndarray], n_out: int) -> None:
    arr = np.empty((len(entries), n_out + 2), dtype=np.float64)
    for i, ((w, a), vals) in enumerate(sorted(entries.items())):
        arr[i, 0], arr[i, 1] = w, a
        arr[i, 2:] = vals
    write_atomic(path, lambda fh: np.save(fh, arr, allow_pickle=False), fsync=False)


def cached_table(layers: np.ndarray, w_bits: np.ndarray, a_bits: np.ndarray,
                 params: np.ndarray, params_digest: str, n_out: int,
                 compute: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                 namespace: str = NAMESPACE) -> np.ndarray:
    """[L, P, n_out] from the cache, computing only the missing rows in one `compute` call.

    `compute(layers_subset, w_bits, a_bits)` returns [L', P, n_out]; it is called once (or not at
    all) with the layer rows that miss at least one pair.  Unreadable cache files count as misses;
    an unwritable cache directory only loses the persistence.
    """
    n_layers, n_pairs = layers.shape[0], w_bits.shape[0]
    out = np.empty((n_layers, n_pairs, n_out), dtype=np.float64)
    base = cache_dir() / namespace / params_digest
    pairs = list(zip(w_bits.tolist(), a_bits.tolist()))
    # Identical layer rows share one file; read each once.
    seen: dict[tuple[int, ...], int] = {}
    inverse = [seen.setdefault(tuple(r), len(seen)) for r in layers.tolist()]
    uniq = np.array(list(seen), dtype=np.int64).reshape(len(seen), layers.shape[1])
    paths = [_row_path(base, row) for row in uniq]
    loaded = [_lookup(path, n_out) for path in paths]
    missing = [u for u, got in enumerate(loaded) if any(p not in got for p in pairs)]
    if missing:
        fresh = compute(np.ascontiguousarray(uniq[missing]), w_bits, a_bits)
        for k, u in enumerate(missing):
            # Merge with whatever another process stored meanwhile, then replace atomically.
            merged = _load(paths[u], n_out) | loaded[u]
            for p, pair in enumerate(pairs):
                merged[pair] = fresh[k, p]
            loaded[u] = merged
            _remember(paths[u], merged)
            try:
                _store(paths[u], merged, n_out)
            except OSError:
                pass
    for i in range(n_layers):
        got = loaded[inverse[i]]
        for p, pair in enumerate(pairs):
            out[i, p] = got[pair]
    return out
