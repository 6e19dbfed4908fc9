"""The integer form of hwq's ONNX export: quantized layers as onnxruntime integer kernels.

`hwq.export.onnx_qdq` writes each quantized layer as QuantizeLinear -> DequantizeLinear on its
input, integer weights behind DequantizeLinear and a float Conv/Gemm (the `qdq` form): exactly
the fake-quant model, but onnxruntime cannot fuse that (the output is not requantized) and runs
the layer as a float convolution. `integer_layers` rewrites every layer whose weights AND input
are quantized, a batch norm that reads only its output folded in (per output channel
`g = gamma / sqrt(var + eps)`, `bias' = (bias - mean) * g + beta`), in one of two forms:

* **requantized** (onnxruntime fuses it into `QLinearConv`): where the layer's output reaches,
  through at most one Relu or Clip(0, hi), the 8-bit input quantizer of exactly one other layer
  and nothing else, and its weights are 8-bit: DequantizeLinear(input) -> Conv(DequantizeLinear
  of the integer weights with scales s_w * |g|, DequantizeLinear of the int32 bias at scale
  s_x * s_w * |g|) -> QuantizeLinear with the consumer's scale and zero point. The fake-quant
  model computes the same integers (its Relu / Clip is implied by the quantizer's saturation),
  up to onnxruntime's float32 requantization and the int32 rounding of the bias (at most
  s_x * s_w / (2 s_y) of a level), so an activation within that of a half-way point may land on
  the neighbouring integer.
* **integer** (everywhere else, e.g. a layer whose output meets a residual add):
  QuantizeLinear(x) -> ConvInteger / MatMulInteger (exact int32 accumulation) -> Cast(float) ->
  Mul(s_x * s_w * g per output channel) -> Add(bias'): the fake-quant model's float output up to
  float32 rounding.

Integer types: activations are the fake-quantizer's unsigned integers [0, 2^a - 1] with their
zero point, in UINT8 (below 8 bits the QDQ pass's Max/Min clamp keeps the saturation of a bits);
weights are the signed narrow-range integers shifted by +128 into UINT8 with zero point 128.
u8 x u8 because onnxruntime's u8 x s8 kernels on AVX2 CPUs without VNNI (QLinearConv,
MatMulInteger) add pairs of products in int16 with saturation (`vpmaddubsw`): measured on this
project's machine, extreme 8-bit values come out up to 255 levels off; the u8 x u8 path widens to
16 bits first and is exact on every CPU.

Layers with only weights or only activations quantized keep the QDQ form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

WEIGHT_SHIFT = 128  # signed weight integers + 128 -> uint8, zero point 128
INTEGER_OPS = ("ConvInteger", "MatMulInteger")
FORMS = ("integer", "qdq")
DEFAULT_FORM = "integer"


def is_integer_layer(p: dict[str, Any]) -> bool:
    """Whether a layer's quantization parameters (`layer_qparams`) make an integer layer."""
    return "act_scale" in p and "weight_scale" in p


