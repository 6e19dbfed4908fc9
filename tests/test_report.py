"""`hwq report` (four files, valid images, the HTML references them) and `hwq runs list|show`."""

from __future__ import annotations

import json
import re

from hwq.cli.report_cmd import report, runs
from tests.run_fixtures import run_cmd

SHOW_KEYS = [
    "run_id",
    "status",
    "algorithm",
    "device",
    "model",
    "generations",
    "evaluations",
    "front_size",
    "best",
    "verified",
]


def test_report_writes_four_files(finished_run, tmp_path):
    code, out, err = run_cmd(report, [str(finished_run.path), "-o", str(tmp_path / "rep")])
    assert code == 0, err
    d = tmp_path / "rep"
    from PIL import Image

    for name in ("pareto.png", "hypervolume.png", "bits.png"):
        p = d / name
        assert p.is_file() and p.stat().st_size > 5000, name
        with Image.open(p) as im:
            im.verify()
            assert im.format == "PNG"
        with Image.open(p) as im:
            assert im.size[0] > 400 and im.size[1] > 250
    html = (d / "index.html").read_text()
    srcs = re.findall(r"<img src='([^']+)'", html)
    assert sorted(srcs) == ["bits.png", "hypervolume.png", "pareto.png"]
    # self-contained: no external resources, no scripts
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "Pareto front" in html and "config.yaml" in html
    for pid in finished_run.pareto["policy_id"]:
        assert pid in html
    assert "pareto.png" in out


def test_report_default_directory(finished_run):
    code, out, err = run_cmd(report, [str(finished_run.path), "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"pareto", "hypervolume", "bits", "index"}
    assert all(str(finished_run.path / "report") in v for v in doc.values())


def test_runs_show_json(finished_run):
    code, out, err = run_cmd(runs, ["show", str(finished_run.path), "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == SHOW_KEYS
    assert doc["status"] == "done" and doc["model"] == "digits_resnet"
    assert doc["front_size"] == len(finished_run.pareto)
    assert set(doc["best"]) == set(finished_run.meta["objectives"])
    assert doc["best"]["accuracy"] == max(finished_run.pareto["accuracy"])
    assert doc["best"]["latency"] == min(finished_run.pareto["latency_s"])
    assert len(doc["verified"]) == len(finished_run.verify) >= 1
    assert {"policy_id", "qat_accuracy"} <= set(doc["verified"][0])


def test_runs_show_text_and_list(finished_run):
    code, out, err = run_cmd(runs, ["show", str(finished_run.path)])
    assert code == 0, err
    assert "best accuracy" in out and "front:" in out
    code, out, err = run_cmd(runs, ["list", str(finished_run.path.parent)])
    assert code == 0, err
    assert finished_run.run_id in out and "done" in out
    code, out, err = run_cmd(runs, ["list", str(finished_run.path.parent), "--json"])
    rows = json.loads(out)
    assert rows[0]["front_size"] == len(finished_run.pareto)


def test_runs_show_not_a_run(tmp_path):
    code, out, err = run_cmd(runs, ["show", str(tmp_path)])
    assert code == 2 and "meta.json" in err and not out
