"""Atomic writes: a reader never sees half a file, and a Ctrl-C never leaves a temporary behind."""

from __future__ import annotations

import os
import signal

import pytest

from hwq.atomic import write_atomic, write_bytes_atomic


def test_a_ctrl_c_during_a_write_is_held_until_the_file_is_in_place(tmp_path):
    target = tmp_path / "out.bin"

    def write(fh):
        fh.write(b"first half ")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the write
        fh.write(b"second half")

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, write)
    assert target.read_bytes() == b"first half second half"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_bytes_atomic(tmp_path / "out.bin", b"old")

    def write(fh):
        fh.write(b"new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, write)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
