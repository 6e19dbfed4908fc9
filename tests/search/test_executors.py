"""Executors: quality jobs on a local process pool or a real local Ray cluster give the same
front as serial execution with the same seed; only the driver writes the run directory."""

from __future__ import annotations

import pytest

import hwq.search as hs
from hwq.errors import UserError
from hwq.search.executors import JobSpec, SerialExecutor, chunks, make_executor

from .conftest import DEVICE

COLS = ["generation", "species", "policy_id", "accuracy", "latency_s", "energy_pj", "weight_bytes"]


def _search(out, executor, **kw):
    return hs(
        device=DEVICE,
        generations=2,
        population=10,
        seed=11,
        output_dir=str(out),
        verify_top=0,
        executor=executor,
        workers=2,
        **kw,
    )


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    return _search(tmp_path_factory.mktemp("serial") / "run", "serial")


def test_chunks_keep_order():
    items = list(range(7))
    parts = chunks(items, 3)
    assert [x for p in parts for x in p] == items and len(parts) == 3
    out = SerialExecutor().map(JobSpec("math:sqrt", {}), [])
    assert out == []


def test_process_executor_same_front(tmp_path, serial_run):
    run = _search(tmp_path / "proc", "process")
    assert run.candidates[COLS].equals(serial_run.candidates[COLS])
    assert run.pareto[COLS[2:]].equals(serial_run.pareto[COLS[2:]])


def test_ray_executor_same_front(tmp_path, serial_run):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    run = _search(tmp_path / "ray", "ray")
    assert not ray.is_initialized()  # the local cluster the search started is shut down
    assert run.candidates[COLS].equals(serial_run.candidates[COLS])
    assert run.pareto[COLS[2:]].equals(serial_run.pareto[COLS[2:]])


def test_address_only_for_ray():
    with pytest.raises(UserError, match="--address"):
        make_executor("process", address="10.0.0.1:6379")
