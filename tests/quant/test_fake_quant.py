"""Fake-quant modules: levels per channel, STE gradients, observers, unquantized widths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwq.quant.fake_quant import (
    ActFakeQuant,
    ActStats,
    WeightFakeQuant,
    act_qparams,
    quantize_act,
    round_ste,
)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse"])
def test_weight_levels_per_channel(bits, observer):
    w = torch.randn(6, 4, 3, 3) * torch.linspace(0.1, 3.0, 6)[:, None, None, None]
    wq = WeightFakeQuant(bits, observer)
    wq.init_scale(w)
    with torch.no_grad():
        out = wq.eval()(w)
    for c in range(w.shape[0]):
        assert out[c].unique().numel() <= 2**bits
    if bits == 1:
        assert all(out[c].unique().numel() == 2 for c in range(6))
    # symmetric: integer multiples of the channel's scale, |q| <= 2^(b-1) - 1 (1 bit: +-1)
    ints = out / wq.scale.reshape(-1, 1, 1, 1)
    assert torch.allclose(ints, ints.round(), atol=1e-3)
    assert ints.abs().max() <= max(2 ** (bits - 1) - 1, 1) + 1e-3


def test_weight_levels_in_a_quantized_model_every_bit():
    from hwq.quant.apply import apply_policy

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    for bits in range(1, 9):
        q = apply_policy(model, [(bits, 32), (bits, 32)])
        for name in ("0", "3"):
            layer = q.get_submodule(name)
            w = layer.weight_quant.eval()(layer.weight).detach()
            per_channel = [w[c].unique().numel() for c in range(w.shape[0])]
            assert max(per_channel) <= 2**bits, (name, bits, per_channel)


@pytest.mark.parametrize("bits", [16, 32])
def test_unquantized_widths_are_identity(bits):
    x = torch.randn(4, 3, 5, 5)
    wq = WeightFakeQuant(bits)
    wq.init_scale(x)
    assert wq(x) is x
    aq = ActFakeQuant(bits)
    assert aq(x) is x


def test_ste_gradient_passes_inside_range_and_reaches_learned_scale():
    x = torch.linspace(-1, 1, 11, requires_grad=True)
    round_ste(x * 3).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 3.0))

    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    wq = WeightFakeQuant(4, learn=True)
    wq.init_scale(w)
    wq.train()
    wq(w).pow(2).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert wq.scale_param.grad is not None and wq.scale_param.grad.abs().sum() > 0


def test_activation_unsigned_after_relu_and_asymmetric_otherwise():
    relu_out = torch.relu(torch.randn(8, 4, 6, 6))
    aq = ActFakeQuant(4)
    aq.mode = "observe"
    aq(relu_out)
    aq.mode = "quant"
    aq.finalize()
    assert not aq.signed and float(aq.zero_point) == 0.0
    out = aq(relu_out)
    assert out.min() >= 0 and out.unique().numel() <= 16

    signed = torch.randn(8, 4, 6, 6) + 0.5
    aq2 = ActFakeQuant(3)
    aq2.mode = "observe"
    aq2(signed)
    aq2.mode = "quant"
    aq2.finalize()
    assert aq2.signed and 0 < float(aq2.zero_point) < 7
    out2 = aq2(signed)
    assert out2.min() < 0 < out2.max() and out2.unique().numel() <= 8
    # zero is on the grid: (q - zp) * s == 0 at q == zp
    assert float(quantize_act(torch.zeros(1), aq2.scale, float(aq2.zero_point), 3)) == 0.0


@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse"])
def test_activation_observers_clip_within_observed_range(observer):
    stats = ActStats()
    stats.update(torch.relu(torch.randn(4096)) * 2)
    scale, zp, signed = act_qparams(stats, 4, observer)
    assert not signed and zp == 0.0
    assert 0 < scale * 15 <= stats.hi + 1e-6


def test_uncalibrated_activation_quantizer_raises():
    aq = ActFakeQuant(4, name="conv1")
    with pytest.raises(RuntimeError, match="conv1.*calibrate"):
        aq(torch.randn(2, 3))


def test_bad_observer_is_rejected():
    with pytest.raises(ValueError, match="observer"):
        WeightFakeQuant(4, "median")


@pytest.mark.parametrize("zero_point", [0.0, 3.0])
def test_fused_activation_quantizer_matches_the_composed_ste(zero_point):
    from hwq.quant.fake_quant import grad_scale

    x = torch.randn(4, 5, 6) * 2
    g = torch.randn_like(x)
    x1, s1 = x.clone().requires_grad_(True), torch.tensor(0.3, requires_grad=True)
    s1g = grad_scale(s1, 0.1)
    y1 = (round_ste((x1 / s1g + zero_point).clamp(0, 7)) - zero_point) * s1g
    y1.backward(g)
    x2, s2 = x.clone().requires_grad_(True), torch.tensor(0.3, requires_grad=True)
    y2 = quantize_act(x2, s2, zero_point, 3, 0.1)
    y2.backward(g)
    assert torch.equal(y1, y2)
    assert torch.allclose(x1.grad, x2.grad)
    assert torch.allclose(s1.grad, s2.grad, rtol=1e-5)


def test_quantized_state_dict_round_trip():
    from hwq.quant.apply import apply_policy, calibrate

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    x = torch.randn(4, 3, 8, 8)
    q = calibrate(apply_policy(model, [(4, 4), (3, 5)], learn_scales=True), [x], 1)
    fresh = apply_policy(model, [(4, 4), (3, 5)], learn_scales=True)
    fresh.load_state_dict(q.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), q.eval()(x))
