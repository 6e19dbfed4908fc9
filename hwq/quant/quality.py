"""Task quality for the search (DESIGN.md §4): post-training accuracy and sensitivity proxies.

* `PTQAccuracy` — the `accuracy` objective: post-training fake-quantization of a trained model
  under a policy, calibrated on a few batches, evaluated on a held-out split, cached by policy
  id. It gives exactly what `apply_policy` + `calibrate` + evaluation give, but calibrates once
  (the observers see the FP32 network, so activation ranges do not depend on the policy) and
  memoises each layer's quantized weight and activation range per bit-width, so one policy costs
  one forward pass over the validation split.
* `SensitivityTable` — the `sensitivity` objective: a per-layer, per-bit table, measured once on
  the model (`measure_sensitivity`: the loss increase on the calibration set when only that layer
  is quantized; or `method="hessian"`: Hutchinson trace per parameter x squared weight
  quantization error, as HAWQ-V2/V3) or read from a file (`SensitivityTable.read`) in either
  format of DESIGN.md §4; a policy's proxy is the sum over its layers.
* `accuracy_objective` / `sensitivity_objective` build these for a model name and refuse, with a
  message saying what to supply, to compute quality on anything but trained weights.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwq.errors import UserError
from hwq.policy import BITS_BOUND, VALID_BITS, Policy, policy_id_from_pairs
from hwq.quant.apply import (
    PolicyLike,
    apply_policy,
    calibrate,
    policy_pairs,
    quantizable_layers,
)
from hwq.quant.fake_quant import act_qparams, is_quantized, quantize_weight, weight_scale

log = logging.getLogger("hwq.quant.quality")

DEFAULT_PAIRS: tuple[tuple[int, int], ...] = tuple(product(range(1, 9), range(1, 9)))
NO_WEIGHTS_HINT = (
    "pass --weights FILE (a state dict of the trained model) with --data package.module:factory "
    "(train, val, test loaders), or --sensitivity FILE (a per-layer sensitivity table); hwq never "
    "measures quality on random weights"
)


def _xy_batches(data: Any) -> list[tuple[Tensor, Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        return [(data[0], data[1])]
    out = []
    for batch in data:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise UserError("evaluation data must yield (inputs, labels) batches")
        out.append((batch[0], batch[1]))
    if not out:
        raise UserError("the evaluation data has no batches")
    return out


class PTQAccuracy:
    """Post-training fake-quant accuracy of a trained `model` under a policy (a fraction).

    `calib`: a loader / iterable of batches (the first `calib_batches` are used) or one tensor;
    `val`: (inputs, labels) batches or an `(x, y)` pair of tensors. Call with a `Policy` or a
    per-layer (w, a) list in layer order; `evaluate` takes many (a list or an array [P, L, 2]).
    """

    def __init__(
        self,
        model: nn.Module,
        calib: Any,
        val: Any,
        *,
        calib_batches: int = 4,
        layer_names: Sequence[str] | None = None,
        example_input: Any = None,
        fold_bn: bool = False,
        weight_observer: str = "minmax",
        act_observer: str = "minmax",
        percentile: float = 99.99,
        eval_batch_size: int = 1024,
    ) -> None:
        batches = _xy_batches(val)
        self.val_x = torch.cat([b[0] for b in batches])
        self.val_y = torch.cat([b[1] for b in batches])
        if layer_names is None:
            example = example_input if example_input is not None else self.val_x[:1]
            layer_names = quantizable_layers(model, example)
        self.names = list(layer_names)
        self.weight_observer, self.act_observer = weight_observer, act_observer
        self.percentile = percentile
        self.eval_batch_size = eval_batch_size
        self.qmodel = apply_policy(
            model,
            [(32, 32)] * len(self.names),
            fold_bn=fold_bn,
            layer_names=self.names,
            weight_observer=weight_observer,
            act_observer=act_observer,
            percentile=percentile,
        ).eval()
        for p in self.qmodel.parameters():
            p.requires_grad_(False)
        modules = dict(self.qmodel.named_modules())
        self.layers = [modules[n] for n in self.names]
        for layer in self.layers:  # observe while unquantized: FP32 statistics, as calibrate does
            layer.act_quant.bits = 8
        calibrate(self.qmodel, calib, calib_batches)
        self.calib_batches = [
            (x, y) for x, y in _pairs_or_none(calib, calib_batches) if y is not None
        ]
        self._w: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self._a: dict[tuple[int, int], tuple[float, float, bool]] = {}
        self.cache: dict[str, float] = {}
        self.evaluations = 0

    # -- policies ----------------------------------------------------------------------------
    def pairs(self, policy: PolicyLike) -> list[tuple[int, int]]:
        return policy_pairs(policy, self.names)

    def policy_id(self, policy: PolicyLike) -> str:
        return policy_id_from_pairs(self.pairs(policy))

    def set_pairs(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Configure the shared quantized model for per-layer (w, a) pairs in layer order."""
        for i, (w, a) in enumerate(pairs):
            layer = self.layers[i]
            wq, aq = layer.weight_quant, layer.act_quant
            if is_quantized(w):
                key = (i, int(w))
                if key not in self._w:
                    scale = weight_scale(layer.weight, w, self.weight_observer, self.percentile)
                    self._w[key] = (scale, quantize_weight(layer.weight, scale, w).detach())
                scale, qweight = self._w[key]
                wq.set_precomputed(w, scale, qweight, layer.weight)
            else:
                wq.bits = int(w)
            aq.bits = int(a)
            if is_quantized(a):
                key = (i, int(a))
                if key not in self._a:
                    self._a[key] = act_qparams(aq.stats, a, self.act_observer, self.percentile)
                aq.set_qparams(*self._a[key])

    @torch.no_grad()
    def _logits(self, x: Tensor) -> Tensor:
        bs = self.eval_batch_size
        return torch.cat([self.qmodel(x[i : i + bs]) for i in range(0, len(x), bs)])

    def accuracy_of_pairs(self, pairs: Sequence[tuple[int, int]]) -> float:
        pid = policy_id_from_pairs(pairs)
        hit = self.cache.get(pid)
        if hit is not None:
            return hit
        self.set_pairs(pairs)
        acc = int((self._logits(self.val_x).argmax(1) == self.val_y).sum()) / len(self.val_y)
        self.cache[pid] = acc
        self.evaluations += 1
        return acc

    def __call__(self, policy: PolicyLike) -> float:
        return self.accuracy_of_pairs(self.pairs(policy))

    def evaluate(self, policies: Iterable[PolicyLike] | np.ndarray) -> np.ndarray:
        """Accuracy of each policy (a list of policies or an int array [P, L, 2])."""
        return np.array([self(p) for p in policies], dtype=np.float64)

    def loss_of_pairs(self, pairs: Sequence[tuple[int, int]], batches=None) -> float:
        """Mean cross-entropy on the calibration batches (or `batches`) under `pairs`."""
        batches = batches if batches is not None else self.calib_batches
        if not batches:
            raise UserError("sensitivity needs labelled calibration batches (inputs, labels)")
        self.set_pairs(pairs)
        total, n = 0.0, 0
        with torch.no_grad():
            for x, y in batches:
                total += float(F.cross_entropy(self.qmodel(x), y, reduction="sum"))
                n += int(y.numel())
        return total / n


