"""Search-quality benchmark: NEMO vs NSGA-II vs random search at an equal evaluation budget.

Problems:
  (a) digits_resnet with real PTQ accuracy (the embedded default: objectives accuracy, latency,
      energy, weight memory on --device);
  (b) ImageNet ResNet-18 and ResNet-50 with the published HAWQ-V3 sensitivities (pairs 4x4 and
      8x8, objectives sensitivity and bops, first and last layer pinned at 8 bits).

For every problem, algorithm and seed it runs `hwq.search` and prints one JSON document with:
  * the hypervolume (pymoo) of each final front in a common normalisation (per problem: the
    ideal and nadir of the union of all final fronts; reference point 1.1 in every objective),
    with the median and spread (quartiles, min, max) over seeds;
  * for (b), the gap of each front's best sensitivity at the BOPs budgets r = 0.25, 0.5, 0.75
    to the ILP optimum (budget = all-4-bit BOPs + r x (all-8-bit - all-4-bit BOPs) over the
    file's layers with its `macs_per_image`, as HAWQ-V3 defines it), in percent;
  * the time per generation outside quality evaluation (median over seeds of the mean over
    generations), from the runs' meta.json timing.

    python benchmarks/search_quality.py                       # everything, 5 seeds
    python benchmarks/search_quality.py --problems resnet18 --seeds 3

Progress goes to stderr; the JSON document to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HAWQ_DIR = ROOT / "hwq" / "sensitivity_tables"  # the published tables shipped with hwq
ALGORITHMS = ("nemo", "nsga2", "random")
RATIOS = (0.25, 0.5, 0.75)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_one(problem: dict, algorithm: str, seed: int, out: Path) -> dict:
    import hwq.search as hs

    kwargs = dict(problem["search"])
    t0 = time.perf_counter()
    run = hs(
        algorithm=algorithm,
        seed=seed,
        output_dir=str(out / f"{problem['name']}-{algorithm}-{seed}"),
        verify_top=0,
        **kwargs,
    )
    wall = time.perf_counter() - t0
    timing = run.meta.get("timing", {})
    gen_wall = np.asarray(timing.get("generation_wall_s", []), dtype=float)
    q_wall = np.asarray(timing.get("quality_wall_s", []), dtype=float)
    outside = gen_wall - q_wall
    return {
        "problem": problem["name"],
        "algorithm": algorithm,
        "seed": seed,
        "run": run,
        "evaluations": int(run.meta["evaluations"]),
        "wall_s": wall,
        "outside_per_gen_s": float(outside[1:].mean() if len(outside) > 1 else outside.mean()),
        "quality_per_gen_s": float(q_wall.mean()) if len(q_wall) else 0.0,
    }


def front_F(run, objectives: list[str]) -> np.ndarray:
    from hwq.objectives import OBJECTIVES

    front = run.pareto
    cols = []
    for o in objectives:
        col, maximise = OBJECTIVES[o]
        v = front[col].to_numpy(dtype=float)
        cols.append(-v if maximise else v)
    return np.stack(cols, axis=1)


def hypervolumes(results: list[dict], objectives: list[str]) -> None:
    from hwq.search.indicators import hypervolume, normalise

    Fs = [front_F(r["run"], objectives) for r in results]
    allF = np.concatenate(Fs)
    ideal, nadir = allF.min(axis=0), allF.max(axis=0)
    ref = np.full(len(objectives), 1.1)
    for r, F in zip(results, Fs):
        r["hypervolume"] = hypervolume(normalise(F, ideal, nadir), ref)
        r["front_size"] = len(F)


# -- (b): HAWQ-V3 budgets and the ILP optimum ------------------------------------------------------
def hawq_costs(hawq: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per free layer (the file's layers, in layer order): sensitivity [G, 2] at (4, 8) bits,
    HAWQ BOPs [G, 2] = macs_per_image * b * b, and the layer indices."""
    h = hawq.set_index("layer")
    idx = np.array([i for i, n in enumerate(names) if n in h.index])
    sens = np.stack(
        [
            h.loc[[names[i] for i in idx], "hutchinson_trace_per_param"].to_numpy()
            * h.loc[[names[i] for i in idx], f"delta_w{b}_sq"].to_numpy()
            for b in (4, 8)
        ],
        axis=1,
    )
    macs = h.loc[[names[i] for i in idx], "macs_per_image"].to_numpy(dtype=float)
    bops = np.stack([macs * 16.0, macs * 64.0], axis=1)
    return sens, bops, idx


def ilp_gaps(results: list[dict], hawq_path: Path) -> dict:
    from hwq.search.baselines import solve_ilp_arrays

    hawq = pd.read_csv(hawq_path)
    graph = results[0]["run"].layers
    names = graph.names
    sens, bops, idx = hawq_costs(hawq, names)
    lo, hi = bops[:, 0].sum(), bops[:, 1].sum()
    optima = {}
    for r in RATIOS:
        budget = lo + r * (hi - lo)
        choice = solve_ilp_arrays(sens, [(bops, budget)])
        optima[r] = {
            "budget_bops": budget,
            "ilp_sensitivity": float(sens[np.arange(len(idx)), choice].sum()),
        }
    for res in results:
        front = res["run"].pareto
        w = np.stack([np.asarray(x) for x in front["w_bits"]])[:, idx]
        col = (w == 8).astype(int)  # 0 -> 4x4, 1 -> 8x8
        f_bops = bops[np.arange(len(idx))[None, :], col].sum(axis=1)
        f_sens = sens[np.arange(len(idx))[None, :], col].sum(axis=1)
        gaps = {}
        for r in RATIOS:
            ok = f_bops <= optima[r]["budget_bops"] * (1 + 1e-12)
            best = f_sens[ok].min() if ok.any() else np.inf
            opt = optima[r]["ilp_sensitivity"]
            gaps[str(r)] = float((best - opt) / opt * 100.0) if np.isfinite(best) else None
        res["ilp_gap_percent"] = gaps
    return {str(r): v for r, v in optima.items()}


