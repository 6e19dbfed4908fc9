"""The docs (README.md and docs/*.md) run as written: their fenced blocks, parsed and run in order
in one empty directory per document. `tests/test_docs_commands.py` runs every block;
`tests/test_docs_new_device.py` checks what the new-device walkthrough leaves behind.

Conventions (a reader sees ordinary Markdown; docs/writing-docs.md says the same for writers):

* a ```bash or ```sh block: every line is a command that must exit 0 (a trailing `\\` continues
  a line, `#` starts a comment, `;` and `&&` separate commands);
* a ```console block: `$ COMMAND` lines, each followed by what it prints (stdout, then stderr).
  A line `...` elides output; without one the output must match exactly (whitespace runs count
  as one space). `$ echo $?` followed by a number is the previous command's exit code (0 when not
  shown);
* a ```python block runs in a fresh namespace; a ```text block right after it is what it prints
  (compared like a console block's output);
* HTML comments on the lines just before a block's fence: `<!-- file: NAME -->` writes the block
  to NAME (it is not run); `<!-- slow: REASON -->` runs it only under `-m slow` (still
  collected); `<!-- not-run: REASON -->` never runs it (reported as skipped with the reason);
* other blocks (```yaml, ```text, bare fences) are illustrations and never run; a bare block
  must not hold `hwq` commands (the test checks), so every command shown is run.

`hwq ...` commands run in-process (`hwq.cli.main`); others in bash with this interpreter's
scripts on PATH. Placeholders in commands and Python blocks:

* `runs/DIR` or `RUN_DIR`: the newest run directory the document made so far; a document that
  names one before it runs a search reads a run the reader already has: a small cost-only search
  (`FIXTURE_SEARCH`) makes it before the document's first step;
* `ID`: a policy id of that run's front (of the run directory the same command names, if any);
* `ADDR`: a Ray address, `local` (a Ray instance started for the command).

Each document runs in its own empty directory holding a copy of `docs/examples/` (so paths read
as from the repository root) and its own `HWQ_CACHE_DIR` (the session cache's files hard-linked
in, so a document's `hwq cache clear` removes only its own links).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = ("bash", "sh", "console", "python")
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!-- (file|slow|not-run):?\s*(.*?)\s*-->\s*$")
FIXTURE_SEARCH = (
    "hwq -q search --device bitfusion --model resnet18 --sensitivity hawq-v3:resnet18 "
    "--bits 4x4,8x8 --pin first,last=8 --generations 3 --population 10 --seed 0 "
    "-o runs/doc-fixture"
)
PLACEHOLDER_RUN = re.compile(r"(?<![\w/])(?:runs/DIR|RUN_DIR)(?![\w])")
PLACEHOLDER_ID = re.compile(r"(?<![\w/.-])ID(?![\w])")
PLACEHOLDER_ADDR = re.compile(r"(?<![\w/.-])ADDR(?![\w])")


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    lines: list[str]
    file: str | None = None
    slow: str | None = None  # the reason, when marked slow
    not_run: str | None = None  # the reason, when marked not-run

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE and self.file is None


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
    doc: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def where(self) -> str:
        return f"{self.doc}:{self.line}: {self.source.splitlines()[0]}"

    def problem(self) -> str | None:
        """What went wrong, or None when the step ran as the document says."""
        if self.error:
            return f"{self.where()}: raised\n{self.error}"
        if self.kind == "command" and self.rc != self.expected_rc:
            return f"{self.where()}: exit {self.rc}, the doc says {self.expected_rc}\n{self.output}"
        miss = output_matches(self.expected, self.output) if self.expected else None
        return None if miss is None else f"{self.where()}: {miss}"


# -- parsing ---------------------------------------------------------------------------------------
def parse_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        marks: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (mk := MARK.match(lines[j])):
            marks.setdefault(mk.group(1), mk.group(2))
            j -= 1
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        blocks.append(Block(m.group(1), start + 1, body, marks.get("file"), marks.get("slow"),
                            marks.get("not-run")))
        i += 1
    return blocks


def _logical_lines(block: Block) -> list[tuple[int, str]]:
    """(line number, text) of each line of a block, `\\`-continued lines joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for offset, raw in enumerate(block.lines):
        line_no = block.line + 1 + offset
        if pending is not None:
            line_no, raw = pending[0], pending[1] + " " + raw.strip()
            pending = None
        if raw.rstrip().endswith("\\"):
            pending = (line_no, raw.rstrip()[:-1].rstrip())
            continue
        out.append((line_no, raw))
    if pending is not None:
        out.append(pending)
    return out


