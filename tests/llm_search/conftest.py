"""The trained tinylm, once per session: trained on first use (a few minutes on one core) and
cached under the session's hwq cache directory (tests/conftest.py), so later sessions load it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tinylm_trained():
    """(trained tinylm in eval mode, info)."""
    from hwq.models.tinylm import load_trained_tinylm

    return load_trained_tinylm(0)


@pytest.fixture(scope="session")
def tinylm_ppl(tinylm_trained):
    """The PTQ perplexity evaluator of the trained tinylm on its validation windows."""
    from hwq.quant.perplexity import perplexity_objective

    return perplexity_objective("tinylm")


@pytest.fixture(scope="session")
def tinylm_test_ppl(tinylm_trained):
    """The same evaluator on tinylm's test windows (held out from any search)."""
    from hwq.quant.perplexity import perplexity_objective

    return perplexity_objective("tinylm", split="test")
