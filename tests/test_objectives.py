"""hwq/objectives.py: the one objectives table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hwq.objectives import COST_COLUMNS, OBJECTIVES, QUALITY_OBJECTIVES, minimised


def test_table_matches_the_design() -> None:
    assert OBJECTIVES["accuracy"] == ("accuracy", True)
    assert OBJECTIVES["latency"] == ("latency_s", False)
    assert set(QUALITY_OBJECTIVES) == {"accuracy", "sensitivity", "perplexity"}
    assert OBJECTIVES["perplexity"] == ("perplexity", False)  # language models, minimised
    assert COST_COLUMNS == ("weight_bytes", "peak_activation_bytes", "bops", "latency_s",
                            "energy_pj")


def test_minimised_negates_maximised_objectives() -> None:
    df = pd.DataFrame({"accuracy": [0.9, 0.8], "latency_s": [1.0, 2.0]})
    F = minimised(df, ["accuracy", "latency"])
    assert np.array_equal(F, np.array([[-0.9, 1.0], [-0.8, 2.0]]))
