"""apply_policy: by layer name on any model, errors naming the layer, BN folding, calibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwq.errors import UserError
from hwq.policy import Policy, policy_id_from_pairs
from hwq.quant.apply import (
    apply_policy,
    calibrate,
    fold_batchnorm,
    quant_layers,
    quantizable_layers,
)
from tests.small_models import Residual


class OutOfOrder(nn.Module):
    """Defined b, a; runs a, b."""

    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Linear(6, 3)
        self.a = nn.Linear(4, 6)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_copy_keeps_the_original_and_the_layer_names():
    model = Residual().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = apply_policy(model, Policy(w_bits={"c2": 2}, a_bits={"fc": 3}, default=(8, 8)))
    assert type(model.c1) is nn.Conv2d and not hasattr(model.c1, "weight_quant")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert quantizable_layers(q) == quantizable_layers(model) == ["c1", "c2", "c3", "fc"]
    bits = {n: (m.weight_quant.bits, m.act_quant.bits) for n, m in quant_layers(q).items()}
    assert bits == {"c1": (8, 8), "c2": (2, 8), "c3": (8, 8), "fc": (8, 3)}
    assert q.hwq_policy_id == policy_id_from_pairs([(8, 8), (2, 8), (8, 8), (8, 3)])


def test_execution_order_from_an_example_input():
    model = OutOfOrder()
    assert quantizable_layers(model) == ["b", "a"]
    assert quantizable_layers(model, torch.zeros(1, 4)) == ["a", "b"]
    q = apply_policy(model, [(4, 32), (2, 32)], example_input=torch.zeros(1, 4))
    assert q.a.weight_quant.bits == 4 and q.b.weight_quant.bits == 2


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "digits_resnet"])
def test_mixed_policy_applies_by_name_to_zoo_models(name):
    from hwq.models import load_model, natural_input_shape

    model = load_model(name)
    names = quantizable_layers(model)
    w_bits = {n: 2 + i % 7 for i, n in enumerate(names)}
    a_bits = {n: 8 - i % 5 for i, n in enumerate(names)}
    q = apply_policy(model, Policy(w_bits=w_bits, a_bits=a_bits))
    layers = quant_layers(q)
    assert list(layers) == names
    for n, m in layers.items():
        assert (m.weight_quant.bits, m.act_quant.bits) == (w_bits[n], a_bits[n])
    if name != "mobilenet_v2":  # shapes only: a forward pass on a calibration input
        x = torch.randn(2, *natural_input_shape(name)[1:])
        calibrate(q, [x], 1)
        assert q(x).shape == model(x).shape


def test_unknown_layer_is_rejected_naming_it():
    with pytest.raises(UserError, match="layer9.conv"):
        apply_policy(Residual(), Policy(w_bits={"layer9.conv": 4}))


@pytest.mark.parametrize("bad", [0, 9, 12, 64, -1])
def test_bits_out_of_range_name_the_layer(bad):
    with pytest.raises(UserError, match="c3"):
        apply_policy(Residual(), [(8, 8), (8, 8), (bad, 8), (8, 8)])
    with pytest.raises(UserError, match="c2"):
        apply_policy(Residual(), [(8, 8), (8, bad), (8, 8), (8, 8)])
    with pytest.raises(UserError, match="c1"):
        Policy(w_bits={"c1": bad})


def test_wrong_length_names_the_layer():
    with pytest.raises(UserError, match="3 .*4 quantizable layers.*'fc'"):
        apply_policy(Residual(), [(8, 8)] * 3)
    with pytest.raises(UserError, match="after the last layer 'fc'"):
        apply_policy(Residual(), [(8, 8)] * 5)
    with pytest.raises(UserError, match="pair per layer"):
        apply_policy(Residual(), [8, 8, 8, 8])


def test_activation_quantizer_sits_on_the_layer_input():
    model = Residual().eval()
    x = torch.randn(4, 3, 8, 8)
    q = apply_policy(model, Policy(a_bits={"c2": 2}, default=(32, 32)))
    calibrate(q, [x], 1)
    seen = {}
    q.c2.register_forward_pre_hook(lambda m, args: seen.setdefault("raw", args[0]))
    q.c2.act_quant.register_forward_hook(lambda m, args, out: seen.setdefault("q", out))
    q(x)
    assert seen["raw"].unique().numel() > 4  # the ReLU output reaching c2
    assert seen["q"].unique().numel() <= 4 and seen["q"].min() >= 0  # unsigned after ReLU


def test_fold_bn_keeps_the_function():
    from hwq.models import load_model

    model = load_model("resnet20").eval()
    with torch.no_grad():  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    q = apply_policy(model, [(32, 32)] * len(quantizable_layers(model)), fold_bn=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in q.modules())
    calibrate(q, [x], 1)
    with torch.no_grad():
        assert torch.allclose(q(x), model(x), atol=1e-4, rtol=1e-4)


def test_fold_batchnorm_skips_a_conv_read_twice():
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    assert fold_batchnorm(Branch()) == []


def test_calibration_sees_full_precision_activations():
    model = Residual().eval()
    x = torch.randn(8, 3, 8, 8)
    q1 = calibrate(apply_policy(model, [(8, 8), (8, 8), (8, 8), (8, 8)]), [x], 1)
    q2 = calibrate(apply_policy(model, [(2, 8), (2, 8), (2, 8), (2, 8)]), [x], 1)
    for n in ("c1", "c2", "c3", "fc"):
        assert float(q1.get_submodule(n).act_quant.scale) == float(
            q2.get_submodule(n).act_quant.scale
        )


def test_calibrate_without_batches_is_a_user_error():
    q = apply_policy(Residual(), [(8, 8)] * 4)
    with pytest.raises(UserError, match="no batches"):
        calibrate(q, [], 4)