def integer_layers(model: Any, layer_of_node: dict[str, str],
                   params: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Rewrite, in place, the QDQ graph `model` written by `export_onnx_model`: every node
    named in `layer_of_node` (node name -> layer) whose layer `is_integer_layer` becomes one of
    the two integer forms (module doc). Returns the layers of each form."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts = {}
    for n in graph.node:  # the exporter shares equal tensors through Identity nodes
        if n.op_type == "Identity" and n.input[0] in inits:
            inits[n.output[0]] = inits[n.input[0]]
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = n.attribute[0].t
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    ctx = _Graph(inits, consts, consumers, {o.name for o in graph.output}, params)
    new_nodes: list[Any] = []
    skip: set[str] = set()  # first outputs of the nodes folded into a layer
    forms: dict[str, list[str]] = {"requantized": [], "integer": []}
    for node in graph.node:
        if node.output[0] in skip:
            continue
        lname = layer_of_node.get(node.name)
        if lname is None or not is_integer_layer(params[lname]):
            new_nodes.append(node)
            continue
        layer = _folded_layer(ctx, node, lname)
        skip |= layer.folded
        if layer.requantize is not None:
            new_nodes += _requantized_nodes(graph, node, layer)
            forms["requantized"].append(lname)
        else:
            new_nodes += _integer_nodes(graph, node, layer)
            forms["integer"].append(lname)
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_dead(graph)
    return forms


@dataclass
class _Graph:
    inits: dict[str, Any]
    consts: dict[str, Any]
    consumers: dict[str, list[Any]]
    outputs: set[str]
    params: dict[str, dict[str, Any]]

    def value(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        t = self.inits.get(name, self.consts.get(name))
        return None if t is None else numpy_helper.to_array(t)

    def only_reader(self, name: str) -> Any | None:
        readers = self.consumers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None


@dataclass
class _Layer:
    """One integer layer: its integers, the per-channel scale and bias of its float output
    (batch norm folded), the name that output carries, the nodes folded into it, and where it
    can be requantized exactly (the consumer layer whose input quantizer it feeds)."""

    name: str
    wint: np.ndarray
    s_x: float
    s_w: np.ndarray
    scale: np.ndarray  # s_x * s_w * g
    bias: np.ndarray
    out_name: str
    folded: set[str]
    requantize: str | None = None
    own_output: tuple[float, int] | None = None  # its own output quantizer (scale, zero point)


def _folded_layer(ctx: _Graph, node: Any, lname: str) -> _Layer:
    p = ctx.params[lname]
    wint = p["weight_int"].numpy().astype(np.int32)
    s_w = p["weight_scale"].numpy().astype(np.float64)
    s_x = float(np.float32(p["act_scale"]))
    bias = np.zeros(wint.shape[0], np.float64)
    if len(node.input) > 2 and node.input[2]:
        bias = ctx.value(node.input[2]).astype(np.float64)
    g = np.ones_like(bias)
    out_name, folded = node.output[0], set()
    bn = _only_batch_norm(ctx, out_name)
    if bn is not None:
        gamma, beta, mean, var, eps = bn[1]
        g = gamma / np.sqrt(var + eps)
        bias = (bias - mean) * g + beta
        out_name = bn[0].output[0]
        folded.add(out_name)
    layer = _Layer(lname, wint, s_x, s_w * g, s_x * s_w * g, bias, out_name, folded)
    if "out_scale" in p:  # its own output quantizer (hwq.quant.output_quant)
        layer.own_output = (float(np.float32(p["out_scale"])), int(p["out_zero_point"]))
        layer.requantize = lname
    else:
        _find_requantize(ctx, layer)
    return layer


def _find_requantize(ctx: _Graph, layer: _Layer) -> None:
    """Where the layer's float output reaches, through at most one Relu or Clip(0, hi), the
    8-bit input quantizer of exactly one other layer (and nothing else), a QuantizeLinear with
    that quantizer's scale and zero point on the layer's output gives that layer's input
    integers exactly (the Relu / Clip is implied by the quantizer's saturation): the layer can
    run as onnxruntime's fused QLinearConv."""
    name, folded = layer.out_name, set()
    reader = ctx.only_reader(name)
    act = None
    if reader is not None and reader.op_type in ("Relu", "Clip"):
        act, folded = reader, {reader.output[0]}
        reader = ctx.only_reader(reader.output[0])
    if reader is None or reader.op_type != "QuantizeLinear" or not reader.name.endswith(
            "/input_quantize"):
        return
    consumer = reader.name[1:-len("/input_quantize")]
    p = ctx.params.get(consumer)
    own = ctx.params[layer.name]
    # 8-bit weights only: the int32 bias at scale s_x * s_w moves the requantized value by at
    # most s_x * s_w / (2 s_y) levels, which grows as 2^(8 - w_bits)
    if p is None or "act_scale" not in p or p["act_qmax"] != 255 or own["w_bits"] != 8:
        return
    s, zp = float(np.float32(p["act_scale"])), int(p["act_zero_point"])
    if act is not None:
        if zp != 0:
            return
        if act.op_type == "Clip":
            lo = ctx.value(act.input[1]) if len(act.input) > 1 and act.input[1] else None
            hi = ctx.value(act.input[2]) if len(act.input) > 2 and act.input[2] else None
            # Clip(0, hi) is implied where the quantizer saturates at or below hi: where
            # round(hi / s) >= 255 (round half to even, in QuantizeLinear as in torch)
            if lo is None or float(lo) != 0.0 or hi is None or float(hi) / s <= 254.5:
                return
    layer.folded |= folded | {reader.output[0]}
    layer.requantize = consumer


def _requantized_nodes(graph: Any, node: Any, layer: _Layer) -> list[Any]:
    """DequantizeLinear(input) -> Conv / Gemm(DQ(int8 weights, per channel), DQ(int32 bias)) ->
    QuantizeLinear with the consumer's input quantizer, or with the layer's own output
    quantizer followed by DequantizeLinear into the layer's float output: onnxruntime fuses it
    to QLinearConv / QGemm. The batch norm's per-channel factor g goes into the weight scales
    (|g|, the integers negated where g < 0); the bias is rounded to int32 at scale
    s_x * s_w * |g|."""
    from onnx import TensorProto, helper, numpy_helper

    pre, c = layer.name, layer.requantize
    sign = np.where(layer.s_w < 0, -1, 1)
    wint = layer.wint * sign.reshape(-1, *([1] * (layer.wint.ndim - 1)))
    s_w = np.abs(layer.s_w).astype(np.float32)
    bias_scale = (np.float32(layer.s_x) * s_w).astype(np.float32)
    bias_int = np.round(layer.bias / bias_scale.astype(np.float64)).astype(np.int32)
    graph.initializer.extend([
        numpy_helper.from_array((wint + WEIGHT_SHIFT).astype(np.uint8), f"{pre}.weight_uint8"),
        numpy_helper.from_array(s_w, f"{pre}.weight_scale_folded"),
        numpy_helper.from_array(np.full(len(s_w), WEIGHT_SHIFT, np.uint8),
                                f"{pre}.weight_zero_point_uint8"),
        numpy_helper.from_array(bias_int, f"{pre}.bias_int32"),
        numpy_helper.from_array(bias_scale, f"{pre}.bias_scale"),
        helper.make_tensor(f"{pre}.bias_zero_point", TensorProto.INT32, [len(s_w)],
                           [0] * len(s_w)),
    ])
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    nodes = [
        helper.make_node("DequantizeLinear", [f"{pre}.weight_uint8", f"{pre}.weight_scale_folded",
                                              f"{pre}.weight_zero_point_uint8"],
                         [f"{pre}.weight_folded"], axis=0, name=f"/{pre}/weight_dequantize"),
        helper.make_node("DequantizeLinear", [f"{pre}.bias_int32", f"{pre}.bias_scale",
                                              f"{pre}.bias_zero_point"],
                         [f"{pre}.bias_folded"], axis=0, name=f"/{pre}/bias_dequantize"),
        helper.make_node(node.op_type, [f"{pre}.input_dequantized", f"{pre}.weight_folded",
                                        f"{pre}.bias_folded"], [f"{pre}.output"],
                         name=f"/{pre}/{node.op_type}", **attrs),
    ]
    if layer.own_output is None:
        return nodes + [
            helper.make_node("QuantizeLinear", [f"{pre}.output", f"{c}.input_scale",
                                                f"{c}.input_zero_point"],
                             [f"{c}.input_quantized"], name=f"/{pre}/output_quantize")]
    scale, zp = layer.own_output
    graph.initializer.extend([
        numpy_helper.from_array(np.array(scale, np.float32), f"{pre}.output_requant_scale"),
        helper.make_tensor(f"{pre}.output_requant_zero_point", TensorProto.UINT8, [], [zp]),
    ])
    q_in = [f"{pre}.output_requant_scale", f"{pre}.output_requant_zero_point"]
    return nodes + [
        helper.make_node("QuantizeLinear", [f"{pre}.output", *q_in],
                         [f"{pre}.output_quantized"], name=f"/{pre}/output_quantize"),
        helper.make_node("DequantizeLinear", [f"{pre}.output_quantized", *q_in],
                         [layer.out_name], name=f"/{pre}/output_dequantize"),
    ]


def _integer_nodes(graph: Any, node: Any, layer: _Layer) -> list[Any]:
    """ConvInteger / MatMulInteger (u8 x u8, exact int32) -> Cast -> Mul -> Add."""
    from onnx import helper, numpy_helper

    pre, wint = layer.name, layer.wint
    x_q, x_zp = f"{pre}.input_quantized", f"{pre}.input_zero_point"
    w_name, w_zp = f"{pre}.weight_uint8", f"{pre}.weight_zero_point_uint8"
    if node.op_type == "Conv":
        w = (wint + WEIGHT_SHIFT).astype(np.uint8)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = helper.make_node("ConvInteger", [x_q, w_name, x_zp, w_zp], [f"{pre}.accumulator"],
                              name=f"/{pre}/ConvInteger", **attrs)
        shape = [1, len(layer.scale)] + [1] * (wint.ndim - 2)
    else:  # Gemm with transB (checked by the QDQ pass): x [N, K] @ w.T [K, M]
        w = (wint.T + WEIGHT_SHIFT).astype(np.uint8)
        op = helper.make_node("MatMulInteger", [x_q, w_name, x_zp, w_zp],
                              [f"{pre}.accumulator"], name=f"/{pre}/MatMulInteger")
        shape = [len(layer.scale)]
    graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(w), w_name),
        numpy_helper.from_array(np.array(WEIGHT_SHIFT, np.uint8), w_zp),
        numpy_helper.from_array(layer.scale.astype(np.float32).reshape(shape),
                                f"{pre}.output_scale"),
        numpy_helper.from_array(layer.bias.astype(np.float32).reshape(shape),
                                f"{pre}.output_bias"),
    ])
    return [
        op,
        helper.make_node("Cast", [f"{pre}.accumulator"], [f"{pre}.accumulator_float"], to=1,
                         name=f"/{pre}/Cast"),
        helper.make_node("Mul", [f"{pre}.accumulator_float", f"{pre}.output_scale"],
                         [f"{pre}.output_scaled"], name=f"/{pre}/Scale"),
        helper.make_node("Add", [f"{pre}.output_scaled", f"{pre}.output_bias"],
                         [layer.out_name], name=f"/{pre}/Bias"),
    ]


def _only_batch_norm(ctx: _Graph, name: str) -> tuple[Any, tuple[Any, ...]] | None:
    """(the BatchNormalization node, (gamma, beta, mean, var, eps)) where it is the only reader
    of `name` (not a graph output) and its parameters are constants; else None."""
    from onnx import helper

    bn = ctx.only_reader(name)
    if bn is None or bn.op_type != "BatchNormalization":
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
    if attrs.get("training_mode", 0) or len(bn.output) != 1 or bn.input[0] != name:
        return None
    vals = [ctx.value(i) for i in bn.input[1:5]]
    if any(v is None for v in vals):
        return None
    gamma, beta, mean, var = (v.astype(np.float64) for v in vals)
    return bn, (gamma, beta, mean, var, float(attrs.get("epsilon", 1e-5)))


def _drop_dead(graph: Any) -> None:
    """Remove nodes whose outputs nothing reads (repeatedly) and unread initializers."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        live = [n for n in graph.node if any(o in used for o in n.output)]
        if len(live) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(live)
    drop_unread_initializers(graph)


def drop_unread_initializers(graph: Any) -> None:
    """Remove the initializers that no node reads."""
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
