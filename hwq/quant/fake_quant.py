"""Fake-quantization with a straight-through estimator (STE).

* Weights: per output channel, symmetric. At b >= 2 bits the integer grid is the narrow range
  [-(2^(b-1) - 1), 2^(b-1) - 1] (2^b - 1 levels, zero exactly representable, as in HAWQ-V3 and
  most integer kernels); at 1 bit a channel is `sign(w) * s` (2 levels; `s` = mean |w| of the
  channel, the least-squares scale, as in XNOR-Net).
* Activations: per tensor, on the INPUT of a quantizable layer (the cost model's convention). A
  tensor that is non-negative on the calibration data (the output of a ReLU/ReLU6, or a pool of
  one) is quantized unsigned on [0, hi]; any other tensor asymmetric on [lo, hi] with an integer
  zero point. 2^b levels.
* Scales come from an observer: `minmax`, `percentile` (of |w| per channel, or of the calibration
  activations) or `mse` (the clipping range with the least squared quantization error, searched
  on a grid). With `learn=True` the scale is a parameter trained by LSQ (Esser et al., ICLR 2020,
  gradient scaled by 1/sqrt(N * Qmax)), initialised from the observer.
* 16 or 32 bits mean "not quantized": the quantizer is the identity.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

OBSERVERS = ("minmax", "percentile", "mse")
UNQUANTIZED = 16  # bits >= this are "not quantized"
MSE_GRID = 80  # candidate clipping ratios of the MSE search
MSE_MIN_RATIO = 0.1
ACT_SAMPLES_PER_BATCH = 1 << 15  # activation values kept per calibration batch (strided)
EPS = 1e-12


def round_ste(x: Tensor) -> Tensor:
    """round(x) in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def grad_scale(x: Tensor, g: float) -> Tensor:
    """x in the forward pass, gradient multiplied by g in the backward pass (LSQ)."""
    return (x - x * g).detach() + x * g


def check_observer(name: str) -> str:
    if name not in OBSERVERS:
        raise ValueError(f"observer must be one of {', '.join(OBSERVERS)}, found {name!r}")
    return name


def is_quantized(bits: int) -> bool:
    return int(bits) < UNQUANTIZED


# -- weights ---------------------------------------------------------------------------------------
def weight_qmax(bits: int) -> int:
    return max(2 ** (bits - 1) - 1, 1)


