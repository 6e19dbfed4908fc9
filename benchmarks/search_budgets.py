"""Search quality at the budgets users can afford: every algorithm at B evaluations.

For every problem (those of `benchmarks/search_quality.py`: the digits accuracy task with four
objectives, the HAWQ-V3 ResNet-18 and ResNet-50 sensitivities with BOPs), budget B (population
P x B/P generations, from --shapes), algorithm and seed it runs `hwq.search` and prints one JSON
document with

* the hypervolume of each final front in one normalisation per problem (the ideal and nadir of
  the union of all final fronts of that problem, every budget, algorithm and seed; reference
  point 1.1; `search_quality.hypervolumes`), its median and quartiles over seeds;
* on the HAWQ-V3 problems, the gap of each front's best sensitivity to the ILP optimum at the
  BOPs budgets r = 0.25, 0.5, 0.75 (`search_quality.ilp_gaps`), and the greedy baseline's front
  (one run: it is deterministic) as a reference point with its own hypervolume and gaps;
* the evaluations written (meta.json `evaluations`), the wall time and the time per generation
  outside quality evaluation (and, for BO, in its surrogate).

**Anytime cells** (`--anytime rl=50,bo=50`): an algorithm whose first B evaluations do not
depend on the total budget (BO and RL: nothing in them reads the number of generations; the
same population and seed give the same first generations) is run once per seed at the largest
of its budgets with population P, and the cell of each budget B (a multiple of P) is the
archive of that run's first B evaluations (`first_evaluations_front`: the run's own Pareto
archive replayed over its first B / P generations; at the largest budget it is the run's
front, which is checked), with the wall time of the run's set-up plus those generations. Such
cells carry `anytime` (the "PxG" of the run) and `shape` ("PxB/P"); the JSON says so per cell
(`anytime_run`: that run, null for a run of its own) and per problem (`anytime`: algorithm ->
budget -> run). The cells are stored in the same (problem, budget, algorithm, seed) format as
any other, so they combine with cells of own runs.

**Combining state files** (`--read`, `--drop`, `--finished-only`): cells are read from each
`--read` file in the order given (each with its `.part*` siblings), then from `--state` (and
its siblings); a later cell replaces an earlier one with the same key, and `--drop ALGO`
(or `ALGO@FILE`) ignores an algorithm's cells in the `--read` files (or in that one), so that
replacing one algorithm's cells is one flag; only `--state` is ever written. E.g. the final
table from old cells with new BO and RL cells:

    python benchmarks/search_budgets.py --budgets 100,200,500,1000,5000 --max-budget bo=1000 \
        --read old/D.pkl old/R18.pkl old/R50.pkl --drop rl --drop bo \
        --state new/rlbo.pkl --finished-only --plot docs/search-budgets.png > table.json

A table of the medians goes to stderr; `--plot PNG` draws median hypervolume with quartiles per
budget, the median gap to the ILP (mean over the three budgets r) and the median wall time.

An algorithm is a registered name (default: every non-one-shot algorithm) or NAME:K=V,...
with extra search options, e.g. `bo:bo_mode=bomp`; `--max-budget bo=1000` skips an algorithm
above that budget.

    python benchmarks/search_budgets.py --budgets 100,200 --seeds 5
    python benchmarks/search_budgets.py --problems resnet18 --algorithms bo,nsga2 --seeds 2
    python benchmarks/search_budgets.py --budgets 100,200,500,1000,5000 --max-budget bo=1000 \
        --plot docs/search-budgets.png > benchmarks/data/search_budgets.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_quality import (  # noqa: E402  (the benchmark next to this one)
    HAWQ_DIR,
    RATIOS,
    hypervolumes,
    ilp_gaps,
    log,
    problem_def,
    run_one,
    summarise,
)

# population x generations per budget: small budgets need several generations to evolve at all,
# large ones a population wide enough for a front of tens of points
DEFAULT_SHAPES = "100=10x10,200=20x10,500=25x20,1000=50x20,5000=100x50"
REFERENCE = "greedy"  # the one-shot baseline run once per HAWQ-V3 problem


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


def parse_shapes(text: str) -> dict[int, tuple[int, int]]:
    """"100=10x10,200=20x10" -> {100: (10, 10), 200: (20, 10)} (population x generations, whose
    product must be the budget)."""
    shapes = {}
    for item in filter(None, text.split(",")):
        budget, _, shape = item.partition("=")
        pop, _, gens = shape.partition("x")
        b, p, g = int(budget), int(pop), int(gens)
        if p * g != b:
            raise SystemExit(f"--shapes {item}: {p} x {g} is not {b}")
        shapes[b] = (p, g)
    return shapes


def parse_name_ints(text: str | None) -> dict[str, int]:
    """"bo=1000,rl=50" -> {"bo": 1000, "rl": 50}: `--max-budget` (the largest budget an
    algorithm runs at) and `--anytime` (the population of its one anytime run)."""
    caps = {}
    for item in filter(None, (text or "").split(",")):
        name, _, b = item.partition("=")
        caps[name.strip()] = int(b)
    return caps


def run_cell(prob: dict, label: str, seed: int, out: Path) -> dict:
    name, options = parse_algorithm(label)
    cell = {**prob, "search": {**prob["search"], **options}}
    res = run_one(cell, name, seed, out)
    timing = res["run"].meta.get("timing", {})
    surrogate = np.asarray(timing.get("surrogate_wall_s", []), dtype=float)
    res["algorithm"] = label
    res["surrogate_per_gen_s"] = float(surrogate[1:].mean()) if len(surrogate) > 1 else None
    run = res["run"]  # what the summaries read of it, small enough to keep in --state
    res["run"] = SimpleNamespace(pareto=run.pareto, meta={"evaluations": run.meta["evaluations"]},
                                 layers=SimpleNamespace(names=list(run.layers.names)))
    return res


def read_cells(path: Path) -> dict[tuple, dict]:
    """The cells of one state file: its `<name>.part*` siblings (other processes' cells, in
    name order), then the file itself on top."""
    cells: dict[tuple, dict] = {}
    for part in sorted(path.parent.glob(path.name + ".part*")):
        cells.update(pickle.loads(part.read_bytes()))
    if path.exists():
        cells.update(pickle.loads(path.read_bytes()))
    return cells


def dropped(label: str, drops: list[str], path: Path | None) -> bool:
    """Whether --drop removes `label`'s cells read from `path` (None: --state's own file):
    ALGO drops from every --read file, ALGO@FILE from that one (ALGO a label or its
    algorithm's name)."""
    name = parse_algorithm(label)[0]
    for d in drops:
        algo, _, where = d.partition("@")
        if algo not in (label, name):
            continue
        if (where and path is not None and Path(where).resolve() == path.resolve()) or (
            not where and path is not None
        ):
            return True
    return False


class State:
    """Finished cells by (problem, budget, algorithm, seed), pickled to a file after each one
    (--state), so that an interrupted benchmark resumes where it stopped.

    Cells are read in this order, a later cell replacing an earlier one of the same key: each
    --read file in the order given (each with its `.part*` siblings, less the algorithms
    --drop names for it), then --state's own file (with its siblings). Only --state's own
    cells, and those run now, are written back to it; --read files are never written."""

    def __init__(self, path: str | None, read: list[str] | None = None,
                 drop: list[str] | None = None) -> None:
        self.path = Path(path) if path else None
        self.cells: dict[tuple, dict] = {}
        self.own: dict[tuple, dict] = {}
        drops = list(drop or [])
        for f in read or []:
            fp = Path(f)
            if not fp.exists() and not list(fp.parent.glob(fp.name + ".part*")):
                raise SystemExit(f"--read {f}: no such state file")
            self.cells.update({k: v for k, v in read_cells(fp).items()
                               if not dropped(k[2], drops, fp)})
        if self.path:
            self.own = read_cells(self.path)
            self.cells.update(self.own)

    def save(self) -> None:
        if self.path:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(self.own))
            tmp.replace(self.path)

    def get(self, key: tuple, *cell: object) -> dict:
        """The finished cell `key`, or run_cell(*cell) now."""
        if key not in self.cells:
            self.cells[key] = self.own[key] = run_cell(*cell)
            self.save()
        return self.cells[key]

    def get_anytime(self, keys: dict[int, tuple], *cell: object) -> dict[int, dict]:
        """The finished cells `keys` (budget -> key), or all of them from one anytime run
        now (`anytime_cells(*cell)`, budgets those of `keys`)."""
        if any(k not in self.cells for k in keys.values()):
            made = anytime_cells(*cell, sorted(keys))
            for b, k in keys.items():
                self.cells[k] = self.own[k] = made[b]
            self.save()
        return {b: self.cells[k] for b, k in keys.items()}