def _pairs_or_none(data: Any, batches: int | None) -> Iterable[tuple[Tensor, Tensor | None]]:
    if isinstance(data, Tensor):
        yield data, None
        return
    for i, batch in enumerate(data):
        if batches is not None and i >= batches:
            break
        if isinstance(batch, tuple | list) and len(batch) >= 2:
            yield batch[0], batch[1]
        else:
            yield batch, None


# -- sensitivity tables ----------------------------------------------------------------------------
LONG_COLUMNS = ("layer", "w_bits", "a_bits", "sensitivity")
_HAWQ_DELTA = re.compile(r"^delta_w(\d+)_sq$")


class SensitivityTable:
    """Per-layer, per-bit sensitivities: a long frame `layer, w_bits, a_bits, sensitivity`
    (`a_bits` missing = depends on the weight bits only). 16/32 bits (not quantized) count 0."""

    def __init__(
        self,
        frame: pd.DataFrame,
        source: str = "measured",
        tie_groups: Mapping[str, str] | None = None,
    ) -> None:
        df = frame.loc[:, list(LONG_COLUMNS)].copy()
        df["layer"] = df["layer"].astype(str)
        df["w_bits"] = df["w_bits"].astype("int64")
        df["a_bits"] = df["a_bits"].astype("Int64")
        df["sensitivity"] = df["sensitivity"].astype("float64")
        self.frame = df.reset_index(drop=True)
        self.source = source
        self.tie_groups = dict(tie_groups or {})

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(self.frame["layer"]))

    def __len__(self) -> int:
        return len(self.frame)

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | Path) -> SensitivityTable:
        """A long table (`layer,w_bits,a_bits,sensitivity`) or a HAWQ-V3 table (`layer,
        hutchinson_trace_per_param, delta_w<b>_sq, ...`), CSV or Parquet."""
        file = Path(path)
        if not file.is_file():
            raise UserError(f"{file}: sensitivity file not found")
        try:
            if file.suffix.lower() == ".parquet":
                df = pd.read_parquet(file)
                first_line = 0
            else:
                df = pd.read_csv(file, dtype={"layer": str}, keep_default_na=True)
                first_line = 2
        except Exception as exc:
            raise UserError(f"{file}: cannot read sensitivity table: {exc}") from exc
        cols = set(df.columns)
        if {"layer", "w_bits", "sensitivity"} <= cols:
            return cls._from_long(df, file, first_line)
        if {"layer", "hutchinson_trace_per_param"} <= cols and any(
            _HAWQ_DELTA.match(c) for c in df.columns
        ):
            return cls._from_hawq(df, file, first_line)
        raise UserError(
            f"{file}: expected columns layer,w_bits,a_bits,sensitivity (a_bits may be empty) or a "
            f"HAWQ-V3 table (layer,hutchinson_trace_per_param,delta_w8_sq,delta_w4_sq,...), "
            f"found {', '.join(map(str, df.columns))}"
        )

    @classmethod
    def _from_long(cls, df: pd.DataFrame, file: Path, first: int) -> SensitivityTable:
        if "a_bits" not in df.columns:
            df = df.assign(a_bits=pd.NA)
        problems = []
        seen: dict[tuple[str, int, Any], int] = {}
        for i, row in enumerate(df.itertuples(index=False)):
            where = f"{file}:{first + i}" if first else f"{file}: row {i}"
            layer = str(row.layer)
            w = _bits_cell(row.w_bits, where, layer, "w_bits", problems, required=True)
            a = _bits_cell(row.a_bits, where, layer, "a_bits", problems, required=False)
            try:
                s = float(row.sensitivity)
                if math.isnan(s):
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(
                    f"{where}: layer {layer}: sensitivity: expected a number, "
                    f"found {row.sensitivity!r}"
                )
            key = (layer, w, a)
            if key in seen and w is not None:
                a_text = "-" if a is None else a
                problems.append(f"{where}: layer {layer}: duplicate row for w{w} a{a_text}")
            seen.setdefault(key, i)
        layers_both = {}
        for layer, _w, a in seen:
            layers_both.setdefault(layer, set()).add(a is None)
        for layer, kinds in layers_both.items():
            if len(kinds) > 1:
                problems.append(
                    f"{file}: layer {layer}: rows with and without a_bits; use one or the other"
                )
        if problems:
            raise UserError("\n".join(problems))
        return cls(df, source=str(file))

    @classmethod
    def _from_hawq(cls, df: pd.DataFrame, file: Path, first: int) -> SensitivityTable:
        rows = []
        problems = []
        deltas = {int(m.group(1)): c for c in df.columns if (m := _HAWQ_DELTA.match(c))}
        for b in deltas:
            if b not in VALID_BITS:
                problems.append(f"{file}: column delta_w{b}_sq: {b} bits is out of range 1-8")
        ties: dict[str, str] = {}
        for i, row in enumerate(df.to_dict("records")):
            layer = str(row["layer"])
            where = f"{file}:{first + i}" if first else f"{file}: row {i}"
            try:
                trace = float(row["hutchinson_trace_per_param"])
            except (TypeError, ValueError):
                problems.append(f"{where}: layer {layer}: hutchinson_trace_per_param: not a number")
                continue
            for b, col in sorted(deltas.items()):
                try:
                    delta = float(row[col])
                except (TypeError, ValueError):
                    problems.append(f"{where}: layer {layer}: {col}: not a number")
                    continue
                rows.append((layer, b, pd.NA, trace * delta))
            tie = row.get("tie_group")
            if isinstance(tie, str) and tie.strip():
                ties[layer] = tie.strip()
        if problems:
            raise UserError("\n".join(problems))
        frame = pd.DataFrame(rows, columns=list(LONG_COLUMNS))
        return cls(frame, source=str(file), tie_groups=ties)

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def save(self, path: str | Path) -> None:
        """CSV or Parquet (by suffix), in the long format that `read` reads back."""
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.tmp")
        if file.suffix.lower() == ".parquet":
            self.frame.to_parquet(tmp, index=False)
        else:
            self.frame.to_csv(tmp, index=False)
        tmp.replace(file)

    # -- lookups -------------------------------------------------------------------------------
    def check(self, layer_names: Sequence[str], pinned: Iterable[str] = ()) -> None:
        """UserError naming file layers the model lacks and model layers missing from the table
        that are not pinned."""
        names, known = set(layer_names), set(self.layers)
        extra = [n for n in self.layers if n not in names]
        if extra:
            raise UserError(f"{self.source}: layer(s) the model does not have: {', '.join(extra)}")
        missing = [n for n in layer_names if n not in known and n not in set(pinned)]
        if missing:
            raise UserError(
                f"{self.source}: no sensitivity for layer(s) {', '.join(missing)}; a layer missing "
                "from the table must be pinned (e.g. --pin first,last=8)"
            )

    def lookup(self, layer_names: Sequence[str], pinned: Iterable[str] = ()) -> np.ndarray:
        """float64 [L, 33, 33]: sensitivity of layer l at (w, a); NaN where the table has no
        value; 0 for unquantized (16/32) widths and for pinned layers missing from the table."""
        self.check(layer_names, pinned)
        index = {n: i for i, n in enumerate(layer_names)}
        out = np.full((len(layer_names), BITS_BOUND, BITS_BOUND), np.nan)
        known = set(self.layers)
        for n, i in index.items():
            if n not in known:
                out[i] = 0.0
        for b1 in (16, 32):
            for b2 in (16, 32):
                out[:, b1, b2] = 0.0
        f = self.frame
        weight_only = f["a_bits"].isna().to_numpy()
        li = f["layer"].map(index).to_numpy()
        wb = f["w_bits"].to_numpy()
        sv = f["sensitivity"].to_numpy()
        for k in np.flatnonzero(weight_only):
            out[li[k], wb[k], :] = sv[k]
        ab = f["a_bits"].to_numpy(dtype=float, na_value=np.nan)
        for k in np.flatnonzero(~weight_only):
            out[li[k], wb[k], int(ab[k])] = sv[k]
        weight_only_layers = set(f.loc[weight_only, "layer"])
        for n in weight_only_layers:  # the weights alone decide: unquantized weights cost 0
            out[index[n], [16, 32], :] = 0.0
        return out

    def proxy_many(
        self,
        policies: np.ndarray | Sequence[PolicyLike],
        layer_names: Sequence[str],
        pinned: Iterable[str] = (),
    ) -> np.ndarray:
        """Sum of per-layer sensitivities of each policy (an int array [P, L, 2] in layer order,
        or a list of policies)."""
        arr = _policy_array(policies, layer_names)
        table = self.lookup(layer_names, pinned)
        L = len(layer_names)
        vals = table[np.arange(L)[None, :], arr[..., 0], arr[..., 1]]  # [P, L]
        bad = np.argwhere(np.isnan(vals))
        if len(bad):
            p, layer = bad[0]
            w, a = arr[p, layer]
            raise UserError(
                f"{self.source}: no sensitivity for layer {layer_names[layer]} at "
                f"w_bits={w}, a_bits={a}"
            )
        return vals.sum(1)

    def proxy(
        self, policy: PolicyLike, layer_names: Sequence[str], pinned: Iterable[str] = ()
    ) -> float:
        return float(self.proxy_many([policy], layer_names, pinned)[0])


