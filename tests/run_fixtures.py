"""Fixtures of the tests that read runs (report, compare, export; a plugin of tests/conftest.py):
one finished digits_resnet run (a real, small NEMO search with PTQ accuracy and one verified
policy), and a CLI runner for this package's commands."""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

DEVICE = os.environ.get("HWQ_TEST_DEVICE", "bitfusion")


def _real_run(out: str):
    import hwq.search as hs

    return hs(
        device=DEVICE,
        model="digits_resnet",
        objectives="accuracy,latency,energy,weight_memory",
        generations=4,
        population=16,
        seed=3,
        output_dir=out,
        verify_top=1,
        verify_epochs=1,
    )


def synthetic_run(out: str):
    """A run directory written with hwq.runs.RunWriter from made-up costs (used only while the
    cost models cannot be imported, so the report code stays testable)."""
    import numpy as np
    import pandas as pd

    from hwq.model_source import load_graph
    from hwq.policy import Policy, policy_id_from_pairs
    from hwq.runs import RunWriter, candidates_schema, environment_meta
    from hwq.search.indicators import nondominated_mask

    graph = load_graph("digits_resnet")
    frame = graph.to_frame()
    L = len(graph)
    rng = np.random.default_rng(0)
    meta = {
        **environment_meta(),
        "run_id": "synthetic0001",
        "seed": 0,
        "graph_hash": graph.graph_hash,
        "algorithm": "nemo",
        "model": "digits_resnet",
        "device": DEVICE,
        "objectives": ["accuracy", "latency", "energy", "weight_memory"],
        "generations": 4,
    }
    w = RunWriter.create(out, meta)
    w.write_config({"device": DEVICE, "model": "digits_resnet", "generations": 4})
    w.write_layers(graph)
    costs = ["weight_bytes", "peak_activation_bytes", "bops", "latency_s", "energy_pj"]
    w.schema = candidates_schema(["accuracy"], costs)
    species = ["direct-round", "gnn-gcn"]
    allrec = []
    for gen in range(4):
        recs = []
        for i in range(16):
            pairs = rng.choice([2, 4, 8], size=(L, 2))
            wb = float((frame["weight_params"].to_numpy() * pairs[:, 0]).sum() / 8)
            bops = float((frame["macs"].to_numpy() * pairs[:, 0] * pairs[:, 1]).sum())
            acc = 0.97 - 0.3 * float((2.0 ** -pairs[:, 0]).mean() + (2.0 ** -pairs[:, 1]).mean())
            recs.append(
                {
                    "run_id": meta["run_id"],
                    "generation": gen,
                    "species": species[i % 2],
                    "policy_id": policy_id_from_pairs(pairs),
                    "w_bits": pairs[:, 0].tolist(),
                    "a_bits": pairs[:, 1].tolist(),
                    "accuracy": acc,
                    "weight_bytes": wb,
                    "peak_activation_bytes": 2048.0,
                    "bops": bops,
                    "latency_s": bops * 1e-12,
                    "energy_pj": bops * 0.05,
                    "feasible": True,
                    "eval_wall_s": 0.01,
                }
            )
        w.write_candidates(gen, pd.DataFrame(recs))
        allrec += recs
    df = pd.DataFrame(allrec).drop_duplicates("policy_id")
    F = np.stack([-df["accuracy"], df["latency_s"], df["energy_pj"], df["weight_bytes"]], 1)
    front = df[nondominated_mask(F)]
    w.write_pareto(front)
    for _, r in front.iterrows():
        pol = Policy.from_array(graph, np.stack([r["w_bits"], r["a_bits"]], 1))
        pol.device = DEVICE
        pol.predicted = {c: float(r[c]) for c in ["accuracy", *costs]}
        w.write_policy(r["policy_id"], pol.to_json())
    w.write_species(
        pd.DataFrame(
            [
                {
                    "generation": g,
                    "species": s,
                    "size": 8,
                    "r2": 0.3,
                    "ucb": 1.0,
                    "front_members": 2,
                }
                for g in range(4)
                for s in species
            ]
        )
    )
    best = front.sort_values("accuracy").iloc[-1]
    w.write_verify(
        [
            {
                "run_id": meta["run_id"],
                "policy_id": best["policy_id"],
                "fp32_accuracy": 0.97,
                "ptq_accuracy": float(best["accuracy"]) - 0.01,
                "qat_accuracy": float(best["accuracy"]) + 0.005,
                "epochs": 1,
                "wall_s": 1.0,
            }
        ]
    )
    w.write_meta(status="done", evaluations=64, generations_done=4)
    from hwq.runs import Run

    return Run.open(out)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A finished digits_resnet run (real search; a synthetic run directory only when the cost
    models are not importable)."""
    out = str(tmp_path_factory.mktemp("report-runs") / "digits")
    from hwq.errors import UserError

    try:
        return _real_run(out)
    except (ImportError, UserError) as exc:  # cost models under construction ("no latency
        # model"): keep the report testable on a synthetic run directory
        sys.stderr.write(f"report tests: real search unavailable ({exc}); synthetic run\n")
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        return synthetic_run(out)


def run_cmd(command, args: list[str]) -> tuple[int, str, str]:
    """Invoke a click command in-process: (exit code, stdout, stderr), hwq's error mapping."""
    import click

    from hwq.errors import HwqError, UserError

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            command.main(args=args, prog_name="hwq", standalone_mode=False)
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except UserError as exc:
            err.write(f"hwq: error: {exc}\n")
            code = 2
        except HwqError as exc:
            err.write(f"hwq: failed: {exc}\n")
            code = 1
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()
