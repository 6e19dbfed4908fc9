"""Task-quality sources of a search: `sensitivity` (a per-layer table) and `accuracy` (PTQ jobs).

A quality source has `name` / `column` (the objective and its logged column) and
``evaluate(pairs [P, L, 2], ids, executor) -> (values [P], wall_s [P])``.

* `SensitivityQuality` — a [layer, pair] table summed over layers (a Numba-free gather; cheap,
  in-process). Built from `--sensitivity FILE` (`read_sensitivity_file`: the long table `layer,
  w_bits, a_bits, sensitivity` with `a_bits` optionally empty, or a HAWQ-V3 file as published)
  or measured on the trained model by `hwq.quant.quality`.
* `AccuracyQuality` — post-training fake-quant accuracy of the trained model on the validation
  split; one job per new policy id, run by the executor, cached by policy id.

Without trained weights and without a sensitivity file a quality objective is refused
(`resolve_quality`): it is never computed on random weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwq.errors import UserError

log = logging.getLogger("hwq.search")

HAWQ_COLUMNS = ("layer", "hutchinson_trace_per_param")
LONG_COLUMNS = ("layer", "w_bits", "a_bits", "sensitivity")
# models whose trained weights and data ship with hwq (PTQ accuracy needs both)
TRAINED_MODELS = ("digits_resnet",)


# -- sensitivity files -----------------------------------------------------------------------------
def read_sensitivity_file(path: str | Path) -> pd.DataFrame:
    """A sensitivity file as a long table `layer, w_bits, a_bits (NaN = any), sensitivity`.

    Accepts the long format of DESIGN.md §4 (CSV or Parquet) and a HAWQ-V3 table as published
    (`hutchinson_trace_per_param` and `delta_w<b>_sq` columns: sensitivity at b bits is their
    product, independent of the activation bits).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--sensitivity {p}: no such file")
    try:
        if p.suffix.lower() == ".parquet":
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p)
    except Exception as exc:  # pandas raises several types for unreadable files
        raise UserError(f"--sensitivity {p}: not a readable table: {exc}") from None
    cols = set(df.columns)
    if set(HAWQ_COLUMNS) <= cols:
        deltas = [c for c in df.columns if c.startswith("delta_w") and c.endswith("_sq")]
        if not deltas:
            raise UserError(f"--sensitivity {p}: a HAWQ-V3 table needs delta_w<b>_sq columns")
        rows = []
        for c in deltas:
            try:
                bits = int(c[len("delta_w") : -len("_sq")])
            except ValueError:
                raise UserError(
                    f"--sensitivity {p}: column {c}: expected delta_w<bits>_sq"
                ) from None
            for layer, trace, delta in zip(df["layer"], df["hutchinson_trace_per_param"], df[c]):
                rows.append((str(layer), bits, np.nan, float(trace) * float(delta)))
        out = pd.DataFrame(rows, columns=list(LONG_COLUMNS))
    elif set(LONG_COLUMNS) <= cols:
        out = df[list(LONG_COLUMNS)].copy()
        out["layer"] = out["layer"].astype(str)
        try:
            out["w_bits"] = out["w_bits"].astype(np.int64)
            out["a_bits"] = pd.to_numeric(out["a_bits"], errors="raise").astype(np.float64)
            out["sensitivity"] = out["sensitivity"].astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise UserError(f"--sensitivity {p}: bad value: {exc}") from None
    else:
        raise UserError(
            f"--sensitivity {p}: expected columns {', '.join(LONG_COLUMNS)} (a_bits may be "
            f"empty) or a HAWQ-V3 table ({', '.join(HAWQ_COLUMNS)}, delta_w<b>_sq); found "
            f"{', '.join(map(str, df.columns))}"
        )
    if not np.isfinite(out["sensitivity"].to_numpy()).all():
        bad = out.loc[~np.isfinite(out["sensitivity"].to_numpy()), "layer"].iloc[0]
        raise UserError(f"--sensitivity {p}: layer {bad}: sensitivity is not a finite number")
    out.attrs["source"] = str(p)
    return out


