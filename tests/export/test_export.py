"""`hwq export`: the policy JSON round-trips through `hwq cost --policy`; the ONNX QDQ model loads
in onnxruntime and matches the fake-quant PyTorch logits on the digits test split; the torch
state dict rebuilds the same fake-quant model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hwq.cli.report_cmd import export
from hwq.policy import Policy
from tests.run_fixtures import run_cmd

# Stated bound on |ONNX logits - fake-quant PyTorch logits| over the digits test split (logits
# are of order 10). Measured: 0.0 when the 8-bit activations are few, 3.8e-6 on the mixed
# 1/3/5/6/7/16/32-bit policy below, and up to 0.032 on front policies whose activations are all
# 8-bit: onnxruntime's uint8 QuantizeLinear kernel (MLAS) lands on the other integer for a few
# values within float32 rounding of a half-way point (its 4-bit kernel and torch agree), i.e. one
# quantization level on a handful of activations; the predicted classes agree on every image.
MAX_ABS_DIFF = 0.1
# The integer form (the default, hwq.export.onnx_integer) folds batch norms into a per-channel
# scale and bias and sums integers exactly: float32 rounding differs from the fake-quant model's
# conv-then-BN, and an activation within that of a half-way point lands on the neighbouring
# integer of the NEXT layer's quantizer; at 4-bit activations one level is 1/15 of the range.
# Measured 0.56 (a front policy with three W8A4 layers; 0.22 without requantized layers),
# 1.9e-6 on one whose activations are all 8-bit or 2-bit; the predicted classes agree on every
# image. The bound is per level of a 4-bit grid and scales with the coarsest activation grid of
# the policy's integer layers (`integer_logit_bound`): measured 2.83 on a front policy whose head
# reads 2-bit activations (one level = 1/3 of the range, 5x a 4-bit level; the same with the
# export of ad8334d), the classes again agreeing on every image.
MAX_ABS_DIFF_INTEGER = 1.0


def integer_logit_bound(pairs) -> float:
    """MAX_ABS_DIFF_INTEGER scaled from a 4-bit grid (15 levels) to the coarsest activation grid
    of the layers with quantized weights and inputs (below 8 bits)."""
    a_min = min((a for w, a in pairs if w < 16 and a < 8), default=8)
    return MAX_ABS_DIFF_INTEGER * max(1.0, 15 / (2**a_min - 1))


def _front_ids(run, k=2):
    front = run.pareto.sort_values("accuracy", ascending=False)
    return list(front["policy_id"][:k])


def test_json_policy_round_trips_through_cost(finished_run, tmp_path):
    pid = _front_ids(finished_run, 1)[0]
    out = tmp_path / "policy.json"
    code, stdout, err = run_cmd(
        export, [str(finished_run.path), "--policy", pid, "--format", "json", "-o", str(out)]
    )
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["device"] == finished_run.meta["device"]
    assert doc["graph_hash"] == finished_run.meta["graph_hash"]
    assert {"accuracy", "latency_s", "weight_bytes"} <= set(doc["predicted"])
    graph = finished_run.layers
    pol = Policy.from_json(out.read_text())
    assert pol.id(graph) == pid  # default + overrides give the same per-layer bits
    assert len(doc["layers"]) < len(graph) or len(graph) <= 2

    pytest.importorskip("hwq.profile")
    from hwq.cli.cost_cmd import cost

    code, stdout, err = run_cmd(
        cost,
        [
            "--device",
            doc["device"],
            "--model",
            finished_run.meta["model"],
            "--policy",
            str(out),
            "--json",
        ],
    )
    assert code == 0, err
    totals = json.loads(stdout)["totals"]
    row = finished_run.pareto.set_index("policy_id").loc[pid]
    synthetic = finished_run.run_id.startswith("synthetic")
    cols = ["weight_bytes", "bops"]
    if not synthetic:
        cols += ["peak_activation_bytes", "latency_s", "energy_pj"]
    for col in cols:
        if totals.get(col) is None:
            continue
        assert math.isclose(totals[col], float(row[col]), rel_tol=1e-9), col
        assert math.isclose(doc["predicted"][col], float(row[col]), rel_tol=1e-12), col


def test_onnx_export_matches_fake_quant_logits(finished_run, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from hwq.export.model import quantized_model
    from hwq.export.onnx_qdq import onnx_logits
    from hwq.export.policy_file import run_policy

    for pid in _front_ids(finished_run, 2):
        out = tmp_path / f"{pid}.onnx"
        code, stdout, err = run_cmd(
            export, [str(finished_run.path), "--policy", pid, "--format", "onnx", "--from",
                     "ptq", "-o", str(out)]
        )
        assert code == 0, err
        assert "max_abs_logit_diff" in stdout
        model = onnx.load(str(out))
        ops = [n.op_type for n in model.graph.node]
        assert "QuantizeLinear" in ops  # the default integer form (hwq.export.onnx_integer)
        # the reference: the fake-quant PyTorch model, on the whole digits test split
        policy = run_policy(finished_run, pid)
        qmodel, x, y = quantized_model(finished_run, policy)
        assert len(x) == 360  # 20 % of the 1797 digits
        ref = qmodel(x).detach().numpy()
        got = onnx_logits(out, x)
        diff = float(np.abs(got - ref).max())
        assert diff <= integer_logit_bound(policy.pairs(finished_run.layers.names)), diff
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99
        _check_qdq_types(model, policy, finished_run.layers.names)


def _check_qdq_types(model, policy, names, form="integer", opset=21):
    """A layer with quantized weights and inputs holds UINT8 weights (the integers + 128) in the
    integer form; otherwise weights at <= 4 bits are INT4 initializers (opset >= 21), 5-8 bits
    INT8 (and activations UINT4 / UINT8); the integers stay inside the policy's narrow b-bit
    range."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    for name in names:
        w, a = policy.bits(name)
        integer = form == "integer" and w < 16 and a < 16
        t = inits.get(f"{name}.weight_{'uint8' if integer else 'quantized'}")
        if w >= 16:
            assert t is None
            continue
        assert t is not None, name
        vals = numpy_helper.to_array(t).astype(int)
        if integer:
            assert t.data_type == TensorProto.UINT8, name
            vals = vals - 128
        else:
            four = w <= 4 and opset >= 21
            assert t.data_type == (TensorProto.INT4 if four else TensorProto.INT8), name
        qmax = max(2 ** (w - 1) - 1, 1)
        assert vals.min() >= -qmax and vals.max() <= qmax, name
        zp = inits.get(f"{name}.input_zero_point")
        if a < 16:
            small = a <= 4 and not integer and opset >= 21
            assert zp.data_type == (TensorProto.UINT4 if small else TensorProto.UINT8), name


