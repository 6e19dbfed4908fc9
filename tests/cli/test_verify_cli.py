"""`hwq verify RUN_DIR --top K` on a small finished search."""

from __future__ import annotations

import json

from click.testing import CliRunner

import hwq
from hwq.cli import cli


def test_verify_adds_records(tmp_path):
    out = tmp_path / "run"
    hwq.search(device="bitfusion", generations=2, population=12, seed=0, output_dir=str(out),
               verify_top=0)
    before = hwq.Run.open(out).verify
    assert before is None or before.empty
    res = CliRunner().invoke(cli, ["verify", str(out), "--top", "1", "--epochs", "1", "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 1
    run = hwq.Run.open(out)
    assert list(run.verify["policy_id"]) == [rows[0]["policy_id"]]
    assert rows[0]["policy_id"] in set(run.pareto["policy_id"])
    assert 0.0 <= rows[0]["qat_accuracy"] <= 1.0 and rows[0]["epochs"] == 1
    assert run.meta["started_at"]


def test_verify_without_front_exits_2(tmp_path):
    import pytest

    from hwq.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["verify", str(tmp_path / "nothing")])
    assert exc.value.code == 2
