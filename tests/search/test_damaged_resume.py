"""`--resume` over damaged run files: a damaged or deleted checkpoint, a damaged candidate part
or meta.json. The run continues from the last intact generation and the log names what was
dropped (the front is then the uninterrupted run's), or exit 2 names the damaged file; a run
never starts over silently."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

import hwq.search as hs
from hwq.errors import UserError

from . import helpers
from .conftest import DEVICE

LOGGED = ["accuracy", "bops", "weight_bytes", "latency_s", "energy_pj"]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory, r18_layers):
    out = tmp_path_factory.mktemp("runs") / "r18"
    return hs(**helpers.search_kwargs(r18_layers, str(out), DEVICE), quality=helpers.fake_accuracy)


def _interrupted_copy(done_run, tmp_path):
    """The finished run as a killed one looks: status running (its files are all there)."""
    out = tmp_path / "run"
    shutil.copytree(done_run.path, out)
    meta = json.loads((out / "meta.json").read_text())
    meta["status"] = "running"
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def _resume(out):
    return hs(device=DEVICE, output_dir=str(out), resume=True, quality=helpers.fake_accuracy)


def _same_front(a, b):
    cols = ["generation", "species", "policy_id", *LOGGED]
    assert a.candidates[cols].equals(b.candidates[cols])
    assert a.pareto[["policy_id", *LOGGED]].equals(b.pareto[["policy_id", *LOGGED]])


def test_the_previous_checkpoint_is_kept(done_run):
    state = done_run.path / "state"
    assert sorted(p.name for p in state.iterdir()) == ["checkpoint.pkl", "checkpoint.prev.pkl"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deleted"])
def test_damaged_or_deleted_checkpoint_resumes_one_generation_back(
    done_run, tmp_path, caplog, damage
):
    out = _interrupted_copy(done_run, tmp_path)
    ckpt = out / "state" / "checkpoint.pkl"
    if damage == "garbage":
        ckpt.write_bytes(b"not a pickle at all")
    elif damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    else:
        ckpt.unlink()
    with caplog.at_level(logging.INFO, logger="hwq"):
        resumed = _resume(out)
    assert resumed.meta["status"] == "done"
    _same_front(resumed, done_run)
    text = caplog.text
    expected = "(missing)" if damage == "deleted" else "(damaged: "
    assert f"state/checkpoint.pkl {expected}" in text
    assert "candidates/part-00005.parquet (after generation 4)" in text
    assert "resuming" in text and "at generation 5 of 6" in text


def test_damaged_last_part_resumes_before_it(done_run, tmp_path, caplog):
    out = _interrupted_copy(done_run, tmp_path)
    (out / "candidates" / "part-00005.parquet").write_bytes(b"PAR1 garbage")
    with caplog.at_level(logging.INFO, logger="hwq"):
        resumed = _resume(out)
    _same_front(resumed, done_run)
    assert "candidates/part-00005.parquet (damaged: " in caplog.text
    assert "state/checkpoint.pkl (generation 5, after the damage)" in caplog.text


def test_damage_before_every_checkpoint_is_exit_2_naming_it(done_run, tmp_path, hwq_cli):
    out = _interrupted_copy(done_run, tmp_path)
    part = out / "candidates" / "part-00002.parquet"
    part.write_bytes(b"PAR1 garbage")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    code, stdout, err = hwq_cli(["search", "--resume", "-o", str(out)])
    assert code == 2 and stdout == ""
    assert "candidates/part-00002.parquet (damaged: " in err
    assert "no intact checkpoint" in err and "6 generation(s) on disk" in err
    assert "Traceback" not in err
    # nothing was dropped or started over
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert part.read_bytes() == b"PAR1 garbage"


def test_both_checkpoints_damaged_never_starts_over(done_run, tmp_path):
    out = _interrupted_copy(done_run, tmp_path)
    for name in ("checkpoint.pkl", "checkpoint.prev.pkl"):
        (out / "state" / name).write_bytes(b"\x80\x05garbage")
    with pytest.raises(UserError, match=r"checkpoint.pkl \(damaged: .*checkpoint.prev.pkl "
                                         r"\(damaged: "):
        _resume(out)
    assert len(list((out / "candidates").glob("part-*.parquet"))) == 6


def test_damaged_meta_json_is_exit_2(done_run, tmp_path, hwq_cli):
    out = _interrupted_copy(done_run, tmp_path)
    (out / "meta.json").write_text('{"run_id": "x", "status": "runn')
    code, _stdout, err = hwq_cli(["search", "--resume", "-o", str(out)])
    assert code == 2
    assert f"--resume {out}: meta.json is damaged (JSONDecodeError: " in err
    assert "Traceback" not in err