def console_steps(block: Block) -> list[Step]:
    steps: list[Step] = []
    for line_no, raw in _logical_lines(block):
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


def bash_steps(block: Block) -> list[Step]:
    """One step per command of a ```bash block (comments dropped, `;`/`&&` lists split)."""
    steps: list[Step] = []
    for line_no, raw in _logical_lines(block):
        for cmd in split_commands(raw):
            steps.append(Step("command", line_no, cmd, []))
    return steps


def split_commands(line: str) -> list[str]:
    """The commands of one shell line: its comment dropped, split at `;` and `&&`; a line with
    pipes or redirections stays one command (run by bash)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lex.whitespace_split = True
    lex.commenters = "#"
    tokens = list(lex)
    if not tokens:
        return []
    if any(set(t) <= set(";&|<>") and t not in (";", "&&") for t in tokens):
        return [line.split(" #")[0].strip()]
    commands, current = [], []
    for t in tokens:
        if t in (";", "&&"):
            if current:
                commands.append(shlex.join(current))
            current = []
        else:
            current.append(t)
    if current:
        commands.append(shlex.join(current))
    return commands


def steps_of(blocks: list[Block], k: int) -> list[Step]:
    """The steps of block k (a python block takes the ```text block after it as its output)."""
    block = blocks[k]
    if block.lang == "console":
        return console_steps(block)
    if block.lang in ("bash", "sh"):
        return bash_steps(block)
    if block.lang == "python":
        nxt = blocks[k + 1] if k + 1 < len(blocks) else None
        expected = nxt.lines if nxt is not None and nxt.lang == "text" else []
        return [Step("python", block.line, "\n".join(block.lines), expected)]
    return []


# -- output ----------------------------------------------------------------------------------------
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


# -- running ---------------------------------------------------------------------------------------
class DocWalk:
    """One document's blocks run in order in its own directory; each block once."""

    def __init__(self, doc: Path, cwd: Path) -> None:
        self.doc = doc
        self.name = doc.relative_to(ROOT).as_posix()
        self.cwd = cwd
        self.blocks = parse_blocks(doc.read_text())
        self.results: dict[int, list[Step]] = {}
        self.files: dict[str, Path] = {}
        self.runs: list[Path] = []  # run directories made, oldest first
        self.cache = cwd / ".hwq-cache"
        self.needs_fixture = self._uses_a_run_before_making_one()
        self._prepare()

    def _uses_a_run_before_making_one(self) -> bool:
        """Whether the document's first placeholder of a run comes before its first search (it
        reads a run a reader already has: the fixture run is made before its first step)."""
        for k, block in enumerate(self.blocks):
            if not block.runnable or block.not_run is not None:
                continue
            for step in steps_of(self.blocks, k):
                if PLACEHOLDER_RUN.search(step.source) or PLACEHOLDER_ID.search(step.source):
                    return True
                if re.search(r"\bhwq (-q )?search\b|\bhwq\.search\(", step.source):
                    return False
        return False

    def _prepare(self) -> None:
        examples = ROOT / "docs" / "examples"
        if examples.is_dir():
            shutil.copytree(examples, self.cwd / "docs" / "examples")
        session = os.environ.get("HWQ_CACHE_DIR")
        self.cache.mkdir()
        root = Path(session) if session else None
        sections = [p for p in root.iterdir() if p.is_dir()] if root and root.is_dir() else []
        for src in sections:  # linked, not copied: a document's `hwq cache clear` stays its own
            try:
                shutil.copytree(src, self.cache / src.name, copy_function=os.link)
            except (OSError, shutil.Error):  # another filesystem: copy
                shutil.rmtree(self.cache / src.name, ignore_errors=True)
                shutil.copytree(src, self.cache / src.name)

    # -- blocks ------------------------------------------------------------------------------------
    def run_block(self, k: int, with_slow: bool = False) -> list[Step]:
        """Block k's steps, run after every earlier runnable block (slow ones only when
        `with_slow`), each block once."""
        if k in self.results:
            return self.results[k]
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(self.cwd)
            mp.setenv("HWQ_CACHE_DIR", str(self.cache))
            mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
            for j in range(k + 1):
                self._run(j, with_slow or j == k)
        return self.results.get(k, [])

    def run_all(self, with_slow: bool = False) -> list[Step]:
        if self.blocks:
            self.run_block(len(self.blocks) - 1, with_slow)
        return [s for k in sorted(self.results) for s in self.results[k]]

    def _run(self, j: int, slow_ok: bool) -> None:
        block = self.blocks[j]
        if j in self.results or block.not_run is not None or (block.slow is not None
                                                              and not slow_ok):
            return
        if block.file:
            path = self.cwd / block.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(block.lines) + "\n")
            self.files[block.file] = path
            self.results[j] = []
            return
        steps = steps_of(self.blocks, j)
        for step in steps:
            step.doc = self.name
            self._step(step)
        self.results[j] = steps

    # -- steps -------------------------------------------------------------------------------------
    def _step(self, step: Step) -> None:
        if self.needs_fixture and not self.runs:
            self._fixture_run()
        source = self._substitute(step.source)
        if step.kind == "python":
            out = io.StringIO()
            with redirect_stdout(out):
                try:
                    exec(compile(source, f"{self.name}:{step.line}", "exec"), {})
                except Exception:
                    step.error = traceback.format_exc()
            step.stdout = out.getvalue()
        else:
            self._command(step, source)
        self._note_runs()

    def _command(self, step: Step, source: str) -> None:
        argv = shlex.split(source)
        if argv and argv[0] == "hwq" and split_commands(source) == [shlex.join(argv)]:
            from hwq.cli import main

            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main(argv[1:])
                    step.rc = 0
                except SystemExit as exc:
                    step.rc = exc.code if isinstance(exc.code, int) else 1
                except Exception:  # an escaped exception is a failure of the document
                    step.rc = 1
                    step.error = traceback.format_exc()
            step.stdout, step.stderr = out.getvalue(), err.getvalue()
        else:
            res = subprocess.run(["bash", "-c", source], cwd=self.cwd, capture_output=True,
                                 text=True, timeout=600)
            step.rc, step.stdout, step.stderr = res.returncode, res.stdout, res.stderr

    def _note_runs(self) -> None:
        for meta in sorted(self.cwd.glob("**/meta.json")):
            run = meta.parent
            if run not in self.runs and ".hwq-cache" not in run.parts:
                self.runs.append(run)

    def _substitute(self, source: str) -> str:
        if PLACEHOLDER_RUN.search(source) or PLACEHOLDER_ID.search(source):
            if not self.runs:
                self._fixture_run()
            newest = self.runs[-1].relative_to(self.cwd).as_posix()
            source = PLACEHOLDER_RUN.sub(newest, source)
        if PLACEHOLDER_ID.search(source):
            named = [r for r in self.runs if r.relative_to(self.cwd).as_posix() in source]
            source = PLACEHOLDER_ID.sub(_front_policy(named[-1] if named else self.runs[-1]),
                                        source)
        return PLACEHOLDER_ADDR.sub("local", source)


    def _fixture_run(self) -> None:
        setup = Step("command", 0, FIXTURE_SEARCH, [], doc=self.name)
        self._command(setup, FIXTURE_SEARCH)
        self._note_runs()
        assert setup.rc == 0 and self.runs, f"the fixture run failed:\n{setup.output}"


def _front_policy(run: Path) -> str:
    import pandas as pd

    return str(pd.read_parquet(run / "pareto.parquet")["policy_id"].iloc[0])


_WALKS: dict[str, DocWalk] = {}


def walk_of(doc: Path, tmp_path_factory: pytest.TempPathFactory) -> DocWalk:
    """The session's one walk of `doc` (made on first use)."""
    name = doc.relative_to(ROOT).as_posix()
    if name not in _WALKS:
        _WALKS[name] = DocWalk(doc, tmp_path_factory.mktemp(re.sub(r"\W", "-", name)))
    return _WALKS[name]
