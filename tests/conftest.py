"""Shared fixtures: small deterministic models and a persistent-cache directory per session."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.run_fixtures"]  # a finished run and a CLI runner, for the run readers

os.environ.setdefault(
    "HWQ_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "hwq")
)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty hwq cache directory for tests that check caching."""
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _hwq_logging_propagates():
    """The CLI routes the `hwq` logger to stderr only; tests read log records with caplog."""
    import logging

    logger = logging.getLogger("hwq")
    logger.handlers[:] = []
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    yield


@pytest.fixture
def hawq_csv(tmp_path):
    """A HAWQ-V3 sensitivity file of two layers, a and b, in one tie group."""
    path = tmp_path / "hawq_v3_sensitivity_tiny.csv"
    path.write_text(
        "layer,weight_params,macs_per_image,hutchinson_trace_per_param,delta_w8_sq,delta_w4_sq,"
        "tie_group\n"
        "a,10,100,0.5,0.01,2.0,t1\n"
        "b,10,100,0.25,0.02,4.0,t1\n"
    )
    return path
