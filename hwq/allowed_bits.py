"""The one rule of which bit-widths a device accepts: its profile's `bits.weights` and
`bits.activations` (every combination), or its `bits.pairs` (exactly those pairs: an LLM
runtime's weight-only formats `4x16` and W8A8 `8x8`); 16 and 32 ("not quantized", floating
point) are always accepted (by pairs: a pair of two floating widths).

Cost tables (`hwq cost`, `hwq table`, searches), `hwq.evaluate` and `hwq finetune` all ask
this module, so a width one of them refuses is refused by all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from hwq.errors import UserError
from hwq.policy import BITS_BOUND

FLOAT_BITS = (16, 32)


class _Bits(Protocol):
    weights: tuple[int, ...]
    activations: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...] | None


class HasBits(Protocol):
    """What the rule reads of a profile (a `DeviceProfile`)."""

    @property
    def name(self) -> str: ...

    @property
    def bits(self) -> _Bits: ...


def allowed_masks(profile: HasBits) -> tuple[np.ndarray, np.ndarray]:
    """bool [33] per side (weights, activations): True at the widths the profile accepts."""
    masks = []
    for widths in (profile.bits.weights, profile.bits.activations):
        mask = np.zeros(BITS_BOUND, dtype=bool)
        mask[list(FLOAT_BITS)] = True
        mask[[int(b) for b in widths if 0 <= int(b) < BITS_BOUND]] = True
        masks.append(mask)
    return masks[0], masks[1]


def allowed_pair_mask(profile: HasBits) -> np.ndarray:
    """bool [33, 33]: True at the (w, a) pairs the profile accepts."""
    pairs = profile.bits.pairs
    if pairs is None:
        wmask, amask = allowed_masks(profile)
        return wmask[:, None] & amask[None, :]
    mask = np.zeros((BITS_BOUND, BITS_BOUND), dtype=bool)
    for w in FLOAT_BITS:
        mask[w, list(FLOAT_BITS)] = True
    for w, a in pairs:
        if 0 <= w < BITS_BOUND and 0 <= a < BITS_BOUND:
            mask[w, a] = True
    return mask


def _pair_refusal(profile: HasBits, w: int, a: int) -> str:
    listed = ", ".join(f"{x}x{y}" for x, y in profile.bits.pairs or ())
    return (f"{w}x{a} is not a format of {_describe(profile)}: expected one of its pairs "
            f"{listed}")


def _describe(profile: HasBits) -> str:
    path = getattr(profile, "path", None)
    return f"device {profile.name}" + (f" (profile {path})" if path else "")


def _refusal(profile: HasBits, side: str, bits: int) -> str:
    widths = profile.bits.weights if side == "w_bits" else profile.bits.activations
    noun = "weight" if side == "w_bits" else "activation"
    accepted = sorted({int(b) for b in widths} | set(FLOAT_BITS))
    return (f"{side}={bits} is not supported by {_describe(profile)}: expected {noun} bits "
            f"{', '.join(map(str, accepted))}")


def check_pairs(profile: HasBits, pairs: Sequence[Sequence[int]], where: str = "--bits") -> None:
    """Refuse (UserError) the first (w, a) pair with a width the profile does not accept."""
    if profile.bits.pairs is not None:
        mask = allowed_pair_mask(profile)
        for w, a in pairs:
            w, a = int(w), int(a)
            if not (0 <= w < BITS_BOUND and 0 <= a < BITS_BOUND and mask[w, a]):
                raise UserError(f"{where} {w}x{a}: {_pair_refusal(profile, w, a)}")
        return
    wmask, amask = allowed_masks(profile)
    for w, a in pairs:
        for side, b, mask in (("w_bits", int(w), wmask), ("a_bits", int(a), amask)):
            if not (0 <= b < BITS_BOUND and mask[b]):
                raise UserError(f"{where} {w}x{a}: {_refusal(profile, side, b)}")


def check_layers(
    profile: HasBits, names: Sequence[str], arr: np.ndarray, where: str = "policy"
) -> None:
    """Refuse the first layer of int [P, L, 2] (or [L, 2]) policies whose width the profile
    does not accept, naming the policy (when several), the layer and the profile."""
    arr = np.asarray(arr, dtype=np.int64)
    batch = arr if arr.ndim == 3 else arr[None]
    if batch.size == 0:
        return
    wmask, amask = allowed_masks(profile)
    clipped = np.clip(batch, 0, BITS_BOUND - 1)
    bad = ~allowed_pair_mask(profile)[clipped[..., 0], clipped[..., 1]]
    bad |= (batch[..., 0] != clipped[..., 0]) | (batch[..., 1] != clipped[..., 1])
    if not bad.any():
        return
    p, i = (int(x[0]) for x in np.nonzero(bad))
    w, a = (int(v) for v in batch[p, i])
    prefix = f"{where} {p}: " if arr.ndim == 3 and len(batch) > 1 else f"{where}: "
    if profile.bits.pairs is not None:
        raise UserError(f"{prefix}layer {names[i]}: {_pair_refusal(profile, w, a)}")
    side, b = ("w_bits", w) if not (0 <= w < BITS_BOUND and wmask[w]) else ("a_bits", a)
    raise UserError(f"{prefix}layer {names[i]}: {_refusal(profile, side, b)}")
