"""The integer form of the ONNX export (hwq.export.onnx_integer), on a real torch model with the
two shapes of layer it tells apart: a conv-BN-ReLU whose output feeds only the next layer's
8-bit quantizer (requantized: onnxruntime fuses it into QLinearConv) and convs whose outputs
meet a residual add or two readers, plus a linear head (ConvInteger / MatMulInteger). Checked
from the ONNX graphs (the file and onnxruntime's optimized graph) and against the fake-quant
model's logits; no timing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.export.ort_graph import optimized_ops

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# max |ONNX logit - fake-quant logit| / max |fake-quant logit| on the 128 inputs below
# W8A8: measured 1.9e-3 (integer form; 8-bit activations near a half-way point land on the
# neighbouring integer in onnxruntime's QuantizeLinear and QLinearConv requantization), 1.4e-7
# (qdq form)
REL_W8A8 = 5e-3
REL_W4A4 = 1e-5  # measured 1.3e-7: the int32 sums are exact, float32 rounding only


class ResidualNet(nn.Module):
    """stem conv-BN-ReLU (read by c1 and the residual add), c1-BN-ReLU (read by c2's quantizer
    only), c2-BN + residual, ReLU, average pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.c0, self.b0 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c1, self.b1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, stride=1, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        with torch.no_grad():
            for bn in (self.b0, self.b1, self.b2):  # trained-looking statistics, and a
                bn.weight.copy_(torch.randn(8, generator=gen))  # negative gamma or two
                bn.bias.copy_(torch.randn(8, generator=gen) * 0.1)
                bn.running_mean.copy_(torch.randn(8, generator=gen) * 0.1)
                bn.running_var.copy_(torch.rand(8, generator=gen) + 0.5)
            # every c2 weight at the channel's maximum: all integers +-127 at 8 bits, the
            # products a u8 x s8 kernel adds in int16 with saturation
            self.c2.weight.copy_(torch.sign(torch.randn(8, 8, 3, 3, generator=gen)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.b0(self.c0(x)))
        r = torch.relu(self.b1(self.c1(h)))
        y = torch.relu(self.b2(self.c2(r)) + h)
        return self.fc(y.mean((2, 3)))


def _export(bits, tmp_path, form="integer"):
    from hwq.export.onnx_qdq import export_onnx_model, onnx_logits
    from hwq.policy import Policy
    from hwq.quant.apply import apply_policy, calibrate, quantizable_layers

    net = ResidualNet().eval()
    x = torch.randn(128, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 2
    names = quantizable_layers(net, x[:1])
    q = apply_policy(net, Policy.uniform(*bits), layer_names=names).eval()
    calibrate(q, [(x[:64], torch.zeros(64, dtype=torch.long))], 1)
    out = tmp_path / f"residual-{bits[0]}x{bits[1]}-{form}.onnx"
    desc = export_onnx_model(q, x[:1], out, form=form)
    with torch.no_grad():
        ref = q(x).numpy()
    got = onnx_logits(out, x)
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    return out, desc, rel, (got.argmax(1) == ref.argmax(1)).mean()


def test_w8a8_runs_integer_kernels(tmp_path):
    out, desc, rel, agree = _export((8, 8), tmp_path)
    assert desc["form"] == "integer"
    assert desc["integer_layers"] == {"requantized": 1, "integer": 3}  # c1; c0, c2, fc
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("ConvInteger") == 2 and ops.count("MatMulInteger") == 1
    assert "BatchNormalization" not in ops  # all three folded
    assert ops.count("Conv") == 1  # c1, in the QDQ pattern onnxruntime fuses:
    ran = optimized_ops(out, tmp_path)
    assert "QLinearConv" in ran and "Conv" not in ran and {"ConvInteger", "MatMulInteger"} <= ran
    # u8 x u8 everywhere (the weights shifted by 128)
    inits = {t.name: t for t in model.graph.initializer}
    for layer in ("c0", "c1", "c2", "fc"):
        w = onnx.numpy_helper.to_array(inits[f"{layer}.weight_uint8"]).astype(int) - 128
        assert w.min() >= -127 and w.max() <= 127
    assert np.abs(onnx.numpy_helper.to_array(inits["c2.weight_uint8"]).astype(int) - 128
                  ).min() == 127
    assert rel <= REL_W8A8 and agree == 1.0


def test_w4a4_is_exact_up_to_float_rounding(tmp_path):
    """4-bit activations: no requantized layer (QLinearConv saturates at 8 bits), and the
    integer kernels reproduce the fake-quant model to float32 rounding."""
    out, desc, rel, agree = _export((4, 4), tmp_path)
    assert desc["integer_layers"] == {"requantized": 0, "integer": 4}
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"ConvInteger", "MatMulInteger", "Max", "Min"} <= ops and "Conv" not in ops
    assert rel <= REL_W4A4 and agree == 1.0


def test_qdq_form_keeps_float_convolutions(tmp_path):
    out, desc, rel, agree = _export((8, 8), tmp_path, form="qdq")
    assert desc["form"] == "qdq" and desc["integer_layers"] == {}
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"Conv", "BatchNormalization", "DequantizeLinear"} <= ops
    assert not ops & {"ConvInteger", "MatMulInteger"}
    assert rel <= REL_W8A8 and agree == 1.0


def test_unknown_form_is_a_user_error(tmp_path):
    from hwq.errors import UserError

    with pytest.raises(UserError, match="ONNX form: expected one of integer, qdq"):
        _export((8, 8), tmp_path, form="fast")
