"""Golden results that a refactoring must not change (issue: one way through a search).

* fronts (policy ids and objective values) of a fixed-seed run of every algorithm on the
  published HAWQ-V3 ResNet-18 sensitivities (objectives sensitivity, bops; first/last pinned
  at 8 bits; BitFusion), and of the default digits search (accuracy, latency, energy, weight
  memory; a short budget);
* the cost tables of every shipped profile on resnet18 at its default pairs.

`python tests/golden/goldens.py [NAME ...]` records them (or only the named ones, e.g.
`front_r18_nemo front_digits`) into tests/golden/data/ (re-record only where a change alters
that behaviour on purpose, and say why in the commit). The tests compare against
the files: policy ids exactly, values to 1e-9 relative.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
HAWQ18 = "hawq-v3:resnet18"  # the published table shipped with the package

# algorithm -> options of its fixed-seed run on the HAWQ-V3 resnet18 problem
SENSITIVITY_RUNS: dict[str, dict[str, Any]] = {
    "nemo": {"generations": 6, "population": 20},
    "nsga2": {"generations": 6, "population": 20},
    "random": {"generations": 6, "population": 20},
    "ilp": {"generations": 1, "population": 1, "max": ["bops=60G"]},
    "greedy": {"generations": 1, "population": 1, "max": ["bops=60G"]},
}
DIGITS_RUN: dict[str, Any] = {"generations": 4, "population": 20}


def front_of(run: Any) -> list[dict[str, Any]]:
    """Every non-dominated policy of the run, by policy id: the front's rows and their twins
    (`equivalent_ids`: same objective vector, one front point), read back from the candidates,
    so that grouping twins into one point leaves the recorded fronts as they were."""
    pareto = run.pareto
    cols = [c for c in ("accuracy", "sensitivity", "weight_bytes", "peak_activation_bytes",
                        "bops", "latency_s", "energy_pj") if c in pareto.columns]
    ids = set(pareto["policy_id"])
    if "equivalent_ids" in pareto:
        ids |= {t for twins in pareto["equivalent_ids"] for t in twins}
    cands = run.candidates.drop_duplicates("policy_id").set_index("policy_id")
    return [{"policy_id": pid, **{c: float(cands.loc[pid, c]) for c in cols}}
            for pid in sorted(ids)]


def sensitivity_front(algorithm: str, out_dir: Path, r18_layers: str) -> list[dict[str, Any]]:
    import hwq

    opts = SENSITIVITY_RUNS[algorithm]
    run = hwq.search(
        "bitfusion", model=r18_layers, algorithm=algorithm, sensitivity=str(HAWQ18),
        objectives="sensitivity,bops", pin="first,last=8", bits="4x4,8x4,4x8,8x8", seed=0,
        verify_top=0, output_dir=str(out_dir), **opts,
    )
    return front_of(run)


def digits_front(out_dir: Path) -> list[dict[str, Any]]:
    import hwq

    run = hwq.search("bitfusion", seed=0, verify_top=0, output_dir=str(out_dir), **DIGITS_RUN)
    return front_of(run)


def profile_table(name: str, r18_layers: str) -> list[dict[str, Any]]:
    import hwq

    graph = hwq.LayerGraph.read(r18_layers)
    df = hwq.cost_table(graph, hwq.load_profile(name)).to_pandas()
    return json.loads(df.to_json(orient="records", double_precision=15))


def shipped_profiles() -> list[str]:
    """Every shipped profile that prices ResNet-18's convs at its default pairs: not the LLM
    runtimes' (bits by pairs), which price a conv at 16x16 only and refuse its default pairs
    (test_goldens checks the refusal)."""
    from hwq.profile import list_profiles, load_profile

    return [n for n in list_profiles() if load_profile(n).bits.pairs is None]


def llm_runtime_profiles() -> list[str]:
    from hwq.profile import list_profiles, load_profile

    return [n for n in list_profiles() if load_profile(n).bits.pairs is not None]


def load(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text())


def compare(found: Any, expected: Any, where: str = "") -> list[str]:
    """Differences between two JSON-like values: exact for strings/ints/bools, 1e-9 relative for
    floats (NaN equals NaN)."""
    import math

    out: list[str] = []
    if isinstance(expected, dict):
        if not isinstance(found, dict) or set(found) != set(expected):
            return [f"{where}: keys {sorted(found) if isinstance(found, dict) else found!r} "
                    f"!= {sorted(expected)}"]
        for k in expected:
            out += compare(found[k], expected[k], f"{where}.{k}")
    elif isinstance(expected, list):
        if not isinstance(found, list) or len(found) != len(expected):
            return [f"{where}: length {len(found) if isinstance(found, list) else found!r} "
                    f"!= {len(expected)}"]
        for i, (f, e) in enumerate(zip(found, expected)):
            out += compare(f, e, f"{where}[{i}]")
            if len(out) > 20:
                break
    elif isinstance(expected, float) or isinstance(found, float):
        if expected is None or found is None:
            if expected is not found:
                out.append(f"{where}: {found!r} != {expected!r}")
        else:
            fe, ff = float(expected), float(found)
            close = abs(ff - fe) <= 1e-9 * max(abs(fe), 1e-300)
            same = (math.isnan(fe) and math.isnan(ff)) or close
            if not same:
                out.append(f"{where}: {ff!r} != {fe!r}")
    elif found != expected:
        out.append(f"{where}: {found!r} != {expected!r}")
    return out


def record(only: set[str] | None = None) -> None:
    """Record the goldens: all of them, or only those named in `only` (`table_<profile>`,
    `front_r18_<algorithm>`, `front_digits`), leaving the others' files as they are."""
    import os
    import tempfile

    from hwq.model_source import load_graph

    def wanted(name: str) -> bool:
        return only is None or name in only

    os.environ.setdefault("HWQ_NO_CACHE", "1")
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        layers = str(Path(tmp) / "resnet18.parquet")
        load_graph("resnet18").to_parquet(layers)
        for name in shipped_profiles():
            if wanted(f"table_{name}"):
                (DATA / f"table_{name}.json").write_text(json.dumps(profile_table(name, layers)))
                print("table", name, file=sys.stderr)
        for algorithm in SENSITIVITY_RUNS:
            if wanted(f"front_r18_{algorithm}"):
                front = sensitivity_front(algorithm, Path(tmp) / algorithm, layers)
                (DATA / f"front_r18_{algorithm}.json").write_text(json.dumps(front, indent=0))
                print("front", algorithm, len(front), file=sys.stderr)
    if wanted("front_digits"):
        with tempfile.TemporaryDirectory() as tmp:
            front = digits_front(Path(tmp) / "digits")
            (DATA / "front_digits.json").write_text(json.dumps(front, indent=0))
            print("front digits", len(front), file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    record(set(sys.argv[1:]) or None)  # e.g. goldens.py front_r18_nemo front_digits
