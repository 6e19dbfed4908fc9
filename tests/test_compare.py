"""`hwq compare`: one plot (a valid PNG) and one table row per run."""

from __future__ import annotations

import json

import pytest

from hwq.cli.report_cmd import compare
from tests.run_fixtures import run_cmd, synthetic_run


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    return synthetic_run(str(tmp_path_factory.mktemp("cmp") / "other"))


def test_compare_two_runs(finished_run, other_run, tmp_path):
    out = tmp_path / "cmp.png"
    code, stdout, err = run_cmd(
        compare, [str(finished_run.path), str(other_run.path), "-o", str(out), "--json"]
    )
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["plot"] == str(out)
    rows = doc["runs"]
    assert [r["run_dir"] for r in rows] == [str(finished_run.path), str(other_run.path)]
    for r in rows:
        assert r["front_size"] > 0 and 0 < r["hypervolume"] <= 1.1**4
        assert "best_accuracy_%" in r
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 600


def test_compare_x_objective_and_errors(finished_run, tmp_path):
    out = tmp_path / "one.png"
    code, stdout, err = run_cmd(compare, [str(finished_run.path), "--x", "latency", "-o", str(out)])
    assert code == 0, err and out.is_file()
    assert "hypervolume" in stdout.splitlines()[0]
    code, _, err = run_cmd(compare, [str(finished_run.path), "--x", "speed", "-o", str(out)])
    assert code == 2 and "speed" in err


def test_compare_log_x_on_request_and_automatic(finished_run, other_run, tmp_path):
    out = tmp_path / "log.png"
    args = [str(finished_run.path), str(other_run.path), "-o", str(out), "--json"]
    code, stdout, err = run_cmd(compare, [*args, "--log-x"])
    assert code == 0, err
    scales = json.loads(stdout)["x_scale"]
    assert scales and set(scales.values()) == {"log"}
    code, stdout, err = run_cmd(compare, [*args, "--linear-x"])
    assert set(json.loads(stdout)["x_scale"].values()) == {"linear"}


def test_automatic_log_axis_when_values_span_two_decades():
    import numpy as np

    from hwq.compare import wants_log_axis

    assert wants_log_axis(np.array([1e-6, 5e-6, 2e-3]))  # accelerators beside an MCU
    assert not wants_log_axis(np.array([1.0, 3.0, 90.0]))
    assert not wants_log_axis(np.array([0.0, 10.0, 1e6]))  # zero cannot sit on a log axis
    assert not wants_log_axis(np.array([1.0, 1e6]), log_x=False)
    assert wants_log_axis(np.array([1.0, 2.0]), log_x=True)
