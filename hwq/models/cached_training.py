"""Models hwq trains itself on first use (`digits_resnet`, `tinylm`): one cached training per
recipe key, written atomically, trained by one process while the others wait on its lock.

`trained_state(path, recipe_key, train, name, seed)` returns the cached state dict (its
`recipe_key` must match; a damaged or foreign file is retrained, never trusted) or trains it once
on one thread and caches it. `save_atomic(obj, path)` writes a torch file atomically."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hwq.cache import locked
from hwq.torch_threads import one_thread

log = logging.getLogger("hwq.models")


def save_atomic(obj: Any, path: Path) -> None:
    from hwq.atomic import write_atomic

    write_atomic(path, lambda fh: torch.save(obj, fh))


def read_cache(path: Path, recipe_key: str) -> dict[str, Any] | None:
    """The cached training at `path`, or None (absent, another key, or damaged: retrained)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged cache file is retrained, never trusted
        log.warning("ignoring unreadable cache file %s: %s", path, exc)
        return None
    if not isinstance(state, dict) or state.get("recipe_key") != recipe_key:
        return None
    return state


def trained_state(path: Path, recipe_key: str, train: Callable[[], dict[str, Any]], name: str,
                  seed: int, note: str = "") -> dict[str, Any]:
    """The cached state at `path`, else `train()` once (one thread, under the file's lock) and
    cache it; a cache that cannot be written is said and the training used as it is."""
    state = read_cache(path, recipe_key)
    if state is not None:
        return state
    with locked(path):  # one process trains; the others wait, then read its file
        state = read_cache(path, recipe_key)
        if state is None:
            log.warning("training %s (seed %d) on first use%s; cached at %s", name, seed, note,
                        path)
            with one_thread():
                state = train()
            try:
                save_atomic(state, path)
            except OSError as exc:
                log.warning("could not cache %s at %s: %s", name, path, exc)
    return state
