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
