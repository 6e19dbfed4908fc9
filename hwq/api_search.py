"""`hwq.search(...)`: the Python face of `hwq search` (same options), returning a `hwq.Run`.

    import hwq
    run = hwq.search("bitfusion")   # digits_resnet: accuracy, latency, energy, memory
    run = hwq.search("bitfusion", model="resnet18",
                     sensitivity="hawq_v3_sensitivity_resnet18.csv", bits="4x4,8x8",
                     objectives="sensitivity,bops", pin="first,last=8",
                     generations=20, population=40, seed=1, output_dir="runs/r18")
    run.pareto                                          # DataFrame of the front
    run.policy(run.pareto.policy_id[0])                 # hwq.Policy

`quality` plugs in your own task-quality function: a callable ``f(pairs) -> values`` taking an
int array [P, L, 2] of (w_bits, a_bits) per layer in layer order and returning [P] values of the
quality objective named in `objectives` (`accuracy`, maximised, or `sensitivity`, minimised).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _max_specs(value: str | Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    if isinstance(value, Mapping):
        return [f"{k}={v}" for k, v in value.items()]
    return _as_list(value)


def search(
    device: str,
    model: str | None = None,
    *,
    algorithm: str = "nemo",
    objectives: str | Sequence[str] | None = None,
    sensitivity: str | None = None,
    max: str | Sequence[str] | Mapping[str, Any] | None = None,  # noqa: A002 - the CLI's name
    pin: str | Sequence[str] | None = None,
    tie: str = "none",
    bits: str | Sequence[Sequence[int]] | None = None,
    generations: int | None = None,
    population: int | None = None,
    seed: int = 0,
    output_dir: str | None = None,
    resume: bool = False,
    executor: str = "serial",
    address: str | None = None,
    workers: int | None = None,
    verify_top: int | None = None,
    verify_epochs: int | None = None,
    species: str | Sequence[str] | None = None,
    fixed_sizes: bool = False,
    graph: str = "dataflow",
    gnn_features: str = "graph+costs",
    model_args: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    weights: str | None = None,
    data: str | None = None,
    quality: Any = None,
    progress: bool = False,
) -> Any:
    """Search per-layer bit pairs for the Pareto front of quality against costs (see
    `hwq search --help` for every option) and return the `hwq.Run` of the run directory.

    `max` takes ``"latency=2ms"`` strings (or a mapping name -> value, numbers in seconds,
    bytes, picojoules, or the quantity's own unit). `bits` takes ``"8x8,4x8"`` or a list of
    (w_bits, a_bits) pairs. With `resume=True` only `output_dir` (and the executor options) are
    needed: the rest is read from the run's config.yaml.
    """
    from hwq.search.run import (
        DEFAULT_GENERATIONS,
        DEFAULT_MODEL,
        DEFAULT_POPULATION,
        DEFAULT_VERIFY_EPOCHS,
        DEFAULT_VERIFY_TOP,
        SearchConfig,
        run_search,
    )

    if bits is not None and not isinstance(bits, str):
        bits = ",".join(f"{int(w)}x{int(a)}" for w, a in bits)
    if isinstance(objectives, str):
        objectives = [o.strip() for o in objectives.split(",") if o.strip()]
    if isinstance(species, str):
        species = [s.strip() for s in species.split(",") if s.strip()]
    config = SearchConfig(
        device=device,
        model=model or DEFAULT_MODEL,
        model_args=dict(model_args or {}),
        input_shape=[int(v) for v in input_shape] if input_shape else None,
        weights=weights,
        data=data,
        algorithm=algorithm,
        objectives=list(objectives) if objectives else None,
        sensitivity=str(sensitivity) if sensitivity else None,
        max=_max_specs(max),
        pin=_as_list(pin),
        tie=tie,
        bits=bits,
        generations=int(generations if generations is not None else DEFAULT_GENERATIONS),
        population=int(population if population is not None else DEFAULT_POPULATION),
        seed=int(seed),
        output_dir=str(output_dir) if output_dir else None,
        executor=executor,
        address=address,
        workers=workers,
        verify_top=int(verify_top if verify_top is not None else DEFAULT_VERIFY_TOP),
        verify_epochs=int(verify_epochs if verify_epochs is not None else DEFAULT_VERIFY_EPOCHS),
        species=list(species) if species else None,
        fixed_sizes=bool(fixed_sizes),
        graph=graph,
        gnn_features=gnn_features,
    )
    if resume:
        # only the runtime options count on resume; the rest comes from config.yaml
        config.verify_top = verify_top  # type: ignore[assignment]
        config.verify_epochs = verify_epochs  # type: ignore[assignment]
    return run_search(config, resume=resume, progress=progress, quality=quality)
