"""Numba cost models, installed as `hwq.cost_models` (one module per device kind)."""