def quantize_weight(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    """Fake-quantize `w` per output channel (axis 0) with per-channel `scale` [C]; STE gradients
    flow to `w` inside the clipping range and to `scale`."""
    s = scale.reshape(-1, *([1] * (w.dim() - 1)))
    if bits == 1:
        wn = (w / s).clamp(-1.0, 1.0)
        hard = torch.where(w >= 0, torch.ones_like(wn), -torch.ones_like(wn))
        return (wn + (hard - wn).detach()) * s
    q = weight_qmax(bits)
    return round_ste((w / s).clamp(-q, q)) * s


def weight_scale(
    w: Tensor, bits: int, observer: str = "minmax", percentile: float = 99.99
) -> Tensor:
    """Per-output-channel scale [C] of `w` at `bits` from the observer (no gradient)."""
    w = w.detach()
    flat = w.reshape(w.shape[0], -1).abs()
    if bits == 1:
        return flat.mean(1).clamp_min(EPS)
    q = weight_qmax(bits)
    amax = flat.amax(1).clamp_min(EPS)
    if observer == "minmax":
        return amax / q
    if observer == "percentile":
        return torch.quantile(flat, percentile / 100.0, dim=1).clamp_min(EPS) / q
    check_observer(observer)
    ratios = torch.linspace(MSE_MIN_RATIO, 1.0, MSE_GRID, dtype=w.dtype)
    scales = amax[None, :] * ratios[:, None] / q  # [G, C]
    wf = w.reshape(w.shape[0], -1)[None]  # [1, C, K]
    err = ((torch.round((wf / scales[..., None]).clamp(-q, q)) * scales[..., None] - wf) ** 2).sum(
        -1
    )  # [G, C]
    best = err.argmin(0)
    return scales.gather(0, best[None]).squeeze(0)


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric fake-quantizer of a layer's weight.

    Without `learn`, the scale follows the weights: it is recomputed by the observer on every
    training step, and in eval mode once per weight version (cached). With `learn`, the scale is
    the LSQ parameter `scale_param`, initialised by the observer.
    """

    def __init__(
        self,
        bits: int = 8,
        observer: str = "minmax",
        *,
        learn: bool = False,
        percentile: float = 99.99,
    ) -> None:
        super().__init__()
        self.bits = int(bits)
        self.observer = check_observer(observer)
        self.learn = bool(learn)
        self.percentile = float(percentile)
        self.register_buffer("scale", torch.empty(0), persistent=False)
        self.scale_param: nn.Parameter | None = None
        self._cache: tuple[Any, ...] | None = None

    @property
    def active(self) -> bool:
        return is_quantized(self.bits)

    def init_scale(self, w: Tensor) -> None:
        """Compute the observer's scale for `w` (and initialise the LSQ parameter)."""
        self._cache = None
        if not self.active:
            self.scale = torch.empty(0)
            self.scale_param = None
            return
        self.scale = weight_scale(w, self.bits, self.observer, self.percentile)
        if self.learn:
            self.scale_param = nn.Parameter(self.scale.clone())

    def set_precomputed(self, bits: int, scale: Tensor | None, qweight: Tensor | None, w: Tensor):
        """Use an already computed scale and fake-quantized weight (fast PTQ evaluation)."""
        self.bits = int(bits)
        self.scale = scale if scale is not None else torch.empty(0)
        self._cache = (
            (w.data_ptr(), w._version, self.bits, qweight) if qweight is not None else None
        )

    def effective_scale(self) -> Tensor:
        """The per-channel scale the forward pass applies: the learned one (LSQ) where there is
        one, else the observer's (of the last forward pass)."""
        if self.learn and self.scale_param is not None:
            return self.scale_param.detach().abs().clamp_min(EPS)
        return self.scale

    def forward(self, w: Tensor) -> Tensor:
        if not self.active:
            return w
        if self.learn and self.scale_param is not None:
            s = self.scale_param.abs().clamp_min(EPS)
            if torch.is_grad_enabled() and s.requires_grad:  # the LSQ gradient scale; in
                # inference the scale is applied as it is, so the integers are exact
                per_channel = w[0].numel()
                s = grad_scale(s, 1.0 / math.sqrt(per_channel * weight_qmax(self.bits)))
            return quantize_weight(w, s, self.bits)
        if self.training or torch.is_grad_enabled() and w.requires_grad:
            self.scale = weight_scale(w, self.bits, self.observer, self.percentile)
            self._cache = None
            return quantize_weight(w, self.scale, self.bits)
        key = (w.data_ptr(), w._version, self.bits)
        if self._cache is None or self._cache[:3] != key:  # new or changed weights
            self.scale = weight_scale(w, self.bits, self.observer, self.percentile)
            self._cache = (*key, quantize_weight(w, self.scale, self.bits).detach())
        return self._cache[3]

    def extra_repr(self) -> str:
        return f"bits={self.bits}, observer={self.observer}, learn={self.learn}"


# -- activations -----------------------------------------------------------------------------------
class ActStats:
    """What an activation observer saw during calibration: exact min/max and a strided sample."""

    def __init__(self) -> None:
        self.lo = math.inf
        self.hi = -math.inf
        self.samples: list[Tensor] = []

    def update(self, x: Tensor) -> None:
        x = x.detach()
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        flat = x.reshape(-1)
        step = max(1, math.ceil(flat.numel() / ACT_SAMPLES_PER_BATCH))
        self.samples.append(flat[::step].float().clone())

    @property
    def empty(self) -> bool:
        return not self.samples

    def sample(self) -> Tensor:
        return torch.cat(self.samples) if self.samples else torch.empty(0)


def act_qparams(
    stats: ActStats, bits: int, observer: str = "minmax", percentile: float = 99.99
) -> tuple[float, float, bool]:
    """(scale, zero_point, signed) for an activation at `bits` from calibration statistics."""
    check_observer(observer)
    qmax = 2**bits - 1
    signed = stats.lo < 0
    lo = min(stats.lo, 0.0)
    hi = max(stats.hi, 0.0)
    if observer == "percentile":
        sample = stats.sample()
        hi = max(float(torch.quantile(sample, percentile / 100.0)), 0.0)
        lo = min(float(torch.quantile(sample, 1.0 - percentile / 100.0)), 0.0) if signed else 0.0
    elif observer == "mse":
        lo, hi = _mse_range(stats.sample(), lo, hi, qmax)
    span = max(hi - lo, EPS)
    scale = span / qmax
    zero_point = float(min(max(round(-lo / scale), 0), qmax))
    return scale, zero_point, signed


def _mse_range(sample: Tensor, lo: float, hi: float, qmax: int) -> tuple[float, float]:
    """Shrink [lo, hi] by a common ratio to the least squared quantization error on `sample`."""
    if sample.numel() == 0 or hi - lo <= EPS:
        return lo, hi
    ratios = torch.linspace(MSE_MIN_RATIO, 1.0, MSE_GRID)
    los, his = lo * ratios, hi * ratios
    scales = ((his - los) / qmax).clamp_min(EPS)  # [G]
    zps = torch.round(-los / scales).clamp(0, qmax)
    best_err, best = math.inf, len(ratios) - 1
    x = sample[None, :]
    chunk = max(1, (1 << 22) // max(sample.numel(), 1))
    for start in range(0, len(ratios), chunk):
        s = scales[start : start + chunk, None]
        z = zps[start : start + chunk, None]
        err = (((torch.round(x / s + z).clamp(0, qmax) - z) * s - x) ** 2).sum(1)
        i = int(err.argmin())
        if float(err[i]) < best_err:
            best_err, best = float(err[i]), start + i
    return float(los[best]), float(his[best])


class _FakeQuantAffine(torch.autograd.Function):
    """(clamp(round(x / s + zp), 0, qmax) - zp) * s with the STE (gradient passes where
    0 <= x / s + zp <= qmax) and, when `scale` requires grad, the LSQ gradient of the scale
    (times `grad_factor`). Written with in-place passes: a few times cheaper than the composed
    ops and than torch's fused fake-quant kernel on CPU."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmax, grad_factor):  # type: ignore[override]
        s = scale.detach()
        xs = x / s
        if zero_point:
            xs.add_(zero_point)
        mask = (
            (xs >= 0).logical_and_(xs <= qmax) if x.requires_grad or scale.requires_grad else None
        )
        out = xs.round_().clamp_(0, qmax)
        if zero_point:
            out.sub_(zero_point)
        out.mul_(s)
        if scale.requires_grad:
            ctx.save_for_backward(x, out, mask, s)
        else:
            ctx.save_for_backward(mask)
        ctx.learn = bool(scale.requires_grad)
        ctx.grad_factor = grad_factor
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        if ctx.learn:
            x, out, mask, s = ctx.saved_tensors
        else:
            (mask,) = ctx.saved_tensors
        grad_x = grad * mask if ctx.needs_input_grad[0] else None
        grad_s = None
        if ctx.learn:
            inside = grad_x if grad_x is not None else grad * mask
            # d out / d s = out / s outside the range and out / s - x / s inside it
            gs = torch.dot(grad.reshape(-1), out.reshape(-1)) - torch.dot(
                inside.reshape(-1), x.reshape(-1)
            )
            grad_s = (gs / s * ctx.grad_factor).reshape(s.shape)
        return grad_x, grad_s, None, None, None


def quantize_act(
    x: Tensor, scale: Tensor | float, zero_point: float, bits: int, grad_factor: float = 1.0
) -> Tensor:
    """Per-tensor affine fake-quantization on 2^bits levels (STE; LSQ gradient to a learnable
    `scale`)."""
    qmax = 2**bits - 1
    if not isinstance(scale, Tensor):
        scale = torch.tensor(float(scale), dtype=x.dtype)
    zp = float(zero_point)
    return _FakeQuantAffine.apply(x, scale, zp, qmax, grad_factor)


class ActFakeQuant(nn.Module):
    """Per-tensor fake-quantizer of a layer's input activation.

    Modes: `quant` (default), `observe` (record statistics, pass through; used by `calibrate`).
    Call `finalize()` after observing to derive the scale and zero point for `bits`.
    """

    def __init__(
        self,
        bits: int = 8,
        observer: str = "minmax",
        *,
        learn: bool = False,
        percentile: float = 99.99,
        name: str = "",
    ) -> None:
        super().__init__()
        self.bits = int(bits)
        self.observer = check_observer(observer)
        self.learn = bool(learn)
        self.percentile = float(percentile)
        self.name = name
        self.mode = "quant"
        self.stats = ActStats()
        self.register_buffer("scale", torch.empty(0))
        self.register_buffer("zero_point", torch.empty(0))
        self.signed = True
        self._zp = 0.0
        self.scale_param: nn.Parameter | None = None

    @property
    def active(self) -> bool:
        return is_quantized(self.bits)

    @property
    def calibrated(self) -> bool:
        return self.scale.numel() == 1

    def reset_stats(self) -> None:
        self.stats = ActStats()

    def finalize(self) -> None:
        """Scale and zero point for the current bits from the observed statistics."""
        if not self.active:
            return
        if self.stats.empty:
            raise RuntimeError(f"activation quantizer {self.name or ''} saw no calibration data")
        scale, zp, signed = act_qparams(self.stats, self.bits, self.observer, self.percentile)
        self.set_qparams(scale, zp, signed)

    def set_qparams(self, scale: float, zero_point: float, signed: bool) -> None:
        self.scale = torch.tensor(float(scale))
        self.zero_point = torch.tensor(float(zero_point))
        self._zp = float(zero_point)
        self.signed = bool(signed)
        if self.learn:
            self.scale_param = nn.Parameter(self.scale.clone())

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "observe":
            self.stats.update(x)
            return x
        if not self.active:
            return x
        if not self.calibrated:
            raise RuntimeError(
                f"activation quantizer of layer {self.name!r} is not calibrated: "
                "call hwq.quant.calibrate(model, loader) first"
            )
        if self.learn and self.scale_param is not None:
            g = 1.0 / math.sqrt(x[0].numel() * (2**self.bits - 1))
            return quantize_act(x, self.scale_param.abs().clamp_min(EPS), self._zp, self.bits, g)
        return quantize_act(x, self.scale, self._zp, self.bits)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for name in ("scale", "zero_point"):  # calibrated (shape []) or not (shape [0])
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        if prefix + "scale_param" in state_dict and self.scale_param is None:
            self.scale_param = nn.Parameter(torch.empty_like(state_dict[prefix + "scale_param"]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.zero_point.numel() == 1:
            self._zp = float(self.zero_point)

    @property
    def zero_point_value(self) -> float:
        """The calibrated zero point as a float (0.0 before calibration)."""
        return self._zp

    def effective_scale(self) -> float:
        """The scale the forward pass applies: the learned one (LSQ) where there is one."""
        if self.learn and self.scale_param is not None:
            return float(self.scale_param.detach().abs().clamp_min(EPS))
        return float(self.scale)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, observer={self.observer}, learn={self.learn}"