def first_evaluations_front(cand, objectives: list[str], generations: int):
    """The Pareto archive (as the run's `pareto.parquet`: feasible, non-dominated, twins
    merged) of the candidates of generations < `generations`, replayed generation by
    generation through `ParetoArchive`."""
    from hwq.objectives import OBJECTIVES
    from hwq.search.archive import ParetoArchive

    arch = ParetoArchive()
    for g in range(generations):
        rec = cand[cand["generation"] == g].reset_index(drop=True)
        F = np.stack([(-1.0 if OBJECTIVES[o][1] else 1.0) * rec[OBJECTIVES[o][0]].to_numpy(float)
                      for o in objectives], axis=1)
        G = np.where(rec["feasible"].to_numpy(dtype=bool), 0.0, 1.0)[:, None]
        arch.update(rec, F, G)
    front, _ = arch.sorted()
    return front


def anytime_cells(prob: dict, label: str, seed: int, out: Path,
                  budgets: list[int]) -> dict[int, dict]:
    """Cells at every budget B of `budgets` from one run at the largest (`prob`'s population P
    x generations): cell B is the archive of the run's first B evaluations (B / P
    generations), its wall time the run's set-up plus those generations' wall times. Valid
    for an algorithm whose first B evaluations do not depend on the total budget (BO, RL:
    nothing in them reads the number of generations)."""
    name, options = parse_algorithm(label)
    cell = {**prob, "search": {**prob["search"], **options}}
    P, G = int(cell["search"]["population"]), int(cell["search"]["generations"])
    res = run_one(cell, name, seed, out)
    run = res["run"]
    timing = run.meta.get("timing", {})
    gen_wall = np.asarray(timing.get("generation_wall_s", []), dtype=float)
    q_wall = np.asarray(timing.get("quality_wall_s", []), dtype=float)
    surrogate = np.asarray(timing.get("surrogate_wall_s", []), dtype=float)
    setup = res["wall_s"] - float(gen_wall.sum())
    cand = run.candidates
    names = list(run.layers.names)
    made = {}
    for b in budgets:
        g = b // P
        if b % P or g > G:
            raise SystemExit(f"--anytime {name}={P}: budget {b} is not a whole number of "
                             f"generations of the {P}x{G} run")
        outside = gen_wall[:g] - q_wall[:g]
        front = first_evaluations_front(cand, prob["objectives"], g)
        made[b] = {
            "problem": prob["name"], "algorithm": label, "seed": seed,
            "run": SimpleNamespace(pareto=front, meta={"evaluations": int(g * P)},
                                   layers=SimpleNamespace(names=names)),
            "evaluations": int((cand["generation"] < g).sum()),
            "wall_s": setup + float(gen_wall[:g].sum()),
            "outside_per_gen_s": float(outside[1:].mean() if g > 1 else outside.mean()),
            "quality_per_gen_s": float(q_wall[:g].mean()),
            "surrogate_per_gen_s": float(surrogate[1:g].mean()) if g > 1 and len(surrogate)
            else None,
            "anytime": f"{P}x{G}",  # the run this cell's evaluations are the first of
            "shape": f"{P}x{g}",
        }
    if G * P in made:  # the replay is the run's own archive
        ids = sorted(run.pareto["policy_id"])
        assert sorted(made[G * P]["run"].pareto["policy_id"]) == ids, "archive replay differs"
    return made


