"""Task-quality sources of a search: `sensitivity` (a per-layer table) and `accuracy` (PTQ jobs).

A quality source (`QualitySource`) has `name` / `column` (the objective and its logged column),
``evaluate(pairs [P, L, 2], ids, executor) -> (values [P], wall_s [P])``, `describe()`,
`seed_cache(values by policy id)` (a resumed run's known values; a no-op where evaluation is
cheap) and `table_values(table)` (per-layer values aligned with a cost table's pairs where the
quality is a sum over layers, else None).

* `SensitivityQuality` — a [layer, pair] table summed over layers (a gather; cheap,
  in-process). From `--sensitivity FILE` (`hwq.sensitivity_files.SensitivityTable.read`: the long
  table `layer, w_bits, a_bits, sensitivity` with `a_bits` optionally empty, or a HAWQ-V3 file
  as published) or measured once on the trained model
  (`hwq.quant.sensitivity.sensitivity_objective`). A table may omit matmul rows (products of
  two activations, e.g. attention scores and context): they are then pinned to the widest
  allowed pair, with one warning saying how many (`SensitivityQuality.pins`, which the search's
  encoding takes on); a table that lists them makes them decisions like any layer.
* `AccuracyQuality` — post-training fake-quant accuracy of the trained model on its validation
  split (`hwq.quant.ptq.PTQAccuracy`); one job per new policy id, run by the executor,
  cached by policy id. With `--finetune-epochs N` (N > 0) each job first fine-tunes the
  candidate N epochs with distillation (`finetune_job`: `hwq.quant.finetune.finetune` with the
  verification settings, on the training split, measured on the validation split), and the
  candidates also log `ptq_accuracy` (before fine-tuning) and `finetune_epochs`
  (`DetailedQuality`).
* `PerplexityQuality` — post-training fake-quant perplexity of a trained causal language
  model on its validation token batches (`hwq.quant.perplexity.PTQPerplexity`), jobs cached by
  policy id as for accuracy. The layer graph's matmul rows (attention's products of two
  activations) stay unquantized: the source pins them to 16x16 (`pins`), which the search's
  encoding takes on.
* `CallableQuality` — a user's own function pairs [P, L, 2] -> [P] (Python API).

Trained weights and data (`hwq.trained`): a zoo model that comes trained, or any model with
`--weights FILE` and `--data package.module:factory`. Without them and without a sensitivity file
a quality objective is refused (`resolve_quality`) with a message saying what to supply: quality
is never computed on random weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hwq.errors import UserError
from hwq.models import trained_source, zoo_names
from hwq.policy import pair_lookup
from hwq.trained import has_trained_model, trained_model_kwargs

log = logging.getLogger("hwq.search")


@runtime_checkable
class QualitySource(Protocol):
    """What a search asks of its task-quality objective."""

    name: str  # the objective: accuracy or sensitivity
    column: str  # the column it is logged under

    def evaluate(
        self, pairs: np.ndarray, ids: Sequence[str], executor: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """(values [P], wall seconds per policy [P]) of policies pairs [P, L, 2] with ids."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the quality is and where it comes from (for config and logs)."""
        ...

    def seed_cache(self, values: Mapping[str, float]) -> None:
        """Known values by policy id (a resumed run's candidates)."""
        ...

    def table_values(self, table: Any) -> np.ndarray | None:
        """float64 [L, K] per-layer values aligned with `table.pairs` where the quality is a sum
        over layers; None otherwise."""
        ...


