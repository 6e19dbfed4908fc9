"""Parsing of the CLI's units and bit pairs (DESIGN.md §7)."""

from __future__ import annotations

import re

from hwq.errors import UserError
from hwq.policy import check_bits

SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
ENERGY_UNITS = {"J": 1e12, "mJ": 1e9, "uJ": 1e6, "nJ": 1e3, "pJ": 1.0}  # -> pJ

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def parse_pair(text: str, where: str = "--bits") -> tuple[int, int]:
    """`4,8` or `4x8` -> (w_bits, a_bits), weights first."""
    parts = re.split(r"[,xX]", text.strip())
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"{where}: expected W,A or WxA (weights first), found {text!r}")
    return check_bits(int(parts[0]), f"{where} {text}"), check_bits(
        int(parts[1]), f"{where} {text}"
    )


def parse_pairs(text: str, where: str = "--bits") -> list[tuple[int, int]]:
    """`8x8,4x8` (a list of WxA) or `4,8` (one pair) -> pairs, duplicates removed, order kept."""
    text = text.strip()
    if "x" in text.lower():
        pairs = [parse_pair(p, where) for p in text.split(",") if p.strip()]
    else:
        pairs = [parse_pair(text, where)]
    if not pairs:
        raise UserError(f"{where}: expected at least one WxA pair, found {text!r}")
    return list(dict.fromkeys(pairs))


def _parse(text: str, units: dict[str, float], what: str) -> float:
    m = re.fullmatch(rf"\s*{_NUMBER}\s*([A-Za-z]*)\s*", text)
    if not m or (m.group(2) and m.group(2) not in units):
        raise UserError(
            f"expected a {what} such as 2{next(iter(units))} (units: {', '.join(units)}), "
            f"found {text!r}"
        )
    return float(m.group(1)) * units.get(m.group(2) or next(iter(units)), 1.0)


def parse_size_bytes(text: str) -> float:
    return _parse(text, SIZE_UNITS, "size")


def parse_time_s(text: str) -> float:
    return _parse(text, TIME_UNITS, "time")


def parse_energy_pj(text: str) -> float:
    return _parse(text, {"pJ": 1.0, **ENERGY_UNITS}, "energy")
