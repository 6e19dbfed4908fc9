"""Parsing of `--model-arg K=V` and `--input-shape N,...`, and loading a state dict file."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwq.errors import UserError

if TYPE_CHECKING:
    from torch import nn

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWN = 5


def parse_value(text: str) -> bool | int | float | str:
    """`true`/`false` (any case) -> bool, ASCII integers -> int, decimal numbers -> float, anything
    else (including `nan` and `inf`) -> the string unchanged."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if _INT.fullmatch(low):
        return int(low)
    if _FLOAT.fullmatch(low):
        return float(low)
    return text


def parse_model_args(pairs: Iterable[str]) -> dict[str, Any]:
    """`["width=0.35", "num_classes=10"]` -> `{"width": 0.35, "num_classes": 10}`.

    Splits each pair at its first `=`; a key must be a Python identifier and appear once.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"--model-arg: expected K=V, found {pair!r}")
        if not _KEY.fullmatch(key):
            raise UserError(f"--model-arg: {key!r} in {pair!r} is not a valid argument name")
        if key in out:
            raise UserError(f"--model-arg: {key!r} is given more than once")
        out[key] = parse_value(value.strip())
    return out


def parse_input_shape(text: str) -> tuple[int, ...]:
    """`"1,3,224,224"` -> `(1, 3, 224, 224)`. Any rank from 2 up: N first (the samples), then
    the sizes of one sample (C,H,W; C,L; T tokens; C,D,H,W ...); positive integers only."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) < 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise UserError(
            f"--input-shape: expected 2 or more positive integers N,... (N,C,H,W; N,C,L; "
            f"N,T tokens; N,C,D,H,W), found {text!r}"
        )
    shape = tuple(int(p) for p in parts)
    if any(s <= 0 for s in shape):
        raise UserError(f"--input-shape: sizes must be positive, found {text!r}")
    return shape


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict file into `model` (strict) and return the model.

    The file is read with `torch.load(weights_only=True)`; it may be a state dict or a checkpoint
    dict holding one under `state_dict` or `model`. A `module.` prefix on every key (saved from
    DataParallel) is removed when the model's keys lack it. Missing, unexpected and mis-shaped
    keys raise a UserError listing the first five of each.
    """
    import torch

    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: weights file not found")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"{file}: cannot read as a weights-only state dict: {_reason(exc)}"
        ) from exc
    state = _state_dict_of(obj, file)

    expected = model.state_dict()
    if (
        all(k.startswith("module.") for k in state)
        and state
        and not any(k.startswith("module.") for k in expected)
    ):
        state = {k[len("module.") :]: v for k, v in state.items()}

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(v.shape)} in file vs {tuple(expected[k].shape)} in model"
        for k, v in state.items()
        if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape
    ]
    problems = []
    for label, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if keys:
            more = f", ... (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
            problems.append(f"{label} ({len(keys)}): {', '.join(keys[:_SHOWN])}{more}")
    if problems:
        raise UserError(f"{file}: does not match the model: {'; '.join(problems)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise UserError(f"{file}: cannot load into the model: {reason}") from exc
    return model


def _state_dict_of(obj: Any, file: Path) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise UserError(
            f"{file}: expected a state dict (a dict of tensors, or one under 'state_dict' or "
            f"'model'), found {type(obj).__name__}"
        )
    return obj


def _reason(exc: Exception) -> str:
    """One line from torch.load's error: the unpickler's own reason when it gives one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler error:"):
            detail = line.removeprefix("WeightsUnpickler error:").strip().split(" was not ")[0]
            return (
                f"{detail} (the file holds Python objects besides tensors; save "
                "model.state_dict() instead)"
            )
    return lines[0] if lines else type(exc).__name__
