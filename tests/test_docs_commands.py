"""Every command block of README.md and docs/*.md runs as written (the conventions, placeholders and
markers are in `tests/doc_blocks.py`), and the docs point only at files of this repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.doc_blocks import DOCS, ROOT, RUNNABLE, Block, parse_blocks, walk_of


def _params() -> list:
    params = []
    for doc in DOCS:
        name = doc.relative_to(ROOT).as_posix()
        for k, block in enumerate(parse_blocks(doc.read_text())):
            if not block.runnable:
                continue
            marks = []
            if block.not_run is not None:
                marks.append(pytest.mark.skip(reason=f"{name}:{block.line}: not-run: "
                                                     f"{block.not_run}"))
            elif block.slow is not None:
                marks.append(pytest.mark.slow)
            params.append(pytest.param(doc, k, id=f"{name}:{block.line}", marks=marks))
    return params


@pytest.mark.parametrize(("doc", "k"), _params())
def test_the_block_runs_as_written(doc: Path, k: int, tmp_path_factory) -> None:
    walk = walk_of(doc, tmp_path_factory)
    block = walk.blocks[k]
    steps = walk.run_block(k, with_slow=block.slow is not None)
    assert steps, f"{walk.name}:{block.line}: a {block.lang} block with nothing to run"
    problems = [p for s in steps if (p := s.problem()) is not None]
    assert not problems, "\n\n".join(problems)


def _all_blocks() -> list[tuple[str, Block]]:
    return [(d.relative_to(ROOT).as_posix(), b) for d in DOCS for b in parse_blocks(d.read_text())]


def test_every_command_shown_is_in_a_block_that_runs() -> None:
    """hwq commands live in bash/console blocks (run), not in bare or text ones (never run); and
    every marker says why."""
    hidden = [f"{name}:{b.line}" for name, b in _all_blocks()
              if b.lang not in RUNNABLE and b.file is None
              and any(re.match(r"\s*(\$ )?hwq ", line) for line in b.lines)]
    assert not hidden, f"hwq commands in blocks that are not run: {hidden}"
    unexplained = [f"{name}:{b.line}" for name, b in _all_blocks()
                   if (b.not_run is not None and not b.not_run)
                   or (b.slow is not None and not b.slow)]
    assert not unexplained, f"not-run/slow markers without a reason: {unexplained}"
    runnable = [b for _, b in _all_blocks() if b.runnable and b.not_run is None]
    assert sum(b.slow is None for b in runnable) >= 15 and any(b.slow for b in runnable)


LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
# the repository's top-level folders (a path in a code span starting with one must exist)
TOP = {"hwq", "docs", "tests", "cost_models", "search", "device_profiles", "benchmarks", ".ci"}
OUTSIDE = re.compile(r"DESIGN(\.md| §)|(?<![\w/])reference/|\.\./shared|/work/")


def _mentioned_paths(doc: Path) -> list[tuple[int, str]]:
    """(line, path) of every relative link target and of every code span naming a path under a
    top-level entry of the repository (`docs/profiles.md`, `hwq/display.py`); spans with
    placeholders (`<kind>`, `NNNNN`, `*`) are patterns, not paths."""
    out = []
    in_block = False
    for no, line in enumerate(doc.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            continue
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            out.append((no, file.relative_to(ROOT).as_posix() + (f"#{anchor}" if anchor else "")))
        for span in CODE.findall(line):
            word = span.split()[0] if span.split() else ""
            first = word.split("/")[0]
            if "/" in word and first in TOP and not re.search(r"[<>*]|NNN|DIR\b", word):
                out.append((no, word.rstrip(".,:;)")))
    return out


def _anchors(doc: Path) -> set[str]:
    """The link anchors of a document's headings, as GitHub makes them."""
    heads = [line.lstrip("#").strip() for line in doc.read_text().splitlines()
             if re.match(r"#{1,6} ", line)]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def _exists(path: str) -> bool:
    file, _, anchor = path.partition("#")
    target = ROOT / file
    return target.exists() and (not anchor or (target.is_file() and anchor in _anchors(target)))


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_the_docs_name_only_files_of_the_repository(doc: Path) -> None:
    missing = [f"{doc.name}:{no}: {path}" for no, path in _mentioned_paths(doc)
               if not _exists(path)]
    assert not missing, f"paths that are not in the repository: {missing}"
    outside = [f"{doc.name}:{no}: {line.strip()}"
               for no, line in enumerate(doc.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not outside, f"references to files outside the repository: {outside}"


def test_the_path_check_sees_links_and_code_spans() -> None:
    doc = ROOT / "docs" / "profiles.md"
    paths = {p for _, p in _mentioned_paths(doc)}
    assert "device_profiles" in {p.split("/")[0] for p in paths}
    readme = {p for _, p in _mentioned_paths(ROOT / "README.md")}
    assert {"docs/new-device.md", "docs/architecture.md"} <= readme
    assert "docs/new-device.md#1-a-variant-of-a-shipped-design-extends" in {
        p for _, p in _mentioned_paths(ROOT / "docs" / "new-device.md")}
    assert not _exists("docs/formats.md#no-such-heading") and not _exists("docs/nothing.md")
    assert _exists("docs/formats.md#the-policy-json") and _exists("docs/formats.md#units")
