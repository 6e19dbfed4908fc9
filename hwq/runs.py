"""Run directories (DESIGN.md §6): the writer a search uses and `Run`, the reader users query.

Layout of a run directory::

    config.yaml                 resolved options of the search
    profile.yaml                the frozen device profile
    meta.json                   hwq_version, torch_version, python_version, seed, status,
                                started_at, finished_at, profile_sha256, graph_hash, algorithm,
                                evaluations (+ run_id, model, device, objectives, generations,
                                generations_done, timing: per-generation wall and quality
                                seconds)
    layers.parquet              the LayerGraph
    costs.parquet               the CostTable of the allowed pairs
    candidates/part-NNNNN.parquet   one part per generation (written under a temporary name,
                                then renamed: a reader never sees half a part)
    species.parquet             generation, species, size, r2, ucb, front_members
    pareto.parquet              the final front (same columns as candidates)
    verify.parquet              run_id, policy_id, fp32/ptq/qat accuracy, epochs, wall_s
    policies/<policy_id>.json   every front policy
    verified/<policy_id>.pt     every verified policy's fine-tuned model with its quantization
                                parameters (`hwq.quant.quantized_file`; `hwq export --from qat`)
    state/checkpoint.pkl        the search state after the last complete generation (resume)

Every Parquet file carries the key/value metadata `hwq.schema_version`, `hwq.kind`,
`hwq.profile_sha256`, `hwq.graph_hash` (and `hwq.run_id`). Every file is written atomically
(temporary name + rename), and only the search's driver process writes.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hwq.atomic import remove_temporaries, write_bytes_atomic, write_text_atomic
from hwq.errors import UserError, reason

SCHEMA_VERSION = 1
META_KEYS = (
    "hwq_version",
    "torch_version",
    "python_version",
    "seed",
    "status",
    "started_at",
    "finished_at",
    "profile_sha256",
    "graph_hash",
    "algorithm",
    "evaluations",
    "weights_sha256",  # of the state dict quality and verification used; None when none did
)
SPECIES_SCHEMA = pa.schema(
    [
        ("generation", pa.int32()),
        ("species", pa.string()),
        ("size", pa.int32()),
        ("r2", pa.float64()),
        ("ucb", pa.float64()),
        ("front_members", pa.int32()),
    ]
)
SPECIES_COLUMNS = tuple(SPECIES_SCHEMA.names)
VERIFY_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("policy_id", pa.string()),
        ("fp32_accuracy", pa.float64()),
        ("ptq_accuracy", pa.float64()),
        ("qat_accuracy", pa.float64()),
        ("epochs", pa.int32()),
        ("wall_s", pa.float64()),
    ]
)
VERIFY_COLUMNS = tuple(VERIFY_SCHEMA.names)
PART_RE = re.compile(r"^part-(\d{5})\.parquet$")
VERIFIED_DIR = "verified"  # verified/<policy_id>.pt: the fine-tuned models of verify.parquet


def verified_path(run_dir: str | os.PathLike[str], policy_id: str) -> Path:
    """Where a run keeps the fine-tuned model of a verified policy."""
    return Path(run_dir) / VERIFIED_DIR / f"{policy_id}.pt"


def now_iso() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def candidates_schema(quality_columns: Iterable[str], cost_columns: Iterable[str]) -> pa.Schema:
    fields = [
        pa.field("run_id", pa.string()),
        pa.field("generation", pa.int32()),
        pa.field("species", pa.string()),
        pa.field("policy_id", pa.string()),
        pa.field("w_bits", pa.list_(pa.int8())),
        pa.field("a_bits", pa.list_(pa.int8())),
    ]
    fields += [pa.field(c, pa.float64()) for c in [*quality_columns, *cost_columns]]
    fields += [pa.field("feasible", pa.bool_()), pa.field("eval_wall_s", pa.float64())]
    return pa.schema(fields)


def empty_species() -> pd.DataFrame:
    """A species table without rows (the columns of `SPECIES_SCHEMA`)."""
    return pd.DataFrame(columns=list(SPECIES_COLUMNS))


def verify_table(records: pd.DataFrame | Sequence[Mapping[str, Any]], run_id: str) -> pa.Table:
    """Verify records (dicts, or a DataFrame) as a table of `VERIFY_SCHEMA`; a record without a
    `run_id` takes `run_id`. A record that lacks a column is a ValueError naming it."""
    if isinstance(records, pd.DataFrame):
        records = records.to_dict("records")
    rows: dict[str, list[Any]] = {c: [] for c in VERIFY_COLUMNS}
    for i, rec in enumerate(records):
        missing = [c for c in VERIFY_COLUMNS if c != "run_id" and c not in rec]
        if missing:
            raise ValueError(f"verify record {i} lacks {', '.join(missing)}")
        rows["run_id"].append(str(rec.get("run_id", run_id)))
        for c in VERIFY_COLUMNS[1:]:
            rows[c].append(rec[c])
    return pa.table(rows, schema=VERIFY_SCHEMA)


def write_verify_parquet(
    records: pd.DataFrame | Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    run_id: str = "",
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write verify records as a `verify.parquet` outside a run directory (`hwq finetune -o`),
    atomically, with the key/value metadata hwq.schema_version and hwq.kind=verify (plus
    `metadata`)."""
    from hwq.parquet_io import write_table_atomic

    meta = {"hwq.schema_version": str(SCHEMA_VERSION), "hwq.kind": "verify", **(metadata or {})}
    write_table_atomic(verify_table(records, run_id), path, meta)


