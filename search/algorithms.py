"""Every search algorithm, by name: how to build it from a `SearchConfig` and how many
generations it runs. Light to import (no pymoo): the configuration reads the names from here.

An algorithm is a pymoo `Algorithm` that also satisfies `ReportingAlgorithm`: it names the
species (or its own name) of each candidate it proposed and reports its per-generation species
statistics, so the one driver loop (`hwq.search.driver`) runs and logs them all alike. Adding an
algorithm = a pymoo Algorithm with those two methods (see `hwq.search.algorithm_base`) and one
`AlgorithmSpec` below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from hwq.search.config import SearchConfig
    from hwq.search.problem import SearchProblem


@runtime_checkable
class ReportingAlgorithm(Protocol):
    """What the driver asks of an algorithm besides pymoo's ask/tell."""

    def species_of(self, offspring: Any) -> list[str]:
        """The species (a descriptive string) of each candidate of `offspring`."""
        ...

    def generation_stats(self, generation: int, offspring: Any) -> pd.DataFrame:
        """Rows `generation, species, size, r2, ucb, front_members` after `tell(offspring)`."""
        ...


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    make: Callable[[SearchConfig], Any]  # -> a pymoo Algorithm satisfying ReportingAlgorithm
    one_shot: bool = False  # proposes all its candidates at once: one generation
    check: Callable[[SearchProblem], None] | None = None  # refuses a problem it cannot solve
    params: Callable[[SearchConfig], dict[str, Any]] | None = None  # its resolved constants
    # (written to config.yaml)

    def generations(self, config: SearchConfig) -> int:
        return 1 if self.one_shot else int(config.generations)


def _nemo(config: SearchConfig) -> Any:
    from hwq.search.nemo import NEMO, NemoParams

    return NEMO(pop_size=int(config.population), params=NemoParams.of(config),
                seed=int(config.seed))


def _nemo_params(config: SearchConfig) -> dict[str, Any]:
    from hwq.search.nemo import NemoParams

    return NemoParams.of(config).to_dict()


def _nsga2(config: SearchConfig) -> Any:
    from hwq.search.baselines import make_nsga2

    return make_nsga2(int(config.population), int(config.seed))


def _random(config: SearchConfig) -> Any:
    from hwq.search.baselines import RandomSearch

    return RandomSearch(pop_size=int(config.population), seed=int(config.seed))


def _bo(config: SearchConfig) -> Any:
    from hwq.search.bo import BayesOpt, BOParams

    return BayesOpt(pop_size=int(config.population), params=BOParams.of(config),
                    seed=int(config.seed))


def _bo_params(config: SearchConfig) -> dict[str, Any]:
    from hwq.search.bo import BOParams

    return BOParams.of(config).to_dict()


def _ilp(config: SearchConfig) -> Any:
    from hwq.search.baselines import OneShot, ilp_choice

    return OneShot("ilp", ilp_choice, seed=int(config.seed))


def _greedy(config: SearchConfig) -> Any:
    from hwq.search.baselines import OneShot, greedy_path

    return OneShot("greedy", greedy_path, seed=int(config.seed))


def _rl(config: SearchConfig) -> Any:
    from hwq.search.rl import RLParams, RLSearch

    return RLSearch(pop_size=int(config.population), params=RLParams.of(config),
                    seed=int(config.seed))


def _rl_params(config: SearchConfig) -> dict[str, Any]:
    from hwq.search.rl import RLParams

    return RLParams.of(config).to_dict()


def _check_ilp(problem: SearchProblem) -> None:
    from hwq.errors import UserError
    from hwq.search.baselines import additive_budgets, require_sensitivity

    require_sensitivity(problem, "ilp")
    if not additive_budgets(problem):
        raise UserError(
            "--algorithm ilp: give one budget, e.g. --max bops=100G or --max weight_memory=2MiB"
        )


def _check_greedy(problem: SearchProblem) -> None:
    from hwq.search.baselines import require_sensitivity

    require_sensitivity(problem, "greedy")


SPECS: dict[str, AlgorithmSpec] = {
    s.name: s
    for s in (
        AlgorithmSpec("nemo", _nemo, params=_nemo_params),
        AlgorithmSpec("nsga2", _nsga2),
        AlgorithmSpec("random", _random),
        AlgorithmSpec("bo", _bo, params=_bo_params),
        AlgorithmSpec("ilp", _ilp, one_shot=True, check=_check_ilp),
        AlgorithmSpec("greedy", _greedy, one_shot=True, check=_check_greedy),
        AlgorithmSpec("rl", _rl, params=_rl_params),
    )
}
ALGORITHMS: tuple[str, ...] = tuple(SPECS)


def spec(name: str) -> AlgorithmSpec:
    return SPECS[name]
