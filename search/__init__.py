"""NEMO neuroevolution and the baseline searches, installed as `hwq.search`.

Modules: `config` (every option, once), `prepare` (options -> problem), `encoding` (decisions
<-> per-layer pairs, pins, ties), `problem` (the pymoo Problem), `quality_sources` (sensitivity
tables, PTQ accuracy jobs), `algorithms` (every algorithm by name) and `algorithm_base`,
`species` and `gnn` (NEMO's species), `nemo` (the pymoo Algorithm), `baselines` (NSGA-II,
random, ILP, greedy), `env` and `env_budget` (the precision environment, a Gymnasium
`Env`), `rl` (the RL agent), `indicators`, `driver` (the one loop), `run_log` (the run
directory as a pymoo Callback), `archive` (the Pareto archive), `executors` (serial /
process / ray), `api` (`hwq.search()`).

`hwq.search` is also the function of DESIGN.md §9: this package is callable, so
``hwq.search(device, ...)`` runs a search (`hwq.search.api.search`) whether `hwq.search`
resolves to the package or to the function.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from hwq.search.api import search

        return search(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "__signature__":  # inspect.signature(hwq.search): the options of hwq.search.api
        from hwq.search.api import search

        return search.__signature__  # type: ignore[attr-defined]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _CallableModule
