"""hwq/verify.py: which front members are verified (the best compromises, not a corner)."""

from __future__ import annotations

import numpy as np

from hwq.verify import choose_for_verification


def test_chooses_the_compromises_closest_to_the_ideal_point() -> None:
    # minimised objectives: -accuracy, latency; the corners are 8-bit (best accuracy, slowest)
    # and 2-bit (fastest, worst accuracy); the middle one is the best compromise
    F = np.array([[-0.99, 10.0], [-0.98, 5.0], [-0.50, 1.0], [-0.97, 4.0]])
    assert choose_for_verification(F, 1, quality_index=0).tolist() == [3]
    assert choose_for_verification(F, 2, quality_index=0).tolist() == [3, 1]
    assert len(choose_for_verification(F, 10)) == 4
    assert choose_for_verification(np.zeros((0, 2)), 3).tolist() == []
