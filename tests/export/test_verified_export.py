"""Verified means deployable: verification saves each fine-tuned model with its quantization
parameters (`verified/<policy_id>.pt`), and `hwq export --format onnx|torch` of a verified policy
exports those weights (`--from qat`, the default where the file exists): their test accuracy is
`verify.parquet`'s `qat_accuracy`."""

from __future__ import annotations

import numpy as np
import pytest

import hwq
from hwq.cli.report_cmd import export
from tests.run_fixtures import run_cmd

TEST_IMAGES = 360  # the digits test split


@pytest.fixture(scope="module")
def verified_run(tmp_path_factory):
    """A digits_resnet run whose every policy is W2A4, verified by `hwq verify` (1 QAT epoch):
    post-training accuracy about 33 %, fine-tuned about 90 %."""
    from hwq.cli import main

    out = tmp_path_factory.mktemp("verified") / "run"
    hwq.search(device="bitfusion", objectives="bops,latency", bits="2x4", algorithm="random",
               generations=1, population=2, seed=0, output_dir=str(out), verify_top=0)
    main(["-q", "verify", str(out), "--top", "1", "--epochs", "1"])
    return hwq.Run.open(out)


def _accuracy(logits, y) -> float:
    return float((np.asarray(logits).argmax(1) == np.asarray(y)).mean())


def test_verified_policy_exports_its_fine_tuned_weights(verified_run, tmp_path):
    import torch

    from hwq.data import load_digits_splits
    from hwq.export.onnx_qdq import onnx_logits
    from hwq.export.torch_file import load_torch_export
    from hwq.quant.quantized_file import load_quantized

    row = verified_run.verify.iloc[0]
    pid = row["policy_id"]
    qat, ptq = float(row["qat_accuracy"]), float(row["ptq_accuracy"])
    assert qat - ptq >= 0.03  # the policy loses points after PTQ that QAT wins back
    saved = verified_run.verified_file(pid)
    assert saved == verified_run.path / "verified" / f"{pid}.pt" and saved.is_file()
    test = load_digits_splits().test
    x, y = test.x, test.y
    assert tuple(x.shape) == (TEST_IMAGES, 1, 8, 8) and x.dtype == torch.float32
    with torch.no_grad():  # the saved file itself, rebuilt by the one loader
        assert _accuracy(load_quantized(saved)(x), y) == qat

    # torch: the default source is qat; the export's accuracy is qat_accuracy exactly
    out = tmp_path / "q.pt"
    code, stdout, err = run_cmd(export, [str(verified_run.path), "--policy", pid, "--format",
                                         "torch", "-o", str(out)])
    assert code == 0, err
    assert "qat" in stdout
    doc = torch.load(out, weights_only=True)
    assert doc["source"] == "qat" and doc["record"]["qat_accuracy"] == qat
    with torch.no_grad():
        assert _accuracy(load_torch_export(out)(x), y) == qat

    # onnx: the normalised (N, 1, 8, 8) float input with a dynamic batch; measured: the same
    # accuracy as qat_accuracy (max |logit difference| 3.8e-6, every class agrees); stated
    # bound: one test image
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "q.onnx"
    code, stdout, err = run_cmd(export, [str(verified_run.path), "--policy", pid, "--format",
                                         "onnx", "-o", str(out)])
    assert code == 0, err
    graph = onnx.load(str(out)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert graph.input[0].name == "input" and dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [1, 8, 8]
    got = onnx_logits(out, x)
    assert abs(_accuracy(got, y) - qat) <= 1 / TEST_IMAGES
    assert onnx_logits(out, x[:3]).shape == (3, 10)  # any batch

    # --from ptq: the post-training model, at verification's PTQ accuracy
    out = tmp_path / "p.pt"
    code, stdout, err = run_cmd(export, [str(verified_run.path), "--policy", pid, "--format",
                                         "torch", "--from", "ptq", "-o", str(out)])
    assert code == 0, err
    assert torch.load(out, weights_only=True)["source"] == "ptq"
    with torch.no_grad():
        assert _accuracy(load_torch_export(out)(x), y) == ptq


def test_damaged_verified_file_is_a_user_error(verified_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(verified_run.path, run_dir)
    pid = verified_run.verify.iloc[0]["policy_id"]
    bad = run_dir / "verified" / f"{pid}.pt"
    bad.write_bytes(b"not a torch file")
    code, _out, err = run_cmd(export, [str(run_dir), "--policy", pid, "--format", "torch",
                                       "-o", str(tmp_path / "x.pt")])
    assert code == 2 and str(bad) in err and "damaged" in err
    assert not (tmp_path / "x.pt").exists()


def test_search_verification_saves_the_models(finished_run):
    """The search's own verification (the run fixture verifies one policy) writes its file."""
    verified = list(finished_run.verify["policy_id"])
    if finished_run.run_id.startswith("synthetic"):
        pytest.skip("a synthetic run has no fine-tuned models")
    assert verified and all(finished_run.verified_file(p).is_file() for p in verified)
    files = sorted(f.stem for f in (finished_run.path / "verified").glob("*.pt"))
    assert files == sorted(verified)


def test_source_default_and_missing_qat_file(finished_run, tmp_path):
    if finished_run.run_id.startswith("synthetic"):
        pytest.skip("a synthetic run has no fine-tuned models")
    verified = set(finished_run.verify["policy_id"])
    other = next(p for p in finished_run.pareto["policy_id"] if p not in verified)
    out = tmp_path / "o.pt"
    code, stdout, err = run_cmd(export, [str(finished_run.path), "--policy", other, "--format",
                                         "torch", "-o", str(out)])
    assert code == 0, err
    import torch

    assert torch.load(out, weights_only=True)["source"] == "ptq"  # no verified file: ptq
    code, _out, err = run_cmd(export, [str(finished_run.path), "--policy", other, "--format",
                                       "torch", "--from", "qat", "-o", str(tmp_path / "q.pt")])
    assert code == 2
    assert str(finished_run.verified_file(other)) in err and "--from ptq" in err
    code, _out, err = run_cmd(export, [str(finished_run.path), "--policy", other, "--format",
                                       "json", "--from", "qat", "-o", str(tmp_path / "p.json")])
    assert code == 2 and "--from" in err
    assert err.count("\n") == 1 and "Traceback" not in err
