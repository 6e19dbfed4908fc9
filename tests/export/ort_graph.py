"""The graph onnxruntime runs: what the export tests check an exported file becomes."""

from __future__ import annotations

from pathlib import Path

import onnx


def optimized_ops(path: str | Path, tmp_path: Path) -> set[str]:
    """The op types of the graph onnxruntime runs (all optimizations, its saved graph)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