def _bits_cell(
    value: Any, where: str, layer: str, col: str, problems: list[str], required: bool
) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        if required:
            problems.append(f"{where}: layer {layer}: {col}: expected bits 1-8, 16 or 32, found ''")
        return None
    try:
        b = int(value)
        if b != float(value) or b not in VALID_BITS:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(
            f"{where}: layer {layer}: {col}: expected bits 1-8, 16 or 32, found {value!r}"
        )
        return None
    return b


def _policy_array(policies: Any, layer_names: Sequence[str]) -> np.ndarray:
    if isinstance(policies, np.ndarray) and policies.ndim == 3:
        arr = policies.astype(np.int64)
        if arr.shape[1:] != (len(layer_names), 2):
            raise UserError(
                f"policy array has shape {arr.shape}, expected (P, {len(layer_names)}, 2)"
            )
        bad = ~np.isin(arr, sorted(VALID_BITS))
        if bad.any():
            p, layer, side = np.argwhere(bad)[0]
            raise UserError(
                f"layer {layer_names[layer]}: {'wa'[side]}_bits: expected bits 1-8, 16 or 32, "
                f"found {arr[p, layer, side]}"
            )
        return arr
    return np.array([policy_pairs(p, layer_names) for p in policies], dtype=np.int64).reshape(
        -1, len(layer_names), 2
    )


