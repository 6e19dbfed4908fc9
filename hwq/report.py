"""Reading a run: summaries (`hwq runs list|show`), plots and the HTML report (`hwq report`).

`make_report(run_dir)` writes into `RUN_DIR/report/`:

* `pareto.png` — task quality against each cost objective of the run: every evaluated candidate
  (small, coloured by species), the final front (large, black edge), verified policies (stars:
  PTQ accuracy hollow, QAT accuracy filled, joined by a line);
* `hypervolume.png` — front quality per generation: the hypervolume of the non-dominated set of
  everything evaluated up to that generation, overall and per species, with the objectives
  normalised over all feasible candidates of the run (ideal 0, nadir 1) and the reference point
  at 1.1 in every objective (higher is better, at most 1.1^M);
* `bits.png` — per-layer weight and activation bits of the chosen front policies (the verified
  ones, then up to 12 spread along the front by quality) as two heat maps;
* `index.html` — one self-contained page (inline CSS, no scripts, no external resources) with the
  run's meta data and configuration, the three plots (referenced by relative file name) and the
  front and verification tables.

Matplotlib is used with the Agg backend (no display needed).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwq.atomic import write_text_atomic
from hwq.display import (
    LABELS,
    axis_label,
    display_rows,
    display_unit,
    format_cell,
    format_quantity,
    front_table,
    records,
    weight_layer_mask,
)
from hwq.errors import UserError
from hwq.objectives import COLUMN_TO_OBJECTIVE, OBJECTIVES, QUALITY_OBJECTIVES
from hwq.plots import pyplot, species_colours, staircase
from hwq.runs import Run

# objective name -> (logged column, maximised?) — DESIGN.md §4 (the same table as the search's)
MAX_BITS_POLICIES = 12
REPORT_FILES = ("pareto.png", "hypervolume.png", "bits.png", "index.html")


# -- objectives ------------------------------------------------------------------------------------
def run_objectives(run: Run) -> list[str]:
    """The run's objective names (meta.json), else those whose column the candidates carry."""
    objs = run.meta.get("objectives") or []
    if objs:
        return [o for o in objs if o in OBJECTIVES]
    cols = set(run.pareto.columns)
    return [name for name, (col, _) in OBJECTIVES.items() if col in cols]


# -- summaries -------------------------------------------------------------------------------------
def _generations_done(run: Run, meta: Mapping[str, Any]) -> int | None:
    if meta.get("generations_done") is not None:
        return int(meta["generations_done"])
    parts = run.part_files()
    return len(parts) if parts else meta.get("generations")


def best_values(run: Run, front: pd.DataFrame | None = None) -> dict[str, float | None]:
    """Best value of each objective on the front (max accuracy, min of the others), in the
    logged column's unit (fraction, seconds, picojoules, bytes, BOPs)."""
    front = run.pareto if front is None else front
    out: dict[str, float | None] = {}
    for name in run_objectives(run):
        col, maximise = OBJECTIVES[name]
        if col not in front.columns or not len(front):
            out[name] = None
            continue
        vals = pd.to_numeric(front[col], errors="coerce")
        v = vals.max() if maximise else vals.min()
        out[name] = None if pd.isna(v) else float(v)
    return out


def run_summary(run: Run) -> dict[str, Any]:
    """The `hwq runs show --json` document (DESIGN.md §9), keys exactly: run_id, status,
    algorithm, device, model, generations (completed), evaluations, front_size, best
    {objective: value}, verified [rows of verify.parquet]."""
    meta = run.meta
    front = run.pareto
    return {
        "run_id": meta.get("run_id"),
        "status": meta.get("status"),
        "algorithm": meta.get("algorithm"),
        "device": meta.get("device"),
        "model": meta.get("model"),
        "generations": _generations_done(run, meta),
        "evaluations": meta.get("evaluations"),
        "front_size": int(len(front)),
        "best": best_values(run, front),
        "verified": records(run.verify),
    }


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Run directories (with a meta.json) at `root`, its children and grandchildren, sorted."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such directory")
    if (root / "meta.json").is_file():
        return [root]
    found: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if (child / "meta.json").is_file():
            found.append(child)
        else:
            found += sorted(g for g in child.iterdir() if (g / "meta.json").is_file())
    return found


