"""Search quality at the budgets users can afford: every algorithm at B evaluations.

For every problem (those of `benchmarks/search_quality.py`: the digits accuracy task, the
HAWQ-V3 ResNet-18 and ResNet-50 sensitivities with BOPs), budget B (population P x B/P
generations, P = --population), algorithm and seed it runs `hwq.search` and prints one JSON
document with the hypervolume of each final front in one normalisation per problem (the ideal
and nadir of the union of all final fronts of that problem, every budget, algorithm and seed;
reference point 1.1; `search_quality.hypervolumes`), its median and spread over seeds, the
evaluations written, the wall time and the time per generation outside quality evaluation
(and, for BO, in its surrogate). A table of the medians goes to stderr.

An algorithm is a registered name (default: every non-one-shot algorithm) or NAME:K=V,...
with extra search options, e.g. `bo:bo_mode=bomp`.

    python benchmarks/search_budgets.py --budgets 100,200 --seeds 5
    python benchmarks/search_budgets.py --problems resnet18 --algorithms bo,nsga2 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_quality import (  # noqa: E402  (the benchmark next to this one)
    HAWQ_DIR,
    hypervolumes,
    log,
    problem_def,
    run_one,
    summarise,
)


def default_algorithms() -> list[str]:
    from hwq.search.algorithms import SPECS

    return [name for name, s in SPECS.items() if not s.one_shot]


def parse_algorithm(text: str) -> tuple[str, dict]:
    """"bo:bo_mode=bomp" -> ("bo", {"bo_mode": "bomp"})."""
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = value.strip()
    return name.strip(), options


def run_cell(prob: dict, label: str, seed: int, out: Path) -> dict:
    name, options = parse_algorithm(label)
    cell = {**prob, "search": {**prob["search"], **options}}
    res = run_one(cell, name, seed, out)
    timing = res["run"].meta.get("timing", {})
    surrogate = np.asarray(timing.get("surrogate_wall_s", []), dtype=float)
    res["algorithm"] = label
    res["surrogate_per_gen_s"] = float(surrogate[1:].mean()) if len(surrogate) > 1 else None
    return res


def table(doc: dict) -> str:
    labels = doc["algorithms"]
    lines = ["problem        B     " + "".join(f"{a[:14]:>15}" for a in labels)]
    for pname, pdoc in doc["problems"].items():
        for budget, cells in pdoc["results"].items():
            row = [cells[a]["hypervolume"]["median"] for a in labels]
            lines.append(f"{pname[:14]:<14} {budget:>5} "
                         + "".join(f"{v:>15.4f}" if v is not None else f"{'-':>15}" for v in row))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="100,200", help="comma list of evaluation budgets")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--algorithms", default=None,
                    help="comma list of NAME or NAME:K=V (default: every non-one-shot one)")
    ap.add_argument("--problems", default="digits,resnet18,resnet50")
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--device", default="bitfusion")
    ap.add_argument("--hawq-dir", default=str(HAWQ_DIR))
    ap.add_argument("--keep", help="Keep the run directories here (default: a temporary dir)")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    for b in budgets:
        if b % args.population:
            raise SystemExit(f"--budgets {b}: not a multiple of --population {args.population}")
    labels = args.algorithms.split(",") if args.algorithms else default_algorithms()
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(args.keep or tmpname)
        tmp.mkdir(parents=True, exist_ok=True)
        doc: dict = {
            "budgets": budgets,
            "population": args.population,
            "seeds": list(range(args.seeds)),
            "algorithms": labels,
            "device": args.device,
            "problems": {},
        }
        for pname in args.problems.split(","):
            results = []
            for budget in budgets:
                prob = problem_def(pname, args.device, args.population,
                                   budget // args.population, tmp, args.hawq_dir)
                for label in labels:
                    out = tmp / f"b{budget}" / label.replace(":", "_").replace("=", "-")
                    for seed in range(args.seeds):
                        res = run_cell(prob, label, seed, out)
                        res["budget"] = budget
                        log(f"{prob['name']} B={budget} {label} seed {seed}: "
                            f"{res['evaluations']} evaluations, front {len(res['run'].pareto)}, "
                            f"{res['wall_s']:.1f}s")
                        results.append(res)
            hypervolumes(results, prob["objectives"])  # one normalisation per problem
            pdoc: dict = {"objectives": prob["objectives"], "results": {}}
            for budget in budgets:
                cells = {}
                for label in labels:
                    rs = [r for r in results if r["budget"] == budget and r["algorithm"] == label]
                    cells[label] = {
                        "hypervolume": summarise([r["hypervolume"] for r in rs]),
                        "hypervolume_per_seed": [round(r["hypervolume"], 6) for r in rs],
                        "evaluations": summarise([r["evaluations"] for r in rs]),
                        "front_size": summarise([r["front_size"] for r in rs]),
                        "outside_quality_s_per_generation": summarise(
                            [r["outside_per_gen_s"] for r in rs]
                        ),
                        "surrogate_s_per_generation": summarise(
                            [r["surrogate_per_gen_s"] for r in rs]
                        ),
                        "wall_s": summarise([r["wall_s"] for r in rs]),
                    }
                pdoc["results"][str(budget)] = cells
            doc["problems"][prob["name"]] = pdoc
            for r in results:
                r.pop("run", None)
        log(table(doc))
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
