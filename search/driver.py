"""The search driver: one loop over pymoo `Algorithm`s for every algorithm.

    config ──prepare──► problem ──algorithm (ask → evaluate → tell)──► RunLogger ──► run directory
                                                                 └──► verification of the front

Defaults (the embedded `hwq search --device bitfusion`) are those of `SearchConfig`: model
`digits_resnet` (trained on first use, cached), objectives accuracy (PTQ on the validation
split), latency, energy and weight memory, NEMO with all five species, population 40 and 25
generations (1000 evaluations), seed 0, serial executor, the 3 best policies verified by QAT.

`--resume` loads the checkpoint of the last complete generation, drops later parts and
continues; since the checkpoint holds the algorithm's whole state (its random generator
included), the resumed run ends with the same front as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from hwq.errors import UserError
from hwq.search.algorithms import ReportingAlgorithm, spec
from hwq.search.config import SearchConfig, for_resume
from hwq.search.prepare import Prepared, prepare
from hwq.search.run_log import RunLogger

log = logging.getLogger("hwq.search")


class NoFeasiblePolicy(UserError):
    """No evaluated policy meets the constraints; the message names the closest one."""


def run_search(
    config: SearchConfig,
    *,
    resume: bool = False,
    given: Mapping[str, Any] | None = None,
    progress: bool = False,
    quality: Any = None,
) -> Any:
    """Run a search, or with `resume` continue the run in `config.output_dir` (then only the
    options in `given` count: runtime ones apply, others must equal the run's); return its
    `hwq.Run`."""
    from hwq.runs import Run, RunWriter
    from hwq.search.executors import make_executor
    from hwq.writable import check_dir

    writer = None
    point: tuple[Any, list[str]] = (None, [])
    if resume:
        config = for_resume(config.output_dir, given or {})
        writer = RunWriter.resume(config.output_dir)
        if writer.meta.get("status") == "done":
            log.info("run %s is already complete; nothing to resume", writer.path)
            return Run.open(writer.path)
        check_dir(config.output_dir, "--output-dir")
        point = writer.resume_point()  # damaged files found before any work
    elif config.output_dir:
        RunWriter.check_new(config.output_dir)
    else:
        check_dir(RunWriter.default_dir(config.model, "device").parent, "--output-dir")
    executor = make_executor(config.executor, config.address, config.workers)
    try:
        prep = prepare(config, quality=quality, executor=executor)
        writer = _open_writer(prep, writer, quality)
        try:
            _drive(prep, writer, point, resume=resume, progress=progress, executor=executor)
        except BaseException:
            from hwq.runs import now_iso

            writer.write_meta(status="failed", finished_at=now_iso())
            raise
    finally:
        executor.close()
    return Run.open(writer.path)


def _weights_sha256(prep: Prepared, quality: Any) -> str | None:
    """sha256 of the state dict the run's quality (PTQ accuracy, measured sensitivity) and
    verification use; None when neither uses trained weights (cost objectives only, a
    sensitivity file or a caller's quality function, and no verification)."""
    from hwq.trained import has_trained_model, trained_weights_sha256

    config = prep.config
    if not has_trained_model(config.model, config.weights, config.data):
        return None
    measured = prep.problem.quality is not None and quality is None and not config.sensitivity
    if not (measured or int(config.verify_top) > 0):
        return None
    return trained_weights_sha256(config.model, config.weights, config.model_args)


def _open_writer(prep: Prepared, writer: Any, quality: Any = None) -> Any:
    """A new run directory with its config, profile, layers and costs; or, resuming, the
    existing one after checking the model and device did not change."""
    from hwq.runs import RunWriter, candidates_schema, environment_meta

    config = prep.config
    if writer is None:
        out = (
            Path(config.output_dir)
            if config.output_dir
            else RunWriter.default_dir(config.model, prep.profile.name)
        )
        config.output_dir = str(out)
        meta = {
            **environment_meta(),
            "run_id": f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
            "seed": int(config.seed),
            "status": "running",
            "profile_sha256": prep.profile.sha256,
            "graph_hash": prep.graph.graph_hash,
            "algorithm": config.algorithm,
            "evaluations": 0,
            "model": config.model,
            "device": prep.profile.name,
            "objectives": list(config.objectives or []),
            "generations": spec(config.algorithm).generations(config),
            "generations_done": 0,
            "weights_sha256": _weights_sha256(prep, quality),
        }
        writer = RunWriter.create(out, meta)
        writer.write_config(_config_doc(prep))
        writer.write_profile(prep.profile.to_yaml())
        writer.write_layers(prep.graph)
        writer.write_costs(prep.table)
    else:
        if writer.meta.get("graph_hash") != prep.graph.graph_hash:
            raise UserError(
                f"--resume {writer.path}: the model's layer graph differs from the run's"
            )
        if writer.meta.get("profile_sha256") != prep.profile.sha256:
            raise UserError(f"--resume {writer.path}: the device profile changed since the run")
        writer.write_meta(status="running")
    import pyarrow as pa

    from hwq.search.quality_sources import DetailedQuality

    problem = prep.problem
    schema = candidates_schema(
        [problem.quality.column] if problem.quality else [],
        list(problem.logged_columns[1 if problem.quality else 0 :]),
    )
    if isinstance(problem.quality, DetailedQuality):  # e.g. ptq_accuracy, finetune_epochs
        for col, dtype in problem.quality.detail_columns().items():
            schema = schema.append(pa.field(col, pa.int32() if dtype == "int32" else pa.float64()))
    writer.schema = schema
    return writer


def _config_doc(prep: Prepared) -> dict[str, Any]:
    from hwq.objectives import OBJECTIVES

    config, problem = prep.config, prep.problem
    resolved: dict[str, Any] = {
        "device": prep.profile.name,
        "device_kind": prep.profile.kind,
        "objectives": {o: OBJECTIVES[o][0] for o in problem.objectives},
        "constraints": dict(problem.constraints),
        "encoding": dict(prep.encoding.describe()),
        "quality": problem.quality.describe() if problem.quality else None,
        "layers": len(prep.graph),
    }
    params = spec(config.algorithm).params
    if params is not None:
        resolved[config.algorithm] = params(config)
    return {"search": config.to_dict(), "resolved": resolved}


def _drive(
    prep: Prepared,
    writer: Any,
    point: tuple[Any, list[str]],
    *,
    resume: bool,
    progress: bool,
    executor: Any,
) -> None:
    """The generations loop; `point` is (checkpoint state, what resuming drops) of a resume."""
    from pymoo.util.display.display import Display

    from hwq.progress import enabled as progress_enabled
    from hwq.progress import generation_bar

    config, problem = prep.config, prep.problem
    algo_spec = spec(config.algorithm)
    n_gen = algo_spec.generations(config)
    algorithm = algo_spec.make(config)
    logger = RunLogger(writer, str(writer.meta["run_id"]), n_gen)
    start = 0
    state, dropped = point
    if dropped:
        damaged = any("(damaged" in d or "(missing" in d for d in dropped)
        log.log(logging.WARNING if damaged else logging.INFO,
                "--resume %s: dropping %s", writer.path, "; ".join(dropped))
    if state is not None:
        start = int(state["generation"]) + 1
        algorithm = state["algorithm"]
        logger.restore(state)
        writer.drop_parts_after(start - 1)
        _seed_quality_cache(problem, writer.path, start - 1)
        log.info("resuming %s at generation %d of %d", writer.path, start, n_gen)
    else:
        if resume:
            writer.drop_parts_after(-1)
            log.info("resuming %s from the start (no generation on disk)", writer.path)
        algorithm.setup(problem, termination=("n_gen", n_gen + 1), seed=int(config.seed))
    if not isinstance(algorithm, ReportingAlgorithm):
        raise TypeError(f"algorithm {config.algorithm}: lacks species_of/generation_stats")
    # (re-)attach what checkpoints leave out: the problem, a silent display, the logger
    algorithm.problem = problem
    algorithm.display = Display(None, verbose=False, progress=False)
    algorithm.callback = logger
    quiet = not progress  # a bar on a terminal, log lines otherwise
    label = f"{config.algorithm} on {prep.profile.name}"
    with generation_bar(label, total=n_gen, done=start, quiet=quiet) as bar:
        logger.show(bar, drawn=progress_enabled(quiet))
        for gen in range(start, n_gen):
            logger.start_generation()
            pop = algorithm.ask()
            algorithm.evaluator.eval(problem, pop, skip_already_evaluated=False)
            logger.evaluated(gen, pop, problem.last)
            t1 = time.perf_counter()
            algorithm.tell(infills=pop)  # pymoo calls the logger: candidates, species, pareto
            log.debug("generation %d: tell %.3fs", gen, time.perf_counter() - t1)
            logger.checkpoint(algorithm)
    _finish(prep, writer, logger, executor)


def _seed_quality_cache(problem: Any, path: Path, upto: int) -> None:
    from hwq.runs import read_candidates_upto

    q = problem.quality
    if q is None:
        return
    from hwq.search.quality_sources import DetailedQuality

    done = read_candidates_upto(path, upto)
    if len(done) and q.column in done:
        q.seed_cache(dict(zip(done["policy_id"], done[q.column])))
        if isinstance(q, DetailedQuality):
            q.seed_details(done)


def _finish(prep: Prepared, writer: Any, logger: RunLogger, executor: Any) -> None:
    from hwq.policy import Policy
    from hwq.runs import now_iso
    from hwq.verify import verify_front

    config, problem = prep.config, prep.problem
    front, F = logger.archive.sorted()
    if not len(front):
        writer.write_meta(status="done", finished_at=now_iso())
        raise NoFeasiblePolicy(logger.archive.no_feasible_message(problem.constraints))
    writer.write_pareto(front)
    ids = list(front["policy_id"])
    writer.clear_policies(ids)
    cols = [c for c in problem.logged_columns if c in front.columns]
    for _, row in front.iterrows():
        pairs = np.stack([np.asarray(row["w_bits"]), np.asarray(row["a_bits"])], axis=1)
        pol = Policy.from_array(prep.graph, pairs)
        pol.device = prep.profile.name
        pol.predicted = {c: float(row[c]) for c in cols}
        writer.write_policy(row["policy_id"], pol.to_json())
    if int(config.verify_top) > 0:
        verify_front(config, writer, front, F, int(config.verify_top), executor)
    writer.write_meta(status="done", finished_at=now_iso())