def list_rows(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One summary row per run under `root` (unreadable runs show their error as status)."""
    rows = []
    for path in find_runs(root):
        try:
            run = Run.open(path)
            meta = run.meta
            front_n = _front_size_fast(path)
            rows.append(
                {
                    "run_dir": str(path),
                    "run_id": meta.get("run_id"),
                    "status": meta.get("status"),
                    "algorithm": meta.get("algorithm"),
                    "device": meta.get("device"),
                    "model": meta.get("model"),
                    "generations": _generations_done(run, meta),
                    "evaluations": meta.get("evaluations"),
                    "front_size": front_n,
                    "started_at": meta.get("started_at"),
                }
            )
        except (OSError, ValueError, UserError) as exc:
            rows.append({"run_dir": str(path), "status": f"unreadable: {exc}"})
    return rows


def _front_size_fast(path: Path) -> int | None:
    p = path / "pareto.parquet"
    if not p.is_file():
        return None
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(p).metadata.num_rows)


def objective_columns(run: Run) -> list[str]:
    """The logged columns of the run's objectives, in order."""
    return [OBJECTIVES[o][0] for o in run_objectives(run)]


def best_quantities(run: Run, best: Mapping[str, float | None]) -> dict[str, str]:
    """`best` ({objective: value}, as `run_summary` has it) for people: each value with the unit
    its column of the front table is shown in (`hwq.display.format_quantity`)."""
    front = run.pareto
    out = {}
    for name, value in best.items():
        col = OBJECTIVES[name][0]
        out[name] = format_quantity(col, value, among=front[col] if col in front else None)
    return out


def front_rows(run: Run) -> list[dict[str, Any]]:
    """The run's front as display rows (`hwq.display.front_table`): id, species, bits, the run's
    objectives in display units, and the verification accuracies when the run has them."""
    return front_table(run.pareto, run.verify, objective_columns(run),
                       weight_layers=weight_layer_mask(run.layers.column("op")))


# -- plots -----------------------------------------------------------------------------------------
def _quality_and_costs(run: Run) -> tuple[str | None, list[str]]:
    objs = run_objectives(run)
    quality = next((o for o in objs if o in QUALITY_OBJECTIVES), None)
    costs = [o for o in objs if o not in QUALITY_OBJECTIVES]
    if not costs:  # a quality-only run: show it against weight memory
        costs = ["weight_memory"]
    return quality, costs


def plot_pareto(run: Run, path: str | os.PathLike[str]) -> Path:
    """Quality against each cost objective: candidates by species, the front, verified points."""
    plt = pyplot()
    cand = run.candidates
    front = run.pareto
    verify = run.verify
    quality, costs = _quality_and_costs(run)
    if quality is None:  # costs only: the first cost against the others
        quality, costs = costs[0], costs[1:] or costs[:1]
    qcol = OBJECTIVES[quality][0]
    allq = pd.concat(
        [cand.get(qcol, pd.Series(dtype=float)), front.get(qcol, pd.Series(dtype=float))]
    )
    qdiv, qunit = display_unit(qcol, allq)
    n = len(costs)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.0 * ncols + 0.4, 4.2 * nrows + 0.9), squeeze=False
    )
    species = sorted(set(cand["species"]) if "species" in cand else set())
    colours = species_colours(species)
    feasible = cand["feasible"].astype(bool) if "feasible" in cand else pd.Series(True, cand.index)
    vmap = verify.set_index("policy_id") if len(verify) else None
    handles: dict[str, Any] = {}
    for k, cost in enumerate(costs):
        ax = axes[k // ncols][k % ncols]
        ccol = OBJECTIVES[cost][0]
        cdiv, cunit = display_unit(ccol, cand[ccol] if ccol in cand else front.get(ccol))
        for s in species:
            sel = (cand["species"] == s) & feasible
            if ccol not in cand or qcol not in cand:
                continue
            h = ax.scatter(
                cand.loc[sel, ccol] / cdiv,
                cand.loc[sel, qcol] / qdiv,
                s=9,
                alpha=0.35,
                color=colours[s],
                linewidths=0,
                label=f"candidates: {s}",
            )
            handles.setdefault(f"candidates: {s}", h)
        if (~feasible).any() and ccol in cand:
            h = ax.scatter(
                cand.loc[~feasible, ccol] / cdiv,
                cand.loc[~feasible, qcol] / qdiv,
                s=9,
                marker="x",
                color="0.6",
                linewidths=0.6,
                label="infeasible",
            )
            handles.setdefault("infeasible", h)
        if len(front) and ccol in front:
            fcol = [colours.get(s, "C0") for s in front.get("species", ["?"] * len(front))]
            h = ax.scatter(
                front[ccol] / cdiv,
                front[qcol] / qdiv,
                s=38,
                c=fcol,
                edgecolors="black",
                linewidths=0.9,
                zorder=3,
                label="Pareto front (run)",
            )
            from matplotlib.lines import Line2D

            proxy = Line2D(
                [], [], ls="", marker="o", ms=7, mfc="white", mec="black", mew=0.9
            )  # the front's markers take their species' colour
            handles.setdefault("Pareto front (coloured by species)", proxy)
            del h
            order = np.argsort(front[ccol].to_numpy())
            maximise = OBJECTIVES[quality][1]
            xs, ys = front[ccol].to_numpy()[order] / cdiv, front[qcol].to_numpy()[order] / qdiv
            keep = staircase(xs, ys, maximise)
            ax.step(xs[keep], ys[keep], where="post", color="black", lw=0.8, alpha=0.6, zorder=2)
        if vmap is not None and len(front) and quality == "accuracy" and ccol in front:
            fv = front[front["policy_id"].isin(vmap.index)]
            x = fv[ccol].to_numpy() / cdiv
            ptq = vmap.loc[fv["policy_id"], "ptq_accuracy"].to_numpy(dtype=float) / qdiv
            qat = vmap.loc[fv["policy_id"], "qat_accuracy"].to_numpy(dtype=float) / qdiv
            for xi, a, b in zip(x, ptq, qat):
                ax.plot([xi, xi], [a, b], color="crimson", lw=1.0, zorder=4)
            h1 = ax.scatter(
                x,
                ptq,
                marker="*",
                s=130,
                facecolors="none",
                edgecolors="crimson",
                linewidths=1.0,
                zorder=5,
                label="verified: PTQ accuracy (test)",
            )
            h2 = ax.scatter(
                x,
                qat,
                marker="*",
                s=130,
                color="crimson",
                edgecolors="black",
                linewidths=0.5,
                zorder=5,
                label="verified: QAT accuracy (test)",
            )
            handles.setdefault("verified: PTQ accuracy (test)", h1)
            handles.setdefault("verified: QAT accuracy (test)", h2)
        ax.set_xlabel(axis_label(ccol, cunit))
        ax.set_ylabel(axis_label(qcol, qunit) + (" (validation)" if qcol == "accuracy" else ""))
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{LABELS.get(qcol, qcol)} vs {LABELS.get(ccol, ccol)}", fontsize=10)
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    meta = run.meta
    fig.suptitle(
        f"{meta.get('model')} on {meta.get('device')} — {meta.get('algorithm')}, "
        f"{meta.get('evaluations')} evaluations, front of {len(front)}",
        fontsize=11,
    )
    ncol_leg = min(len(handles), 4) or 1
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="lower center",
        ncol=ncol_leg,
        fontsize=8,
        frameon=False,
    )
    legend_rows = math.ceil(len(handles) / ncol_leg)
    bottom = min(0.35, (0.12 + 0.2 * legend_rows) / fig.get_figheight())
    fig.tight_layout(rect=(0, bottom, 1, 0.95))
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def hypervolume_history(run: Run) -> pd.DataFrame:
    """Per generation: `generation, group, hypervolume, front_size` for the non-dominated set of
    everything evaluated up to that generation, overall (`group` = "all") and per species."""
    from hwq.search.indicators import hypervolume, nondominated_mask

    cand = run.candidates
    objs = run_objectives(run)
    cols = [OBJECTIVES[o][0] for o in objs if OBJECTIVES[o][0] in cand]
    if not len(cand) or not cols:
        return pd.DataFrame(columns=["generation", "group", "hypervolume", "front_size"])
    sign = np.array([-1.0 if OBJECTIVES[COLUMN_TO_OBJECTIVE[c]][1] else 1.0 for c in cols])
    feas = (
        cand["feasible"].astype(bool).to_numpy() if "feasible" in cand else np.ones(len(cand), bool)
    )
    F = cand[cols].to_numpy(dtype=np.float64) * sign
    ok = feas & np.isfinite(F).all(axis=1)
    cand, F = cand[ok].reset_index(drop=True), F[ok]
    if not len(F):
        return pd.DataFrame(columns=["generation", "group", "hypervolume", "front_size"])
    ideal, nadir = F.min(axis=0), F.max(axis=0)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    Fn = (F - ideal) / span
    ref = np.full(len(cols), 1.1)
    gens = cand["generation"].to_numpy()
    groups = ["all", *sorted(set(cand["species"]))]
    rows = []
    for group in groups:
        gmask = (
            np.ones(len(cand), bool) if group == "all" else (cand["species"] == group).to_numpy()
        )
        for g in sorted(set(gens)):
            sel = gmask & (gens <= g)
            pts = Fn[sel]
            nd = pts[nondominated_mask(pts)] if len(pts) else pts
            rows.append(
                {
                    "generation": int(g),
                    "group": group,
                    "hypervolume": hypervolume(nd, ref) if len(nd) else 0.0,
                    "front_size": int(len(nd)),
                }
            )
    return pd.DataFrame(rows)