def summarise(values: list[float]) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not len(v):
        return {"median": None}
    return {
        "median": float(np.median(v)),
        "q25": float(np.percentile(v, 25)),
        "q75": float(np.percentile(v, 75)),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(len(v)),
    }


def problem_def(
    name: str, device: str, population: int, generations: int, tmp: Path, hawq_dir: str | Path
) -> dict:
    """One benchmark problem (digits, resnet18 or resnet50) at a budget: its name, objectives,
    the HAWQ-V3 file (b) and the `hwq.search` options."""
    from hwq.model_source import load_graph

    if name == "digits":
        return {
            "name": "digits_resnet",
            "objectives": ["accuracy", "latency", "energy", "weight_memory"],
            "search": dict(
                device=device, model="digits_resnet", population=population,
                generations=generations,
            ),
        }
    if name in ("resnet18", "resnet50"):
        layers = tmp / f"{name}.parquet"
        if not layers.exists():
            load_graph(name).to_parquet(layers)
        hawq = Path(hawq_dir) / f"hawq_v3_sensitivity_{name}.csv"
        return {
            "name": name,
            "objectives": ["sensitivity", "bops"],
            "hawq": hawq,
            "search": dict(
                device=device,
                model=str(layers),
                sensitivity=str(hawq),
                objectives="sensitivity,bops",
                bits="4x4,8x8",
                pin="first,last=8",
                population=population,
                generations=generations,
            ),
        }
    raise SystemExit(f"unknown problem {name!r} (digits, resnet18, resnet50)")


def problems(args: argparse.Namespace, tmp: Path) -> list[dict]:
    pa, ga = (int(x) for x in args.digits_budget.split("x"))
    pb, gb = (int(x) for x in args.hawq_budget.split("x"))
    return [
        problem_def(name, args.device, *((pa, ga) if name == "digits" else (pb, gb)), tmp,
                    args.hawq_dir)
        for name in args.problems.split(",")
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="digits,resnet18,resnet50")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--device", default="bitfusion")
    ap.add_argument("--digits-budget", default="40x25", help="POPULATIONxGENERATIONS for (a)")
    ap.add_argument("--hawq-budget", default="100x100", help="POPULATIONxGENERATIONS for (b)")
    ap.add_argument("--hawq-dir", default=str(HAWQ_DIR))
    ap.add_argument("--keep", help="Keep the run directories here (default: a temporary dir)")
    args = ap.parse_args()
    algorithms = args.algorithms.split(",")
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(args.keep or tmpname)
        tmp.mkdir(parents=True, exist_ok=True)
        doc: dict = {
            "seeds": list(range(args.seeds)),
            "algorithms": algorithms,
            "device": args.device,
            "problems": {},
        }
        for prob in problems(args, tmp):
            results = []
            for algorithm in algorithms:
                for seed in range(args.seeds):
                    res = run_one(prob, algorithm, seed, tmp)
                    log(
                        f"{prob['name']} {algorithm} seed {seed}: {res['evaluations']} "
                        f"evaluations, front {len(res['run'].pareto)}, {res['wall_s']:.1f}s"
                    )
                    results.append(res)
            hypervolumes(results, prob["objectives"])
            pdoc: dict = {
                "objectives": prob["objectives"],
                "budget": {
                    "population": prob["search"]["population"],
                    "generations": prob["search"]["generations"],
                },
            }
            if "hawq" in prob:
                pdoc["ilp_optimum"] = ilp_gaps(results, prob["hawq"])
            per_algo = {}
            for algorithm in algorithms:
                rs = [r for r in results if r["algorithm"] == algorithm]
                entry = {
                    "hypervolume": summarise([r["hypervolume"] for r in rs]),
                    "hypervolume_per_seed": [round(r["hypervolume"], 6) for r in rs],
                    "evaluations": summarise([r["evaluations"] for r in rs]),
                    "front_size": summarise([r["front_size"] for r in rs]),
                    "outside_quality_s_per_generation": summarise(
                        [r["outside_per_gen_s"] for r in rs]
                    ),
                    "quality_s_per_generation": summarise([r["quality_per_gen_s"] for r in rs]),
                    "wall_s": summarise([r["wall_s"] for r in rs]),
                }
                if "hawq" in prob:
                    entry["ilp_gap_percent"] = {
                        str(q): summarise([r["ilp_gap_percent"][str(q)] for r in rs])
                        for q in RATIOS
                    }
                    entry["ilp_gap_percent_per_seed"] = [r["ilp_gap_percent"] for r in rs]
                per_algo[algorithm] = entry
            pdoc["results"] = per_algo
            doc["problems"][prob["name"]] = pdoc
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
