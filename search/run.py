"""The search driver: resolves the options, runs the algorithm generation by generation, writes
the run directory, checkpoints for `--resume`, and verifies the best policies.

Defaults (the embedded `hwq search --device bitfusion`): model `digits_resnet` (trained on first
use, cached), objectives accuracy (PTQ on the validation split), latency, energy and weight
memory, NEMO with all five species, population 40 and 25 generations (1000 evaluations), seed 0,
serial executor, the 3 best policies verified by QAT (3 epochs with distillation). On two cores
this takes about a minute or two (see benchmarks/search_quality.py and the README).

Generation g (0-based; generation 0 is the initial population) is complete when its part
`candidates/part-g.parquet`, `species.parquet`, `pareto.parquet` and `state/checkpoint.pkl` are
written (in that order, each atomically). `--resume` loads the checkpoint, drops later parts and
continues; since the checkpoint holds the algorithm's whole state (its random generator
included), the resumed run ends with the same front as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hwq.search.indicators import nondominated_mask, normalise, r2_indicator, weight_vectors
from hwq.search.problem import (
    OBJECTIVES,
    QUALITY_OBJECTIVES,
    SearchProblem,
    parse_constraints,
    parse_objectives,
)

from hwq.display import bits_summary
from hwq.errors import UserError

log = logging.getLogger("hwq.search")

ALGORITHMS = ("nemo", "nsga2", "random", "ilp", "greedy")
DEFAULT_MODEL = "digits_resnet"
DEFAULT_OBJECTIVES = ("accuracy", "latency", "energy", "weight_memory")
DEFAULT_POPULATION = 40
DEFAULT_GENERATIONS = 25
DEFAULT_VERIFY_TOP = 3
DEFAULT_VERIFY_EPOCHS = 3


class NoFeasiblePolicy(UserError):
    """No evaluated policy meets the constraints; the message names the closest one."""


@dataclass
class SearchConfig:
    """The resolved options of a search (written to config.yaml)."""

    device: str
    model: str = DEFAULT_MODEL
    model_args: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] | None = None
    weights: str | None = None
    data: str | None = None
    algorithm: str = "nemo"
    objectives: list[str] | None = None
    sensitivity: str | None = None
    max: list[str] = field(default_factory=list)
    pin: list[str] = field(default_factory=list)
    tie: str = "none"
    bits: str | None = None
    generations: int = DEFAULT_GENERATIONS
    population: int = DEFAULT_POPULATION
    seed: int = 0
    output_dir: str | None = None
    executor: str = "serial"
    address: str | None = None
    workers: int | None = None
    verify_top: int = DEFAULT_VERIFY_TOP
    verify_epochs: int = DEFAULT_VERIFY_EPOCHS
    species: list[str] | None = None
    fixed_sizes: bool = False
    graph: str = "dataflow"
    gnn_features: str = "graph+costs"

    # options that change neither the search nor its results (may differ on --resume)
    RUNTIME_ONLY = ("output_dir", "executor", "address", "workers", "verify_top", "verify_epochs")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise UserError(
                f"--algorithm: expected one of {', '.join(ALGORITHMS)}, found {self.algorithm!r}"
            )
        if int(self.generations) < 1:
            raise UserError(f"--generations: expected a positive integer, found {self.generations}")
        if int(self.population) < 1:
            raise UserError(f"--population: expected a positive integer, found {self.population}")
        if int(self.verify_top) < 0:
            raise UserError(f"--verify-top: expected 0 or more, found {self.verify_top}")
        if self.tie not in ("none", "same-input"):
            raise UserError(f"--tie: expected none or same-input, found {self.tie!r}")
        if self.graph not in ("dataflow", "chain"):
            raise UserError(f"--graph: expected dataflow or chain, found {self.graph!r}")
        if self.gnn_features not in ("graph", "graph+costs"):
            raise UserError(
                f"--gnn-features: expected graph or graph+costs, found {self.gnn_features!r}"
            )
        if self.algorithm != "nemo" and (self.species or self.fixed_sizes):
            raise UserError("--species and --fixed-sizes apply to --algorithm nemo only")


# -- preparation -----------------------------------------------------------------------------------
@dataclass
class Prepared:
    config: SearchConfig
    profile: Any
    graph: Any
    encoding: Any
    table: Any
    problem: SearchProblem


def default_objectives(config: SearchConfig) -> list[str]:
    from hwq.search.quality import has_trained_model, no_quality_message

    if config.sensitivity:
        return ["sensitivity", *DEFAULT_OBJECTIVES[1:]]
    if has_trained_model(config.model, config.weights, config.data):
        return list(DEFAULT_OBJECTIVES)
    raise UserError(
        no_quality_message("accuracy (a default objective)", config.model)
        + "; or choose cost objectives only, e.g. --objectives latency,energy,weight_memory"
    )


def _check_device_bits(profile: Any, pairs: Sequence[tuple[int, int]]) -> None:
    bits = getattr(profile, "bits", None)
    ws = _field(bits, "weights")
    as_ = _field(bits, "activations")
    for w, a in pairs:
        if ws is not None and w not in ws and w < 16:
            raise UserError(
                f"--bits {w}x{a}: device {profile.name} supports weight bits "
                f"{', '.join(map(str, ws))}"
            )
        if as_ is not None and a not in as_ and a < 16:
            raise UserError(
                f"--bits {w}x{a}: device {profile.name} supports activation bits "
                f"{', '.join(map(str, as_))}"
            )


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def prepare(config: SearchConfig, quality: Any = None, executor: Any = None) -> Prepared:
    """Resolve every option: profile, graph, pairs, encoding, cost table, quality, problem."""
    from hwq.search.encoding import Encoding, parse_pin_specs
    from hwq.search.quality import resolve_quality

    from hwq.model_source import load_graph
    from hwq.profile import load_profile
    from hwq.tables import cost_table
    from hwq.units import parse_pairs

    config.validate()
    objectives = (
        parse_objectives(config.objectives) if config.objectives else default_objectives(config)
    )
    config.objectives = objectives
    constraints = parse_constraints(config.max)
    profile = load_profile(config.device)
    graph = load_graph(
        config.model,
        dict(config.model_args or {}),
        tuple(config.input_shape) if config.input_shape else None,
        config.weights,
    )
    if len(graph) == 0:
        raise UserError(f"model {config.model}: no quantizable layers to search")
    pairs = parse_pairs(config.bits) if config.bits else list(profile.default_pairs())
    _check_device_bits(profile, pairs)
    pins = parse_pin_specs(config.pin, graph)
    encoding = Encoding(graph, pairs, pins, config.tie)
    table = cost_table(graph, profile, bits=encoding.all_pairs())
    qname = next((o for o in [*objectives, *constraints] if o in QUALITY_OBJECTIVES), None)
    if quality is None:
        quality = resolve_quality(
            qname,
            model=config.model,
            sensitivity_file=config.sensitivity,
            encoding=encoding,
            table=table,
            weights=config.weights,
            data=config.data,
            model_args=config.model_args,
        )
    elif qname is not None and hasattr(quality, "evaluate") and quality.name != qname:
        raise UserError(f"objective {qname}: the given quality source measures {quality.name}")
    if quality is not None and not hasattr(quality, "evaluate"):
        from hwq.search.quality import CallableQuality

        if qname is None:
            raise UserError(
                "quality: a quality function needs accuracy or sensitivity among the objectives"
            )
        quality = CallableQuality(quality, qname)
    problem = SearchProblem(encoding, table, objectives, constraints, quality, executor)
    problem.check_constraints_reachable()
    if config.algorithm in ("ilp", "greedy"):
        from hwq.search.baselines import _additive_budgets, _require_sensitivity

        _require_sensitivity(problem, config.algorithm)
        if config.algorithm == "ilp" and not _additive_budgets(problem):
            raise UserError(
                "--algorithm ilp: give one budget, e.g. --max bops=100G or --max weight_memory=2MiB"
            )
    return Prepared(config, profile, graph, encoding, table, problem)


# -- the global Pareto archive ---------------------------------------------------------------------
class ParetoArchive:
    """Every feasible, mutually non-dominated policy evaluated so far (one row per policy id);
    also remembers the least-violating infeasible policy for the 'no policy meets' message."""

    def __init__(self) -> None:
        self.records: pd.DataFrame | None = None
        self.F = np.zeros((0, 0))
        self.closest: tuple[float, dict[str, Any]] | None = None

    def update(self, records: pd.DataFrame, F: np.ndarray, G: np.ndarray) -> None:
        cv = np.clip(G, 0.0, None).sum(axis=1)
        feas = cv <= 0
        if (~feas).any():
            j = int(np.argmin(np.where(feas, np.inf, cv)))
            if self.closest is None or cv[j] < self.closest[0]:
                self.closest = (float(cv[j]), records.iloc[j].to_dict())
        if not feas.any():
            return
        new = records[feas].reset_index(drop=True)
        newF = F[feas]
        if self.records is not None:
            allr = pd.concat([self.records, new], ignore_index=True)
            allF = np.concatenate([self.F, newF])
        else:
            allr, allF = new, newF
        first = ~allr["policy_id"].duplicated(keep="first").to_numpy()
        allr, allF = allr[first].reset_index(drop=True), allF[first]
        keep = nondominated_mask(allF)
        self.records = allr[keep].reset_index(drop=True)
        self.F = allF[keep]

    def __len__(self) -> int:
        return 0 if self.records is None else len(self.records)

    def sorted(self) -> tuple[pd.DataFrame, np.ndarray]:
        if self.records is None:
            return pd.DataFrame(), np.zeros((0, 0))
        order = np.lexsort((self.records["policy_id"].to_numpy(), *self.F.T[::-1]))
        return self.records.iloc[order].reset_index(drop=True), self.F[order]


# -- algorithms ------------------------------------------------------------------------------------
def make_algorithm(config: SearchConfig) -> Any:
    if config.algorithm == "nemo":
        from hwq.search.nemo import NEMO, NemoParams
        from hwq.search.species import parse_species

        params = NemoParams(
            species=parse_species(config.species),
            fixed_sizes=bool(config.fixed_sizes),
            graph_mode=config.graph,
            gnn_features=config.gnn_features,
        )
        return NEMO(pop_size=int(config.population), params=params, seed=int(config.seed))
    if config.algorithm == "nsga2":
        from hwq.search.baselines import make_nsga2

        return make_nsga2(int(config.population), int(config.seed))
    if config.algorithm == "random":
        from hwq.search.baselines import RandomSearch

        return RandomSearch(pop_size=int(config.population), seed=int(config.seed))
    return None  # ilp, greedy: one-shot


def _attach(algorithm: Any, problem: SearchProblem, generations: int) -> None:
    """(Re-)attach the problem and a silent display after setup or unpickling."""
    from pymoo.util.display.display import Display

    algorithm.problem = problem
    algorithm.display = Display(None, verbose=False, progress=False)
    if algorithm.callback is None:
        from pymoo.core.callback import Callback

        algorithm.callback = Callback()


def _evaluate(algorithm: Any, problem: SearchProblem, pop: Any) -> Any:
    algorithm.evaluator.eval(problem, pop, skip_already_evaluated=False)
    return problem.last


def _baseline_stats(
    name: str, pop: Any, generation: int, produced: int, n_obj: int
) -> pd.DataFrame:
    from hwq.search.indicators import rank_and_crowding

    F = pop.get("F").astype(np.float64)
    CV = pop.get("CV").astype(np.float64).reshape(-1)
    rank, _ = rank_and_crowding(F, CV)
    feas = CV <= 0
    ref = F[feas] if feas.any() else F
    front = (rank == 0) & (feas if feas.any() else np.ones(len(F), bool))
    Fn = normalise(F, ref.min(axis=0), ref.max(axis=0))
    return pd.DataFrame(
        {
            "generation": [generation],
            "species": [name],
            "size": [produced],
            "r2": [r2_indicator(Fn[front], weight_vectors(n_obj))],
            "ucb": [np.nan],
            "front_members": [int(front.sum())],
        }
    )


# -- the driver ------------------------------------------------------------------------------------
def _new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_search(
    config: SearchConfig,
    *,
    resume: bool = False,
    progress: bool = False,
    quality: Any = None,
) -> Any:
    """Run (or resume) a search and return its `hwq.Run`."""
    from hwq.runs import Run, RunWriter, candidates_schema, environment_meta

    if resume:
        if not config.output_dir:
            raise UserError("--resume needs --output-dir DIR of the run to continue")
        writer = RunWriter.resume(config.output_dir)
        stored = SearchConfig.from_dict(_read_config(writer.path))
        for key in SearchConfig.RUNTIME_ONLY:
            value = getattr(config, key)
            if value is not None:
                setattr(stored, key, value)
        stored.output_dir = str(writer.path)
        config = stored
        if writer.meta.get("status") == "done":
            log.info("run %s is already complete; nothing to resume", writer.path)
            return Run.open(writer.path)
    else:
        writer = None
    from hwq.search.executors import make_executor

    executor = make_executor(config.executor, config.address, config.workers)
    try:
        prep = prepare(config, quality=quality, executor=executor)
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
                "run_id": _new_run_id(),
                "seed": int(config.seed),
                "status": "running",
                "profile_sha256": prep.profile.sha256,
                "graph_hash": prep.graph.graph_hash,
                "algorithm": config.algorithm,
                "evaluations": 0,
                "model": config.model,
                "device": prep.profile.name,
                "objectives": list(config.objectives or []),
                "generations": _n_generations(config),
                "generations_done": 0,
            }
            writer = RunWriter.create(out, meta)
            writer.write_config(_config_doc(config, prep))
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
        writer.schema = candidates_schema(
            [prep.problem.quality.column] if prep.problem.quality else [],
            list(prep.problem.logged_columns[1 if prep.problem.quality else 0 :]),
        )
        try:
            _drive(prep, writer, resume=resume, progress=progress, executor=executor)
        except BaseException:
            writer.write_meta(status="failed", finished_at=_now())
            raise
    finally:
        executor.close()
    return Run.open(writer.path)


def check_resume_options(output_dir: str, given: Mapping[str, Any]) -> None:
    """With --resume, options that shape the search must match the run's config.yaml (the
    runtime ones — executor, address, workers, verification — may change)."""
    p = Path(output_dir)
    if not (p / "meta.json").is_file():
        raise UserError(f"--resume: {p} is not a run directory (no meta.json)")
    stored = SearchConfig.from_dict(_read_config(p)).to_dict()
    for key, value in given.items():
        if key in SearchConfig.RUNTIME_ONLY or key not in stored:
            continue
        if value != stored[key]:
            raise UserError(
                f"--resume: --{key.replace('_', '-')} {value!r} differs from the run's "
                f"{stored[key]!r}; leave it out to continue the run as it was started"
            )


def _n_generations(config: SearchConfig) -> int:
    return 1 if config.algorithm in ("ilp", "greedy") else int(config.generations)


def _now() -> str:
    from hwq.runs import now_iso

    return now_iso()


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    p = path / "config.yaml"
    if not p.is_file():
        raise UserError(f"--resume: {path} has no config.yaml")
    doc = yaml.safe_load(p.read_text()) or {}
    return dict(doc.get("search", doc))


def _config_doc(config: SearchConfig, prep: Prepared) -> dict[str, Any]:
    from hwq.search.nemo import NemoParams
    from hwq.search.species import parse_species

    doc: dict[str, Any] = {"search": config.to_dict()}
    doc["resolved"] = {
        "device": prep.profile.name,
        "device_kind": prep.profile.kind,
        "objectives": {o: OBJECTIVES[o][0] for o in prep.problem.objectives},
        "constraints": dict(prep.problem.constraints),
        "encoding": dict(prep.encoding.describe()),
        "quality": prep.problem.quality.describe() if prep.problem.quality else None,
        "layers": len(prep.graph),
    }
    if config.algorithm == "nemo":
        params = NemoParams(
            species=parse_species(config.species),
            fixed_sizes=bool(config.fixed_sizes),
            graph_mode=config.graph,
            gnn_features=config.gnn_features,
        )
        doc["resolved"]["nemo"] = params.to_dict()
    return doc


def _drive(prep: Prepared, writer: Any, *, resume: bool, progress: bool, executor: Any) -> None:
    from hwq.runs import empty_species

    config, problem = prep.config, prep.problem
    run_id = str(writer.meta["run_id"])
    n_gen = _n_generations(config)
    algorithm = make_algorithm(config)
    archive = ParetoArchive()
    species_rows = empty_species()
    evaluations = 0
    start = 0
    state = writer.read_checkpoint() if resume else None
    if state is not None:
        start = int(state["generation"]) + 1
        archive = state["archive"]
        species_rows = state["species_rows"]
        evaluations = int(state["evaluations"])
        if state.get("algorithm") is not None:
            algorithm = state["algorithm"]
        writer.drop_parts_after(start - 1)
        _seed_quality_cache(problem, writer.path, start - 1)
        log.info("resuming %s at generation %d of %d", writer.path, start, n_gen)
    elif resume:
        writer.drop_parts_after(-1)
        log.info("resuming %s from the start (no complete generation)", writer.path)
    if algorithm is not None:
        if state is None or state.get("algorithm") is None:
            algorithm.setup(problem, termination=("n_gen", n_gen + 1), seed=int(config.seed))
        _attach(algorithm, problem, n_gen)

    progress = bool(progress) and sys.stderr.isatty()  # a bar on a terminal, log lines otherwise
    timing = dict(writer.meta.get("timing") or {})
    timing.setdefault("generation_wall_s", [])
    timing.setdefault("quality_wall_s", [])
    bar = _Progress(progress, n_gen, start, f"{config.algorithm} on {prep.profile.name}")
    try:
        for gen in range(start, n_gen):
            t0 = time.perf_counter()
            if algorithm is None:
                ev, names, stats = _one_shot(config, problem)
            else:
                pop = algorithm.ask()
                t_ask = time.perf_counter() - t0
                ev = _evaluate(algorithm, problem, pop)
                t1 = time.perf_counter()
                algorithm.tell(infills=pop)
                t_tell = time.perf_counter() - t1
                if config.algorithm == "nemo":
                    sp = pop.get("species").astype(np.int64)
                    names = [algorithm.species_names[s] for s in sp]
                    stats = algorithm.stats.drop(columns=["next_size"])
                else:
                    names = [config.algorithm] * len(pop)
                    stats = _baseline_stats(
                        config.algorithm, algorithm.pop, gen, len(pop), problem.n_obj
                    )
                log.debug("generation %d: ask %.3fs tell %.3fs", gen, t_ask, t_tell)
            records = ev.records.copy()
            records.insert(0, "species", names)
            records.insert(0, "generation", gen)
            records.insert(0, "run_id", run_id)
            writer.write_candidates(gen, records)
            evaluations += len(records)
            archive.update(records, ev.F, ev.G)
            species_rows = pd.concat(
                [species_rows[species_rows["generation"] < gen], stats], ignore_index=True
            )
            writer.write_species(species_rows)
            front, _ = archive.sorted()
            if len(front):
                writer.write_pareto(front)
            writer.write_checkpoint(
                {
                    "generation": gen,
                    "algorithm": algorithm,
                    "archive": archive,
                    "species_rows": species_rows,
                    "evaluations": evaluations,
                }
            )
            wall = time.perf_counter() - t0
            quality_wall = float(ev.quality_wall_s)
            timing["generation_wall_s"] = timing["generation_wall_s"][:gen] + [round(wall, 6)]
            timing["quality_wall_s"] = timing["quality_wall_s"][:gen] + [round(quality_wall, 6)]
            writer.write_meta(evaluations=evaluations, generations_done=gen + 1, timing=timing)
            log.log(
                logging.DEBUG if progress else logging.INFO,
                "generation %d/%d: %d evaluated, front %d, %.2fs (%.2fs outside evaluation)",
                gen + 1,
                n_gen,
                len(records),
                len(archive),
                wall,
                max(wall - quality_wall, 0.0),
            )
            bar.advance(len(archive), evaluations)
    finally:
        bar.close()
    _finish(prep, writer, archive, executor)


def _one_shot(config: SearchConfig, problem: SearchProblem) -> tuple[Any, list[str], pd.DataFrame]:
    from hwq.search.baselines import greedy_path, solve_ilp

    enc = problem.encoding
    if config.algorithm == "ilp":
        C = solve_ilp(problem)[None, :]
    else:
        C = greedy_path(problem)
    ev = problem.evaluate_pairs(enc.decode_choice_index(C))
    names = [config.algorithm] * len(C)
    from hwq.search.indicators import rank_and_crowding

    cv = np.clip(ev.G, 0, None).sum(axis=1)
    rank, _ = rank_and_crowding(ev.F, cv)
    feas = cv <= 0
    ref = ev.F[feas] if feas.any() else ev.F
    front = (rank == 0) & (feas if feas.any() else np.ones(len(C), bool))
    Fn = normalise(ev.F, ref.min(axis=0), ref.max(axis=0))
    stats = pd.DataFrame(
        {
            "generation": [0],
            "species": [config.algorithm],
            "size": [len(C)],
            "r2": [r2_indicator(Fn[front], weight_vectors(problem.n_obj))],
            "ucb": [np.nan],
            "front_members": [int(front.sum())],
        }
    )
    return ev, names, stats


def _seed_quality_cache(problem: SearchProblem, path: Path, upto: int) -> None:
    q = problem.quality
    if q is None or not hasattr(q, "seed_cache"):
        return
    from hwq.runs import read_candidates_upto

    done = read_candidates_upto(path, upto)
    if len(done) and q.column in done:
        q.seed_cache(dict(zip(done["policy_id"], done[q.column])))


def _finish(prep: Prepared, writer: Any, archive: ParetoArchive, executor: Any) -> None:
    from hwq.policy import Policy

    config, problem = prep.config, prep.problem
    front, F = archive.sorted()
    if not len(front):
        writer.write_meta(status="done", finished_at=_now())
        raise NoFeasiblePolicy(_no_feasible_message(problem, archive))
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
    k = int(config.verify_top)
    if k > 0:
        _verify(prep, writer, front, F, k, executor)
    writer.write_meta(status="done", finished_at=_now())


def choose_for_verification(F: np.ndarray, k: int, quality_index: int | None = None) -> np.ndarray:
    """Indices of the k front members closest to the ideal point: objectives normalised over
    the front, weighted Tchebycheff distance where the quality objective (if any) weighs as
    much as all cost objectives together — the best compromises, not the 8-bit corner."""
    if len(F) == 0:
        return np.zeros(0, dtype=np.int64)
    Fn = normalise(F, F.min(axis=0), F.max(axis=0))
    m = F.shape[1]
    w = np.full(m, 1.0 / m)
    if quality_index is not None and m > 1:
        w = np.full(m, 0.5 / (m - 1))
        w[quality_index] = 0.5
    dist = (Fn * w).max(axis=1)
    return np.lexsort((np.arange(len(F)), dist))[:k]


def _verify(
    prep: Prepared, writer: Any, front: pd.DataFrame, F: np.ndarray, k: int, executor: Any
) -> None:
    from hwq.search.executors import JobSpec
    from hwq.search.quality import has_trained_model, job_kwargs

    config = prep.config
    if not has_trained_model(config.model, config.weights, config.data):
        log.warning(
            "verification skipped: QAT needs trained weights and data (digits_resnet, or "
            "--weights FILE with --data package.module:factory)"
        )
        return
    q = prep.problem.quality_name
    qi = prep.problem.objectives.index(q) if q in prep.problem.objectives else None
    pick = choose_for_verification(F, k, qi)
    rows = front.iloc[pick]
    kwargs = job_kwargs(config.model, config.weights, config.data, config.model_args)
    kwargs.update(epochs=int(config.verify_epochs), seed=int(config.seed))
    spec = JobSpec("hwq.search.quality:verify_job", kwargs)
    items = [
        np.stack([np.asarray(r["w_bits"]), np.asarray(r["a_bits"])], axis=1).tolist()
        for _, r in rows.iterrows()
    ]
    log.info("verifying %d policies by QAT (%d epochs each)", len(items), config.verify_epochs)
    from hwq.progress import progress

    with progress(f"verifying {len(items)} policies by QAT", total=None):
        results = executor.map(spec, items)
    records = []
    for (_, r), (rec, _wall) in zip(rows.iterrows(), results):
        rec = dict(rec)
        rec["run_id"] = str(writer.meta["run_id"])
        rec["policy_id"] = r["policy_id"]
        records.append(rec)
    writer.write_verify(records)


def _no_feasible_message(problem: SearchProblem, archive: ParetoArchive) -> str:
    limits = ", ".join(f"--max {k}={v:.6g}" for k, v in problem.constraints.items())
    msg = f"no evaluated policy meets the constraints ({limits or 'device feasibility'})"
    if archive.closest is not None:
        rec = archive.closest[1]
        pairs = np.stack([np.asarray(rec["w_bits"]), np.asarray(rec["a_bits"])], axis=1)
        parts = []
        for name, limit in problem.constraints.items():
            col = OBJECTIVES[name][0]
            v = float(rec.get(col, math.nan))
            parts.append(f"{name} {v:.6g} (limit {limit:.6g})")
        if not rec.get("feasible", True):
            parts.append(str(rec.get("infeasible_reason") or "not feasible on the device"))
        msg += f"; the closest is {rec['policy_id']} ({bits_summary(pairs)}): " + ", ".join(parts)
    return msg


class _Progress:
    """A rich progress bar on stderr (no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, done: int, label: str) -> None:
        self.p = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.p = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("generations · {task.fields[evals]} evaluated · front {task.fields[front]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.p.start()
        self.task = self.p.add_task(label, total=total, completed=done, evals=0, front=0)

    def advance(self, front: int, evals: int) -> None:
        if self.p is not None:
            self.p.update(self.task, advance=1, front=front, evals=evals)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()
