"""The `onnx` writer: the fake-quant model of a policy as an ONNX graph in QDQ form.

* `onnx` — the fake-quant PyTorch model of the policy (the run's trained model, `apply_policy`
  without batch-norm folding and calibrated on the same batches as the search's PTQ accuracy) as
  an ONNX graph in QDQ form:

  - every quantized weight is an integer initializer (`<layer>.weight_quantized`) holding the
    exact integers of the fake-quantizer (per output channel, symmetric, narrow range
    [-(2^(b-1)-1), 2^(b-1)-1]; ±1 at 1 bit), followed by `DequantizeLinear` with the per-channel
    scales (`axis=0`) and zero points 0;
  - every quantized activation (the input of a conv/linear layer, per tensor, 2^b levels with an
    integer zero point) passes `QuantizeLinear` -> `DequantizeLinear` with the calibrated scale and
    zero point; each consuming layer gets its own pair (two layers reading one tensor may use
    different bits);
  - containers: ONNX has 4-bit types from opset 21 (`INT4`/`UINT4`) but no 1-3, 5-7-bit types.
    With opset >= 21 (the default), 1-4-bit values use INT4 (weights) / UINT4 (activations) and
    5-8-bit values INT8 / UINT8; below opset 21, everything uses INT8 / UINT8. The integers stored
    never leave the policy's b-bit range: weights are stored as such, and an activation whose b-bit
    range is narrower than its container's gets a `Clip` to the representable interval
    [(0 - zp) * s, (2^b - 1 - zp) * s] before `QuantizeLinear`, so the saturation is that of b bits.
  - layers at 16 or 32 bits stay float.

  The graph loads in onnxruntime; its logits match the fake-quant model's (the tests state the max
  abs difference on the digits test split).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from typing import Any

import numpy as np

from hwq.errors import UserError
from hwq.export.model import layer_qparams
from hwq.export.onnx_integer import (
    DEFAULT_FORM,
    FORMS,
    drop_unread_initializers,
    integer_layers,
    is_integer_layer,
)

DEFAULT_OPSET = 21


def _float_twin(qmodel: Any) -> Any:
    """A float copy of the fake-quant model whose weights are the fake-quantized weights and
    whose layers are plain Conv/Linear again (what the ONNX exporter sees)."""
    import copy

    import torch

    from hwq.quant.apply import quant_layers
    from hwq.quant.output_quant import strip_output_quantizers

    twin = copy.deepcopy(qmodel)
    strip_output_quantizers(twin)  # written by the integer pass from the layers' parameters
    with torch.no_grad():
        for _name, layer in quant_layers(twin).items():
            if layer.weight_quant.active:
                layer.weight.copy_(layer.weight_quant(layer.weight).detach())
            del layer.weight_quant
            del layer.act_quant
            layer.__class__ = type(layer).__bases__[0]
    return twin.eval()


def _container(bits: int, signed: bool, opset: int) -> tuple[int, str]:
    from onnx import TensorProto

    if bits <= 4 and opset >= 21:
        return (TensorProto.INT4, "int4") if signed else (TensorProto.UINT4, "uint4")
    return (TensorProto.INT8, "int8") if signed else (TensorProto.UINT8, "uint8")


def export_onnx_model(
    qmodel: Any,
    example_input: Any,
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    form: str = DEFAULT_FORM,
) -> dict[str, Any]:
    """Write the calibrated fake-quant model `qmodel` as an ONNX graph (see the module doc) in
    `form` `integer` (layers with quantized weights and inputs as integer kernels,
    `hwq.export.onnx_integer`) or `qdq`; returns a description (QDQ pairs, containers, the
    number of layers of each integer form, the requantized layers)."""
    import io

    import onnx
    import torch
    from onnx import helper, numpy_helper

    from hwq.quant.apply import quant_layers
    from hwq.quant.output_quant import output_qparams, output_quantizers

    if form not in FORMS:
        raise UserError(f"ONNX form: expected one of {', '.join(FORMS)}, found {form!r}")
    if opset < 13:
        raise UserError(f"--opset: per-channel QDQ needs opset 13 or later, found {opset}")
    layers = quant_layers(qmodel)
    params = {name: layer_qparams(layer) for name, layer in layers.items()}
    outputs = {n: output_qparams(q) for n, q in output_quantizers(qmodel).items()}
    if any(outputs.values()) and form != "integer":
        raise UserError("ONNX export: the model requantizes int8 outputs (its device runs "
                        "integer kernels): only the integer form writes them")
    for name, out_params in outputs.items():
        params[name].update(out_params)
    twin = _float_twin(qmodel)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            twin,
            (example_input,),
            buf,
            dynamo=False,
            do_constant_folding=False,  # keeps batch norms apart from the convolutions
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    model = onnx.load_from_string(buf.getvalue())
    graph = model.graph
    identity_src = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}

    def source(name: str) -> str:
        seen = 0
        while name in identity_src and seen < 100:
            name, seen = identity_src[name], seen + 1
        return name

    weight_of = {f"{n}.weight": n for n in layers}
    new_nodes: list[Any] = []
    done: set[str] = set()
    counts: Counter[str] = Counter()
    layer_of_node: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) >= 2:
            wname = source(node.input[1])
            lname = weight_of.get(wname)
            if lname is None:
                raise UserError(
                    f"ONNX export: cannot match the weight of node {node.name} ({wname}) to a "
                    "quantized layer (only Conv and Linear layers with 2-d inputs are supported)"
                )
            if node.op_type == "Gemm":
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                if not trans_b:
                    raise UserError(f"ONNX export: {node.name}: Gemm without transB")
            if node.op_type == "MatMul":
                raise UserError(f"ONNX export: layer {lname}: linear layers on >2-d inputs")
            p = params[lname]
            layer_of_node[node.name] = lname
            # integer kernels take 8-bit containers only
            cont_opset = 0 if form == "integer" and is_integer_layer(p) else graph_opset(model)
            # activation: [Clip] -> QuantizeLinear -> DequantizeLinear on this layer's input
            if "act_scale" in p:
                a, qmax = p["a_bits"], p["act_qmax"]
                dtype, tname = _container(a, False, cont_opset)
                s, zp = np.float32(p["act_scale"]), p["act_zero_point"]
                x = node.input[0]
                pre = f"{lname}.input"
                graph.initializer.extend(
                    [
                        numpy_helper.from_array(np.array(s, np.float32), f"{pre}_scale"),
                        helper.make_tensor(f"{pre}_zero_point", dtype, [], [int(zp)]),
                    ]
                )
                cont_max = 15 if tname == "uint4" else 255
                if qmax < cont_max:
                    lo = np.float32((0 - zp) * s)
                    hi = np.float32((qmax - zp) * s)
                    graph.initializer.extend(
                        [
                            numpy_helper.from_array(np.array(lo, np.float32), f"{pre}_clip_min"),
                            numpy_helper.from_array(np.array(hi, np.float32), f"{pre}_clip_max"),
                        ]
                    )
                    # Max/Min rather than Clip: onnxruntime's Clip+QuantizeLinear fusion
                    # rejects 4-bit zero points (and would drop a Clip it deems redundant)
                    new_nodes.append(
                        helper.make_node(
                            "Max",
                            [x, f"{pre}_clip_min"],
                            [f"{pre}_clipped_low"],
                            name=f"/{lname}/input_clip_low",
                        )
                    )
                    new_nodes.append(
                        helper.make_node(
                            "Min",
                            [f"{pre}_clipped_low", f"{pre}_clip_max"],
                            [f"{pre}_clipped"],
                            name=f"/{lname}/input_clip_high",
                        )
                    )
                    x = f"{pre}_clipped"
                new_nodes.append(
                    helper.make_node(
                        "QuantizeLinear",
                        [x, f"{pre}_scale", f"{pre}_zero_point"],
                        [f"{pre}_quantized"],
                        name=f"/{lname}/input_quantize",
                    )
                )
                new_nodes.append(
                    helper.make_node(
                        "DequantizeLinear",
                        [f"{pre}_quantized", f"{pre}_scale", f"{pre}_zero_point"],
                        [f"{pre}_dequantized"],
                        name=f"/{lname}/input_dequantize",
                    )
                )
                node.input[0] = f"{pre}_dequantized"
                counts[f"activation {tname}"] += 1
            if "weight_scale" in p and lname not in done:
                wint = p["weight_int"].numpy().astype(np.int32)
                scale = p["weight_scale"].numpy().astype(np.float32)
                dtype, tname = _container(p["w_bits"], True, cont_opset)
                pre = f"{lname}.weight"
                graph.initializer.extend(
                    [
                        helper.make_tensor(
                            f"{pre}_quantized", dtype, list(wint.shape), wint.ravel().tolist()
                        ),
                        numpy_helper.from_array(scale, f"{pre}_scale"),
                        helper.make_tensor(
                            f"{pre}_zero_point", dtype, [len(scale)], [0] * len(scale)
                        ),
                    ]
                )
                new_nodes.append(
                    helper.make_node(
                        "DequantizeLinear",
                        [f"{pre}_quantized", f"{pre}_scale", f"{pre}_zero_point"],
                        [f"{pre}_dequantized"],
                        name=f"/{lname}/weight_dequantize",
                        axis=0,
                    )
                )
                done.add(lname)
                counts[f"weight {tname}"] += 1
            if "weight_scale" in p:
                node.input[1] = f"{lname}.weight_dequantized"
        new_nodes.append(node)
    missing = sorted(set(layers) - set(weight_of[w] for w in weight_of if weight_of[w] in done))
    missing = [m for m in missing if "weight_scale" in params[m]]
    if missing:
        raise UserError(f"ONNX export: quantized layer(s) not found in the graph: {missing}")
    del graph.node[:]
    graph.node.extend(new_nodes)
    drop_unread_initializers(graph)  # the float weights no node reads any more
    forms = integer_layers(model, layer_of_node, params) if form == "integer" else {}
    model.producer_name = "hwq"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out))
    return {
        "opset": graph_opset(model),
        "qdq": dict(sorted(counts.items())),
        "nodes": len(graph.node),
        "form": form,
        "integer_layers": {k: len(v) for k, v in forms.items()},
        "requantized_layers": list(forms.get("requantized", [])),
    }


def graph_opset(model: Any) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def onnx_logits(path: str | os.PathLike[str], x: Any) -> np.ndarray:
    """Run the exported model with onnxruntime (CPU) on inputs `x` [N, ...]."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    arr = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return sess.run(None, {sess.get_inputs()[0].name: arr.astype(np.float32)})[0]