@pytest.mark.parametrize("opset,form", [(21, "qdq"), (17, "qdq"), (21, "integer")])
def test_onnx_odd_widths(finished_run, tmp_path, opset, form):
    """1, 3, 5, 6, 7 bits (no ONNX type of their own) and unquantized layers: containers with
    the range kept to b bits; opset 17 has no 4-bit types, so everything is 8-bit; the integer
    form's integer kernels take 8-bit containers only."""
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto

    from hwq.export.model import quantized_model
    from hwq.export.onnx_qdq import export_onnx_model, onnx_logits

    graph = finished_run.layers
    pairs = [[1, 3], [3, 5], [5, 7], [7, 1], [16, 16], [6, 6], [8, 32]][: len(graph)]
    policy = Policy.from_array(graph, pairs)
    qmodel, x, _y = quantized_model(finished_run, policy)
    out = tmp_path / "odd.onnx"
    desc = export_onnx_model(qmodel, x[:1], out, opset=opset, form=form)
    got = onnx_logits(out, x)
    diff = float(np.abs(got - qmodel(x).detach().numpy()).max())
    assert diff <= (MAX_ABS_DIFF if form == "qdq" else MAX_ABS_DIFF_INTEGER), diff
    model = onnx.load(str(out))
    types = {t.data_type for t in model.graph.initializer}
    assert (TensorProto.INT4 in types) == (opset >= 21 and form == "qdq")
    assert desc["opset"] == opset
    _check_qdq_types(model, policy, graph.names, form, opset)


def test_torch_export_rebuilds_the_fake_quant_model(finished_run, tmp_path):
    import torch

    from hwq.export.model import quantized_model
    from hwq.export.policy_file import run_policy
    from hwq.export.torch_file import load_torch_export

    pid = _front_ids(finished_run, 1)[0]
    out = tmp_path / "q.pt"
    code, stdout, err = run_cmd(
        export, [str(finished_run.path), "--policy", pid, "--format", "torch", "--from", "ptq",
                 "-o", str(out)]
    )
    assert code == 0, err
    doc = torch.load(out, weights_only=True)
    assert doc["format"] == "hwq-quantized-state-dict" and doc["source"] == "ptq"
    assert set(doc["quant"]) == set(finished_run.layers.names)
    first = doc["quant"][finished_run.layers.names[0]]
    assert {"w_bits", "a_bits", "weight_scale", "weight_int", "act_scale"} <= set(first)
    q, x, _ = quantized_model(finished_run, run_policy(finished_run, pid))
    q2 = load_torch_export(out)
    assert torch.equal(q(x), q2(x))


def test_export_bad_policy(finished_run, tmp_path):
    code, out, err = run_cmd(
        export, [str(finished_run.path), "--policy", "nope", "-o", str(tmp_path / "x.json")]
    )
    assert code == 2 and "nope" in err
