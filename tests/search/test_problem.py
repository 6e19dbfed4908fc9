"""The pymoo Problem: vectorised evaluation, objectives, constraints, sensitivity files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hwq.errors import UserError
from hwq.search.config import SearchConfig
from hwq.search.prepare import prepare
from hwq.search.problem import parse_constraint, parse_objectives

from .conftest import DEVICE, HAWQ18


def _prep(**kw):
    base = dict(device=DEVICE, verify_top=0)
    base.update(kw)
    return prepare(SearchConfig(**base))


def test_objectives_and_constraints_parse():
    assert parse_objectives("accuracy,latency") == ["accuracy", "latency"]
    with pytest.raises(UserError, match="unknown objective 'speed'"):
        parse_objectives("accuracy,speed")
    with pytest.raises(UserError, match="one task-quality"):
        parse_objectives("accuracy,sensitivity,bops")
    assert parse_constraint("latency=2ms") == ("latency", pytest.approx(0.002))
    assert parse_constraint("weight_memory=256KiB") == ("weight_memory", 262144.0)
    assert parse_constraint("energy=5uJ") == ("energy", pytest.approx(5e6))
    assert parse_constraint("bops=10G") == ("bops", 1e10)
    with pytest.raises(UserError, match="accuracy is maximised"):
        parse_constraint("accuracy=0.9")
    with pytest.raises(UserError, match="unknown quantity"):
        parse_constraint("speed=3")


def test_vectorised_evaluation_matches_evaluate(r18_layers):
    from hwq.policy_eval import evaluate

    prep = _prep(
        model=r18_layers,
        sensitivity=str(HAWQ18),
        objectives=["sensitivity", "bops", "latency"],
        bits="4x4,8x8",
        pin=["first,last=8"],
        max=["latency=1s"],
    )
    p = prep.problem
    rng = np.random.default_rng(0)
    X = rng.integers(p.xl, p.xu + 1, size=(16, p.n_var))
    ev = p.evaluate_X(X)
    assert ev.F.shape == (16, 3) and ev.G.shape == (16, 2)
    pairs = prep.encoding.decode(X)
    ref = evaluate(prep.table, pairs)
    for col in ("bops", "latency_s", "energy_pj", "weight_bytes", "peak_activation_bytes"):
        np.testing.assert_allclose(ev.records[col], ref[col])
    np.testing.assert_allclose(ev.F[:, 1], ref["bops"])
    # sensitivity = sum over the file's layers of trace * delta at the layer's weight bits
    hawq = pd.read_csv(HAWQ18).set_index("layer")
    names = prep.graph.names
    expect = [
        sum(
            hawq.loc[n, "hutchinson_trace_per_param"] * hawq.loc[n, f"delta_w{w}_sq"]
            for n, (w, _a) in zip(names, pol)
            if n in hawq.index
        )
        for pol in pairs
    ]
    np.testing.assert_allclose(ev.records["sensitivity"], expect, rtol=1e-12)
    np.testing.assert_allclose(ev.G[:, 0], ref["latency_s"] / 1.0 - 1.0)


def test_sensitivity_file_errors(r18_layers, tmp_path):
    hawq = pd.read_csv(HAWQ18)
    extra = hawq.copy()
    extra.loc[len(extra)] = ["layer9.conv", 1, 1, 0.1, 0.1, 0.2, ""]
    bad = tmp_path / "extra.csv"
    extra.to_csv(bad, index=False)
    kw = dict(model=r18_layers, objectives=["sensitivity", "bops"], bits="4x4,8x8")
    with pytest.raises(UserError, match="layer9.conv"):
        _prep(sensitivity=str(bad), pin=["first,last=8"], **kw)
    # conv1 and fc are not in the file: allowed only when pinned
    with pytest.raises(UserError, match="conv1"):
        _prep(sensitivity=str(HAWQ18), **kw)
    # a pair the file cannot price for an unpinned layer
    with pytest.raises(UserError, match="W2A2|w_bits=2|2"):
        _prep(sensitivity=str(HAWQ18), pin=["first,last=8"], **{**kw, "bits": "2x2,8x8"})
    long = tmp_path / "long.csv"
    pd.DataFrame(
        {
            "layer": ["conv1", "conv1"],
            "w_bits": [4, 8],
            "a_bits": [None, None],
            "sensitivity": [1.0, 0.1],
        }
    ).to_csv(long, index=False)
    with pytest.raises(UserError, match="layer1.0.conv1"):
        _prep(sensitivity=str(long), **kw)


def test_quality_without_weights_is_refused(r18_layers):
    with pytest.raises(UserError, match="--sensitivity FILE"):
        _prep(model=r18_layers, objectives=["accuracy", "latency"])
    with pytest.raises(UserError, match="--sensitivity FILE"):
        _prep(model=r18_layers)  # default objectives need quality


def test_unreachable_budget_fails_fast_with_closest_policy(r18_layers):
    with pytest.raises(UserError, match=r"no policy meets it; the closest \([0-9a-f]{12}, W4A4"):
        _prep(
            model=r18_layers,
            sensitivity=str(HAWQ18),
            objectives=["sensitivity", "bops"],
            bits="4x4,8x8",
            pin=["first,last=8"],
            max=["bops=1M"],
        )
