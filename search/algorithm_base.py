"""What every search algorithm shares beyond pymoo's `Algorithm`: checkpoints without the
problem, and the statistics a single-species algorithm reports each generation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hwq.search.indicators import front_stats, r2_indicator, weight_vectors


class CheckpointSafe:
    """Checkpoints pickle the algorithm without its problem, display and callback (the driver
    re-attaches them on resume)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["problem"] = None
        state["display"] = None
        state["callback"] = None
        return state


class SingleSpecies:
    """Species reporting of an algorithm that is one species of its own name: each generation
    one row with the R2 of the feasible first front of its population (after `tell`)."""

    name: str
    pop: Any

    def species_of(self, offspring: Any) -> list[str]:
        return [self.name] * len(offspring)

    def generation_stats(self, generation: int, offspring: Any) -> pd.DataFrame:
        F = self.pop.get("F").astype(np.float64)
        fs = front_stats(F, self.pop.get("CV").astype(np.float64))
        return pd.DataFrame(
            {
                "generation": [generation],
                "species": [self.name],
                "size": [len(offspring)],
                "r2": [r2_indicator(fs.Fn[fs.front], weight_vectors(F.shape[1]))],
                "ucb": [np.nan],
                "front_members": [int(fs.front.sum())],
            }
        )
