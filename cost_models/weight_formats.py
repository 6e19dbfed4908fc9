"""How an LLM runtime stores weights at each width, and its KV cache (issue 19).

A `(w, 16)` pair on a profile of these runtimes is a weight-only format (w-bit weights, 16-bit
activations); `8x8` is W8A8 (int8 weights and int8 activations). The runtime says how a width is
stored: `bits` per weight plus, per group of `group` weights, a scale of `scale_bits` and a
zero point of `zero_bits` (`group` 0: one group per output row, i.e. per channel: the layer's
input features). Bits per weight = bits + (scale_bits + zero_bits) / group, and a layer's weight
bytes = weight_params x bits per weight / 8, scales included. A width the runtime does not
quantize (16: bf16/F16, 32) is stored plain: bits per weight = the width, DESIGN's plain weight
bytes.

* `torchao` (pytorch/ao `torchao/quantization`): bf16; int8 weight-only and int8 dynamic (W8A8)
  per output channel with a bf16 scale; int4 weight-only in groups of 64 with a bf16 scale and a
  bf16 zero point per group (4.5 bits per weight); `uintx` weight-only (`UIntXWeightOnlyConfig`)
  for 6, 3 and 2 bits, also in groups of 64 with a bf16 scale and zero point (bits + 0.5).
* `llamacpp` (GGUF block formats, ggml `ggml-common.h`): F16; Q8_0 blocks of 32 with an fp16
  scale (8.5); Q6_K super-blocks of 256 with 16 int8 scales and an fp16 scale (6.5625); Q4_0
  blocks of 32 with an fp16 scale (4.5); Q3_K super-blocks of 256 with 12 bytes of scales and an
  fp16 scale (3.4375); Q2_K super-blocks of 256 with 16 bytes of scales and mins, an fp16 scale and
  an fp16 min (2.625).

Both keep the KV cache at 16 bits (bf16 / F16): `kv_bits`. Torch-free, numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class WeightFormat:
    """One stored width of a runtime."""

    name: str
    bits: int
    group: int = 0  # weights per scale group; 0: one group per output row (per channel)
    scale_bits: int = 0
    zero_bits: int = 0

    def bits_per_weight(self, row_weights: np.ndarray) -> np.ndarray:
        """float64 [L]: bits per weight of layers whose output rows hold `row_weights` weights
        (the input features; only a per-channel format depends on it)."""
        rows = np.asarray(row_weights, dtype=np.float64)
        overhead = float(self.scale_bits + self.zero_bits)
        if overhead == 0:
            return np.full(rows.shape, float(self.bits))
        group = rows if self.group == 0 else np.full(rows.shape, float(self.group))
        return float(self.bits) + overhead / np.maximum(group, 1.0)

    def describe(self) -> str:
        if self.scale_bits + self.zero_bits == 0:
            return f"{self.name}: {self.bits} bits per weight"
        group = "per output channel" if self.group == 0 else f"groups of {self.group}"
        zero = f" + {self.zero_bits}-bit zero point" if self.zero_bits else ""
        return f"{self.name}: {self.bits}-bit weights, {group}, {self.scale_bits}-bit scale{zero}"


@dataclass(frozen=True)
class RuntimeStorage:
    """The formats of one runtime, by weight width, and its KV-cache precision."""

    name: str
    formats: Mapping[int, WeightFormat]
    kv_bits: int = 16
    notes: tuple[str, ...] = field(default=())

    def format_of(self, w_bits: int) -> WeightFormat:
        """The stored format of a width (a width the runtime does not quantize: plain)."""
        return self.formats.get(int(w_bits), WeightFormat(f"{int(w_bits)}-bit", int(w_bits)))

    def stores(self, w_bits: int) -> bool:
        return int(w_bits) in self.formats


TORCHAO = RuntimeStorage("torchao", {
    16: WeightFormat("bf16", 16),
    8: WeightFormat("int8 weight-only per channel", 8, 0, 16),
    6: WeightFormat("uint6 weight-only (uintx), group 64", 6, 64, 16, 16),
    4: WeightFormat("int4 weight-only, group 64", 4, 64, 16, 16),
    3: WeightFormat("uint3 weight-only (uintx), group 64", 3, 64, 16, 16),
    2: WeightFormat("uint2 weight-only (uintx), group 64", 2, 64, 16, 16),
})
LLAMACPP = RuntimeStorage("llamacpp", {
    16: WeightFormat("F16", 16),
    8: WeightFormat("Q8_0", 8, 32, 16),
    6: WeightFormat("Q6_K", 6, 256, 144),
    4: WeightFormat("Q4_0", 4, 32, 16),
    3: WeightFormat("Q3_K", 3, 256, 112),
    2: WeightFormat("Q2_K", 2, 256, 144, 16),
})
STORAGE: dict[str, RuntimeStorage] = {r.name: r for r in (TORCHAO, LLAMACPP)}


def storage(runtime: str) -> RuntimeStorage | None:
    """The storage of an LLM runtime, or None for a runtime without weight-only formats."""
    return STORAGE.get(runtime)


def stored_grids(runtime: str | None) -> dict[int, tuple[int, bool]]:
    """{w_bits: (group, zero point stored)} of an LLM runtime's quantized widths (below 16
    bits): how its stored formats group and offset the weights (group 0: per output channel);
    {} for a runtime without weight-only formats. The perplexity objective quantizes so, and
    the hf-quant-config export says so."""
    found = storage(str(runtime or ""))
    if found is None:
        return {}
    return {int(b): (int(f.group), f.zero_bits > 0) for b, f in found.formats.items()
            if int(b) < 16}


def bits_per_weight(runtime: RuntimeStorage, w_bits: np.ndarray,
                    row_weights: np.ndarray) -> np.ndarray:
    """float64 [L, P]: bits per weight of every layer (whose output rows hold `row_weights`
    weights) at every weight width of `w_bits`."""
    rows = np.asarray(row_weights, dtype=np.float64)
    return np.stack([runtime.format_of(int(w)).bits_per_weight(rows) for w in w_bits], axis=1) \
        if len(w_bits) else np.zeros((len(rows), 0))
