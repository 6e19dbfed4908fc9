"""What every search algorithm shares beyond pymoo's `Algorithm`: checkpoints without the
problem, the statistics a single-species algorithm reports each generation, and the budget rule
(`History`): every generation proposes exactly `population` candidates, none of them a policy
already evaluated, so that `population x generations` is the number of policies evaluated."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hwq.search.indicators import front_stats, r2_indicator, weight_vectors


class History:
    """The decisions an algorithm has proposed (picklable, part of its checkpoint), and the
    top-up that makes a generation exactly `n` new ones."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    @staticmethod
    def key(x: np.ndarray) -> bytes:
        return np.asarray(x, dtype=np.int64).tobytes()

    def is_new(self, X: np.ndarray) -> np.ndarray:
        """bool [P]: row i is neither seen before nor a repeat of an earlier row of X."""
        out = np.zeros(len(X), dtype=bool)
        batch: set[bytes] = set()
        for i, x in enumerate(np.asarray(X)):
            k = self.key(x)
            if k not in self.seen and k not in batch:
                out[i] = True
                batch.add(k)
        return out

    def note(self, X: np.ndarray) -> None:
        self.seen.update(self.key(x) for x in np.asarray(X))

    def top_up(
        self, X: np.ndarray, n: int, xl: np.ndarray, xu: np.ndarray, rng: np.random.Generator,
        tries: int = 20,
    ) -> np.ndarray:
        """int64 [n, n_var]: the new rows of X (in order, at most n), then uniformly random new
        decisions up to n. Only where `tries` rounds of random draws find too few new policies
        (a space nearly exhausted) are repeats taken, so the count is always n. The random
        generator is drawn from only when a row is missing, so a generation without repeats
        is unchanged by this rule."""
        X = np.asarray(X, dtype=np.int64).reshape(-1, len(xl))
        keep = X[self.is_new(X)][:n]
        for _ in range(tries):
            if len(keep) >= n:
                break
            draw = rng.integers(xl, xu + 1, size=(n - len(keep), len(xl))).astype(np.int64)
            pool = np.concatenate([keep, draw])
            keep = pool[self.is_new(pool)][:n]
        if len(keep) < n:  # a nearly exhausted space: repeats keep the budget exact
            fill = rng.integers(xl, xu + 1, size=(n - len(keep), len(xl))).astype(np.int64)
            keep = np.concatenate([keep, fill])
        self.note(keep)
        return keep


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
