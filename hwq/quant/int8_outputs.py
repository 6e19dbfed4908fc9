"""Which devices requantize int8 layer outputs, and which layers of a policy that gives its own
8-bit output quantizer (`hwq.quant.output_quant` holds the quantizers): torch-free, so a
command that only reads a profile or a run (`hwq export --format json`) never loads torch.

A device declares it in its profile: `measurement.int8_outputs: requantized` (a `lut` profile
that `hwq measure --runtime onnxruntime` writes, docs/profiles.md); any other value, or none,
leaves int8 outputs as the fake-quant model has always kept them (float, quantized only where
the next layer's input quantizer reads them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

OUTPUT_BITS = 8
INT8 = (8, 8)
# the device key (a lut profile's `measurement.int8_outputs`, written by `hwq measure`)
INT8_OUTPUTS_KEY = ("measurement", "int8_outputs")
REQUANTIZED = "requantized"


def device_requantizes(profile: Any) -> bool:
    """Whether a device profile (a `DeviceProfile`, or a profile's mapping as a run freezes it)
    declares that its int8 layers requantize their outputs (`measurement.int8_outputs:
    requantized`)."""
    node: Any = profile if isinstance(profile, Mapping) else profile.data
    for key in INT8_OUTPUTS_KEY:
        if not isinstance(node, Mapping):
            return False
        node = node.get(key)
    return node == REQUANTIZED


def run_requantizes(run_dir: str | Path) -> bool:
    """`device_requantizes` of a run's frozen device profile (`profile.yaml`)."""
    import yaml

    path = Path(run_dir) / "profile.yaml"
    if not path.is_file():
        return False
    return device_requantizes(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def needs_output_quant(pairs: Sequence[tuple[int, int]] | np.ndarray,
                       readers: np.ndarray) -> np.ndarray:
    """Per layer: whether it gets its own 8-bit output quantizer under `pairs` [L, 2]: it is
    W8A8 and its output is not read by exactly one layer with 8-bit inputs alone (`readers`:
    `OutputSites.readers`)."""
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    int8 = (p[:, 0] == INT8[0]) & (p[:, 1] == INT8[1])
    reader_bits = np.where(readers >= 0, p[np.maximum(readers, 0), 1], -1)
    return int8 & (reader_bits != OUTPUT_BITS)