def cell_summary(rs: list[dict], hawq: bool) -> dict:
    cell = {
        "hypervolume": summarise([r["hypervolume"] for r in rs]),
        "hypervolume_per_seed": [round(r["hypervolume"], 6) for r in rs],
        "evaluations": summarise([r["evaluations"] for r in rs]),
        "front_size": summarise([r["front_size"] for r in rs]),
        "outside_quality_s_per_generation": summarise([r["outside_per_gen_s"] for r in rs]),
        "surrogate_s_per_generation": summarise([r["surrogate_per_gen_s"] for r in rs]),
        "wall_s": summarise([r["wall_s"] for r in rs]),
        # "PxG" of the one longer run each seed's cell is the first evaluations of (--anytime),
        # null where the cell is a run of its own at this budget
        "anytime_run": sorted({r.get("anytime") for r in rs}, key=str),
    }
    if hawq:
        cell["ilp_gap_percent"] = {
            str(q): summarise([r["ilp_gap_percent"][str(q)] for r in rs]) for q in RATIOS
        }
        cell["ilp_gap_percent_per_seed"] = [
            {q: (round(g, 4) if g is not None else None) for q, g in r["ilp_gap_percent"].items()}
            for r in rs
        ]
    return cell


def table(doc: dict) -> str:
    labels = doc["algorithms"]
    lines = ["problem        B     " + "".join(f"{a[:14]:>15}" for a in labels)]
    for pname, pdoc in doc["problems"].items():
        for budget, cells in pdoc["results"].items():
            row = [cells[a]["hypervolume"]["median"] if a in cells else None for a in labels]
            lines.append(f"{pname[:14]:<14} {budget:>5} "
                         + "".join(f"{v:>15.4f}" if v is not None else f"{'-':>15}" for v in row))
        ref = pdoc.get("reference", {}).get(REFERENCE)
        if ref:
            lines.append(f"{pname[:14]:<14} {REFERENCE:>5} {ref['hypervolume']['median']:>15.4f}")
    return "\n".join(lines)


