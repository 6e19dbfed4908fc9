"""What `hwq measure` writes in its directory: `measured.csv` (the lut table, one row per
distinct shape and pair, rewritten atomically after every row so an interrupted run resumes),
`skipped.csv` (the shapes and pairs the runtime cannot run, with the reason), `profile.yaml` (the
`lut` profile naming the table, with its sources and fitted network terms) and `end_to_end.csv`
(whole-network runs: measured vs predicted)."""

from __future__ import annotations

import datetime as dt
import io
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hwq.atomic import write_text_atomic
from hwq.cost_models.lut import KEY_COLUMNS
from hwq.errors import UserError

TABLE = "measured.csv"
SKIPPED = "skipped.csv"
PROFILE = "profile.yaml"
END_TO_END = "end_to_end.csv"
TABLE_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, "latency_s", "overhead_s", "median_s", "p10_s",
                                  "spread", "reference_s",
                                  "repeats", "statistic", "runtime", "threads")
SKIPPED_COLUMNS: tuple[str, ...] = ("op", "shape", "w_bits", "a_bits", "reason")
END_TO_END_COLUMNS: tuple[str, ...] = (
    "policy", "exporter", "int8_layers", "layers", "fits", "measured_s", "median_s", "spread",
    "layers_sum_s", "predicted_s", "error",
)
SIMD_FLAG_PARTS = ("sse", "avx", "fma", "f16c", "vnni", "amx", "bf16", "neon", "asimd", "sve")


def read_table(out_dir: Path, runtime: str, threads: int,
               statistic: str) -> list[dict[str, Any]]:
    """The rows an earlier run measured in `out_dir` (resume); a UserError when they were
    measured with another runtime, thread count or statistic."""
    path = out_dir / TABLE
    if not path.is_file():
        return []
    df = pd.read_csv(path)
    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing == ["reference_s"]:
        raise UserError(f"{path}: measured by an earlier hwq, without a reference layer timed "
                        "beside every group: choose another -o directory or delete the file")
    if missing:
        raise UserError(f"{path}: not a table of hwq measure (missing {', '.join(missing)}); "
                        "choose another -o directory")
    other = df[(df["runtime"] != runtime) | (df["threads"] != threads)
               | (df["statistic"] != statistic)]
    if len(other):
        row = other.iloc[0]
        raise UserError(
            f"{path}: row {int(other.index[0]) + 2} was measured with {row['runtime']}, "
            f"{row['threads']} thread(s), statistic {row['statistic']}, not {runtime}, "
            f"{threads} thread(s), {statistic}: choose another -o directory or delete the file"
        )
    return df.to_dict("records")


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    buf = io.StringIO()
    pd.DataFrame(list(rows), columns=list(columns)).to_csv(buf, index=False)
    return write_text_atomic(path, buf.getvalue())


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The SIMD flags of /proc/cpuinfo (those naming vector or matrix extensions)."""
    flags = (_cpuinfo("flags") or _cpuinfo("Features") or "").split()
    return " ".join(f for f in flags if any(p in f for p in SIMD_FLAG_PARTS)) or "unknown"


def _cpuinfo(key: str) -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def profile_doc(name: str, description: str, measurement: Mapping[str, str],
                network: Mapping[str, Any] | None,
                network_source: str | Mapping[str, str] = "") -> dict[str, Any]:
    """The lut profile: its table, the `measurement` record (machine, CPU and flags, runtime,
    threads, date, timing, command) and, once fitted, its network terms; `sources` says where
    the table and the terms come from."""
    m = dict(measurement)
    sources = {
        "table": (f"`{m.get('command', 'hwq measure')}` on {m.get('machine')}: {m.get('cpu')}, "
                  f"{m.get('runtime')}, {m.get('threads')} thread(s), {m.get('date')}"),
        "measurement.cpu_flags": "/proc/cpuinfo of the measuring machine",
    }
    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": name,
        "kind": "lut",
        "description": description,
        "table": TABLE,
        "measurement": {k: str(v) for k, v in m.items()},
    }
    if network:
        doc["network"] = dict(network)
        for key in network:
            said = (network_source.get(key, "") if isinstance(network_source, Mapping)
                    else network_source)
            sources[f"network.{key}"] = said or "fitted on whole-network runs"
    doc["sources"] = sources
    return doc


def write_profile(out_dir: Path, doc: Mapping[str, Any]) -> Path:
    import yaml

    header = ("# A lut profile written by `hwq measure`: every layer shape of the measured "
              "network timed\n# alone (measured.csv), plus network terms fitted on whole-network "
              "runs (end_to_end.csv).\n")
    text = header + yaml.safe_dump(dict(doc), sort_keys=False, width=100)
    return write_text_atomic(out_dir / PROFILE, text)


def measurement_record(backend_info: Mapping[str, str], command: str) -> dict[str, str]:
    """The profile's `measurement` record: where, with what and when it was measured."""
    return {
        "machine": f"{platform.node()} ({platform.system()} {platform.machine()})",
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        **backend_info,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
    }
