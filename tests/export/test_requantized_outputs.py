"""Requantized int8 outputs (hwq.quant.output_quant): on a device whose int8 layers requantize
their outputs, every W8A8 layer of the fake-quant model that no single 8-bit input quantizer
reads gets its own calibrated 8-bit output quantizer, and the ONNX export runs every int8 layer
as a fused integer kernel (no ConvInteger / MatMulInteger, checked from the graph file and from
onnxruntime's optimized graph) whose logits equal the fake-quant model's; the PTQ objective
prices the same numerics; devices that do not declare it keep the model and export they had."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwq.policy import Policy
from hwq.quant.apply import apply_policy, calibrate, quantizable_layers
from hwq.quant.int8_outputs import device_requantizes, needs_output_quant
from hwq.quant.output_quant import output_quantizers, output_sites
from tests.export.ort_graph import optimized_ops
from tests.export.test_onnx_integer import ResidualNet

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SLOW_OPS = {"ConvInteger", "MatMulInteger"}
# ONNX vs fake-quant logits, in levels of the head's output quantizer: onnxruntime's float32
# requantization (and the int32 bias) may put a value within a hair of a half-way point on the
# neighbouring integer, in the head's output or in a layer before it; measured: at most 1 level
# (ResidualNet, 128 inputs; trained digits_resnet, 360 test images)
LOGIT_LEVELS = 2.0


def _model(net, x, pairs, requantize):
    names = quantizable_layers(net, x[:1])
    q = apply_policy(net, pairs if not isinstance(pairs, tuple) else Policy.uniform(*pairs),
                     layer_names=names, requantize_outputs=requantize).eval()
    calibrate(q, [(x[:64], torch.zeros(64, dtype=torch.long))], 1)
    return q, names


def _export(q, x, path):
    from hwq.export.onnx_qdq import export_onnx_model, onnx_logits

    desc = export_onnx_model(q, x[:1], path)
    with torch.no_grad():
        ref = q(x).numpy()
    return desc, ref, onnx_logits(path, x)


def _head_scale(q, names) -> float:
    return output_quantizers(q)[names[-1]].effective_scale()


def test_rule_by_hand():
    # layer 0 read alone by layer 1, layer 1 by none (a residual add), layer 2 by layer 3
    readers = np.array([1, -1, 3, -1])
    int8, fp32, w4 = (8, 8), (32, 32), (4, 8)
    assert needs_output_quant([int8] * 4, readers).tolist() == [False, True, False, True]
    # the reader's input is not 8-bit: its own quantizer; a layer not W8A8 never gets one
    assert needs_output_quant([int8, fp32, int8, (8, 4)], readers).tolist() == [
        True, False, True, False]
    assert needs_output_quant([w4, int8, int8, int8], readers).tolist() == [
        False, True, False, True]


def test_residual_net_sites():
    net = ResidualNet().eval()
    sites = output_sites(net, ["c0", "c1", "c2", "fc"])
    # each conv's output is its batch norm's; c0 is read by c1 and the add, c1 by c2 alone
    # (through a ReLU), c2 by the add, fc is the logits
    assert sites.modules == ("b0", "b1", "b2", "fc")
    assert sites.readers.tolist() == [-1, 2, -1, -1]


def test_residual_net_runs_no_slow_integer_kernel(tmp_path):
    torch.manual_seed(0)
    net = ResidualNet().eval()
    x = torch.randn(128, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 2
    q, names = _model(net, x, (8, 8), True)
    assert {n: q.get_submodule(m).output_quant.bits for n, m in q.hwq_output_modules.items()
            } == {"c0": 8, "c1": 32, "c2": 8, "fc": 8}
    desc, ref, got = _export(q, x, tmp_path / "r.onnx")
    assert desc["integer_layers"] == {"requantized": 4, "integer": 0}
    ops = [n.op_type for n in onnx.load(str(tmp_path / "r.onnx")).graph.node]
    assert not SLOW_OPS & set(ops) and "BatchNormalization" not in ops
    ran = optimized_ops(tmp_path / "r.onnx", tmp_path)
    assert {"QLinearConv", "QGemm"} <= ran and not SLOW_OPS & ran and "Conv" not in ran
    levels = np.abs(got - ref).max() / _head_scale(q, names)
    assert levels <= LOGIT_LEVELS and (got.argmax(1) == ref.argmax(1)).all()
    # the logits are requantized: on the head's 8-bit grid in both
    s = _head_scale(q, names)
    zp = output_quantizers(q)["fc"].zero_point_value
    assert np.abs(ref / s + zp - np.round(ref / s + zp)).max() < 1e-3


def test_default_device_keeps_its_model_and_export(tmp_path):
    """Without the device property: no output quantizer, the settings of old files, and the
    export of test_onnx_integer (ConvInteger where the output meets the residual add)."""
    torch.manual_seed(0)
    net = ResidualNet().eval()
    x = torch.randn(128, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 2
    q, _names = _model(net, x, (8, 8), False)
    assert output_quantizers(q) == {} and "requantize_outputs" not in q.hwq_settings
    assert sum(1 for n, _m in q.named_modules() if n.endswith("output_quant")) == 0
    desc, ref, got = _export(q, x, tmp_path / "d.onnx")
    assert desc["integer_layers"] == {"requantized": 1, "integer": 3}
    q2, _ = _model(net, x, (8, 8), True)
    with torch.no_grad():
        assert not torch.equal(q2(x), q(x))  # the requantized model is another model


def test_trained_digits_export_and_ptq_price_the_same_numerics(tmp_path):
    from hwq.data import load_digits_splits
    from hwq.models.digits import load_trained_digits_resnet
    from hwq.quant.ptq import PTQAccuracy

    net, _ = load_trained_digits_resnet(0)
    test = load_digits_splits().test
    x, y = test.x, test.y
    names = quantizable_layers(net, x[:1])
    rng = np.random.default_rng(0)
    mixed = [(8, 8) if b else (32, 32) for b in rng.random(len(names)) < 0.5]
    mixed[-1] = (8, 8)  # the head int8: the logits on its output grid
    calib = [(x[:64], y[:64])]
    ptq = PTQAccuracy(net, calib, (x, y), calib_batches=1, layer_names=names,
                      requantize_outputs=True)
    plain = PTQAccuracy(net, calib, (x, y), calib_batches=1, layer_names=names)
    for i, pairs in enumerate(([(8, 8)] * len(names), mixed)):
        q = apply_policy(net, pairs, layer_names=names, requantize_outputs=True).eval()
        calibrate(q, calib, 1)
        with torch.no_grad():
            direct = int((q(x).argmax(1) == y).sum()) / len(y)
        # the PTQ objective's shared model computes what apply_policy + calibrate compute
        assert ptq.accuracy_of_pairs(pairs) == direct
        desc, ref, got = _export(q, x, tmp_path / f"digits{i}.onnx")
        assert not SLOW_OPS & {n.op_type for n in onnx.load(
            str(tmp_path / f"digits{i}.onnx")).graph.node}
        assert desc["integer_layers"]["integer"] == 0
        assert np.abs(got - ref).max() / _head_scale(q, names) <= LOGIT_LEVELS
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 1 - 1 / len(y)
    # the default objective is the model without output quantizers (the goldens' numbers)
    q = apply_policy(net, mixed, layer_names=names).eval()
    calibrate(q, calib, 1)
    with torch.no_grad():
        assert plain.accuracy_of_pairs(mixed) == int((q(x).argmax(1) == y).sum()) / len(y)


def test_device_property(tmp_path):
    from hwq.errors import UserError
    from hwq.profile import load_profile

    assert device_requantizes({"measurement": {"int8_outputs": "requantized"}})
    assert not device_requantizes({"measurement": {"int8_outputs": "float"}})
    assert not device_requantizes({"kind": "bitfusion"})
    assert not device_requantizes(load_profile("bitfusion"))
    (tmp_path / "t.csv").write_text(
        "op,in_channels,out_channels,in_h,in_w,kernel_h,kernel_w,stride_h,stride_w,groups,"
        "batch,w_bits,a_bits,latency_s\nconv,1,8,8,8,3,3,1,1,1,1,8,8,1e-6\n")
    text = ("schema_version: 1\nname: t\nkind: lut\ntable: t.csv\nmeasurement:\n"
            "  runtime: x\n  int8_outputs: {}\n")
    (tmp_path / "p.yaml").write_text(text.format("requantized"))
    assert device_requantizes(load_profile(str(tmp_path / "p.yaml")))
    (tmp_path / "p.yaml").write_text(text.format("sometimes"))
    with pytest.raises(UserError, match="int8_outputs"):
        load_profile(str(tmp_path / "p.yaml"))


def test_export_of_a_run_on_a_measured_profile_requantizes(tmp_path):
    """`hwq export RUN --format onnx` reads the run's frozen device: on a profile of `hwq
    measure` (fake runtime, measurement.int8_outputs: requantized) every int8 layer of
    digits_resnet exports as a fused integer kernel; the qdq form says why it cannot."""
    import hwq
    from hwq.cli.report_cmd import export
    from hwq.measure.run import measure
    from tests.measure.fake_backend import FAST, FakeBackend
    from tests.run_fixtures import run_cmd

    result = measure("digits_resnet", tmp_path / "m", bits="8x8", end_to_end=False,
                     backend=FakeBackend(), layer_timing=FAST)
    run_dir = tmp_path / "run"
    hwq.search(device=str(result.profile), model="digits_resnet", objectives="latency,bops",
               bits="8x8", algorithm="random", generations=1, population=2, seed=0,
               output_dir=str(run_dir), verify_top=0)
    run = hwq.Run.open(run_dir)
    pid = run.pareto["policy_id"].iloc[0]
    out = tmp_path / "p.onnx"
    code, stdout, err = run_cmd(export, [str(run_dir), "--policy", pid, "--format", "onnx",
                                         "-o", str(out)])
    assert code == 0, err
    assert "requantized: 7, integer: 0" in stdout  # every layer of the uniform int8 policy
    assert not SLOW_OPS & {n.op_type for n in onnx.load(str(out)).graph.node}
    code, _out, err = run_cmd(export, [str(run_dir), "--policy", pid, "--format", "onnx",
                                       "--onnx-form", "qdq", "-o", str(tmp_path / "q.onnx")])
    assert code == 2 and "only the integer form" in err


def test_search_and_verify_on_a_measured_profile_use_the_requantized_numerics(tmp_path):
    """A search on a measured profile measures accuracy with the output quantizers hwq export
    writes (not the float-output model of the other devices), and QAT verification keeps them,
    so `hwq export --from qat` writes the fine-tuned model fully integer too."""
    import hwq
    from hwq.cli.report_cmd import export
    from hwq.measure.run import measure
    from hwq.quant.ptq import accuracy_objective
    from tests.measure.fake_backend import FAST, FakeBackend
    from tests.run_fixtures import run_cmd

    result = measure("digits_resnet", tmp_path / "m", bits="8x8,32x32", end_to_end=False,
                     backend=FakeBackend(), layer_timing=FAST)
    run_dir = tmp_path / "run"
    hwq.search(device=str(result.profile), model="digits_resnet",
               objectives="accuracy,latency", bits="8x8,32x32", algorithm="random",
               generations=1, population=6, seed=0, output_dir=str(run_dir), verify_top=1,
               verify_epochs=1)
    run = hwq.Run.open(run_dir)
    requantized = accuracy_objective("digits_resnet", requantize_outputs=True)
    plain = accuracy_objective("digits_resnet")
    differs = 0
    for _, row in run.candidates.iterrows():
        pairs = list(zip(np.asarray(row["w_bits"]).tolist(), np.asarray(row["a_bits"]).tolist()))
        assert row["accuracy"] == pytest.approx(requantized.accuracy_of_pairs(pairs), abs=1e-12)
        differs += row["accuracy"] != plain.accuracy_of_pairs(pairs)
    assert differs  # the two numerics are not the same on some evaluated policy
    pid = run.verify["policy_id"].iloc[0]
    out = tmp_path / "qat.onnx"
    code, stdout, err = run_cmd(export, [str(run_dir), "--policy", pid, "--format", "onnx",
                                         "--from", "qat", "-o", str(out)])
    assert code == 0, err
    assert not SLOW_OPS & {n.op_type for n in onnx.load(str(out)).graph.node}


def test_default_objectives_on_a_measured_profile_leave_out_energy(tmp_path, caplog):
    """`hwq search --device DIR/profile.yaml` with the default objectives runs on a measured
    profile (latency, no energy): energy is left out with a warning naming it; asked for by
    name it is still an error."""
    import logging

    import hwq
    from hwq.errors import UserError
    from hwq.measure.run import measure
    from tests.measure.fake_backend import FAST, FakeBackend

    result = measure("digits_resnet", tmp_path / "m", bits="8x8,32x32", end_to_end=False,
                     backend=FakeBackend(), layer_timing=FAST)
    with caplog.at_level(logging.WARNING, logger="hwq.search"):
        hwq.search(device=str(result.profile), model="digits_resnet", bits="8x8,32x32",
                   algorithm="random", generations=1, population=2, seed=0,
                   output_dir=str(tmp_path / "run"), verify_top=0)
    assert hwq.Run.open(tmp_path / "run").meta["objectives"] == [
        "accuracy", "latency", "weight_memory"]
    assert "default objective energy left out" in caplog.text
    with pytest.raises(UserError, match="energy: device .* has no energy model"):
        hwq.search(device=str(result.profile), model="digits_resnet", bits="8x8,32x32",
                   objectives="accuracy,energy", algorithm="random", generations=1,
                   population=2, seed=0, output_dir=str(tmp_path / "run2"), verify_top=0)