def measure_sensitivity(
    evaluator: PTQAccuracy,
    pairs: Iterable[tuple[int, int]] = DEFAULT_PAIRS,
    *,
    method: str = "loss",
    hessian_iters: int = 32,
    seed: int = 0,
) -> SensitivityTable:
    """Measure a sensitivity table once on the evaluator's model and calibration batches.

    `loss`: for each layer and (w, a) pair, the increase of the mean cross-entropy on the
    calibration batches when only that layer is quantized (every other layer FP32); can be
    slightly negative. `hessian`: HAWQ-V2/V3, Hutchinson estimate of the trace of the loss
    Hessian w.r.t. the layer's weights per parameter x squared weight quantization error at b
    bits (weights only: `a_bits` empty)."""
    pairs = [(int(w), int(a)) for w, a in pairs]
    L = len(evaluator.names)
    if method == "hessian":
        return _hessian_sensitivity(evaluator, sorted({w for w, _ in pairs}), hessian_iters, seed)
    if method != "loss":
        raise UserError(f"sensitivity method: expected loss or hessian, found {method!r}")
    fp = [(32, 32)] * L
    base = evaluator.loss_of_pairs(fp)
    rows = []
    for i, name in enumerate(evaluator.names):
        for w, a in pairs:
            cfg = list(fp)
            cfg[i] = (w, a)
            rows.append((name, w, a, evaluator.loss_of_pairs(cfg) - base))
    evaluator.set_pairs(fp)
    return SensitivityTable(pd.DataFrame(rows, columns=list(LONG_COLUMNS)), source="measured")


