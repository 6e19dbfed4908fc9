"""Single-layer ONNX models of one LayerShape at one bit pair, built with `onnx.helper`.

* `32x32`: the layer in fp32 (Conv with pads/strides/group; a linear layer as Gemm on a
  [batch, C] input or MatMul on [batch, tokens, C]; a matmul as MatMul of [batch, groups, M, K]
  by [batch, groups, K, N]).
* `8x8`: the same layer in QDQ form, as onnxruntime's own quantizer writes it: the input
  passes QuantizeLinear -> DequantizeLinear (per tensor, `activation` u8 or s8), the weights are
  int8 initializers with per-output-channel scales (DequantizeLinear, zero points 0), and the
  output passes QuantizeLinear -> DequantizeLinear, so onnxruntime fuses the layer into its
  integer kernel (QLinearConv, QLinearMatMul / QGemm). A matmul quantizes both operands. With
  `int8_form="hwq"` the layer is built as `hwq export --format onnx` writes an int8 layer for a
  device that requantizes int8 outputs (`hwq.quant.output_quant`): the same form with u8
  activations and u8 weights (the integers + 128, zero point 128), which onnxruntime fuses into
  QLinearConv / QGemm u8 x u8 — exact on every CPU, where its u8 x s8 kernels add pairs of
  products in int16 with saturation on AVX2 CPUs without VNNI (`hwq.export.onnx_integer`).
* `4x32`: a linear layer as `MatMulNBits` (com.microsoft): 4-bit weights in blocks of
  `INT4_BLOCK` along K with fp32 scales, fp32 activations.

Weights and inputs are seeded random values: a layer's time does not depend on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwq.errors import UserError
from hwq.measure.backend import DEFAULT_INT8_FORM, INT8_FORMS
from hwq.measure.shapes import LayerShape

OPSET = 21
INT4_BLOCK = 32
SUPPORTED: dict[str, tuple[tuple[int, int], ...]] = {
    "conv": ((32, 32), (8, 8)),
    "linear": ((32, 32), (8, 8), (4, 32)),
    "matmul": ((32, 32), (8, 8)),
}
SEED = 0


def input_shapes(shape: LayerShape) -> list[list[int]]:
    """The float inputs of the layer's model (one; a matmul's two operands)."""
    b = shape.batch
    if shape.op == "conv":
        return [[b, shape.in_channels, shape.in_h, shape.in_w]]
    if shape.op == "linear":
        return [[b, shape.in_channels]] if shape.in_h <= 1 else [[b, shape.in_h,
                                                                  shape.in_channels]]
    if shape.op == "matmul":
        return [[b, shape.groups, shape.in_h, shape.in_channels],
                [b, shape.groups, shape.in_channels, shape.out_channels]]
    raise UserError(f"no single-layer model for op {shape.op}")


def output_shape(shape: LayerShape) -> list[int]:
    b = shape.batch
    if shape.op == "conv":
        oh = (shape.in_h + 2 * shape.pad_h - shape.kernel_h) // shape.stride_h + 1
        ow = (shape.in_w + 2 * shape.pad_w - shape.kernel_w) // shape.stride_w + 1
        return [b, shape.out_channels, oh, ow]
    if shape.op == "linear":
        return [b, shape.out_channels] if shape.in_h <= 1 else [b, shape.in_h, shape.out_channels]
    return [b, shape.groups, shape.in_h, shape.out_channels]


def example_feeds(shape: LayerShape, names: list[str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    return {n: rng.standard_normal(s).astype(np.float32)
            for n, s in zip(names, input_shapes(shape))}


def build_model(shape: LayerShape, pair: tuple[int, int], activation: str = "uint8",
                int8_form: str = DEFAULT_INT8_FORM) -> Any:
    """The onnx ModelProto of `shape` at `pair` (a pair outside SUPPORTED is a UserError)."""
    if pair not in SUPPORTED.get(shape.op, ()):
        raise UserError(f"{shape.label()}: no single-layer model at W{pair[0]}A{pair[1]}")
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(SEED)
    nodes: list[Any] = []
    inits: list[Any] = []
    ins = ["x"] if shape.op != "matmul" else ["x", "y"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
              for n, s in zip(ins, input_shapes(shape))]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, output_shape(shape))
    quant = pair == (8, 8)
    if int8_form not in INT8_FORMS:
        raise UserError(f"int8 form: expected one of {', '.join(INT8_FORMS)}, found "
                        f"{int8_form!r}")
    if int8_form == "hwq":
        activation = "uint8"
    u8_weights = int8_form == "hwq"
    layer_in = list(ins)
    if quant:
        layer_in = [_qdq(nodes, inits, n, activation) for n in ins]
    layer_out = "layer_out" if quant else "out"
    domains = [helper.make_opsetid("", OPSET)]
    if shape.op == "conv":
        w = _weights(rng, [shape.out_channels, shape.in_channels // shape.groups,
                           shape.kernel_h, shape.kernel_w])
        wname = _weight_input(inits, nodes, w, quant, axis=0, u8=u8_weights)
        nodes.append(helper.make_node(
            "Conv", [layer_in[0], wname], [layer_out], group=shape.groups,
            kernel_shape=[shape.kernel_h, shape.kernel_w],
            strides=[shape.stride_h, shape.stride_w],
            pads=[shape.pad_h, shape.pad_w, shape.pad_h, shape.pad_w]))
    elif shape.op == "linear" and pair == (4, 32):
        domains.append(helper.make_opsetid("com.microsoft", 1))
        _matmul_nbits(nodes, inits, rng, shape, layer_in[0], layer_out)
    elif shape.op == "linear" and shape.in_h <= 1:
        w = _weights(rng, [shape.out_channels, shape.in_channels])
        wname = _weight_input(inits, nodes, w, quant, axis=0, u8=u8_weights)
        nodes.append(helper.make_node("Gemm", [layer_in[0], wname], [layer_out], transB=1))
    elif shape.op == "linear":
        w = _weights(rng, [shape.in_channels, shape.out_channels])
        wname = _weight_input(inits, nodes, w, quant, axis=1, u8=u8_weights)
        nodes.append(helper.make_node("MatMul", [layer_in[0], wname], [layer_out]))
    else:  # matmul of two activations
        nodes.append(helper.make_node("MatMul", layer_in, [layer_out]))
    if quant:
        nodes.append(_q(inits, layer_out, "out_q", "out", activation, nodes))
    graph = helper.make_graph(nodes, f"{shape.op}_w{pair[0]}a{pair[1]}", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=domains, producer_name="hwq measure")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def _weights(rng: np.random.Generator, dims: list[int]) -> np.ndarray:
    return (rng.standard_normal(dims) * 0.05).astype(np.float32)


def _weight_input(inits: list[Any], nodes: list[Any], w: np.ndarray, quant: bool,
                  axis: int, u8: bool = False) -> str:
    """A float weight initializer, or int8 per-channel weights behind DequantizeLinear (`u8`:
    shifted by 128 into uint8, zero point 128, as hwq's export stores them)."""
    from onnx import helper, numpy_helper

    if not quant:
        inits.append(numpy_helper.from_array(w, "w"))
        return "w"
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    scale = (np.abs(w).max(axis=reduce_axes) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    shape = [1] * w.ndim
    shape[axis] = -1
    wq = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    zp = np.zeros(len(scale), np.int8)
    if u8:
        wq, zp = (wq.astype(np.int32) + 128).astype(np.uint8), np.full(len(scale), 128, np.uint8)
    inits += [numpy_helper.from_array(wq, "w_q"), numpy_helper.from_array(scale, "w_scale"),
              numpy_helper.from_array(zp, "w_zero_point")]
    nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero_point"], ["w"],
                                  axis=axis))
    return "w"