class RunWriter:
    """Writes one run directory. Create with `RunWriter.create` or reopen with `.resume`."""

    def __init__(self, path: Path, meta: dict[str, Any], schema: pa.Schema | None = None) -> None:
        self.path = Path(path)
        self.meta = meta
        self.schema = schema

    # -- opening ---------------------------------------------------------------------------------
    @staticmethod
    def default_dir(model: str, device: str, root: str | os.PathLike[str] = "runs") -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = [
            re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(s).stem if "/" in s else s)
            for s in (model, device)
        ]
        base = Path(root) / f"{stamp}-{safe[0]}-{safe[1]}"
        out, n = base, 1
        while out.exists() and any(out.iterdir()):
            n += 1
            out = base.with_name(f"{base.name}-{n}")
        return out

    @staticmethod
    def check_new(path: str | os.PathLike[str]) -> None:
        """Refuse a run directory that exists with files in it, or cannot be created or
        written: called before any work (tracing, training, measuring)."""
        from hwq.writable import check_dir

        p = Path(path)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise UserError(
                f"--output-dir {p}: exists and is not empty; choose another directory, or pass "
                "--resume to continue the run in it"
            )
        check_dir(p, "--output-dir")

    @classmethod
    def create(cls, path: str | os.PathLike[str], meta: Mapping[str, Any]) -> RunWriter:
        p = Path(path)
        cls.check_new(p)
        p.mkdir(parents=True, exist_ok=True)
        (p / "candidates").mkdir(exist_ok=True)
        full = {k: None for k in META_KEYS}
        full.update(meta)
        for key, default in (("status", "running"), ("started_at", now_iso()), ("evaluations", 0)):
            if full.get(key) is None:  # every key is pre-filled with None above
                full[key] = default
        w = cls(p, full)
        w.write_meta()
        return w

    @classmethod
    def resume(cls, path: str | os.PathLike[str]) -> RunWriter:
        p = Path(path)
        meta_path = p / "meta.json"
        if not meta_path.is_file():
            raise UserError(f"--resume: {p} is not a run directory (no meta.json)")
        meta = read_meta_file(meta_path, "--resume")
        w = cls(p, meta)
        w.cleanup_temporaries()
        return w

    # -- small files -----------------------------------------------------------------------------
    def write_meta(self, **updates: Any) -> None:
        self.meta.update(updates)
        write_text_atomic(
            self.path / "meta.json",
            json.dumps(self.meta, indent=2, default=_json_default) + "\n",
        )

    def write_config(self, config: Mapping[str, Any]) -> None:
        import yaml

        write_text_atomic(self.path / "config.yaml", yaml.safe_dump(dict(config), sort_keys=False))

    def write_profile(self, text: str) -> None:
        write_text_atomic(self.path / "profile.yaml", text)

    def parquet_meta(self, kind: str) -> dict[str, str]:
        return {
            "hwq.schema_version": str(SCHEMA_VERSION),
            "hwq.kind": kind,
            "hwq.profile_sha256": str(self.meta.get("profile_sha256") or ""),
            "hwq.graph_hash": str(self.meta.get("graph_hash") or ""),
            "hwq.run_id": str(self.meta.get("run_id") or ""),
        }

    def write_frame(self, df: pd.DataFrame | pa.Table, name: str, kind: str) -> None:
        from hwq.parquet_io import write_table_atomic

        table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
        write_table_atomic(table, self.path / name, self.parquet_meta(kind))

    def write_layers(self, graph: Any) -> None:
        table = pa.Table.from_pandas(graph.to_frame(), preserve_index=False)
        # the layer file keeps the graph's own schema version (what LayerGraph.read checks),
        # not the run log's
        meta = {**self.parquet_meta("layers"), **graph.metadata()}
        from hwq.parquet_io import write_table_atomic

        write_table_atomic(table, self.path / "layers.parquet", meta)

    def write_costs(self, table: Any) -> None:
        from hwq.parquet_io import write_table_atomic

        arrow = pa.Table.from_pandas(table.to_pandas(), preserve_index=False)
        meta = {**table.metadata(), **self.parquet_meta("costs")}
        write_table_atomic(arrow, self.path / "costs.parquet", meta)

    # -- per-generation tables -------------------------------------------------------------------
    def candidates_table(self, records: pd.DataFrame) -> pa.Table:
        assert self.schema is not None, "set RunWriter.schema before writing candidates"
        cols = {}
        for f in self.schema:
            if f.name in ("w_bits", "a_bits"):
                cols[f.name] = pa.array(
                    [np.asarray(v, dtype=np.int8).tolist() for v in records[f.name]], f.type
                )
            else:
                cols[f.name] = pa.array(records[f.name].tolist(), f.type)
        return pa.Table.from_pydict(cols, schema=self.schema)

    def write_candidates(self, generation: int, records: pd.DataFrame) -> None:
        self.write_frame(
            self.candidates_table(records),
            f"candidates/part-{generation:05d}.parquet",
            "candidates",
        )

    def write_species(self, rows: pd.DataFrame) -> None:
        df = rows[list(SPECIES_COLUMNS)].copy()
        table = pa.Table.from_pandas(df, preserve_index=False).cast(SPECIES_SCHEMA)
        self.write_frame(table, "species.parquet", "species")

    def write_verify(self, records: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """`verify.parquet` of the run (records without a run_id take the run's); returns it."""
        table = verify_table(records, str(self.meta.get("run_id") or ""))
        self.write_frame(table, "verify.parquet", "verify")
        return table.to_pandas()

    def write_verified(self, policy_id: str, data: bytes) -> Path:
        """`verified/<policy_id>.pt`: the bytes of a verified policy's quantized-model file (a
        verification job returns them; the driver writes)."""
        return write_bytes_atomic(verified_path(self.path, policy_id), data)

    def write_pareto(self, records: pd.DataFrame) -> None:
        """pareto.parquet: the candidates' columns plus `equivalent_ids` (list of policy ids with
        the same objective vector as the row's policy; empty when it has no twin)."""
        table = self.candidates_table(records)
        twins = records["equivalent_ids"] if "equivalent_ids" in records else [[]] * len(records)
        column = pa.array([list(map(str, t)) for t in twins], pa.list_(pa.string()))
        self.write_frame(table.append_column("equivalent_ids", column), "pareto.parquet",
                         "pareto")

    def write_policy(self, policy_id: str, text: str) -> None:
        write_text_atomic(self.path / "policies" / f"{policy_id}.json", text)

    def clear_policies(self, keep: Iterable[str]) -> None:
        keep = set(keep)
        d = self.path / "policies"
        if d.is_dir():
            for f in d.glob("*.json"):
                if f.stem not in keep:
                    f.unlink()

    # -- checkpoints -----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.path / "state" / "checkpoint.pkl"

    @property
    def previous_checkpoint_path(self) -> Path:
        """The checkpoint of the generation before (kept so a damaged or deleted last
        checkpoint costs one generation, not the run)."""
        return self.path / "state" / "checkpoint.prev.pkl"

    def write_checkpoint(self, state: Any) -> None:
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        if self.checkpoint_path.is_file():
            os.replace(self.checkpoint_path, self.previous_checkpoint_path)
        write_bytes_atomic(self.checkpoint_path, data)

    def read_checkpoint(self) -> Any | None:
        if not self.checkpoint_path.is_file():
            return None
        with open(self.checkpoint_path, "rb") as fh:
            return pickle.load(fh)

    def resume_point(self) -> tuple[Any | None, list[str]]:
        """(the newest intact checkpoint state whose generation's parts are all intact, or None
        when the run has nothing on disk yet; what resuming there drops, one phrase each).

        A damaged or missing candidate part, checkpoint or both checkpoints are skipped back
        over; when something is on disk but no intact checkpoint precedes the damage, a
        UserError names the damaged files (a run never starts over silently)."""
        rel = lambda f: f.relative_to(self.path).as_posix()  # noqa: E731
        parts = sorted(
            (int(m.group(1)), f) for f in (self.path / "candidates").glob("part-*.parquet")
            if (m := PART_RE.match(f.name))
        )
        problems: list[str] = []
        first_bad: int | None = None
        for expected, (gen, f) in enumerate(parts):
            if gen != expected:
                problems.append(f"candidates/part-{expected:05d}.parquet (missing)")
                first_bad = expected
                break
            try:
                pq.read_table(f)
            except Exception as exc:  # pyarrow raises several types for a damaged file
                problems.append(f"{rel(f)} (damaged: {reason(exc)})")
                first_bad = gen
                break
        state = None
        paths = (self.checkpoint_path, self.previous_checkpoint_path)
        for path in paths:
            if not path.is_file():
                if path == self.checkpoint_path and (parts or self.previous_checkpoint_path
                                                     .is_file()):
                    problems.append(f"{rel(path)} (missing)")
                continue
            try:
                with open(path, "rb") as fh:
                    candidate = pickle.load(fh)
                generation = int(candidate["generation"])
            except Exception as exc:  # UnpicklingError, EOFError, KeyError, ...
                problems.append(f"{rel(path)} (damaged: {reason(exc)})")
                continue
            if first_bad is not None and generation >= first_bad:
                problems.append(f"{rel(path)} (generation {generation}, after the damage)")
                continue
            state = candidate
            break
        if state is None:
            if parts or problems:
                raise UserError(
                    f"--resume {self.path}: no intact checkpoint to continue from: "
                    f"{'; '.join(problems) or 'no checkpoint'}; {len(parts)} generation(s) on "
                    "disk cannot be continued exactly: start a new run in another --output-dir"
                )
            return None, []
        kept = int(state["generation"])
        later = [rel(f) for gen, f in parts if gen > kept]
        dropped = problems + [f"{p} (after generation {kept})" for p in later
                              if not any(q.startswith(p) for q in problems)]
        return state, dropped

    def cleanup_temporaries(self) -> None:
        """Remove half-written files (temporary names) left by a killed run."""
        remove_temporaries(self.path)

    def drop_parts_after(self, generation: int) -> None:
        """Remove candidate parts of generations after `generation` (not checkpointed)."""
        d = self.path / "candidates"
        for f in d.glob("part-*.parquet") if d.is_dir() else ():
            m = PART_RE.match(f.name)
            if m and int(m.group(1)) > generation:
                f.unlink()


def environment_meta() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from hwq import __version__

    try:  # the installed distribution's version: a cost-only search never imports torch
        torch_version: str | None = version("torch")
    except PackageNotFoundError:  # pragma: no cover - torch is a dependency
        torch_version = None
    return {
        "hwq_version": __version__,
        "torch_version": torch_version,
        "python_version": platform.python_version(),
    }


# -- reader ----------------------------------------------------------------------------------------
class Run:
    """A run directory, read: `Run.open(dir)`.

    `.meta` (dict of meta.json), `.config` (dict of config.yaml), and DataFrames `.candidates`
    (every complete generation part), `.pareto`, `.species`, `.verify`, `.layers`, `.costs`;
    `.policy(id)` returns the `hwq.Policy` of a policy id.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            raise UserError(f"{self.path}: not a run directory (no meta.json)")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Run:
        return cls(path)

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"Run({str(self.path)!r}, status={m.get('status')}, algorithm={m.get('algorithm')}, "
            f"evaluations={m.get('evaluations')})"
        )

    @property
    def dir(self) -> Path:
        return self.path

    @property
    def meta(self) -> dict[str, Any]:
        return read_meta_file(self.path / "meta.json", "run")

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id"))

    @property
    def status(self) -> str:
        return str(self.meta.get("status"))

    @property
    def config(self) -> dict[str, Any]:
        import yaml

        p = self.path / "config.yaml"
        return yaml.safe_load(p.read_text()) if p.is_file() else {}

    def _read(self, name: str) -> pd.DataFrame | None:
        p = self.path / name
        if not p.is_file():
            return None
        return pq.read_table(p).to_pandas()

    def part_files(self) -> list[Path]:
        d = self.path / "candidates"
        if not d.is_dir():
            return []
        return sorted(f for f in d.iterdir() if PART_RE.match(f.name))

    @property
    def candidates(self) -> pd.DataFrame:
        parts = [pq.read_table(f) for f in self.part_files()]
        if not parts:
            return pd.DataFrame(columns=["run_id", "generation", "species", "policy_id"])
        return pa.concat_tables(parts).to_pandas()

    @property
    def pareto(self) -> pd.DataFrame:
        df = self._read("pareto.parquet")
        return df if df is not None else pd.DataFrame(columns=["policy_id"])

    @property
    def species(self) -> pd.DataFrame:
        df = self._read("species.parquet")
        return df if df is not None else empty_species()

    @property
    def verify(self) -> pd.DataFrame:
        df = self._read("verify.parquet")
        return df if df is not None else pd.DataFrame(columns=list(VERIFY_COLUMNS))

    @property
    def costs(self) -> pd.DataFrame:
        df = self._read("costs.parquet")
        return df if df is not None else pd.DataFrame()

    @property
    def layers(self) -> Any:
        from hwq.graph import LayerGraph

        return LayerGraph.read(self.path / "layers.parquet")

    def verified_file(self, policy_id: str) -> Path:
        """`verified/<policy_id>.pt` of the run (it exists where the policy was verified)."""
        return verified_path(self.path, policy_id)

    def policy_ids(self) -> list[str]:
        d = self.path / "policies"
        return sorted(f.stem for f in d.glob("*.json")) if d.is_dir() else []

    def policy(self, policy_id: str) -> Any:
        """The `hwq.Policy` of `policy_id`: from policies/<id>.json, else from the candidates."""
        from hwq.policy import Policy

        p = self.path / "policies" / f"{policy_id}.json"
        if p.is_file():
            return Policy.read(str(p))
        cand = self.candidates
        rows = cand[cand["policy_id"] == policy_id] if len(cand) else cand
        if not len(rows):
            raise UserError(f"{self.path}: no policy {policy_id!r} in this run")
        row = rows.iloc[0]
        graph = self.layers
        pairs = np.stack([np.asarray(row["w_bits"]), np.asarray(row["a_bits"])], axis=1)
        pol = Policy.from_array(graph, pairs)
        pol.device = self.meta.get("device")
        return pol


def read_meta_file(path: Path, what: str) -> dict[str, Any]:
    """A run's meta.json; a damaged one is a UserError naming it."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{what} {path.parent}: {path.name} is damaged ({reason(exc)}): "
                        "expected the run's metadata as JSON") from None
    if not isinstance(meta, dict):
        raise UserError(f"{what} {path.parent}: {path.name} is damaged: expected a JSON "
                        f"object, found {type(meta).__name__}")
    return meta


def read_candidates_upto(path: str | os.PathLike[str], generation: int) -> pd.DataFrame:
    run = Run(path)
    files = [f for f in run.part_files() if int(PART_RE.match(f.name).group(1)) <= generation]
    if not files:
        return pd.DataFrame()
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()


def python_version() -> str:
    return sys.version.split()[0]