def _hessian_sensitivity(
    evaluator: PTQAccuracy, w_bits: Sequence[int], iters: int, seed: int
) -> SensitivityTable:
    model = evaluator.qmodel
    evaluator.set_pairs([(32, 32)] * len(evaluator.names))
    params = [layer.weight for layer in evaluator.layers]
    batches = evaluator.calib_batches
    if not batches:
        raise UserError("hessian sensitivity needs labelled calibration batches")
    traces = np.zeros(len(params))
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.requires_grad_(True)
    try:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for _ in range(iters):
                vs = [torch.randint(0, 2, p.shape, generator=gen).float() * 2 - 1 for p in params]
                hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
                traces += np.array([float((h * v).sum()) for h, v in zip(hv, vs)])
        traces /= iters * len(batches)
    finally:
        for p in params:
            p.requires_grad_(False)
    rows = []
    with torch.no_grad():
        for name, p, tr in zip(evaluator.names, params, traces):
            for b in w_bits:
                if not is_quantized(b):
                    continue
                scale = weight_scale(p, b, evaluator.weight_observer, evaluator.percentile)
                delta = float(((quantize_weight(p, scale, b) - p) ** 2).sum())
                rows.append((name, b, pd.NA, tr / p.numel() * delta))
    return SensitivityTable(pd.DataFrame(rows, columns=list(LONG_COLUMNS)), source="hessian")