def _zero_point(activation: str) -> np.ndarray:
    if activation == "uint8":
        return np.array(128, np.uint8)
    if activation == "int8":
        return np.array(0, np.int8)
    raise UserError(f"activation type: expected uint8 or int8, found {activation!r}")


def _q(inits: list[Any], src: str, mid: str, dst: str, activation: str,
       nodes: list[Any]) -> Any:
    """QuantizeLinear src -> mid (appended to nodes); returns DequantizeLinear mid -> dst."""
    from onnx import helper, numpy_helper

    inits += [numpy_helper.from_array(np.array(8.0 / 255, np.float32), f"{src}_scale"),
              numpy_helper.from_array(_zero_point(activation), f"{src}_zero_point")]
    nodes.append(helper.make_node("QuantizeLinear", [src, f"{src}_scale", f"{src}_zero_point"],
                                  [mid]))
    return helper.make_node("DequantizeLinear", [mid, f"{src}_scale", f"{src}_zero_point"], [dst])


def _qdq(nodes: list[Any], inits: list[Any], name: str, activation: str) -> str:
    nodes.append(_q(inits, name, f"{name}_q", f"{name}_dq", activation, nodes))
    return f"{name}_dq"


def _matmul_nbits(nodes: list[Any], inits: list[Any], rng: np.random.Generator,
                  shape: LayerShape, src: str, dst: str) -> None:
    """MatMulNBits: B uint8 [N, K/block, block/2] (two 4-bit values a byte), scales [N, blocks]."""
    from onnx import helper, numpy_helper

    k, n = shape.in_channels, shape.out_channels
    blocks = -(-k // INT4_BLOCK)
    packed = rng.integers(0, 256, size=(n, blocks, INT4_BLOCK // 2), dtype=np.uint8)
    scales = np.full((n, blocks), 0.01, np.float32)
    inits += [numpy_helper.from_array(packed, "w_q4"),
              numpy_helper.from_array(scales.reshape(-1), "w_scale")]
    nodes.append(helper.make_node("MatMulNBits", [src, "w_q4", "w_scale"], [dst],
                                  domain="com.microsoft", K=k, N=n, bits=4,
                                  block_size=INT4_BLOCK))
