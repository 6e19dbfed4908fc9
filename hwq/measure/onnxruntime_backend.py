"""onnxruntime backends: `onnxruntime` (the CPU execution provider), `onnxruntime-cuda` and
`onnxruntime-tensorrt` (the CUDA and TensorRT providers, where the installed onnxruntime exposes
them and a CUDA GPU is present; otherwise they say so and measure nothing).

Sessions run with `intra_op_num_threads` = `inter_op_num_threads` = the backend's threads
(`--threads`), sequential execution, all graph optimizations. Pairs: `32x32` (fp32), `8x8`
(int8: in QDQ form with the output requantized, which onnxruntime fuses into QLinearConv /
QGemm; with `int8_form` `runtime` as onnxruntime's quantize_static writes a network, weights s8;
with `hwq` as hwq's export writes an int8 layer on a measured device, u8 x u8, exact on every
CPU, `hwq.export.onnx_integer`) and `4x32`
(MatMulNBits, linear layers only); `hwq.measure.single_layer` builds them. On x86 CPUs the
`runtime` form's int8 activations are uint8: onnxruntime's integer GEMM (MLAS) multiplies u8
activations by s8 weights there (`vpmaddubsw` on AVX2, `vpdpbusd` with VNNI); elsewhere int8.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwq.measure.backend import BackendOptions, register_backend
from hwq.measure.shapes import LayerShape
from hwq.measure.single_layer import SUPPORTED, build_model, example_feeds

PROVIDERS = {
    "onnxruntime": "CPUExecutionProvider",
    "onnxruntime-cuda": "CUDAExecutionProvider",
    "onnxruntime-tensorrt": "TensorrtExecutionProvider",
}


def activation_type() -> str:
    """uint8 on x86 (u8 x s8 integer GEMM), int8 elsewhere."""
    return "uint8" if platform.machine().lower() in ("x86_64", "amd64", "i686") else "int8"


class OnnxRuntimeBackend:
    """One onnxruntime execution provider (see the module doc)."""

    def __init__(self, name: str, options: BackendOptions) -> None:
        self.name = name
        self.threads = options.threads
        self.int8_form = options.int8_form
        self.provider = PROVIDERS[name]
        self.activation = activation_type()

    def unavailable(self) -> str | None:
        try:
            import onnx  # noqa: F401
            import onnxruntime as ort
        except ImportError as exc:
            return (f"needs onnxruntime and onnx ({exc.name} is not installed): "
                    "pip install 'hwq[measure]'")
        if self.provider not in ort.get_available_providers():
            return (f"this onnxruntime ({ort.__version__}) has no {self.provider} "
                    f"(available: {', '.join(ort.get_available_providers())})"
                    + ("" if self.provider == "CPUExecutionProvider"
                       else "; it needs onnxruntime-gpu and a CUDA GPU"))
        if self.provider != "CPUExecutionProvider" and not _cuda_device():
            return f"{self.provider} is installed but no CUDA GPU is visible"
        return None

    def why_not(self, op: str, pair: tuple[int, int]) -> str | None:
        runs = SUPPORTED.get(op)
        if runs is None:
            return f"{self.name} measures no {op} layers (it measures {', '.join(SUPPORTED)})"
        if pair not in runs:
            return (f"{self.name} has no {op} kernel at W{pair[0]}A{pair[1]} (it runs "
                    f"{', '.join(f'{w}x{a}' for w, a in runs)})")
        return None

    def session(self, model: Any) -> Any:
        """An inference session of an onnx ModelProto or a file path."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = self.threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        source = str(model) if isinstance(model, str | Path) else model.SerializeToString()
        return ort.InferenceSession(source, opts, providers=[self.provider])

    def layer_runner(self, shape: LayerShape, pair: tuple[int, int],
                     int8_form: str | None = None) -> Callable[[], object]:
        sess = self.session(build_model(shape, pair, self.activation,
                                        int8_form or self.int8_form))
        feeds = example_feeds(shape, [i.name for i in sess.get_inputs()])
        return lambda: sess.run(None, feeds)

    def empty_runner(self) -> Callable[[], object]:
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["out"])], "empty",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
        model.ir_version = 10
        sess = self.session(model)
        feeds = {"x": np.zeros(1, np.float32)}
        return lambda: sess.run(None, feeds)

    def network_runner(self, model_file: Path,
                       inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        sess = self.session(model_file)
        feeds = dict(inputs)
        return lambda: sess.run(None, feeds)

    def describe(self) -> dict[str, str]:
        import onnxruntime as ort

        return {
            "runtime": f"onnxruntime {ort.__version__} ({self.provider})",
            "threads": str(self.threads),
            "session": ("intra_op_num_threads = inter_op_num_threads = threads, sequential "
                        "execution, all graph optimizations"),
            "int8": (f"QDQ, weights s8 per output channel, activations "
                     f"{'u8' if self.activation == 'uint8' else 's8'} per tensor, the output "
                     "requantized (as onnxruntime's quantize_static writes it: QLinearConv)"
                     if self.int8_form == "runtime" else
                     "QDQ, u8 activations x u8 weights (zero point 128) per output channel, the "
                     "output requantized (as hwq export --format onnx writes an int8 layer on "
                     "a measured device: QLinearConv u8 x u8)"),
        }


def _cuda_device() -> bool:
    import ctypes

    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        count = ctypes.c_int(0)
        return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 \
            and count.value > 0
    return False


for _name in PROVIDERS:
    register_backend(_name, lambda options, _n=_name: OnnxRuntimeBackend(_n, options))