def sensitivity_matrix(
    long: pd.DataFrame,
    names: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    needed: Mapping[int, Sequence[tuple[int, int]]],
    source: str,
) -> np.ndarray:
    """float64 [L, K] over `pairs`; NaN where the file has no value.

    `needed[i]` lists the pairs layer i may take (empty for a pinned layer that the file may
    omit: its sensitivity counts as 0). A file layer the model lacks, or a needed value the file
    lacks, is an error naming the layer.
    """
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(long["layer"]) - set(index))
    if unknown:
        raise UserError(
            f"--sensitivity {source}: layer(s) not in the model: {', '.join(unknown[:8])}"
            + (" ..." if len(unknown) > 8 else "")
        )
    k_of = {p: k for k, p in enumerate(pairs)}
    out = np.full((len(names), len(pairs)), np.nan)
    exact: dict[tuple[int, int, int], float] = {}
    wonly: dict[tuple[int, int], float] = {}
    for layer, w, a, s in long[list(LONG_COLUMNS)].itertuples(index=False):
        i = index[layer]
        if isinstance(a, float) and np.isnan(a):
            wonly[(i, int(w))] = float(s)
        else:
            exact[(i, int(w), int(a))] = float(s)
    for (w, a), k in k_of.items():
        for i in range(len(names)):
            v = exact.get((i, w, a), wonly.get((i, w)))
            if v is None and w >= 16:
                v = 0.0  # not quantized
            if v is not None:
                out[i, k] = v
    present = set(long["layer"])
    for i, name in enumerate(names):
        pins_only = not needed.get(i)
        if name not in present:
            if pins_only:
                out[i, :] = np.where(np.isnan(out[i, :]), 0.0, out[i, :])
                continue
            raise UserError(
                f"--sensitivity {source}: layer {name} has no sensitivity; give it one in the "
                f"file or pin it (e.g. --pin {name}=8)"
            )
        for w, a in needed.get(i, ()):
            if np.isnan(out[i, k_of[(w, a)]]):
                raise UserError(
                    f"--sensitivity {source}: layer {name}: no sensitivity at W{w}A{a} (the file "
                    f"gives {', '.join(_bits_in_file(long, name))}); choose --bits accordingly"
                )
        out[i, :] = np.where(np.isnan(out[i, :]), 0.0 if pins_only else np.nan, out[i, :])
    return out


def _bits_in_file(long: pd.DataFrame, name: str) -> list[str]:
    rows = long[long["layer"] == name]
    return [
        f"W{int(w)}" if isinstance(a, float) and np.isnan(a) else f"W{int(w)}A{int(a)}"
        for w, a in zip(rows["w_bits"], rows["a_bits"])
    ]


