"""Progress bars: drawn on a terminal only, never with -q; stdout untouched."""

from __future__ import annotations

import io
import logging
import sys

from hwq import progress as prog


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not prog.enabled(quiet=False)
    with prog.progress("work", total=3) as bar:
        bar.advance()
    assert list(prog.track([1, 2], "items")) == [1, 2]


def test_quiet_wins_over_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", _TTY())
    assert prog.enabled(quiet=False)
    assert not prog.enabled(quiet=True)
    log = logging.getLogger("hwq")
    old = log.level
    try:
        log.setLevel(logging.ERROR)  # what `hwq -q` does
        assert not prog.enabled()
    finally:
        log.setLevel(old)


def test_bar_on_a_terminal(monkeypatch, capsys):
    err = _TTY()
    monkeypatch.setattr("sys.stderr", err)
    with prog.progress("work", total=2) as bar:
        bar.advance(2)
    assert capsys.readouterr().out == ""


def test_generation_bar(monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with prog.generation_bar("nsga2 on bitfusion", total=3) as bar:  # off a terminal: silent
        bar.advance(front=2, evaluations=10)
    assert capsys.readouterr().out == "" and not sys.stderr.getvalue()
    err = _TTY()
    monkeypatch.setattr("sys.stderr", err)
    with prog.generation_bar("nsga2 on bitfusion", total=3, done=1) as bar:
        bar.advance(front=4, evaluations=20)
    shown = err.getvalue()
    assert "nsga2 on bitfusion" in shown and "20 evaluated · front 4" in shown and "2/3" in shown
    assert capsys.readouterr().out == ""
    with prog.generation_bar("x", total=3, quiet=True) as bar:
        bar.advance(front=1, evaluations=1)
