"""The run directory (DESIGN.md §6): files, columns, metadata, policies that re-cost to the logged
numbers, determinism, atomic parts, and resume after SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hwq.search as hs
from hwq.runs import META_KEYS, Run
from hwq.search.indicators import nondominated_mask

from . import helpers
from .conftest import DEVICE, HAWQ18

ROOT = Path(__file__).resolve().parents[2]
LOGGED = ["accuracy", "bops", "weight_bytes", "peak_activation_bytes", "latency_s", "energy_pj"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, r18_layers):
    out = tmp_path_factory.mktemp("runs") / "r18"
    return hs(**helpers.search_kwargs(r18_layers, str(out), DEVICE), quality=helpers.fake_accuracy)


def test_run_directory_layout(small_run):
    d = small_run.path
    for name in (
        "config.yaml",
        "profile.yaml",
        "meta.json",
        "layers.parquet",
        "costs.parquet",
        "species.parquet",
        "pareto.parquet",
    ):
        assert (d / name).is_file(), name
    parts = sorted(p.name for p in (d / "candidates").iterdir())
    assert parts == [f"part-{g:05d}.parquet" for g in range(6)]
    meta = json.loads((d / "meta.json").read_text())
    assert set(META_KEYS) <= set(meta)
    assert meta["status"] == "done" and meta["algorithm"] == "nemo" and meta["seed"] == 7
    assert meta["evaluations"] == 6 * 12
    for name in (
        "candidates/part-00000.parquet",
        "pareto.parquet",
        "species.parquet",
        "layers.parquet",
        "costs.parquet",
    ):
        md = pq.read_schema(d / name).metadata
        keys = {k.decode(): v.decode() for k, v in md.items()}
        for key in ("hwq.schema_version", "hwq.kind", "hwq.profile_sha256", "hwq.graph_hash"):
            assert keys.get(key), (name, key)
        assert keys["hwq.graph_hash"] == meta["graph_hash"]
        assert keys["hwq.profile_sha256"] == meta["profile_sha256"]
    # the run's layer file is a current layer file: it reads back without the old-version warning
    from hwq.graph import SCHEMA_VERSION, LayerGraph

    md = pq.read_schema(d / "layers.parquet").metadata
    assert md[b"hwq.schema_version"].decode() == str(SCHEMA_VERSION)
    assert len(LayerGraph.read(d / "layers.parquet").names) > 0


def test_candidates_columns_and_types(small_run):
    schema = pq.read_schema(small_run.path / "candidates" / "part-00003.parquet")
    names = schema.names
    assert names[:6] == ["run_id", "generation", "species", "policy_id", "w_bits", "a_bits"]
    assert schema.field("w_bits").type == pa.list_(pa.int8())
    assert schema.field("a_bits").type == pa.list_(pa.int8())
    for col in [*LOGGED, "feasible", "eval_wall_s"]:
        assert col in names
    cand = small_run.candidates
    assert set(cand["species"]) <= {
        "direct-round",
        "direct-floor",
        "gnn-gcn",
        "gnn-gat",
        "gnn-unet",
        "local",  # NEMO's local improvement of the archive
    }
    from hwq.policy import policy_id_from_pairs

    for _, r in cand.head(20).iterrows():
        assert r["policy_id"] == policy_id_from_pairs(zip(r["w_bits"], r["a_bits"]))
    sp = small_run.species
    assert list(sp.columns) == ["generation", "species", "size", "r2", "ucb", "front_members"]


def test_pareto_and_policies_recost(small_run, hwq_cli, r18_layers):
    front = small_run.pareto
    assert len(front) > 1 and front["feasible"].all()
    F = np.stack([-front["accuracy"], front["latency_s"], front["weight_bytes"]], axis=1)
    assert nondominated_mask(F).all()
    ids = sorted(small_run.policy_ids())
    assert ids == sorted(front["policy_id"])
    for _, row in front.head(3).iterrows():
        path = small_run.path / "policies" / f"{row['policy_id']}.json"
        code, out, err = hwq_cli(
            ["cost", "--device", DEVICE, "--model", r18_layers, "--policy", str(path), "--json"]
        )
        assert code == 0, err
        totals = json.loads(out)["totals"]
        for col in ("bops", "weight_bytes", "peak_activation_bytes", "latency_s", "energy_pj"):
            assert totals[col] == pytest.approx(row[col], rel=1e-12), col
        pol = small_run.policy(row["policy_id"])
        assert pol.predicted["latency_s"] == pytest.approx(row["latency_s"])


def test_same_seed_same_generations(tmp_path, small_run, r18_layers):
    again = hs(
        **helpers.search_kwargs(r18_layers, str(tmp_path / "again"), DEVICE),
        quality=helpers.fake_accuracy,
    )
    cols = ["generation", "species", "policy_id", *LOGGED, "feasible"]
    a, b = small_run.candidates, again.candidates
    assert a[cols].equals(b[cols])
    assert [list(x) for x in a["w_bits"]] == [list(x) for x in b["w_bits"]]
    other = hs(
        **{**helpers.search_kwargs(r18_layers, str(tmp_path / "other"), DEVICE), "seed": 8},
        quality=helpers.fake_accuracy,
    )
    assert not other.candidates["policy_id"].equals(a["policy_id"])


def test_half_written_part_is_never_read(small_run):
    stray = small_run.path / "candidates" / ".part-00099.parquet.k3x9q2zw.tmp"  # as written
    stray.write_bytes(b"PAR1 half a file")
    try:
        assert sorted(small_run.candidates["generation"].unique()) == list(range(6))
    finally:
        stray.unlink()


def test_existing_directory_is_refused(small_run, hwq_cli):
    code, _out, err = hwq_cli(["search", "--device", DEVICE, "-o", str(small_run.path)])
    assert code == 2 and "not empty" in err and "--resume" in err


def test_sigkill_then_resume_gives_the_same_front(tmp_path, small_run, r18_layers):
    out = tmp_path / "killed"
    helpers.kill_inside_generation(
        ["tests.search.helpers", r18_layers, str(out), DEVICE], out, 2, 90)
    assert json.loads((out / "meta.json").read_text())["status"] == "running"
    assert not (out / "candidates" / "part-00005.parquet").exists()
    resumed = hs(device=DEVICE, output_dir=str(out), resume=True, quality=helpers.fake_accuracy)
    assert resumed.meta["status"] == "done"
    cols = ["generation", "species", "policy_id", *LOGGED]
    assert resumed.candidates[cols].equals(small_run.candidates[cols])
    assert resumed.pareto[["policy_id", *LOGGED]].equals(small_run.pareto[["policy_id", *LOGGED]])
    assert resumed.species.equals(small_run.species)
    assert resumed.meta["run_id"] == json.loads((out / "meta.json").read_text())["run_id"]


def test_resume_refuses_changed_options(small_run, hwq_cli):
    code, _out, err = hwq_cli(["search", "--resume", "-o", str(small_run.path), "--seed", "99"])
    assert code == 2 and "--seed" in err


def test_sensitivity_run_without_verification_data(tmp_path, r18_layers, hwq_cli):
    code, out, err = hwq_cli(
        [
            "search",
            "--device",
            DEVICE,
            "--model",
            r18_layers,
            "--sensitivity",
            str(HAWQ18),
            "--objectives",
            "sensitivity,bops",
            "--bits",
            "4x4,8x8",
            "--pin",
            "first,last=8",
            "--generations",
            "3",
            "--population",
            "10",
            "-o",
            str(tmp_path / "s"),
            "--json",
        ]
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["front_size"] == len(doc["front"]) > 0
    assert doc["verified"] == [] and "verification skipped" in err
    run = Run.open(tmp_path / "s")
    assert not (run.path / "verify.parquet").exists()
