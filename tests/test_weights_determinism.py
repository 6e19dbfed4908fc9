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
