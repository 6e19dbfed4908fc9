"""Handing a policy off (`hwq export RUN_DIR --policy ID --format json|onnx|torch -o FILE`).

* `json` — the portable policy (DESIGN.md §9): the most common weight and activation bits as the
  `default`, only the layers that differ under `layers`, plus `device`, `graph_hash` and the
  `predicted` costs (and quality) the run logged for it. `hwq cost --policy FILE` re-prices it.
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
* `torch` — `torch.save` of a dict: `format`, `model`, `model_args`, `policy` (the JSON), `layers`,
  `state_dict` (the quantized model's: float weights, batch norms, activation scales/zero points)
  and `quant` (per layer: `w_bits, a_bits, weight_scale [C], weight_int` (int8, the integer
  weights), `act_scale, act_zero_point, act_signed, act_qmax`). `load_torch_export(path)` rebuilds
  the fake-quant model from it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from hwq.errors import UserError
from hwq.policy import Policy
from hwq.runs import Run

FORMATS = ("json", "onnx", "torch")
DEFAULT_OPSET = 21
CALIB_BATCHES = 4  # the search's PTQ accuracy calibrates on 4 batches (hwq.quant.quality)


# -- the policy ------------------------------------------------------------------------------------
def run_policy(run: Run, policy_id: str) -> Policy:
    """The policy `policy_id` of the run, with device, graph hash and predicted values filled in
    from the run when its file lacks them."""
    pol = run.policy(policy_id)
    meta = run.meta
    if pol.device is None:
        pol.device = meta.get("device")
    if pol.graph_hash is None:
        pol.graph_hash = meta.get("graph_hash")
    if not pol.predicted:
        front = run.pareto
        rows = front[front["policy_id"] == policy_id] if len(front) else front
        if not len(rows):
            cand = run.candidates
            rows = cand[cand["policy_id"] == policy_id] if len(cand) else cand
        if len(rows):
            skip = {"run_id", "generation", "species", "policy_id", "w_bits", "a_bits"}
            row = rows.iloc[0]
            pol.predicted = {
                c: (bool(row[c]) if c == "feasible" else float(row[c]))
                for c in rows.columns
                if c not in skip and c != "eval_wall_s"
            }
    return pol


def compact_policy(policy: Policy, names: list[str]) -> Policy:
    """The same per-layer bits as `policy` on `names`, written as the most common (w, a) as the
    default plus per-layer overrides of the layers that differ."""
    pairs = policy.pairs(names)
    dw = Counter(w for w, _ in pairs).most_common(1)[0][0]
    da = Counter(a for _, a in pairs).most_common(1)[0][0]
    w_bits = {n: w for n, (w, _) in zip(names, pairs) if w != dw}
    a_bits = {n: a for n, (_, a) in zip(names, pairs) if a != da}
    out = Policy(
        w_bits,
        a_bits,
        default=(dw, da),
        device=policy.device,
        graph_hash=policy.graph_hash,
        predicted=policy.predicted,
    )
    assert out.pairs(names) == pairs
    return out


def export_json(run: Run, policy_id: str, out: str | os.PathLike[str]) -> dict[str, Any]:
    names = list(run.layers.names)
    pol = compact_policy(run_policy(run, policy_id), names)
    Path(out).write_text(pol.to_json() + "\n", encoding="utf-8")
    return {
        "policy_id": policy_id,
        "format": "json",
        "file": str(out),
        "default": f"{pol.default[0]}x{pol.default[1]}",
        "overrides": len(pol.layer_names()),
    }


# -- the fake-quant model of a run's policy --------------------------------------------------------
def _search_options(run: Run) -> dict[str, Any]:
    cfg = run.config or {}
    opts = cfg.get("search", cfg) if isinstance(cfg, dict) else {}
    return {
        "model": run.meta.get("model") or opts.get("model") or "digits_resnet",
        "weights": opts.get("weights"),
        "data": opts.get("data"),
        "model_args": dict(opts.get("model_args") or {}),
    }


def quantized_model(run: Run, policy: Policy) -> tuple[Any, Any, Any]:
    """(calibrated fake-quant model in eval mode, test inputs, test labels) of `policy` on the
    run's trained model, built as the search's PTQ accuracy builds it."""
    from hwq.quant.apply import apply_policy, calibrate
    from hwq.quant.quality import trained_model_and_data

    opts = _search_options(run)
    try:
        from hwq.search.quality import job_kwargs

        kw = job_kwargs(opts["model"], opts["weights"], opts["data"], opts["model_args"])
    except ImportError:  # pragma: no cover - the search package is part of hwq
        kw = {**opts, "seed": 0}
    net, (train, _val, test), _info = trained_model_and_data(
        kw["model"],
        weights=kw["weights"],
        data=kw["data"],
        model_args=kw["model_args"],
        seed=kw["seed"],
        objective="export",
    )
    calib: Any = train
    if kw["model"] == "digits_resnet" and kw["data"] is None:
        from hwq.data import digits_calibration

        calib = digits_calibration(CALIB_BATCHES)
    names = list(run.layers.names)
    qmodel = apply_policy(net, policy, layer_names=names).eval()
    calibrate(qmodel, calib, CALIB_BATCHES)
    import torch

    xs, ys = [], []
    for batch in test:
        xs.append(batch[0])
        ys.append(batch[1])
    return qmodel, torch.cat(xs), torch.cat(ys)


def _layer_qparams(layer: Any) -> dict[str, Any]:
    """Quantization parameters of one quantized layer, as the fake-quantizers apply them."""
    import torch

    wq, aq = layer.weight_quant, layer.act_quant
    out: dict[str, Any] = {"w_bits": int(wq.bits), "a_bits": int(aq.bits)}
    with torch.no_grad():
        if wq.active:
            qw = wq(layer.weight).detach()
            scale = wq.scale.detach().clone().float()
            s = scale.reshape(-1, *([1] * (qw.dim() - 1)))
            wint = torch.round(qw / s).to(torch.int8)
            if not torch.equal(wint.float() * s, qw):
                raise RuntimeError("integer weights do not reproduce the fake-quant weights")
            out.update(weight_scale=scale, weight_int=wint)
        if aq.active:
            scale = aq.scale_param.abs() if aq.scale_param is not None else aq.scale
            out.update(
                act_scale=float(scale),
                act_zero_point=float(aq._zp),
                act_signed=bool(aq.signed),
                act_qmax=int(2**aq.bits - 1),
            )
    return out


# -- ONNX ------------------------------------------------------------------------------------------
def _float_twin(qmodel: Any) -> Any:
    """A float copy of the fake-quant model whose weights are the fake-quantized weights and
    whose layers are plain Conv/Linear again (what the ONNX exporter sees)."""
    import copy

    import torch

    from hwq.quant.apply import quant_layers

    twin = copy.deepcopy(qmodel)
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
) -> dict[str, Any]:
    """Write the calibrated fake-quant model `qmodel` as a QDQ ONNX graph (see the module doc);
    returns a description (QDQ pairs, containers)."""
    import io

    import onnx
    import torch
    from onnx import helper, numpy_helper

    from hwq.quant.apply import quant_layers

    if opset < 13:
        raise UserError(f"--opset: per-channel QDQ needs opset 13 or later, found {opset}")
    layers = quant_layers(qmodel)
    params = {name: _layer_qparams(layer) for name, layer in layers.items()}
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
            # activation: [Clip] -> QuantizeLinear -> DequantizeLinear on this layer's input
            if "act_scale" in p:
                a, qmax = p["a_bits"], p["act_qmax"]
                dtype, tname = _container(a, False, graph_opset(model))
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
                dtype, tname = _container(p["w_bits"], True, graph_opset(model))
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
    # drop float weights that no node reads any more
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    model.producer_name = "hwq"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out))
    return {
        "opset": graph_opset(model),
        "qdq": dict(sorted(counts.items())),
        "nodes": len(graph.node),
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


# -- torch -----------------------------------------------------------------------------------------
def export_torch_model(qmodel: Any, policy: Policy, model_info: dict[str, Any], out: Any) -> dict:
    import torch

    from hwq.quant.apply import quant_layers

    quant = {n: _layer_qparams(layer) for n, layer in quant_layers(qmodel).items()}
    doc = {
        "format": "hwq-quantized-state-dict",
        "schema_version": 1,
        "model": model_info.get("model"),
        "model_args": model_info.get("model_args") or {},
        "weights": model_info.get("weights"),
        "policy": policy.to_dict(),
        "layers": list(qmodel.hwq_layers),
        "state_dict": {k: v.detach().clone() for k, v in qmodel.state_dict().items()},
        "quant": quant,
    }
    torch.save(doc, str(out))
    return {"layers": len(quant), "tensors": len(doc["state_dict"])}


def load_torch_export(path: str | os.PathLike[str], model: Any = None) -> Any:
    """The fake-quant model of an `hwq export --format torch` file (eval mode). `model`: the
    float model to quantize (default: the zoo model named in the file, untrained weights that the
    file's state dict then replaces)."""
    import torch

    from hwq.quant.apply import apply_policy, quant_layers

    doc = torch.load(str(path), map_location="cpu", weights_only=True)
    if doc.get("format") != "hwq-quantized-state-dict":
        raise UserError(f"{path}: not an hwq torch export")
    if model is None:
        from hwq.models import load_model

        args = {k: v for k, v in (doc.get("model_args") or {}).items() if k != "seed"}
        model = load_model(doc["model"], **args)
    policy = Policy.from_json(json.dumps(doc["policy"]), source=str(path))
    q = apply_policy(model, policy, layer_names=doc["layers"])
    q.load_state_dict(doc["state_dict"])
    for name, layer in quant_layers(q).items():
        p = doc["quant"][name]
        if "act_scale" in p:
            layer.act_quant.set_qparams(p["act_scale"], p["act_zero_point"], p["act_signed"])
        layer.weight_quant.init_scale(layer.weight)
    return q.eval()


# -- the command -----------------------------------------------------------------------------------
def export_run(
    run_dir: str | os.PathLike[str],
    policy_id: str,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """`hwq export`: write policy `policy_id` of the run in `fmt` to `out`; returns a summary."""
    from hwq.progress import step

    if fmt not in FORMATS:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    run = Run.open(run_dir)
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise UserError(f"-o {out}: directory {out.parent} does not exist")
    if fmt == "json":
        return export_json(run, policy_id, out)
    policy = run_policy(run, policy_id)
    step("building the fake-quant model of %s", policy_id)
    qmodel, x, y = quantized_model(run, policy)
    import torch

    with torch.no_grad():
        ref = qmodel(x)
    info: dict[str, Any] = {"policy_id": policy_id, "format": fmt, "file": str(out)}
    if fmt == "onnx":
        step("exporting ONNX (opset %d)", opset)
        desc = export_onnx_model(qmodel, x[:1], out, opset=opset)
        got = onnx_logits(out, x)
        diff = float(np.abs(got - ref.numpy()).max())
        agree = float((got.argmax(1) == ref.numpy().argmax(1)).mean())
        info.update(
            opset=desc["opset"],
            qdq=", ".join(f"{k}: {v}" for k, v in desc["qdq"].items()),
            test_images=int(len(x)),
            max_abs_logit_diff=diff,
            argmax_agreement=agree,
            onnx_accuracy=float((got.argmax(1) == y.numpy()).mean()),
        )
    else:
        desc = export_torch_model(qmodel, policy, _search_options(run), out)
        info.update(desc)
    info["fake_quant_accuracy"] = float((ref.argmax(1) == y).float().mean())
    return info
