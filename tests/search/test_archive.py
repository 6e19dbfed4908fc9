"""search/archive.py: the global front keeps one point per objective vector (twins listed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

import hwq
from hwq.search.archive import ParetoArchive


def _records(ids: list[str], bits: list[list[int]]) -> pd.DataFrame:
    return pd.DataFrame({
        "policy_id": ids,
        "w_bits": [np.array(b, dtype=np.int8) for b in bits],
        "a_bits": [np.array(b, dtype=np.int8) for b in bits],
    })


def test_twins_are_one_point_kept_with_the_fewest_bits_then_the_smallest_id() -> None:
    arch = ParetoArchive()
    F = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [1.0, 2.0]])
    arch.update(_records(["c", "b", "x", "a"], [[8, 8], [4, 8], [2, 2], [8, 4]]), F,
                np.zeros((4, 1)))
    front, _ = arch.sorted()
    assert list(front["policy_id"]) == ["a", "x"]  # a: 8+4 bits twice = b's sum, smaller id
    assert list(front["equivalent_ids"]) == [["b", "c"], []]
    # a later twin with fewer bits becomes the point and carries the others
    arch.update(_records(["z"], [[2, 8]]), np.array([[1.0, 2.0]]), np.zeros((1, 1)))
    front, _ = arch.sorted()
    assert list(front["policy_id"]) == ["z", "x"]
    assert list(front["equivalent_ids"]) == [["a", "b", "c"], []]


def test_a_front_on_a_device_where_activation_bits_cost_nothing_has_no_twins(tmp_path) -> None:
    run = hwq.search("stm32h743", generations=4, population=20, seed=0, verify_top=0,
                     output_dir=str(tmp_path / "run"))
    front = run.pareto
    F = front[["accuracy", "latency_s", "energy_pj", "weight_bytes"]].to_numpy()
    assert len(np.unique(F, axis=0)) == len(front)
    twins = [t for ids in front["equivalent_ids"] for t in ids]
    assert twins, "the mcu prices activation bits alike: expected twins"
    cands = run.candidates.drop_duplicates("policy_id").set_index("policy_id")
    cols = ["accuracy", "latency_s", "energy_pj", "weight_bytes"]
    for _, row in front.iterrows():  # every twin has its point's objective vector
        for t in row["equivalent_ids"]:
            assert np.array_equal(cands.loc[t, cols].to_numpy(float), row[cols].to_numpy(float))
    assert set(twins).isdisjoint(front["policy_id"])