# -- objectives for a model name -------------------------------------------------------------------
def trained_model_and_data(
    model: str | None = "digits_resnet",
    *,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    objective: str = "accuracy",
) -> tuple[nn.Module, tuple[Any, Any, Any], dict[str, Any]]:
    """(trained model, (train, val, test) loaders, info). `digits_resnet` without --weights is
    trained and cached on first use; any other model needs --weights and --data."""
    from hwq.data import load_data
    from hwq.models import load_model
    from hwq.models.loading import load_weights

    name = model or "digits_resnet"
    kwargs = dict(model_args or {})
    info: dict[str, Any] = {"model": name}
    if name == "digits_resnet" and weights is None:
        from hwq.models.digits import load_trained_digits_resnet

        extra = set(kwargs) - {"seed", "pretrained"}
        if extra:
            raise UserError(f"digits_resnet: unknown model argument(s) {', '.join(sorted(extra))}")
        net, info = load_trained_digits_resnet(int(kwargs.get("seed", seed)))
    else:
        if weights is None:
            raise UserError(
                f"the {objective} objective needs trained weights for {name}: " + NO_WEIGHTS_HINT
            )
        net = load_weights(load_model(name, **kwargs), weights).eval()
        info["weights"] = str(weights)
    if data is None and name != "digits_resnet":
        raise UserError(
            f"the {objective} objective for {name} needs its data: pass --data "
            "package.module:factory returning (train, val, test) loaders"
        )
    loaders = load_data(data, seed=seed) if data is None else load_data(data)
    return net, loaders, info


def accuracy_objective(
    model: str | None = "digits_resnet",
    *,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    calib_batches: int = 4,
    **options: Any,
) -> PTQAccuracy:
    """The `accuracy` objective of a named model: PTQ accuracy on its validation split."""
    net, (train, val, _test), _ = trained_model_and_data(
        model, weights=weights, data=data, model_args=model_args, seed=seed
    )
    calib: Any = train
    if (model or "digits_resnet") == "digits_resnet" and data is None:
        from hwq.data import digits_calibration

        calib = digits_calibration(calib_batches)
    return PTQAccuracy(net, calib, val, calib_batches=calib_batches, **options)


def sensitivity_objective(
    model: str | None = "digits_resnet",
    *,
    sensitivity_file: str | None = None,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    pairs: Iterable[tuple[int, int]] = DEFAULT_PAIRS,
    method: str = "loss",
    seed: int = 0,
    calib_batches: int = 4,
) -> SensitivityTable:
    """The `sensitivity` objective: the table read from `sensitivity_file`, or measured once on
    the trained model (refused without trained weights)."""
    if sensitivity_file is not None:
        return SensitivityTable.read(sensitivity_file)
    evaluator = accuracy_objective(
        model,
        weights=weights,
        data=data,
        model_args=model_args,
        seed=seed,
        calib_batches=calib_batches,
    )
    return measure_sensitivity(evaluator, pairs, method=method, seed=seed)


def policy_from_pairs(names: Sequence[str], pairs: Sequence[tuple[int, int]]) -> Policy:
    return Policy(
        w_bits={n: int(w) for n, (w, _) in zip(names, pairs)},
        a_bits={n: int(a) for n, (_, a) in zip(names, pairs)},
    )