@runtime_checkable
class DetailedQuality(Protocol):
    """A quality source that logs more per-candidate columns than its value."""

    def detail_columns(self) -> dict[str, str]:
        """Column name -> "float64" or "int32" (empty: none)."""
        ...

    def details(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Those columns for policies `ids` (evaluated before)."""
        ...

    def seed_details(self, frame: Any) -> None:
        """A resumed run's logged candidates (policy_id and the detail columns)."""
        ...


@runtime_checkable
class FP32Reference(Protocol):
    """A quality source that can measure the unquantized model's accuracy."""

    def fp32_accuracy(self, n_layers: int, executor: Any) -> float:
        ...


def trained_models_hint() -> str:
    """The zoo models that come trained, for messages."""
    return " or ".join(f"--model {n}" for n in zoo_names() if trained_source(n) is not None)


def no_quality_message(objective: str, model: str) -> str:
    return (
        f"objective {objective}: model {model!r} has no trained weights and data in hwq, and "
        "quality is never measured on random weights; supply --sensitivity FILE (a per-layer "
        "table layer,w_bits,a_bits,sensitivity or a HAWQ-V3 file; the published ImageNet tables "
        "ship as hawq-v3:resnet18 and hawq-v3:resnet50) with --objectives sensitivity,..., or "
        "--weights FILE "
        f"with --data package.module:factory, or use {trained_models_hint()}"
    )


class SensitivityQuality:
    """Sum over layers of a per-(layer, pair) sensitivity table (lower is better)."""

    name = "sensitivity"
    column = "sensitivity"

    def __init__(self, matrix: np.ndarray, pairs: Sequence[tuple[int, int]], source: str,
                 pins: Mapping[int, tuple[int, int]] | None = None) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.pairs = [(int(w), int(a)) for w, a in pairs]
        self.source = source
        # layers the table has no value for and that the search must pin (layer index -> pair)
        self.pins = dict(pins or {})
        self._lut = pair_lookup(self.pairs)

    def table_values(self, table: Any) -> np.ndarray | None:
        """float64 [L, K] aligned with `table.pairs` (NaN where unknown)."""
        out = np.full((self.matrix.shape[0], len(table.pairs)), np.nan)
        for k, (w, a) in enumerate(table.pairs):
            j = self._lut[w, a]
            if j >= 0:
                out[:, k] = self.matrix[:, j]
        return out

    def evaluate(
        self, pairs: np.ndarray, ids: Sequence[str], executor: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        idx = self._lut[pairs[:, :, 0], pairs[:, :, 1]]
        rows = np.arange(pairs.shape[1])[None, :]
        vals = np.where(idx >= 0, self.matrix[rows, np.maximum(idx, 0)], np.nan).sum(axis=1)
        wall = (time.perf_counter() - t0) / max(len(ids), 1)
        return vals, np.full(len(ids), wall)

    def describe(self) -> dict[str, Any]:
        return {"quality": "sensitivity", "source": self.source}

    def seed_cache(self, values: Mapping[str, float]) -> None:
        """Nothing to seed: a table lookup is cheaper than a cache."""


def sensitivity_from_table(
    table_obj: Any, encoding: Any, pairs: Sequence[tuple[int, int]], source: str
) -> SensitivityQuality:
    """A `SensitivityQuality` over `pairs` from a `hwq.sensitivity_files.SensitivityTable`.

    File layers the model lacks, and unpinned model layers the file lacks, are errors naming
    them (`SensitivityTable.check`); so is an allowed pair without a value for an unpinned
    layer. Matmul rows the file lacks are pinned to the widest allowed pair (`unlisted_matmul_pins`,
    returned as the source's `pins`). Pinned layers missing from the file count 0."""
    names = encoding.graph.names
    extra = unlisted_matmul_pins(table_obj, encoding, source)
    pins = encoding.with_pins(extra).pins if extra else encoding.pins
    pinned = [names[i] for i in pins]
    cube = table_obj.lookup(names, pinned)  # [L, 33, 33]
    matrix = np.stack([cube[:, w, a] for w, a in pairs], axis=1)
    for i, name in enumerate(names):
        if i in pins:
            w, a = pins[i]
            if np.isnan(cube[i, w, a]):
                raise UserError(
                    f"--sensitivity {source}: layer {name} is pinned to W{w}A{a}, which the file "
                    "does not give; pin it to a width the file has"
                )
            continue
        for w, a in encoding.choices:
            if np.isnan(cube[i, w, a]):
                raise UserError(
                    f"--sensitivity {source}: layer {name}: no sensitivity at W{w}A{a}; give it "
                    "one in the file, choose --bits the file covers, or pin the layer"
                )
    return SensitivityQuality(matrix, pairs, source, extra)


def unlisted_matmul_pins(table_obj: Any, encoding: Any, source: str) -> dict[int, tuple[int, int]]:
    """{layer index: the widest allowed pair} of the unpinned matmul rows a sensitivity table
    does not list, with one warning saying how many (a table measured on modules, like a
    HAWQ-V3 file, has no products of two activations)."""
    graph = encoding.graph
    listed = set(table_obj.layers)
    rows = [i for i, (name, op) in enumerate(zip(graph.names, graph.column("op")))
            if op == "matmul" and name not in listed and i not in encoding.pins]
    if not rows:
        return {}
    w, a = encoding.widest_pair()
    shown = ", ".join(graph.names[i] for i in rows[:3]) + (", ..." if len(rows) > 3 else "")
    log.warning("--sensitivity %s: %d matmul row(s) without a sensitivity (%s) pinned to the "
                "widest allowed pair W%dA%d", source, len(rows), shown, w, a)
    return {i: (w, a) for i in rows}


# -- accuracy and perplexity -----------------------------------------------------------------------
class AccuracyQuality:
    """PTQ accuracy jobs (one per new policy id) through an executor, cached by policy id."""

    name = "accuracy"
    column = "accuracy"

    def __init__(
        self,
        spec: Any,
        description: Mapping[str, Any] | None = None,
        *,
        finetune_epochs: int = 0,
        reference_spec: Any = None,
    ) -> None:
        self.spec = spec  # PTQ accuracy jobs, or fine-tune jobs with finetune_epochs > 0
        self.finetune_epochs = int(finetune_epochs)
        self.reference_spec = reference_spec if reference_spec is not None else spec  # PTQ
        self.cache: dict[str, float] = {}
        self.ptq_cache: dict[str, float] = {}
        self.jobs = 0
        self._description = dict(description or {})
        self._fp32: float | None = None

    def seed_cache(self, values: Mapping[str, float]) -> None:
        self.cache.update({str(k): float(v) for k, v in values.items() if np.isfinite(v)})

    def detail_columns(self) -> dict[str, str]:
        if self.finetune_epochs <= 0:
            return {}
        return {"ptq_accuracy": "float64", "finetune_epochs": "int32"}

    def details(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if self.finetune_epochs <= 0:
            return {}
        return {
            "ptq_accuracy": np.array([self.ptq_cache.get(i, np.nan) for i in ids]),
            "finetune_epochs": np.full(len(ids), self.finetune_epochs, dtype=np.int32),
        }

    def seed_details(self, frame: Any) -> None:
        if self.finetune_epochs > 0 and "ptq_accuracy" in frame:
            self.ptq_cache.update(
                {str(k): float(v) for k, v in zip(frame["policy_id"], frame["ptq_accuracy"])}
            )

    def fp32_accuracy(self, n_layers: int, executor: Any) -> float:
        """The validation accuracy of the unquantized model (a PTQ job at W32A32 everywhere;
        once per process)."""
        from hwq.search.executors import SerialExecutor

        if self._fp32 is None:
            executor = executor or SerialExecutor()
            [(acc, _wall)] = executor.map(self.reference_spec, [[[32, 32]] * int(n_layers)])
            self._fp32 = float(acc)
        return self._fp32

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
            for (pid, p), (result, w) in zip(todo.items(), results):
                if isinstance(result, Mapping):  # a fine-tune job: accuracy after, ptq before
                    self.ptq_cache[pid] = float(result["ptq_accuracy"])
                    result = result["accuracy"]
                self.cache[pid] = float(result)
                wall[p] = float(w)
        vals = np.array([self.cache[pid] for pid in ids], dtype=np.float64)
        return vals, wall

    def describe(self) -> dict[str, Any]:
        return {"quality": self.name, **self._description}

    def table_values(self, table: Any) -> np.ndarray | None:
        return None  # accuracy is no sum over layers


class PerplexityQuality(AccuracyQuality):
    """PTQ perplexity jobs of a causal LM (minimised), cached by policy id; `pins` holds the
    graph's matmul rows at 16x16 (products of two activations stay in float)."""

    name = "perplexity"
    column = "perplexity"

    def __init__(self, spec: Any, description: Mapping[str, Any],
                 pins: Mapping[int, tuple[int, int]]) -> None:
        super().__init__(spec, description)
        self.pins = dict(pins)

    def fp32_accuracy(self, n_layers: int, executor: Any) -> float:
        raise UserError("perplexity has no accuracy reference")


def matmul_pins(encoding: Any) -> dict[int, tuple[int, int]]:
    """{layer index: (16, 16)} of the graph's unpinned matmul rows (what `PTQPerplexity`
    leaves in float); a matmul row pinned elsewhere must be unquantized."""
    graph = encoding.graph
    out = {}
    for i, (name, op) in enumerate(zip(graph.names, graph.column("op"))):
        if op != "matmul":
            continue
        if i in encoding.pins:
            w, a = encoding.pins[i]
            if w < 16 or a < 16:
                raise UserError(f"--pin {name}=W{w}A{a}: the perplexity objective keeps products "
                                "of two activations (matmul rows) in float; pin them to 16x16")
            continue
        out[i] = (16, 16)
    return out


# -- a user's own quality function -----------------------------------------------------------------
class CallableQuality:
    """Adapts a plain function pairs [P, L, 2] -> [P] to a search quality source (in-process)."""

    def __init__(self, fn: Callable[[np.ndarray], Any], name: str) -> None:
        from hwq.objectives import QUALITY_OBJECTIVES

        if name not in QUALITY_OBJECTIVES:
            raise UserError(f"quality: expected one of {', '.join(QUALITY_OBJECTIVES)}, found "
                            f"{name!r}")
        self.fn = fn
        self.name = name
        self.column = name

    def evaluate(
        self, pairs: np.ndarray, ids: Sequence[str], executor: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        values = np.asarray(self.fn(np.asarray(pairs)), dtype=np.float64).reshape(-1)
        if values.shape[0] != len(ids):
            raise UserError(
                f"quality function returned {values.shape[0]} values for {len(ids)} policies"
            )
        wall = (time.perf_counter() - t0) / max(len(ids), 1)
        return values, np.full(len(ids), wall)

    def describe(self) -> dict[str, Any]:
        return {"quality": self.name, "source": getattr(self.fn, "__qualname__", repr(self.fn))}

    def seed_cache(self, values: Mapping[str, float]) -> None:
        """Nothing to seed: the function is evaluated in-process, uncached."""

    def table_values(self, table: Any) -> np.ndarray | None:
        return None  # a user's function is opaque


def _measured_quality_kwargs(name: str, sensitivity_file: Any, model: str, weights: str | None,
                             data: str | None, model_args: Mapping[str, Any] | None
                             ) -> dict[str, Any]:
    """The trained-model arguments of a quality measured on the model (accuracy, perplexity);
    a sensitivity file given beside it, or a model with nothing to measure on, is refused."""
    if sensitivity_file:
        raise UserError(
            f"--sensitivity is given but the quality objective is {name}; use "
            "--objectives sensitivity,... to search on the sensitivity table"
        )
    if not has_trained_model(model, weights, data):
        raise UserError(no_quality_message(name, model))
    return trained_model_kwargs(model, weights, data, model_args)


# -- jobs (run in whatever process the executor picks) ---------------------------------------------
def accuracy_job(
    model: str,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    calib_batches: int = 4,
    requantize_outputs: bool = False,
) -> Callable[[Any], float]:
    """A function pairs [L, 2] -> PTQ accuracy on the validation split (search-time quality),
    `hwq.quant.ptq.accuracy_objective` built once per worker process; `requantize_outputs` on
    a device whose int8 layers requantize their outputs (`hwq.quant.int8_outputs`)."""
    from hwq.quant.ptq import accuracy_objective

    evaluator = accuracy_objective(
        model,
        weights=weights,
        data=data,
        model_args=model_args,
        seed=seed,
        calib_batches=calib_batches,
        requantize_outputs=requantize_outputs,
    )

    def run(pairs: Any) -> float:
        return float(evaluator.accuracy_of_pairs([(int(w), int(a)) for w, a in pairs]))

    return run


def perplexity_job(
    model: str,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    calib_batches: int = 4,
    rows: Sequence[str] = (),
    modules: Sequence[str] = (),
    runtime: str | None = None,
) -> Callable[[Any], float]:
    """A function pairs [L, 2] over the graph's `rows` -> PTQ perplexity on the validation
    batches, quantizing the weight `modules` in the stored formats of the profile's `runtime`
    (`hwq.quant.perplexity.perplexity_objective`, built once per worker process)."""
    from hwq.quant.perplexity import module_pairs, perplexity_objective

    evaluator = perplexity_objective(
        model, weights=weights, data=data, model_args=model_args, seed=seed,
        calib_batches=calib_batches, layer_names=list(modules), runtime=runtime,
    )
    rows, modules = list(rows), list(modules)

    def run(pairs: Any) -> float:
        return float(evaluator.perplexity_of_pairs(module_pairs(rows, pairs, modules)))

    return run


def _reseed_loader(loader: Any, seed: int) -> None:
    """Restart the shuffling of a DataLoader with its own generator, so each job's epochs
    see the same order whatever ran before it in this process."""
    from torch.utils.data import DataLoader

    if isinstance(loader, DataLoader) and loader.generator is not None:
        loader.generator.manual_seed(seed)


def finetune_job(
    model: str,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    epochs: int = 1,
) -> Callable[[Any], dict[str, float]]:
    """A function pairs [L, 2] -> {accuracy, ptq_accuracy}: the candidate fine-tuned `epochs`
    epochs with distillation from the FP32 model (`hwq.quant.finetune.finetune`, the settings
    of verification and `hwq finetune`: `VERIFY_SETTINGS`) on the training split, its accuracy
    measured on the validation split (the search's), and before fine-tuning (ptq)."""
    from hwq.quant.apply import quantizable_layers
    from hwq.quant.finetune import accuracy, finetune
    from hwq.quant.verification import VERIFY_SETTINGS
    from hwq.trained import calibration_batches, load_trained

    net, (train, val, _test), _info = load_trained(
        model, weights=weights, data=data, model_args=model_args, seed=seed
    )
    calib = calibration_batches(model, data, train, VERIFY_SETTINGS["calib_batches"])
    names = quantizable_layers(net, next(iter(val))[0][:1])
    fp32 = accuracy(net, val)

    def run(pairs: Any) -> dict[str, float]:
        _reseed_loader(train, seed)
        rec = finetune(
            net, [(int(w), int(a)) for w, a in pairs], train, val, epochs=int(epochs),
            calib=calib, layer_names=names, seed=seed, fp32_accuracy=fp32, **VERIFY_SETTINGS,
        )
        return {"accuracy": float(rec["qat_accuracy"]), "ptq_accuracy": float(rec["ptq_accuracy"])}

    return run


# -- choosing the quality source of a search -------------------------------------------------------
def resolve_quality(
    name: str | None,
    *,
    model: str,
    sensitivity_file: str | None,
    encoding: Any,
    table: Any,
    weights: str | None = None,
    data: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    finetune_epochs: int = 0,
) -> QualitySource | None:
    """The quality source of objective `name` (None: none), or a UserError saying what to supply.
    `finetune_epochs` > 0: accuracy after that many epochs of QAT with distillation."""
    from hwq.search.executors import JobSpec

    if finetune_epochs > 0 and name != "accuracy":
        raise UserError(
            f"--finetune-epochs {finetune_epochs}: fine-tuning applies to the accuracy objective "
            f"of a trained model; this search's quality is {name or 'none (costs only)'}"
        )

    if name is None:
        if sensitivity_file:
            raise UserError(
                "--sensitivity is given but no objective uses it; add sensitivity to --objectives"
            )
        return None
    if name == "sensitivity":
        from hwq.sensitivity_files import SensitivityTable

        if sensitivity_file:
            return sensitivity_from_table(
                SensitivityTable.read(sensitivity_file),
                encoding,
                table.pairs,
                str(sensitivity_file),
            )
        if has_trained_model(model, weights, data):
            pairs = [p for p in table.pairs if p[0] < 16 or p[1] < 16]
            log.info("measuring per-layer sensitivity of %s at %d pairs", model, len(pairs))
            from hwq.quant.sensitivity import sensitivity_objective

            kwargs = trained_model_kwargs(model, weights, data, model_args)
            tab = sensitivity_objective(pairs=pairs, **kwargs)
            return sensitivity_from_table(tab, encoding, table.pairs, f"measured on {model}")
        raise UserError(no_quality_message("sensitivity", model))
    if name == "perplexity":
        kwargs = _measured_quality_kwargs(name, sensitivity_file, model, weights, data,
                                          model_args)
        graph = encoding.graph
        modules = [n for n, op in zip(graph.names, graph.column("op")) if op != "matmul"]
        from hwq.quant.perplexity import runtime_grids

        runtime = table.profile.get("runtime", None)
        spec = JobSpec("hwq.search.quality_sources:perplexity_job",
                       {**kwargs, "rows": list(graph.names), "modules": modules,
                        "runtime": runtime})
        grids = "per output channel" if not runtime_grids(runtime) else f"{runtime}'s formats"
        return PerplexityQuality(
            spec,
            {"model": model, "split": "validation",
             "method": "PTQ fake-quant perplexity (hwq.quant.perplexity.PTQPerplexity), 4 "
                       f"calibration batches; weights in {grids}; matmul rows in float"},
            matmul_pins(encoding),
        )
    if name == "accuracy":
        kwargs = _measured_quality_kwargs(name, sensitivity_file, model, weights, data,
                                          model_args)
        from hwq.quant.int8_outputs import device_requantizes

        ptq_kwargs = {**kwargs, "requantize_outputs": True} if device_requantizes(
            table.profile) else kwargs  # the numerics hwq export writes for this device
        ptq = JobSpec("hwq.search.quality_sources:accuracy_job", ptq_kwargs)
        if finetune_epochs > 0:
            return AccuracyQuality(
                JobSpec("hwq.search.quality_sources:finetune_job",
                        {**kwargs, "epochs": int(finetune_epochs)}),
                {
                    "model": model,
                    "split": "validation",
                    "method": f"QAT with distillation, {int(finetune_epochs)} epoch(s) "
                    "(hwq.quant.finetune.finetune, verification settings), then accuracy",
                },
                finetune_epochs=int(finetune_epochs),
                reference_spec=ptq,
            )
        return AccuracyQuality(
            ptq,
            {
                "model": model,
                "split": "validation",
                "method": "PTQ fake-quant (hwq.quant.ptq.PTQAccuracy), 4 calibration batches",
            },
        )
    raise UserError(f"unknown quality objective {name!r}")
