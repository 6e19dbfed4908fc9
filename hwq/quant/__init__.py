"""Fake quantization, task quality and verification (issue: fake-quant)."""