class SensitivityQuality:
    """Sum over layers of a per-(layer, pair) sensitivity table (lower is better)."""

    name = "sensitivity"
    column = "sensitivity"

    def __init__(self, matrix: np.ndarray, pairs: Sequence[tuple[int, int]], source: str) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.pairs = [tuple(p) for p in pairs]
        self.source = source

    def table_values(self, table: Any) -> np.ndarray:
        """float64 [L, K] aligned with `table.pairs` (NaN where not needed)."""
        k_of = {p: k for k, p in enumerate(self.pairs)}
        out = np.full((self.matrix.shape[0], len(table.pairs)), np.nan)
        for k, p in enumerate(table.pairs):
            if tuple(p) in k_of:
                out[:, k] = self.matrix[:, k_of[tuple(p)]]
        return out

    def evaluate(
        self, pairs: np.ndarray, ids: Sequence[str], executor: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        lut = np.full((33, 33), -1, dtype=np.int64)
        for k, (w, a) in enumerate(self.pairs):
            lut[w, a] = k
        idx = lut[pairs[:, :, 0], pairs[:, :, 1]]
        rows = np.arange(pairs.shape[1])[None, :]
        vals = np.where(idx >= 0, self.matrix[rows, np.maximum(idx, 0)], np.nan).sum(axis=1)
        wall = (time.perf_counter() - t0) / max(len(ids), 1)
        return vals, np.full(len(ids), wall)

    def describe(self) -> dict[str, Any]:
        return {"quality": "sensitivity", "source": self.source}


# -- accuracy --------------------------------------------------------------------------------------
class AccuracyQuality:
    """PTQ accuracy jobs (one per new policy id) through an executor, cached by policy id."""

    name = "accuracy"
    column = "accuracy"

    def __init__(self, spec: Any, description: Mapping[str, Any] | None = None) -> None:
        self.spec = spec
        self.cache: dict[str, float] = {}
        self.jobs = 0
        self._description = dict(description or {})

    def seed_cache(self, values: Mapping[str, float]) -> None:
        self.cache.update({str(k): float(v) for k, v in values.items() if np.isfinite(v)})

    def evaluate(
        self, pairs: np.ndarray, ids: Sequence[str], executor: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        from hwq.search.executors import SerialExecutor

        executor = executor or SerialExecutor()
        todo: dict[str, int] = {}
        for p, pid in enumerate(ids):
            if pid not in self.cache and pid not in todo:
                todo[pid] = p
        wall = np.zeros(len(ids))
        if todo:
            items = [pairs[p].tolist() for p in todo.values()]
            results = executor.map(self.spec, items)
            self.jobs += len(items)
            first_wall: dict[str, float] = {}
            for pid, (acc, w) in zip(todo, results):
                self.cache[pid] = float(acc)
                first_wall[pid] = float(w)
            for pid, p in todo.items():
                wall[p] = first_wall[pid]
        vals = np.array([self.cache[pid] for pid in ids], dtype=np.float64)
        return vals, wall

    def describe(self) -> dict[str, Any]:
        return {"quality": "accuracy", **self._description}


# -- jobs (run in whatever process the executor picks) ---------------------------------------------
def _digits_model(seed: int) -> Any:
    from hwq.models.digits import load_trained_digits_resnet

    net, _info = load_trained_digits_resnet(int(seed))
    return net.eval()


def accuracy_job(
    model: str = "digits_resnet",
    model_seed: int = 0,
    calib_batches: int = 4,
    weight_observer: str = "mse",
    act_observer: str = "mse",
) -> Any:
    """A function pairs [L, 2] -> PTQ accuracy on the validation split (search-time quality):
    fake-quantize the trained model with the policy, calibrate on the first `calib_batches`
    training batches (fixed order), evaluate on the validation split."""
    if model not in TRAINED_MODELS:
        raise UserError(f"accuracy: no trained weights and data for model {model!r}")
    from hwq.data import digits_calibration, load_digits_splits
    from hwq.quant.apply import apply_policy, calibrate, quantizable_layers
    from hwq.quant.finetune import accuracy

    net = _digits_model(model_seed)
    data = load_digits_splits()
    calib = digits_calibration(calib_batches)
    val = [(data.val.x, data.val.y)]
    names = quantizable_layers(net, data.val.x[:1])

    def run(pairs: Any) -> float:
        q = apply_policy(
            net,
            [tuple(p) for p in pairs],
            layer_names=names,
            weight_observer=weight_observer,
            act_observer=act_observer,
        )
        calibrate(q, calib, calib_batches)
        return float(accuracy(q, val))

    return run


def verify_job(
    model: str = "digits_resnet", model_seed: int = 0, epochs: int = 3, seed: int = 0
) -> Any:
    """A function pairs [L, 2] -> the QAT verification record of `hwq.quant.finetune.finetune`
    (fine-tuned with distillation on the training split, evaluated on the test split)."""
    if model not in TRAINED_MODELS:
        raise UserError(f"verification: no trained weights and data for model {model!r}")
    from hwq.data import digits_calibration, digits_loaders
    from hwq.quant.finetune import finetune

    net = _digits_model(model_seed)

    def run(pairs: Any) -> dict[str, Any]:
        train, val, test = digits_loaders(seed=seed)
        return finetune(
            net,
            [tuple(p) for p in pairs],
            train,
            test,
            epochs=epochs,
            calib=digits_calibration(4),
            val=val,
            seed=seed,
        )

    return run


# -- choosing the quality source of a search -------------------------------------------------------
def resolve_quality(
    name: str | None,
    *,
    model: str,
    sensitivity_file: str | None,
    encoding: Any,
    table: Any,
    model_seed: int = 0,
) -> Any:
    """The quality source of objective `name` (None: none), or a UserError saying what to supply."""
    from hwq.search.executors import JobSpec

    if name is None:
        if sensitivity_file:
            raise UserError(
                "--sensitivity is given but no objective uses it; add sensitivity to --objectives"
            )
        return None
    if name == "sensitivity":
        if sensitivity_file:
            long = read_sensitivity_file(sensitivity_file)
            needed: dict[int, list[tuple[int, int]]] = {}
            for i in range(len(encoding.graph)):
                needed[i] = [] if i in encoding.pins else list(encoding.choices)
            matrix = sensitivity_matrix(
                long, encoding.graph.names, table.pairs, needed, str(sensitivity_file)
            )
            return SensitivityQuality(matrix, table.pairs, str(sensitivity_file))
        if model in TRAINED_MODELS:
            matrix = measure_sensitivity(model, encoding.graph.names, table.pairs, model_seed)
            return SensitivityQuality(matrix, table.pairs, f"measured on {model}")
        raise UserError(
            f"objective sensitivity: model {model!r} has no trained weights in hwq; supply a "
            "sensitivity table with --sensitivity FILE (layer, w_bits, a_bits, sensitivity; or a "
            "HAWQ-V3 file such as hawq_v3_sensitivity_resnet18.csv)"
        )
    if name == "accuracy":
        if model not in TRAINED_MODELS:
            raise UserError(
                f"objective accuracy: model {model!r} has no trained weights and data in hwq, and "
                "accuracy is never computed on random weights; use --objectives sensitivity,... "
                "with --sensitivity FILE (a per-layer table or a HAWQ-V3 file), or --model "
                f"{' / '.join(TRAINED_MODELS)}"
            )
        spec = JobSpec(
            "hwq.search.quality:accuracy_job", {"model": model, "model_seed": int(model_seed)}
        )
        return AccuracyQuality(
            spec,
            {
                "model": model,
                "split": "validation",
                "method": "PTQ fake-quant, 4 calibration batches",
            },
        )
    raise UserError(f"unknown quality objective {name!r}")


def measure_sensitivity(
    model: str, names: Sequence[str], pairs: Sequence[tuple[int, int]], model_seed: int = 0
) -> np.ndarray:
    """[L, K] loss increase on the validation split when only layer i is quantized at pair k
    (every other layer full precision). Uses `hwq.quant.quality.sensitivity` when present."""
    try:
        from hwq.quant import quality as qmod  # the quant module's measured sensitivity
    except ImportError:
        qmod = None
    if qmod is not None and hasattr(qmod, "sensitivity_matrix"):
        return np.asarray(qmod.sensitivity_matrix(model, list(names), list(pairs), seed=model_seed))
    import torch
    from torch.nn import functional as F

    from hwq.data import digits_calibration, load_digits_splits
    from hwq.quant.apply import apply_policy, calibrate, quantizable_layers

    net = _digits_model(model_seed)
    data = load_digits_splits()
    calib = digits_calibration(4)
    order = quantizable_layers(net, data.val.x[:1])
    with torch.no_grad():
        base = float(F.cross_entropy(net(data.val.x), data.val.y))
    out = np.zeros((len(names), len(pairs)))
    for i, name in enumerate(names):
        for k, (w, a) in enumerate(pairs):
            pol = [(32, 32)] * len(order)
            pol[order.index(name)] = (w, a)
            q = apply_policy(net, pol, layer_names=order)
            calibrate(q, calib, 4)
            with torch.no_grad():
                loss = float(F.cross_entropy(q(data.val.x), data.val.y))
            out[i, k] = max(loss - base, 0.0)
    return out
