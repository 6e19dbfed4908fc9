"""docs/new-device.md runs as written: its files, commands and Python blocks, in a fresh directory.

Conventions of the walkthrough (the test reads them, a reader sees ordinary Markdown):

* `<!-- file: NAME -->` on the line before a fenced block: the block is the content of NAME;
* a ```console block holds `$ COMMAND` lines, each followed by the output it prints (stdout, then
  stderr). A line `...` elides output; without one the output must match exactly (whitespace
  runs count as one space). `$ echo $?` followed by a number is the previous command's exit code
  (0 when not shown). `hwq` commands run in-process (`hwq.cli.main`), others in bash;
* a ```python block runs in a fresh namespace; a ```text block right after it is what it prints.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import hwq
from hwq.cli import main
from hwq.profile import validate_file
from hwq.profile_summary import summarize

DOC = Path(__file__).resolve().parents[1] / "docs" / "new-device.md"
FENCE = re.compile(r"^```(\w*)\s*$")
FILE_MARK = re.compile(r"^<!-- file: (\S+) -->\s*$")


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    lines: list[str]
    file: str | None = None


@dataclass
class Step:
    kind: str  # "command" or "python"
    line: int
    source: str
    expected: list[str]
    expected_rc: int = 0
    rc: int = 0
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def where(self) -> str:
        return f"new-device.md:{self.line}: {self.source.splitlines()[0]}"


def parse_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        mark = FILE_MARK.match(lines[i - 1]) if i > 0 else None
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        blocks.append(Block(m.group(1), start + 1, body, mark.group(1) if mark else None))
        i += 1
    return blocks


def console_steps(block: Block) -> list[Step]:
    steps: list[Step] = []
    for offset, raw in enumerate(block.lines):
        line_no = block.line + 1 + offset
        if raw.startswith("$ "):
            cmd = raw[2:].strip()
            if cmd == "echo $?":
                steps[-1].notes.append("rc")
                continue
            steps.append(Step("command", line_no, cmd, []))
        elif steps and steps[-1].notes == ["rc"]:
            steps[-1].expected_rc = int(raw.strip())
            steps[-1].notes.clear()
        elif steps:
            steps[-1].expected.append(raw)
    return steps


def run_command(step: Step, cwd: Path) -> None:
    argv = shlex.split(step.source)
    if argv and argv[0] == "hwq":
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(argv[1:])
                step.rc = 0
            except SystemExit as exc:
                step.rc = exc.code if isinstance(exc.code, int) else 1
            except Exception:  # an escaped exception is a failure of the walkthrough
                step.rc = 1
                step.error = traceback.format_exc()
        step.stdout, step.stderr = out.getvalue(), err.getvalue()
    else:
        res = subprocess.run(["bash", "-c", step.source], cwd=cwd, capture_output=True,
                             text=True, timeout=120)
        step.rc, step.stdout, step.stderr = res.returncode, res.stdout, res.stderr


def run_python(step: Step) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            exec(compile(step.source, f"new-device.md:{step.line}", "exec"), {})
        except Exception:
            step.error = traceback.format_exc()
    step.stdout = out.getvalue()


def _norm(line: str) -> str:
    return " ".join(line.split())


def output_matches(expected: list[str], actual: str) -> str | None:
    """None when `actual` shows `expected` (see the module docstring), else what is missing."""
    want = [_norm(x) for x in expected if _norm(x)]
    got = [_norm(x) for x in actual.splitlines() if _norm(x)]
    if "..." not in want:
        return None if want == got else f"expected exactly {want}, got {got}"
    pos = 0
    for line in want:
        if line == "...":
            continue
        try:
            pos = got.index(line, pos) + 1
        except ValueError:
            return f"missing line {line!r} (in order) in {got}"
    return None


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """Every step of the walkthrough, run in order in an empty directory."""
    cwd = tmp_path_factory.mktemp("new-device")
    blocks = parse_blocks(DOC.read_text())
    steps: list[Step] = []
    files: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        for k, block in enumerate(blocks):
            if block.file:
                path = cwd / block.file
                path.write_text("\n".join(block.lines) + "\n")
                files[block.file] = path
            elif block.lang == "console":
                for step in console_steps(block):
                    run_command(step, cwd)
                    steps.append(step)
            elif block.lang == "python":
                nxt = blocks[k + 1] if k + 1 < len(blocks) else None
                expected = nxt.lines if nxt is not None and nxt.lang == "text" else []
                step = Step("python", block.line, "\n".join(block.lines), expected)
                run_python(step)
                steps.append(step)
    return cwd, files, steps


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
    problems = []
    for s in steps:
        if s.error:
            problems.append(f"{s.where()}: raised\n{s.error}")
        elif s.kind == "command" and s.rc != s.expected_rc:
            problems.append(f"{s.where()}: exit {s.rc}, the doc says {s.expected_rc}\n{s.output}")
        elif (miss := output_matches(s.expected, s.output)) is not None:
            problems.append(f"{s.where()}: {miss}")
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
