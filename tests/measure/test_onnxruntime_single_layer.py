"""Real onnxruntime single-layer models: conv (groups, stride, padding, batch) and linear
([B, C] and [B, T, C]) and matmul rows build, load and run at every pair the CPU backend runs;
fp32 outputs match torch on the model's own weights (no timing asserted)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import torch  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from hwq.measure.backend import get_backend  # noqa: E402
from hwq.measure.shapes import LayerShape  # noqa: E402
from hwq.measure.single_layer import build_model, example_feeds, output_shape  # noqa: E402

CONV = LayerShape("conv", 8, 12, 9, 9, 3, 3, 2, 2, 4, 2, 1, 1)  # grouped, strided, padded, b2
LINEAR = LayerShape("linear", 64, 24, 1, 1, 1, 1, 1, 1, 1, 3)
TOKENS = LayerShape("linear", 64, 24, 5, 1, 1, 1, 1, 1, 1, 2)  # [B, T, C]
MATMUL = LayerShape("matmul", 16, 8, 4, 1, 1, 1, 1, 1, 3, 2)  # 2 x 3 products of 4x16 @ 16x8


def _run(shape, pair):
    backend = get_backend("onnxruntime")
    model = build_model(shape, pair, backend.activation)
    sess = backend.session(model)
    feeds = example_feeds(shape, [i.name for i in sess.get_inputs()])
    return model, feeds, sess.run(None, feeds)[0]


def test_fp32_conv_matches_torch():
    model, feeds, out = _run(CONV, (32, 32))
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w"))
    ref = torch.nn.functional.conv2d(torch.from_numpy(feeds["x"]), torch.from_numpy(w.copy()),
                                     stride=2, padding=1, groups=4).numpy()
    assert list(out.shape) == output_shape(CONV) == [2, 12, 5, 5]
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("shape", [LINEAR, TOKENS])
def test_fp32_linear_matches_torch(shape):
    model, feeds, out = _run(shape, (32, 32))
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w"))
    w = w if shape.in_h <= 1 else w.T  # Gemm(transB) holds [N, K]; MatMul [K, N]
    ref = torch.nn.functional.linear(torch.from_numpy(feeds["x"]),
                                     torch.from_numpy(w.copy())).numpy()
    assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("shape,pair", [(CONV, (8, 8)), (LINEAR, (8, 8)), (TOKENS, (8, 8)),
                                        (LINEAR, (4, 32)), (TOKENS, (4, 32)),
                                        (MATMUL, (32, 32)), (MATMUL, (8, 8))])
def test_quantized_layers_run(shape, pair):
    model, _feeds, out = _run(shape, pair)
    assert list(out.shape) == output_shape(shape)
    assert np.isfinite(out).all()
    ops = {n.op_type for n in model.graph.node}
    if pair == (8, 8):
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    if pair == (4, 32):
        assert "MatMulNBits" in ops


def test_unsupported_pairs_are_named():
    backend = get_backend("onnxruntime")
    assert backend.why_not("conv", (4, 32)) == (
        "onnxruntime has no conv kernel at W4A32 (it runs 32x32, 8x8)")
    assert "measures no embedding layers" in backend.why_not("embedding", (32, 32))
    assert backend.why_not("linear", (4, 32)) is None


def test_gpu_providers_skip_cleanly_without_a_gpu():
    import onnxruntime as ort

    from hwq.errors import UserError

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(UserError, match="has no CUDAExecutionProvider"):
        get_backend("onnxruntime-cuda")
    with pytest.raises(UserError, match="has no TensorrtExecutionProvider"):
        get_backend("onnxruntime-tensorrt")


@pytest.mark.parametrize("shape", [CONV, LINEAR, TOKENS, MATMUL])
def test_hwq_int8_form_is_the_exports_requantized_form(shape):
    """`--int8-form hwq`: the layer as hwq's export writes an int8 layer on a measured device:
    the runtime form's QDQ pattern (input and output requantized) with u8 activations and u8
    weights (zero point 128); onnxruntime fuses it into its integer kernel, no ConvInteger."""
    runtime = build_model(shape, (8, 8), int8_form="runtime")
    hwq = build_model(shape, (8, 8), int8_form="hwq")
    ops = lambda m: [n.op_type for n in m.graph.node]  # noqa: E731
    assert ops(hwq) == ops(runtime) and "ConvInteger" not in ops(hwq)
    inputs = 2 if shape.op == "matmul" else 1
    assert ops(hwq).count("QuantizeLinear") == inputs + 1
    if shape.op != "matmul":
        assert {t.data_type for t in hwq.graph.initializer if t.name == "w_q"} == {2}  # UINT8
        assert {t.data_type for t in runtime.graph.initializer if t.name == "w_q"} == {3}
    backend = get_backend("onnxruntime", int8_form="hwq")
    sess = backend.session(hwq)
    out = sess.run(None, example_feeds(shape, [i.name for i in sess.get_inputs()]))[0]
    assert list(out.shape) == output_shape(shape) and np.isfinite(out).all()
