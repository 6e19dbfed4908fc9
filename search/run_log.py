"""The run directory as a search writes it, generation by generation: a pymoo `Callback`.

Generation g (0-based; generation 0 is the initial population) is complete when its part
`candidates/part-g.parquet`, `species.parquet`, `pareto.parquet` and `state/checkpoint.pkl` are
written (in that order, each atomically), then `meta.json` counts it. pymoo calls the logger at
the end of `tell` (the tables); the driver calls `checkpoint` once `tell` has returned, because
pymoo counts the generation (`n_iter`) after its callbacks and a resumed algorithm must hold
that count.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, runtime_checkable

import pandas as pd
from pymoo.core.callback import Callback

from hwq.progress import GenerationBar
from hwq.runs import empty_species
from hwq.search.archive import ParetoArchive

log = logging.getLogger("hwq.search")


@runtime_checkable
class TimedAlgorithm(Protocol):
    """An algorithm that reports its own per-generation time (e.g. BO's surrogate), logged
    in meta.json `timing` beside the generation and quality wall times."""

    def generation_timing(self) -> dict[str, float]:
        """Seconds by key (e.g. surrogate_wall_s) spent in the generation just proposed."""
        ...


class RunLogger(Callback):
    """Logs every generation of one search into its `RunWriter`; keeps the Pareto archive, the
    species rows, the evaluation count and the timing that the checkpoint carries."""

    def __init__(self, writer: Any, run_id: str, n_gen: int) -> None:
        super().__init__()
        self.writer = writer
        self.run_id = run_id
        self.n_gen = n_gen
        self.bar: GenerationBar | None = None
        self.bar_drawn = False
        self.archive = ParetoArchive()
        self.species_rows = empty_species()
        self.evaluations = 0
        timing = dict(writer.meta.get("timing") or {})
        self.timing = {k: list(v) for k, v in timing.items() if isinstance(v, list)}
        for key in ("generation_wall_s", "quality_wall_s"):
            self.timing.setdefault(key, [])
        self._pending: tuple[int, Any, Any] | None = None
        self._t0 = time.perf_counter()

    # -- resume ----------------------------------------------------------------------------------
    def restore(self, state: dict[str, Any]) -> None:
        self.archive = state["archive"]
        self.species_rows = state["species_rows"]
        self.evaluations = int(state["evaluations"])

    def show(self, bar: GenerationBar, drawn: bool) -> None:
        """Advance `bar` after each generation; while it is `drawn`, the per-generation log
        line goes to DEBUG (it is on the bar)."""
        self.bar, self.bar_drawn = bar, drawn

    # -- one generation --------------------------------------------------------------------------
    def start_generation(self) -> None:
        self._t0 = time.perf_counter()

    def evaluated(self, generation: int, offspring: Any, evaluation: Any) -> None:
        """The driver hands over the generation's candidates before `tell`."""
        self._pending = (generation, offspring, evaluation)

    def notify(self, algorithm: Any) -> None:
        if self._pending is None:
            return
        gen, offspring, ev = self._pending
        records = ev.records.copy()
        records.insert(0, "species", algorithm.species_of(offspring))
        records.insert(0, "generation", gen)
        records.insert(0, "run_id", self.run_id)
        self.writer.write_candidates(gen, records)
        self.evaluations += len(records)
        self.archive.update(records, ev.F, ev.G)
        stats = algorithm.generation_stats(gen, offspring)
        self.species_rows = pd.concat(
            [self.species_rows[self.species_rows["generation"] < gen], stats], ignore_index=True
        )
        self.writer.write_species(self.species_rows)
        front, _ = self.archive.sorted()
        if len(front):
            self.writer.write_pareto(front)

    def checkpoint(self, algorithm: Any) -> None:
        """After `tell` returned: the checkpoint, then meta.json and the progress line."""
        assert self._pending is not None
        gen, _, ev = self._pending
        self._pending = None
        self.writer.write_checkpoint(
            {
                "generation": gen,
                "algorithm": algorithm,
                "archive": self.archive,
                "species_rows": self.species_rows,
                "evaluations": self.evaluations,
            }
        )
        wall = time.perf_counter() - self._t0
        quality_wall = float(ev.quality_wall_s)
        own = algorithm.generation_timing() if isinstance(algorithm, TimedAlgorithm) else {}
        for key, value in (("generation_wall_s", wall), ("quality_wall_s", quality_wall),
                           *own.items()):
            self.timing[key] = self.timing.get(key, [])[:gen] + [round(float(value), 6)]
        self.writer.write_meta(
            evaluations=self.evaluations, generations_done=gen + 1, timing=self.timing
        )
        log.log(
            logging.DEBUG if self.bar_drawn else logging.INFO,
            "generation %d/%d: %d evaluated, front %d, %.2fs (%.2fs outside evaluation)",
            gen + 1,
            self.n_gen,
            len(ev.records),
            len(self.archive),
            wall,
            max(wall - quality_wall, 0.0),
        )
        if self.bar is not None:
            self.bar.advance(front=len(self.archive), evaluations=self.evaluations)
