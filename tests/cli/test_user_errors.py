"""Every user-caused failure is exit 2 with one line naming the culprit and no traceback (the
traceback only with --debug or HWQ_DEBUG=1); outputs are checked before any work and nothing
half-written is left behind; Ctrl-C (SIGINT) exits 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def hwq(*args: str, cwd: Path | None = None, env: dict | None = None):
    full = {k: v for k, v in os.environ.items() if k != "HWQ_DEBUG"}
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(cwd or ""), full.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", "from hwq.cli import main; main()", *args],
        capture_output=True, text=True, cwd=cwd or ROOT, env=full, timeout=300,
    )


def one_error(res, *needles: str) -> str:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("hwq: error: ")]
    assert len(errors) == 1, res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_binary_profile(tmp_path):
    bad = tmp_path / "device.yaml"
    bad.write_bytes(PNG)
    one_error(hwq("profile", "validate", str(bad)),
              f"{bad}:1: (file): expected a UTF-8 YAML profile", "0x89 at byte 0")
    one_error(hwq("cost", "-d", str(bad), "-m", "digits_resnet", "--bits", "8,8"), str(bad))


def test_binary_policy(tmp_path):
    bad = tmp_path / "policy.json"
    bad.write_bytes(PNG)
    one_error(hwq("cost", "-d", "bitfusion", "-m", "digits_resnet", "--policy", str(bad)),
              f"{bad}: expected a UTF-8 policy JSON file")


def test_user_factories_that_raise(tmp_path):
    (tmp_path / "usermod.py").write_text(textwrap.dedent("""
        def broken_model():
            raise RuntimeError("weights server unreachable")

        def broken_data():
            raise OSError("no such dataset /data/x")
    """))
    res = hwq("graph", "usermod:broken_model", "--input-shape", "1,3,8,8", cwd=tmp_path)
    one_error(res, "model factory usermod:broken_model()",
              "failed: RuntimeError: weights server unreachable")
    res = hwq("finetune", "-d", "bitfusion", "--bits", "8,8", "-m", "digits_resnet",
              "--data", "usermod:broken_data", "--epochs", "0", cwd=tmp_path)
    one_error(res, "--data usermod:broken_data: the data factory failed: OSError: no such dataset")
    # --debug shows the traceback of the user's code, and the same one line
    res = hwq("--debug", "graph", "usermod:broken_model", "--input-shape", "1,3,8,8",
              cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" in res.stderr
    assert 'raise RuntimeError("weights server unreachable")' in res.stderr
    res = hwq("graph", "usermod:broken_model", "--input-shape", "1,3,8,8", cwd=tmp_path,
              env={"HWQ_DEBUG": "1"})
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_wrong_input_channels_has_no_fx_traceback():
    res = hwq("graph", "resnet18", "--input-shape", "1,1,32,32")
    line = one_error(res, "module conv1: forward pass on input shape [(1, 1, 32, 32)] failed",
                     "to have 3 channels, but got 1 channels")
    assert "torch.fx" not in res.stderr and "ShapeProp" not in res.stderr, line


def test_blocked_outputs_are_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    out = blocker / "run"
    one_error(hwq("search", "-d", "bitfusion", "-o", str(out)),
              f"--output-dir {out}: cannot create a directory there: ", "is a file")
    assert blocker.read_text() == "in the way"
    # /proc takes no new files, even from root
    one_error(hwq("search", "-d", "bitfusion", "-o", "/proc/hwq-run"),
              "--output-dir /proc/hwq-run: expected a writable directory")
    one_error(hwq("graph", "digits_resnet", "-o", str(blocker / "g.parquet")),
              f"-o {blocker}: cannot create a directory there")
    one_error(hwq("table", "-d", "bitfusion", "-m", "digits_resnet", "-o",
                  str(blocker / "t.parquet")), "-o ")
    one_error(hwq("finetune", "-d", "bitfusion", "--bits", "8,8", "-o",
                  str(blocker / "v.parquet")), "-o ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_verify_checks_the_run_directory_before_training(tmp_path, monkeypatch, small_run_dir):
    import tempfile

    import hwq.verify as verify_mod
    from hwq.errors import UserError

    real = tempfile.TemporaryFile

    def read_only(*args, **kwargs):
        if Path(kwargs.get("dir", "")) == small_run_dir:
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    def no_training(*args, **kwargs):
        raise AssertionError("verification started before the output was checked")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(verify_mod, "verify_front", no_training)
    with pytest.raises(UserError, match=rf"hwq verify {small_run_dir}: expected a writable "
                                        r"directory.*Permission denied"):
        verify_mod.verify_run(small_run_dir, 1, 0, "serial", None)


@pytest.fixture
def small_run_dir(tmp_path, r18_file):
    import hwq.search as hs

    out = tmp_path / "run"
    hs(device="bitfusion", model=str(r18_file), objectives="bops,latency", generations=1,
       population=10, output_dir=str(out), verify_top=0)
    return out


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    from hwq.model_source import load_graph

    path = tmp_path_factory.mktemp("layers") / "resnet18.parquet"
    load_graph("resnet18").to_parquet(path)
    return path


def test_sigint_exits_130_and_leaves_the_run_consistent(tmp_path, r18_file):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HWQ_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hwq.cli import main; main()", "search", "-d", "bitfusion",
         "-m", str(r18_file), "--objectives", "bops,latency,weight_memory", "--generations",
         "100000", "--population", "10", "-o", str(out), "--verify-top", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 120
        while not (out / "candidates" / "part-00002.parquet").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "the search did not reach generation 2"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "hwq: interrupted" in stderr and "Traceback" not in stderr
    import json

    from hwq.runs import Run

    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "failed"
    run = Run.open(out)
    done = meta["generations_done"]
    assert sorted(run.candidates["generation"].unique()) == list(range(done)) or sorted(
        run.candidates["generation"].unique()) == list(range(done + 1))
    assert not list(out.rglob("*.tmp"))
