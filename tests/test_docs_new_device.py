"""docs/new-device.md runs as written (its files, commands and Python blocks, in a fresh
directory, by the one runner of the docs, `tests/doc_blocks.py`, whose docstring has the
conventions); these tests check what the walkthrough leaves behind."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

import hwq
from hwq.profile import validate_file
from hwq.profile_summary import summarize
from tests.doc_blocks import ROOT, Step, walk_of

DOC = ROOT / "docs" / "new-device.md"


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """Every step of the walkthrough, run in order in an empty directory."""
    walk = walk_of(DOC, tmp_path_factory)
    steps = walk.run_all()
    return walk.cwd, walk.files, steps


def find(steps: list[Step], source: str) -> Step:
    hits = [s for s in steps if s.source == source]
    assert hits, f"the walkthrough no longer runs `{source}`"
    return hits[0]


def test_the_walkthrough_writes_its_files(walkthrough):
    _, files, steps = walkthrough
    assert set(files) == {"bitfusion-32x32.yaml", "broken.yaml", "edge-serial.yaml",
                          "t4_layer4.csv", "t4-layer4.yaml"}
    assert sum(s.kind == "command" for s in steps) >= 15
    assert sum(s.kind == "python" for s in steps) == 4


def test_every_step_exits_and_prints_as_shown(walkthrough):
    _, _, steps = walkthrough
    problems = [p for s in steps if (p := s.problem()) is not None]
    assert not problems, "\n\n".join(problems)


def test_profiles_of_the_walkthrough_validate(walkthrough):
    _, files, _ = walkthrough
    for name in ("bitfusion-32x32.yaml", "edge-serial.yaml", "t4-layer4.yaml"):
        assert validate_file(files[name]) == [], name
    problems = validate_file(files["broken.yaml"])
    assert len(problems) == 2
    assert "array.colums" in problems[0] and "buffers.wbuf.size_bytes" in problems[1]


def test_the_deliberate_mistake_exits_2_naming_the_keys(walkthrough):
    _, _, steps = walkthrough
    step = find(steps, "hwq profile validate broken.yaml")
    assert step.rc == 2 and step.stdout == ""
    assert "broken.yaml:3: array.colums:" in step.stderr
    assert "broken.yaml:5: buffers.wbuf.size_bytes:" in step.stderr


def test_the_32x32_bitfusion_beats_the_shipped_one_on_resnet18(walkthrough):
    cwd, files, _ = walkthrough
    big = pd.read_parquet(cwd / "table.parquet")
    shipped = pd.read_parquet(cwd / "shipped.parquet")
    assert len(big) == len(shipped) == 21 * 9
    pairs = ["w_bits", "a_bits"]
    speedup = shipped.groupby(pairs)["cycles"].sum() / big.groupby(pairs)["cycles"].sum()
    assert (speedup > 1).all(), speedup
    assert speedup[(8, 8)] > 1.5
    meta = pq.read_schema(cwd / "table.parquet").metadata
    profile = hwq.load_profile(files["bitfusion-32x32.yaml"])
    assert meta[b"hwq.profile_sha256"].decode() == profile.sha256
    assert (profile.get("array.rows"), profile.get("array.cols")) == (32, 32)
    assert profile.get("buffers.ibuf.size_bytes") == 256 * 1024


def test_the_bit_serial_design_scales_with_both_widths(walkthrough):
    _, files, _ = walkthrough
    peaks = {(p.w_bits, p.a_bits): p.peak_macs_per_s
             for p in summarize(hwq.load_profile(files["edge-serial.yaml"])).pairs}
    assert peaks[(8, 8)] == pytest.approx(256 * 400e6)
    assert peaks[(4, 4)] == pytest.approx(4 * peaks[(8, 8)])
    assert peaks[(2, 2)] == pytest.approx(16 * peaks[(8, 8)])


def test_the_measured_table_prices_exactly_its_rows(walkthrough):
    cwd, files, _ = walkthrough
    priced = pd.read_parquet(cwd / "measured.parquet")
    measured = pd.read_csv(files["t4_layer4.csv"])
    merged = priced.merge(measured, on=["layer", "w_bits", "a_bits"], suffixes=("", "_csv"))
    assert len(merged) == len(measured) == 10
    assert (merged["latency_s"] == merged["latency_s_csv"]).all()
