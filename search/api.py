"""`hwq.search(...)`: the Python face of `hwq search` (same options), returning a `hwq.Run`.

    import hwq
    run = hwq.search("bitfusion")   # digits_resnet: accuracy, latency, energy, memory
    run = hwq.search("bitfusion", model="resnet18",
                     sensitivity="hawq-v3:resnet18", bits="4x4,8x8",
                     objectives="sensitivity,bops", pin="first,last=8",
                     generations=20, population=40, seed=1, output_dir="runs/r18")
    run.pareto                                          # DataFrame of the front
    run.policy(run.pareto.policy_id[0])                 # hwq.Policy

The keyword options are the fields of `hwq.search.config.SearchConfig` (their defaults and help
are defined there, once; `inspect.signature(hwq.search)` lists them). `max` takes
``"latency=2ms"`` strings or a mapping name -> value; `bits` takes ``"8x8,4x8"`` or a list of
(w_bits, a_bits) pairs; `objectives`, `species` a comma string or a list. With `resume=True`
only `output_dir` (and the runtime options: executor, workers, verification) are needed: the
rest is read from the run's config.yaml, and an option given that differs from it is an error.

`quality` plugs in your own task-quality function: a callable ``f(pairs) -> values`` taking an
int array [P, L, 2] of (w_bits, a_bits) per layer in layer order and returning [P] values of the
quality objective named in `objectives` (`accuracy`, maximised, or `sensitivity`, minimised).
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields
from typing import Any


def search(
    device: str | None = None,
    model: str | None = None,
    *,
    resume: bool = False,
    quality: Any = None,
    progress: bool = False,
    **options: Any,
) -> Any:
    """Search per-layer bit pairs for the Pareto front of quality against costs (see
    `hwq search --help` for every option) and return the `hwq.Run` of the run directory."""
    from hwq.search.config import SearchConfig
    from hwq.search.driver import run_search

    given = {"device": device, "model": model, **options}
    config = SearchConfig.from_options(**given)
    return run_search(config, resume=resume, given=given, progress=progress, quality=quality)


def _signature() -> inspect.Signature:
    """search(device, model, *, <every other SearchConfig field>, resume, quality, progress)."""
    from hwq.search.config import SearchConfig

    positional = ("device", "model")
    params = []
    for f in fields(SearchConfig):
        kind = (inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name in positional
                else inspect.Parameter.KEYWORD_ONLY)
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = inspect.Parameter.empty
        params.append(inspect.Parameter(f.name, kind, default=default, annotation=f.type))
    params.sort(key=lambda p: p.kind)  # device, model first
    kw = inspect.Parameter.KEYWORD_ONLY
    for name, default in (("resume", False), ("quality", None), ("progress", False)):
        params.append(inspect.Parameter(name, kw, default=default))
    return inspect.Signature(params, return_annotation="hwq.Run")


search.__signature__ = _signature()  # type: ignore[attr-defined]
