"""Helpers of the search tests that must be importable by a subprocess (kill/resume test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SLEEP_S = 0.0


ROOT = Path(__file__).resolve().parents[2]


def kill_inside_generation(argv: list[str], out: Path, part: int, deadline_s: float) -> None:
    """Run `python -m ARGV...` (a search writing to `out`) and SIGKILL it just after it wrote
    candidates part `part` (inside the next generation's work)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + deadline_s
        path = out / "candidates" / f"part-{part:05d}.parquet"
        while not path.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, f"the search did not reach generation {part}"
            time.sleep(0.02)
        time.sleep(0.05)  # inside the next generation (its proposals or their 0.25 s evaluation)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def fake_accuracy(pairs: np.ndarray) -> np.ndarray:
    """A deterministic stand-in for PTQ accuracy: higher bits, higher accuracy (saturating), with
    a layer-dependent weighting so that the front is not trivial."""
    if SLEEP_S:
        time.sleep(SLEEP_S)
    pairs = np.asarray(pairs, dtype=np.float64)
    weight = 1.0 + np.arange(pairs.shape[1])[None, :] % 3
    loss = (weight * (2.0 ** (-pairs[:, :, 0]) + 0.5 * 2.0 ** (-pairs[:, :, 1]))).sum(axis=1)
    return 1.0 - loss / (1.0 + loss)


def slow_accuracy(pairs: np.ndarray) -> np.ndarray:
    time.sleep(0.25)
    return fake_accuracy(pairs)


def search_kwargs(layers: str, out: str, device: str) -> dict:
    return dict(
        device=device,
        model=layers,
        objectives="accuracy,latency,weight_memory",
        generations=6,
        population=12,
        seed=7,
        output_dir=out,
        verify_top=0,
    )


if __name__ == "__main__":  # python -m tests.search.helpers LAYERS OUT DEVICE
    import hwq.search as hs

    hs(**search_kwargs(sys.argv[1], sys.argv[2], sys.argv[3]), quality=slow_accuracy)
