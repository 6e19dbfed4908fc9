"""The ONNX-vs-fake-quant bound that docs/reading-a-run.md states, measured on the zoo (the
trained digits_resnet, resnet20) and on a user-style small CNN: what the export achieves, in
both forms (`integer`, the default, and the float-convolution `qdq` form)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")

# docs/reading-a-run.md: max |ONNX logit - fake-quant logit| / max |fake-quant logit|, by form
# (integer: 8-bit activations land on the neighbouring integer near half-way points, in
# onnxruntime's QuantizeLinear and in the float32 requantization of QLinearConv)
TRAINED_DIGITS_REL = {"qdq": 1e-5,  # measured 1.8e-7 (W8A8, W4A4, W2A8)
                      "integer": 0.01}  # measured 2.7e-3 (W8A8), 1.3e-7 (W4A4, W2A8)
SMALL_CNN_REL = {"qdq": 0.005,  # measured 1.4e-3 at most (W8A8, W4A8, W2A8), 3e-7 at 4-bit
                 "integer": 0.005}  # activations; integer 2.5e-3 at most (W8A8), 2e-7 at W8A4
DEEP_RANDOM_REL = {"qdq": 0.2,  # resnet20 with random weights: measured 0.014 (W8A8), 0.13
                   "integer": 0.2}  # (W4A4); integer 0.011 (W8A8), 0.17 (W4A4)
FORMS = ("integer", "qdq")


class UserCNN(nn.Module):
    """What a user writes: two conv-BN-ReLU blocks, global average pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3))) * 20


def _relative_diff(net: nn.Module, x: torch.Tensor, bits: tuple[int, int], tmp_path,
                   form: str) -> tuple:
    from hwq.export.onnx_qdq import export_onnx_model, onnx_logits
    from hwq.policy import Policy
    from hwq.quant.apply import apply_policy, calibrate, quantizable_layers

    net.eval()
    names = quantizable_layers(net, x[:1])
    q = apply_policy(net, Policy.uniform(*bits), layer_names=names).eval()
    calibrate(q, [(x[:64], torch.zeros(64, dtype=torch.long))], 1)
    out = tmp_path / f"{type(net).__name__}-{bits[0]}x{bits[1]}-{form}.onnx"
    export_onnx_model(q, x[:1], out, opset=21, form=form)
    ref = q(x).detach().numpy()
    got = onnx_logits(out, x)
    return float(np.abs(got - ref).max() / np.abs(ref).max()), (got.argmax(1) == ref.argmax(1))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (2, 8)])
def test_trained_digits(tmp_path, bits, form):
    from hwq.data import load_digits_splits
    from hwq.models.digits import load_trained_digits_resnet

    net, _ = load_trained_digits_resnet(0)
    rel, agree = _relative_diff(net, load_digits_splits().test.x, bits, tmp_path, form)
    assert rel <= TRAINED_DIGITS_REL[form] and agree.all()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (4, 8), (8, 4), (2, 8)])
def test_user_style_small_cnn(tmp_path, bits, form):
    torch.manual_seed(1)
    net = UserCNN()
    x = torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rel, agree = _relative_diff(net, x, bits, tmp_path, form)
    assert rel <= SMALL_CNN_REL[form] and agree.all()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("bits", [(8, 8), (4, 4)])
def test_deep_zoo_model_with_random_weights(tmp_path, bits, form):
    import hwq

    torch.manual_seed(1)
    net = hwq.load_model("resnet20")
    x = torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rel, agree = _relative_diff(net, x, bits, tmp_path, form)
    assert rel <= DEEP_RANDOM_REL[form] and agree.mean() >= 0.95
