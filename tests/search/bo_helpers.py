"""A BO search a subprocess runs (the SIGKILL/resume test of tests/search/test_bo.py)."""

from __future__ import annotations

import sys

from tests.search.helpers import slow_accuracy


def bo_kwargs(layers: str, out: str, device: str, mode: str) -> dict:
    return dict(
        device=device,
        model=layers,
        algorithm="bo",
        bo_mode=mode,
        objectives="accuracy,latency,weight_memory",
        generations=4,
        population=6,
        seed=5,
        output_dir=out,
        verify_top=0,
    )


if __name__ == "__main__":  # python -m tests.search.bo_helpers LAYERS OUT DEVICE MODE
    import hwq.search as hs

    hs(**bo_kwargs(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]), quality=slow_accuracy)