def mean_gap(cell: dict) -> float | None:
    """The median gap to the ILP averaged over the budgets r (None where a front misses one)."""
    gaps = [cell["ilp_gap_percent"][str(q)]["median"] for q in RATIOS]
    return None if any(g is None for g in gaps) else float(np.mean(gaps))


def plot(doc: dict, path: str) -> None:
    """Per problem (rows): median hypervolume with quartiles per budget, median gap to the ILP
    (mean over r = 0.25, 0.5, 0.75), median wall time; log budget axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["problems"])
    labels = doc["algorithms"]
    fig, axes = plt.subplots(len(names), 3, figsize=(11, 2.6 * len(names)), squeeze=False)
    colours = dict(zip(labels, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for row, pname in zip(axes, names):
        pdoc = doc["problems"][pname]
        for label in labels:
            bs = [int(b) for b, cells in pdoc["results"].items() if label in cells]
            cells = [pdoc["results"][str(b)][label] for b in bs]
            if not cells:
                continue
            hv = [c["hypervolume"] for c in cells]
            c = colours[label]
            row[0].plot(bs, [h["median"] for h in hv], "o-", color=c, ms=3, label=label)
            row[0].fill_between(bs, [h["q25"] for h in hv], [h["q75"] for h in hv], color=c,
                                alpha=0.2, lw=0)
            if "ilp_gap_percent" in cells[0]:
                gaps = [mean_gap(x) for x in cells]
                ok = [i for i, g in enumerate(gaps) if g is not None]
                row[1].plot([bs[i] for i in ok], [gaps[i] for i in ok], "o-", color=c, ms=3)
            row[2].plot(bs, [x["wall_s"]["median"] for x in cells], "o-", color=c, ms=3)
        ref = pdoc.get("reference", {}).get(REFERENCE)
        if ref:
            row[0].axhline(ref["hypervolume"]["median"], color="k", ls=":", lw=1,
                           label=REFERENCE)
            g = mean_gap(ref)
            if g is not None:
                row[1].axhline(g, color="k", ls=":", lw=1)
        row[0].set_ylabel(f"{pname}\nhypervolume")
        row[1].set_ylabel("gap to ILP, % (mean r)")
        row[2].set_ylabel("wall time, s")
        if "ilp_optimum" not in pdoc:
            row[1].text(0.5, 0.5, "no ILP (accuracy objective)", ha="center", va="center",
                        transform=row[1].transAxes, fontsize=8)
            row[1].set_axis_off()
        else:
            row[1].set_yscale("symlog", linthresh=0.1)  # 0 % (the optimum) drawn
            row[1].set_ylim(bottom=0)
        row[2].set_yscale("log")
        for ax in row:
            ax.set_xscale("log")
            ax.grid(True, which="both", lw=0.3, alpha=0.5)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7, ncol=2)
    for ax in axes[-1]:
        ax.set_xlabel("evaluations")
    fig.suptitle(f"Search budgets: median and quartiles over {len(doc['seeds'])} seeds "
                 f"({doc['device']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def merge(docs: list[dict]) -> dict:
    """One document of several over disjoint problems: budgets and algorithms united (in first
    appearance order), each part's run settings kept under `parts`, total wall times listed."""
    out: dict = {"budgets": [], "algorithms": [], "seeds": docs[0]["seeds"],
                 "device": docs[0]["device"], "problems": {}, "parts": []}
    for d in docs:
        out["budgets"] += [b for b in d["budgets"] if b not in out["budgets"]]
        out["algorithms"] += [a for a in d["algorithms"] if a not in out["algorithms"]]
        if set(d["problems"]) & set(out["problems"]):
            raise SystemExit(f"--merge: problems {sorted(set(d['problems']))} appear twice")
        out["problems"].update(d["problems"])
        out["parts"].append({k: d.get(k) for k in ("problems", "shapes", "max_budget",
                                                   "total_wall_s", "seeds")}
                            | {"problems": list(d["problems"])})
    out["budgets"].sort()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="100,200", help="comma list of evaluation budgets")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES,
                    help="BUDGET=POPULATIONxGENERATIONS,... (a budget not listed: "
                         "--population x BUDGET/--population)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="Seeds --first-seed .. --seeds - 1 (split one problem over processes, "
                         "each with its own --state; the states' cells merge into one)")
    ap.add_argument("--algorithms", default=None,
                    help="comma list of NAME or NAME:K=V (default: every non-one-shot one)")
    ap.add_argument("--max-budget", default=None,
                    help="NAME=B,...: run that algorithm only at budgets up to B (e.g. bo=1000)")
    ap.add_argument("--problems", default="digits,resnet18,resnet50")
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--device", default="bitfusion")
    ap.add_argument("--hawq-dir", default=str(HAWQ_DIR))
    ap.add_argument("--plot", help="Draw the figure into this PNG")
    ap.add_argument("--keep", help="Keep the run directories here (default: a temporary dir)")
    ap.add_argument("--state", help="Keep finished cells in this pickle and resume from it")
    ap.add_argument("--read", nargs="+", default=[], metavar="PKL",
                    help="Also read these state files (never written), in this order, before "
                         "--state: a later file's cell replaces an earlier one's")
    ap.add_argument("--drop", action="append", default=[], metavar="ALGO[@PKL]",
                    help="Ignore ALGO's cells (a label or algorithm name) in every --read "
                         "file, or only in PKL; repeatable (e.g. --drop rl --drop bo to take "
                         "them from --state alone)")
    ap.add_argument("--anytime", default=None, metavar="NAME=P,...",
                    help="Measure NAME anytime: one run per seed at the largest of its budgets "
                         "with population P; each budget B's cell is the archive of its first "
                         "B evaluations (B must be a multiple of P)")
    ap.add_argument("--finished-only", action="store_true",
                    help="Run nothing new: summarise the cells --state holds")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="Run nothing: merge documents of disjoint problems (e.g. run in "
                         "parallel, one process per problem), draw --plot, print the merge")
    args = ap.parse_args()
    if args.merge:
        doc = merge([json.loads(Path(f).read_text()) for f in args.merge])
        log(table(doc))
        if args.plot:
            plot(doc, args.plot)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    shapes = parse_shapes(args.shapes)
    budgets = [int(b) for b in args.budgets.split(",")]
    for b in budgets:
        if b not in shapes:
            if b % args.population:
                raise SystemExit(f"--budgets {b}: not a multiple of --population "
                                 f"{args.population}, and not in --shapes")
            shapes[b] = (args.population, b // args.population)
    caps = parse_name_ints(args.max_budget)
    anytime = parse_name_ints(args.anytime)
    labels = args.algorithms.split(",") if args.algorithms else default_algorithms()
    started = time.perf_counter()
    state = State(args.state, args.read, args.drop)
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(args.keep or tmpname)
        tmp.mkdir(parents=True, exist_ok=True)
        doc: dict = {
            "budgets": sorted(budgets),
            "shapes": {str(b): f"{shapes[b][0]}x{shapes[b][1]}" for b in budgets},
            "seeds": list(range(args.first_seed, args.seeds)),
            "algorithms": labels,
            "max_budget": caps,
            "anytime_population": anytime,
            "device": args.device,
            "problems": {},
        }
        for pname in args.problems.split(","):
            results, refs = [], []
            prob = None

            def measured(label: str, budget: int) -> bool:
                return budget <= caps.get(parse_algorithm(label)[0], budget)

            def anytime_of(label: str) -> int | None:
                return None if args.finished_only else anytime.get(parse_algorithm(label)[0])

            for budget in budgets:
                prob = problem_def(pname, args.device, *shapes[budget], tmp, args.hawq_dir)
                # seed by seed, so that an interrupted run leaves every algorithm the same seeds
                for seed in range(args.first_seed, args.seeds):
                    for label in labels:
                        if not measured(label, budget):
                            continue
                        key = (pname, budget, label, seed)
                        if args.finished_only and key not in state.cells:
                            continue
                        out = tmp / f"b{budget}" / label.replace(":", "_").replace("=", "-")
                        pop = anytime_of(label)
                        if pop is not None and budget % pop == 0:
                            mine = [b for b in budgets if measured(label, b) and b % pop == 0]
                            top = max(mine)
                            run_prob = problem_def(pname, args.device, pop, top // pop, tmp,
                                                   args.hawq_dir)
                            got = state.get_anytime(
                                {b: (pname, b, label, seed) for b in mine}, run_prob, label,
                                seed, tmp / f"anytime{top}" / out.name)
                            res = dict(got[budget])
                        else:
                            res = dict(state.get(key, prob, label, seed, out))
                        res["budget"] = budget
                        log(f"{prob['name']} B={budget} {label} seed {seed}: "
                            f"{res['evaluations']} evaluations, front {len(res['run'].pareto)}, "
                            f"{res['wall_s']:.1f}s"
                            + (f" (anytime, of {res['anytime']})" if res.get("anytime") else ""))
                        results.append(res)
            hawq = prob is not None and "hawq" in prob
            if hawq:  # the deterministic one-shot reference, run once
                one = {**prob, "search": {**prob["search"], "population": 1, "generations": 1}}
                ref = dict(state.get((pname, 0, REFERENCE, 0), one, REFERENCE, 0,
                                     tmp / "reference"))
                ref["budget"] = 0
                refs.append(ref)
            everything = results + refs
            hypervolumes(everything, prob["objectives"])  # one normalisation per problem
            pdoc: dict = {"objectives": prob["objectives"], "results": {}}
            if hawq:
                pdoc["ilp_optimum"] = ilp_gaps(everything, prob["hawq"])
                pdoc["reference"] = {REFERENCE: cell_summary(refs, True)}
            for budget in sorted(budgets):
                cells = {}
                for label in labels:
                    rs = [r for r in results if r["budget"] == budget and r["algorithm"] == label]
                    if rs:
                        cells[label] = cell_summary(rs, hawq)
                pdoc["results"][str(budget)] = cells
            runs: dict[str, dict[str, str]] = {}  # label -> budget -> the anytime run
            for r in results:
                if r.get("anytime"):
                    runs.setdefault(r["algorithm"], {})[str(r["budget"])] = r["anytime"]
            pdoc["anytime"] = {a: dict(sorted(v.items(), key=lambda kv: int(kv[0])))
                               for a, v in runs.items()}
            doc["problems"][prob["name"]] = pdoc
        doc["total_wall_s"] = round(time.perf_counter() - started, 1)
        log(table(doc))
        if args.plot:
            plot(doc, args.plot)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
