"""`hwq cache list|clear` on a cache the test fills (the tables a cost query writes)."""

from __future__ import annotations

import json

import pandas as pd

import hwq
from hwq.cli.cache_cmd import cache
from tests.run_fixtures import run_cmd


def _json(args: list[str]) -> dict:
    code, out, err = run_cmd(cache, args)
    assert code == 0, err
    return json.loads(out)


def test_list_and_clear_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HWQ_NO_CACHE", raising=False)
    assert _json(["list", "--json"])["sections"] == []
    graph = hwq.LayerGraph.from_frame(pd.DataFrame([{
        "name": "fc", "op": "linear", "batch": 1, "in_channels": 64, "out_channels": 10,
        "in_h": 1, "in_w": 1, "out_h": 1, "out_w": 1, "kernel_h": 1, "kernel_w": 1,
        "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0, "groups": 1, "reads_input": True,
    }]))
    hwq.cost_table(graph, hwq.load_profile("t4"), bits=[(8, 8)])
    sections = {s["section"]: s for s in _json(["list", "--json"])["sections"]}
    assert sections["tables"]["files"] == 1 and sections["tables"]["bytes"] > 0
    code, _, err = run_cmd(cache, ["clear", "nothing"])
    assert code == 2 and "present: tables" in err
    assert _json(["clear", "tables", "--json"])["removed"][0]["section"] == "tables"
    assert _json(["list", "--json"])["sections"] == []
