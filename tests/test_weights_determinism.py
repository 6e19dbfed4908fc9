"""The bundled digits_resnet trains to the same bits whatever the process's torch thread count
(training runs on one intra-op thread, `hwq.torch_threads`), and a run's meta.json records the
sha256 of the state dict its quality and verification used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

TRAIN = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
threads = torch.get_num_threads()
from hwq.models.digits import cache_path, load_trained_digits_resnet
from hwq.trained import state_dict_sha256
model, info = load_trained_digits_resnet(0)
print(json.dumps({"threads": threads, "sha": state_dict_sha256(model.state_dict()),
                  "file": str(cache_path(0)), "threads_after": torch.get_num_threads()}))
"""


def test_training_under_1_and_2_threads_gives_bit_identical_weights(tmp_path):
    procs = []
    for threads in (1, 2):
        cache = tmp_path / f"cache{threads}"
        env = {**os.environ, "HWQ_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
        env.pop("HWQ_NO_CACHE", None)
        procs.append(subprocess.Popen([sys.executable, "-c", TRAIN, str(threads)], env=env,
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        docs.append(json.loads(out.strip().splitlines()[-1]))
    assert [d["threads"] for d in docs] == [1, 2]
    assert [d["threads_after"] for d in docs] == [1, 2]  # the process's setting is restored
    one, two = (torch.load(d["file"], map_location="cpu", weights_only=True) for d in docs)
    assert Path(docs[0]["file"]).parent.parent == tmp_path / "cache1"  # trained, not shared
    assert one["state_dict"].keys() == two["state_dict"].keys()
    for key, value in one["state_dict"].items():
        assert value.dtype == two["state_dict"][key].dtype
        assert torch.equal(value, two["state_dict"][key]), key
    assert docs[0]["sha"] == docs[1]["sha"]
    assert one["info"]["fp32_test_accuracy"] == two["info"]["fp32_test_accuracy"]


def test_state_dict_sha256_is_of_the_bits():
    from hwq.trained import state_dict_sha256

    a = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}
    same = {"n": torch.tensor(3), "w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    assert state_dict_sha256(a) == state_dict_sha256(same)  # key order does not count
    flipped = {**a, "w": a["w"].clone()}
    flipped["w"].view(torch.int32)[0, 0] ^= 1  # one bit of one weight
    assert state_dict_sha256(flipped) != state_dict_sha256(a)
    assert state_dict_sha256({**a, "w": a["w"].reshape(3, 2)}) != state_dict_sha256(a)
    assert state_dict_sha256({**a, "w": a["w"].double()}) != state_dict_sha256(a)
    # the hash is sha256 over key, dtype+shape, raw bytes, keys sorted
    import hashlib

    d = hashlib.sha256()
    for key in ("n", "w"):
        t = a[key]
        d.update(key.encode())
        d.update(f"{t.dtype}{tuple(t.shape)}".encode())
        d.update(np.ascontiguousarray(t.numpy()).tobytes())
    assert state_dict_sha256(a) == d.hexdigest()


def test_meta_records_the_weights_used(tmp_path):
    import hwq.search as hs
    from hwq.models import load_model
    from hwq.trained import state_dict_sha256

    bundled, _ = __import__("hwq.models.digits", fromlist=["x"]).load_trained_digits_resnet(0)
    expected = state_dict_sha256(bundled.state_dict())
    run = hs(device="bitfusion", objectives="accuracy,bops", generations=1, population=10,
             bits="4x4,8x8", output_dir=str(tmp_path / "acc"), verify_top=0)
    assert run.meta["weights_sha256"] == expected
    # cost objectives only, no verification: no weights used
    run = hs(device="bitfusion", objectives="bops,latency", generations=1, population=10,
             output_dir=str(tmp_path / "cost"), verify_top=0)
    assert "weights_sha256" in run.meta and run.meta["weights_sha256"] is None
    # --weights FILE: the hash of that file's state dict
    other = load_model("digits_resnet")
    torch.manual_seed(3)
    for p in other.parameters():
        torch.nn.init.normal_(p)
    weights = tmp_path / "w.pt"
    torch.save(other.state_dict(), weights)
    from hwq.trained import trained_weights_sha256

    assert trained_weights_sha256("digits_resnet", str(weights)) == state_dict_sha256(
        other.state_dict()) != expected


LOAD = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
from hwq.models.digits import load_trained_digits_resnet
_model, info = load_trained_digits_resnet(0)
print(json.dumps({"train_wall_s": info["train_wall_s"]}))
"""


def _waiting_on(lock: Path) -> bool:
    """Whether some process is blocked on `lock` (a `->` line of Linux's /proc/locks: the
    waiter, then FLOCK ADVISORY WRITE pid dev:inode)."""
    inode = str(os.stat(lock).st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "->" in parts and len(parts) > parts.index("->") + 5:
            if parts[parts.index("->") + 5].rsplit(":", 1)[-1] == inode:
                return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="needs Linux's /proc/locks")
def test_a_second_process_waits_for_the_training_and_reads_its_file(tmp_path, monkeypatch):
    """Training the bundled model holds the cache entry's lock: a process that finds no cached
    weights while another holds it waits, then loads what the holder wrote (never trains)."""
    import time

    from hwq.cache import locked
    from hwq.models import digits
    from hwq.models.cached_training import save_atomic

    model, info = digits.load_trained_digits_resnet(0)  # the session's weights
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "cache"))
    path = digits.cache_path(0)
    lock = path.with_name(path.name + ".lock")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HWQ_NO_CACHE", None)
    with locked(path) as held:
        assert held
        proc = subprocess.Popen([sys.executable, "-c", LOAD], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while proc.poll() is None and not _waiting_on(lock) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and _waiting_on(lock)  # blocked on the lock, not training
        marked = {k: v for k, v in info.items() if k != "cache_file"}
        marked["train_wall_s"] = -1.0  # what the waiting process must read back
        save_atomic(
            {"recipe_key": digits.recipe_key(), "state_dict": model.state_dict(), "info": marked},
            path,
        )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["train_wall_s"] == -1.0
    assert "training digits_resnet" not in err


def test_cache_key_holds_the_recipe_and_the_environment():
    import hashlib
    import platform

    from hwq.models import digits

    assert digits.environment() == {"torch": torch.__version__, "machine": platform.machine()}
    text = json.dumps({"recipe": digits.RECIPE, "environment": digits.environment()},
                      sort_keys=True, separators=(",", ":"))
    assert digits.recipe_key() == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert digits.recipe_key() in digits.cache_path(0).name


SEARCH = """
import sys, torch
threads = int(sys.argv[1])
torch.set_num_threads(threads)
assert torch.get_num_threads() == threads
from hwq.cli import main
for objectives, out in (("accuracy,latency", sys.argv[2]), ("sensitivity,latency", sys.argv[3])):
    main(["-q", "search", "--device", "bitfusion", "--objectives", objectives, "--population",
          "8", "--generations", "3", "--seed", "0", "--output-dir", out, "--verify-top", "0"])
"""


@pytest.mark.slow  # two processes that each train the bundled model and search twice: minutes
def test_same_seed_searches_agree_across_thread_counts_and_caches(tmp_path):
    """Two searches with seed 0 (PTQ accuracy jobs, and a measured sensitivity table), each in
    its own process with its own empty cache (so each trains the bundled model) and its own
    thread count, give the same candidates, fronts and weights hashes."""
    import hwq

    procs = []
    for threads in (1, 2):
        env = {**os.environ, "HWQ_CACHE_DIR": str(tmp_path / f"cache{threads}"),
               "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        env.pop("HWQ_NO_CACHE", None)
        outs = [str(tmp_path / f"{q}{threads}") for q in ("acc", "sens")]
        procs.append(subprocess.Popen([sys.executable, "-c", SEARCH, str(threads), *outs],
                                      env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
    for quality in ("acc", "sens"):
        one, two = (hwq.Run.open(tmp_path / f"{quality}{t}") for t in (1, 2))
        assert one.meta["weights_sha256"] == two.meta["weights_sha256"] is not None
        drop = ["run_id", "eval_wall_s"]
        a, b = (r.candidates.drop(columns=drop) for r in (one, two))
        assert len(a) == 24 and list(a["policy_id"]) == list(b["policy_id"])
        for col in a.columns:
            if col in ("w_bits", "a_bits"):
                assert [list(v) for v in a[col]] == [list(v) for v in b[col]], col
            else:
                assert a[col].tolist() == b[col].tolist(), (quality, col)
        assert sorted(one.pareto["policy_id"]) == sorted(two.pareto["policy_id"])
    assert "sensitivity" in hwq.Run.open(tmp_path / "sens1").candidates.columns