def plot_hypervolume(run: Run, path: str | os.PathLike[str]) -> Path:
    plt = pyplot()
    hist = hypervolume_history(run)
    objs = run_objectives(run)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    if len(hist):
        colours = species_colours([g for g in hist["group"].unique() if g != "all"])
        for group, df in hist.groupby("group", sort=False):
            overall = group == "all"
            ax.plot(
                df["generation"],
                df["hypervolume"],
                color="black" if overall else colours[group],
                lw=2.4 if overall else 1.4,
                marker="o" if len(df) <= 30 else None,
                ms=3,
                label="all species (run's archive)" if overall else f"species {group}",
                zorder=3 if overall else 2,
            )
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(left=-0.2)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    else:
        ax.text(
            0.5, 0.5, "no feasible candidates", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_xlabel("generation")
    ax.set_ylabel(f"hypervolume [normalised objective space, max {1.1 ** max(len(objs), 1):.2f}]")
    ax.set_title(
        "Front quality per generation: hypervolume of everything evaluated so far\n"
        f"({', '.join(objs)}; normalised over all feasible candidates, reference point 1.1)",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def chosen_policies(run: Run, limit: int = MAX_BITS_POLICIES) -> pd.DataFrame:
    """Front rows for the bits heat map: verified policies first, then spread by quality."""
    front = run.pareto
    if not len(front):
        return front
    quality, costs = _quality_and_costs(run)
    key = OBJECTIVES[quality][0] if quality else OBJECTIVES[costs[0]][0]
    maximise = OBJECTIVES[quality][1] if quality else False
    front = front.sort_values(key, ascending=not maximise, kind="stable").reset_index(drop=True)
    verified = set(run.verify["policy_id"]) if len(run.verify) else set()
    picks = [i for i in range(len(front)) if front.loc[i, "policy_id"] in verified][:limit]
    rest = [i for i in range(len(front)) if i not in picks]
    room = limit - len(picks)
    if room > 0 and rest:
        idx = np.unique(np.round(np.linspace(0, len(rest) - 1, min(room, len(rest)))).astype(int))
        picks += [rest[i] for i in idx]
    return front.loc[sorted(picks)].reset_index(drop=True)


def plot_bits(run: Run, path: str | os.PathLike[str]) -> Path:
    plt = pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap

    chosen = chosen_policies(run)
    names = list(run.layers.names)
    quality, costs = _quality_and_costs(run)
    verified = set(run.verify["policy_id"]) if len(run.verify) else set()
    P, L = len(chosen), len(names)
    W = np.array([np.asarray(v, dtype=int) for v in chosen["w_bits"]]) if P else np.zeros((0, L))
    A = np.array([np.asarray(v, dtype=int) for v in chosen["a_bits"]]) if P else np.zeros((0, L))
    levels = sorted(set(W.ravel().tolist()) | set(A.ravel().tolist())) or [8]
    cmap_base = plt.get_cmap("viridis")
    # one fixed colour per bit-width (1..8 along viridis, 16/32 "not quantized" grey), so that
    # reports of different runs read alike; the image holds the index of the level
    colours = [cmap_base((b - 1) / 7.0) if b <= 8 else (0.75, 0.75, 0.75, 1.0) for b in levels]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(len(levels) + 1) - 0.5, cmap.N)
    index = {b: i for i, b in enumerate(levels)}
    ylabels = []
    qcol = OBJECTIVES[quality][0] if quality else None
    for _, r in chosen.iterrows():
        lab = str(r["policy_id"])
        if qcol == "accuracy":
            lab += f"  acc {100 * float(r[qcol]):.1f}%"
        elif qcol:
            lab += f"  {qcol} {float(r[qcol]):.3g}"
        if r["policy_id"] in verified:
            lab += " ✓"
        ylabels.append(lab)
    width = min(max(7.0, 0.42 * L * 2 + 4.5), 26.0)
    height = max(3.2, 0.34 * P + 2.8)
    fig, axes = plt.subplots(1, 2, figsize=(width, height), sharey=True)
    annotate = L <= 40 and P <= 25
    for ax, M, title in ((axes[0], W, "weight bits"), (axes[1], A, "activation bits (input)")):
        Mi = np.vectorize(index.get)(M) if M.size else M
        im = ax.imshow(Mi, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        if annotate and P:
            for i in range(P):
                for j in range(L):
                    v = int(M[i, j])
                    shade = colours[levels.index(v)]
                    lum = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2]
                    ax.text(
                        j,
                        i,
                        str(v),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if lum > 0.5 else "white",
                    )
        ax.set_xticks(range(L))
        ax.set_xticklabels(names, rotation=90, fontsize=7 if L <= 40 else 5)
        ax.set_xlabel("layer (execution order)")
        ax.set_title(title, fontsize=10)
    axes[0].set_yticks(range(P))
    axes[0].set_yticklabels(ylabels, fontsize=7)
    axes[0].set_ylabel("front policy (✓ verified)")
    fig.suptitle(
        f"Per-layer bits of {P} of {len(run.pareto)} front policies "
        f"({'sorted by ' + quality if quality else 'sorted by ' + costs[0]})",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.93, 0.95))
    cax = fig.add_axes((0.94, 0.25, 0.015, 0.5))
    cb = fig.colorbar(im, cax=cax, ticks=range(len(levels)))
    cb.ax.set_yticklabels([str(b) if b <= 8 else f"{b} (float)" for b in levels])
    cb.set_label("bits")
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# -- HTML ------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.l,th.l{text-align:left}
img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.8em;overflow:auto;
font-size:.85em}.muted{color:#777;font-size:.85em}
"""


def _html_table(df: pd.DataFrame) -> str:
    if df is None or not len(df):
        return "<p class='muted'>(none)</p>"
    cols = list(df.columns)
    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) for c in cols}
    head = "".join(
        f"<th class='{'' if numeric[c] else 'l'}'>{html.escape(str(c))}</th>" for c in cols
    )
    body = []
    for rec in df.to_dict("records"):
        cells = "".join(
            f"<td class='{'' if numeric[c] else 'l'}'>{html.escape(format_cell(rec[c]))}</td>"
            for c in cols
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_html(run: Run, outdir: Path, images: Mapping[str, str]) -> Path:
    import yaml

    meta = run.meta
    summary = run_summary(run)
    best = best_quantities(run, summary["best"])
    meta_rows = pd.DataFrame(
        [
            {"key": k, "value": json.dumps(v) if isinstance(v, dict | list) else str(v)}
            for k, v in meta.items()
            if k != "timing"
        ]
    )
    cfg_path = run.path / "config.yaml"
    config_text = cfg_path.read_text() if cfg_path.is_file() else yaml.safe_dump(run.config)
    front = pd.DataFrame(front_rows(run))
    verify = run.verify
    species = run.species

    def e(value: Any) -> str:
        return html.escape(str(value))

    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>hwq run {html.escape(str(meta.get('run_id')))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>hwq run {e(meta.get('run_id'))}: {e(meta.get('model'))}"
        f" on {e(meta.get('device'))}</h1>",
        f"<p>{e(meta.get('algorithm'))}, status <b>{e(meta.get('status'))}</b>, "
        f"{summary['generations']} generations, {summary['evaluations']} evaluations, "
        f"front of {summary['front_size']} policies. Directory: <code>{e(run.path)}</code></p>",
        "<h2>Best value per objective on the front</h2>",
        _html_table(pd.DataFrame([best])),
        "<h2>Trade-off</h2>",
        f"<img src='{images['pareto']}' alt='accuracy against each cost objective'>",
        "<h2>Front quality per generation</h2>",
        f"<img src='{images['hypervolume']}' alt='hypervolume per generation and species'>",
        "<h2>Per-layer bits of chosen front policies</h2>",
        f"<img src='{images['bits']}' alt='per-layer weight and activation bits'>",
        "<h2>Pareto front</h2>",
        "<p class='muted'>bits are listed per layer in execution order; accuracies in %.</p>",
        _html_table(front),
        "<h2>Verification (QAT with distillation, test split)</h2>",
        _html_table(pd.DataFrame(display_rows(records(verify)))),
        "<h2>Species (last generation)</h2>",
        _html_table(
            species[species["generation"] == species["generation"].max()]
            if len(species)
            else species
        ),
        "<h2>Configuration (config.yaml)</h2>",
        f"<pre>{html.escape(config_text)}</pre>",
        "<h2>Run meta data (meta.json)</h2>",
        _html_table(meta_rows),
        "<p class='muted'>Generated by hwq report.</p></body></html>",
    ]
    return write_text_atomic(outdir / "index.html", "\n".join(parts))


def make_report(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    progress_bar: Any = None,
) -> dict[str, Path]:
    """Write pareto.png, hypervolume.png, bits.png and index.html into RUN_DIR/report (or
    `out_dir`); returns their paths by name."""
    run = Run.open(run_dir)
    if not len(run.candidates):
        raise UserError(f"{run.path}: the run has no complete generation yet; nothing to report")
    outdir = Path(out_dir) if out_dir is not None else run.path / "report"
    outdir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, fn in (
        ("pareto", plot_pareto),
        ("hypervolume", plot_hypervolume),
        ("bits", plot_bits),
    ):
        files[name] = fn(run, outdir / f"{name}.png")
        if progress_bar is not None:
            progress_bar.advance()
    files["index"] = write_html(run, outdir, {k: v.name for k, v in files.items()})
    if progress_bar is not None:
        progress_bar.advance()
    return files
