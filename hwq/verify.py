"""Verification of a search's front (DESIGN.md §5): choose the best compromises, fine-tune each
with distillation (QAT) as independent jobs, and write each fine-tuned model with its quantization
parameters (`verified/<policy_id>.pt`, what `hwq export --from qat` exports) and `verify.parquet`.
The search driver calls `verify_front` at the end of a run; `hwq verify RUN_DIR` calls `verify_run`
on a finished one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwq.errors import UserError

log = logging.getLogger("hwq.verify")


def choose_for_verification(F: np.ndarray, k: int, quality_index: int | None = None) -> np.ndarray:
    """Indices of the k front members closest to the ideal point: objectives normalised over
    the front, weighted Tchebycheff distance where the quality objective (if any) weighs as
    much as all cost objectives together — the best compromises, not the 8-bit corner."""
    if len(F) == 0:
        return np.zeros(0, dtype=np.int64)
    from hwq.search.indicators import normalise

    Fn = normalise(F, F.min(axis=0), F.max(axis=0))
    m = F.shape[1]
    w = np.full(m, 1.0 / m)
    if quality_index is not None and m > 1:
        w = np.full(m, 0.5 / (m - 1))
        w[quality_index] = 0.5
    dist = (Fn * w).max(axis=1)
    return np.lexsort((np.arange(len(F)), dist))[:k]


def verify_front(
    config: Any, writer: Any, front: pd.DataFrame, F: np.ndarray, k: int, executor: Any
) -> pd.DataFrame | None:
    """QAT-verify the k best compromises of `front` (objectives F, minimised, in the order of
    `config.objectives`) and write verify.parquet; None when the model has no trained weights
    and data (a warning says so)."""
    from hwq.objectives import QUALITY_OBJECTIVES
    from hwq.search.executors import JobSpec
    from hwq.trained import has_trained_model, trained_model_kwargs

    if not has_trained_model(config.model, config.weights, config.data):
        log.warning(
            "verification skipped: QAT needs trained weights and data (digits_resnet, or "
            "--weights FILE with --data package.module:factory)"
        )
        return None
    from hwq.models import is_causal_lm

    if is_causal_lm(config.model, dict(config.model_args or {})):
        log.warning("verification skipped: QAT of a language model is not implemented; the "
                    "front's perplexities are post-training measurements")
        return None
    objectives = list(config.objectives)
    qi = next((i for i, o in enumerate(objectives) if o in QUALITY_OBJECTIVES), None)
    rows = front.iloc[choose_for_verification(F, k, qi)]
    kwargs = trained_model_kwargs(config.model, config.weights, config.data, config.model_args)
    kwargs.update(epochs=int(config.verify_epochs), seed=int(config.seed))
    from hwq.quant.int8_outputs import run_requantizes

    if run_requantizes(writer.path):  # the numerics the search measured and hwq export writes
        kwargs["requantize_outputs"] = True
    spec = JobSpec("hwq.quant.verification:verify_job", kwargs)
    items = [
        np.stack([np.asarray(r["w_bits"]), np.asarray(r["a_bits"])], axis=1).tolist()
        for _, r in rows.iterrows()
    ]
    log.info("verifying %d policies by QAT (%d epochs each)", len(items), config.verify_epochs)
    from hwq.progress import progress

    with progress(f"verifying {len(items)} policies by QAT", total=None):
        results = executor.map(spec, items)
    from hwq.quant.verification import STATE_KEY

    ids = rows["policy_id"].tolist()
    records = []
    for pid, (rec, _wall) in zip(ids, results):
        rec = dict(rec)
        state = rec.pop(STATE_KEY, None)
        if state is not None:  # before verify.parquet: a verified row always has its model
            writer.write_verified(pid, state)
        records.append({**rec, "policy_id": pid})
    return writer.write_verify(records)


def verify_run(
    run_dir: str | Path, top: int, epochs: int | None, executor: str, address: str | None
) -> pd.DataFrame:
    """`hwq verify`: verify the `top` best compromises of a finished run; earlier verifications
    of other policies are kept, a re-verified policy takes its new row."""
    from hwq.objectives import minimised
    from hwq.runs import Run, RunWriter
    from hwq.search.config import read_config
    from hwq.search.executors import make_executor
    from hwq.writable import check_dir

    if top < 1:
        raise UserError(f"--top: expected 1 or more, found {top}")
    path = Path(run_dir)
    run = Run.open(path)
    check_dir(path, "hwq verify")  # before any training
    front = run.pareto
    if front is None or not len(front):
        raise UserError(f"{path}: the run has no Pareto front yet (pareto.parquet)")
    config = read_config(path)
    if epochs is not None:
        config.verify_epochs = epochs
    if not config.objectives:
        raise UserError(f"{path}: config.yaml names no objectives")
    F = minimised(front, config.objectives)
    writer = RunWriter.resume(path)
    before = run.verify
    with make_executor(executor, address=address) as pool:
        table = verify_front(config, writer, front, F, top, pool)
    if table is None:
        raise UserError(f"{path}: nothing verified (QAT needs trained weights and data)")
    if before is not None and len(before):
        table = pd.concat([before, table]).drop_duplicates("policy_id", keep="last")
        table = writer.write_verify(table.reset_index(drop=True))
    return table
