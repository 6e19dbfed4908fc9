"""Executors for the independent jobs of a search: task-quality evaluations (DESIGN.md §8).

A job is described by a `JobSpec` — an importable factory ``"package.module:function"`` and its
keyword arguments — and one item. In the process that runs the job, the factory is called once
(memoised by the spec) and returns a function of one item; the model, data and calibration it
needs are therefore loaded once per worker, not once per job. Results come back in item order,
so a search gives the same numbers whatever executor runs it. Executors never write files: only
the driver writes the run directory.

* ``serial``  — in this process (the default).
* ``process`` — a local pool of `workers` processes (spawned, so a worker never inherits the
  driver's threads).
* ``ray``     — Ray tasks: an existing cluster when ``address`` or ``RAY_ADDRESS`` is given, a
  local one otherwise. Ray is an optional extra (``pip install "hwq[ray]"``).

Each job runs with one intra-op thread, which keeps results bitwise identical across executors.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwq.errors import HwqError, UserError
from hwq.torch_threads import one_thread

log = logging.getLogger("hwq.search")

EXECUTORS = ("serial", "process", "ray")


@dataclass(frozen=True)
class JobSpec:
    """`target` ("module:function") called with `kwargs` gives a function of one job item."""

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.target + json.dumps(self.kwargs, sort_keys=True, default=str)


_WORKERS: dict[str, Callable[[Any], Any]] = {}


def _worker(spec: JobSpec) -> Callable[[Any], Any]:
    fn = _WORKERS.get(spec.key)
    if fn is None:
        module, attr = spec.target.split(":")
        factory = getattr(importlib.import_module(module), attr)
        fn = factory(**spec.kwargs)
        _WORKERS[spec.key] = fn
    return fn


def run_job(spec: JobSpec, item: Any) -> tuple[Any, float]:
    """Run one job in this process: (result, wall seconds)."""
    with one_thread():
        fn = _worker(spec)
        t0 = time.perf_counter()
        result = fn(item)
    return result, time.perf_counter() - t0


def run_jobs(spec: JobSpec, items: Sequence[Any]) -> list[tuple[Any, float]]:
    return [run_job(spec, item) for item in items]


class Executor:
    name = "base"

    def map(self, spec: JobSpec, items: Sequence[Any]) -> list[tuple[Any, float]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    name = "serial"

    def map(self, spec: JobSpec, items: Sequence[Any]) -> list[tuple[Any, float]]:
        return run_jobs(spec, items)


def chunks(items: Sequence[Any], n: int) -> list[list[Any]]:
    """Split into at most n contiguous chunks of near-equal size (order kept)."""
    n = max(1, min(n, len(items)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return out


class ProcessExecutor(Executor):
    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers or max(1, min(os.cpu_count() or 1, 8))
        self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))

    def map(self, spec: JobSpec, items: Sequence[Any]) -> list[tuple[Any, float]]:
        if not items:
            return []
        futures = [self._pool.submit(run_jobs, spec, c) for c in chunks(items, self.workers)]
        out: list[tuple[Any, float]] = []
        for f in futures:
            out.extend(f.result())
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _ray_run_jobs(spec: JobSpec, items: list[Any]) -> list[tuple[Any, float]]:
    return run_jobs(spec, items)


class RayExecutor(Executor):
    """Ray tasks; connects to `address` / RAY_ADDRESS, or starts (and later stops) a local Ray."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError(
                "--executor ray: Ray is not installed; install it with "
                '`python -m pip install "hwq[ray]"` (or `pip install "ray[default]"`)'
            ) from None
        self._ray = ray
        address = address or os.environ.get("RAY_ADDRESS") or None
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs.update(
                    num_cpus=workers or os.cpu_count() or 1,
                    include_dashboard=False,
                )
            # workers import hwq from the same environment as the driver
            kwargs["runtime_env"] = {"env_vars": _forwarded_env()}
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise UserError(f"--address {address}: cannot connect to Ray: {exc}") from None
            self._started = True
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1)(_ray_run_jobs)
        log.info(
            "ray: %s cluster, %d CPUs",
            "existing" if address else "local",
            int(ray.cluster_resources().get("CPU", 0)),
        )

    def map(self, spec: JobSpec, items: Sequence[Any]) -> list[tuple[Any, float]]:
        if not items:
            return []
        refs = [self._remote.remote(spec, c) for c in chunks(items, self.workers)]
        try:
            parts = self._ray.get(refs)
        except self._ray.exceptions.RayTaskError as exc:
            raise HwqError(f"ray: a quality job failed: {exc}") from None
        return [r for part in parts for r in part]

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _forwarded_env() -> dict[str, str]:
    keep = ("HWQ_CACHE_DIR", "HWQ_NO_CACHE", "PYTHONPATH")
    return {k: os.environ[k] for k in keep if k in os.environ}


def make_executor(name: str, address: str | None = None, workers: int | None = None) -> Executor:
    if name == "serial":
        if address:
            raise UserError("--address applies to --executor ray only")
        return SerialExecutor()
    if name == "process":
        if address:
            raise UserError("--address applies to --executor ray only")
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address, workers)
    raise UserError(f"--executor: expected one of {', '.join(EXECUTORS)}, found {name!r}")
