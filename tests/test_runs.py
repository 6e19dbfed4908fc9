"""hwq.runs, the owner of the run directory: each table's schema and writer, temporaries."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from hwq.runs import SPECIES_COLUMNS, VERIFY_COLUMNS, Run, RunWriter, write_verify_parquet

RECORD = {
    "policy_id": "abc123abc123",
    "fp32_accuracy": 0.99,
    "ptq_accuracy": 0.9,
    "qat_accuracy": 0.98,
    "epochs": 3,
    "wall_s": 1.5,
}


def test_write_verify_parquet(tmp_path):
    recs = [
        {
            "policy_id": "abc123abc123",
            "fp32_accuracy": 0.99,
            "ptq_accuracy": 0.9,
            "qat_accuracy": 0.98,
            "epochs": 3,
            "wall_s": 1.5,
        },
        {
            "policy_id": "def456def456",
            "fp32_accuracy": 0.99,
            "ptq_accuracy": 0.5,
            "qat_accuracy": 0.95,
            "epochs": 3,
            "wall_s": 1.2,
            "run_id": "other",
        },
    ]
    path = tmp_path / "run" / "verify.parquet"
    write_verify_parquet(recs, str(path), run_id="r1")
    table = pq.read_table(path)
    assert tuple(table.column_names) == VERIFY_COLUMNS
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["hwq.kind"] == "verify" and meta["hwq.schema_version"] == "1"
    df = table.to_pandas()
    assert list(df.run_id) == ["r1", "other"] and list(df.epochs) == [3, 3]
    assert [p.name for p in path.parent.iterdir()] == ["verify.parquet"]  # no temporary left
    with pytest.raises(ValueError, match="qat_accuracy"):
        write_verify_parquet([{"policy_id": "x"}], str(path))


def test_run_writer_tables_follow_the_schemas(tmp_path):
    import pandas as pd

    w = RunWriter.create(tmp_path / "run", {"run_id": "r1"})
    w.write_verify([RECORD])
    w.write_species(
        pd.DataFrame(
            [
                {
                    "generation": 0,
                    "species": "nsga2",
                    "size": 4,
                    "r2": 0.5,
                    "ucb": 1.0,
                    "front_members": 2,
                }
            ]
        )
    )
    verify = pq.read_table(w.path / "verify.parquet")
    assert tuple(verify.column_names) == VERIFY_COLUMNS
    assert verify.schema.field("epochs").type == "int32"
    assert verify.to_pandas().run_id.tolist() == ["r1"]
    meta = {k.decode(): v.decode() for k, v in verify.schema.metadata.items()}
    assert meta["hwq.kind"] == "verify" and meta["hwq.run_id"] == "r1"
    species = pq.read_table(w.path / "species.parquet")
    assert tuple(species.column_names) == SPECIES_COLUMNS
    run = Run.open(w.path)
    assert list(run.verify.policy_id) == ["abc123abc123"]
    empty = Run.open(RunWriter.create(tmp_path / "empty", {"run_id": "r2"}).path)
    assert tuple(empty.species.columns) == SPECIES_COLUMNS
    assert tuple(empty.verify.columns) == VERIFY_COLUMNS


def test_resume_removes_temporaries_of_the_atomic_writer(tmp_path):
    from hwq.atomic import write_atomic

    w = RunWriter.create(tmp_path / "run", {"run_id": "r1"})

    def killed(fh):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(w.path / "candidates" / "part-00000.parquet", killed)
    stray = w.path / "candidates" / ".part-00000.parquet.k3x9q2zw.tmp"  # as a SIGKILL leaves it
    stray.write_bytes(b"PAR1 half a file")
    RunWriter.resume(w.path)
    assert not stray.exists() and not list((w.path / "candidates").iterdir())
