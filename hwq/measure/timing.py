"""Timing one callable: warm-up, repeats until enough samples and time, median and spread, with
the timer's resolution checked (a call shorter than the timer can see is timed in groups)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwq.errors import HwqError

# A sample must last this many timer ticks, so that the tick adds at most 0.1 % to it.
MIN_TICKS_PER_SAMPLE = 1000


@dataclass(frozen=True)
class TimingOptions:
    """How long to time: `warmup` untimed calls, then samples until at least `min_repeats` and
    `min_seconds` of timed calls (at most `max_repeats` samples)."""

    warmup: int = 3
    min_repeats: int = 15
    max_repeats: int = 200
    min_seconds: float = 0.2


@dataclass(frozen=True)
class Timing:
    """One measurement: the median seconds per call over `repeats` samples of `inner` calls
    each, `spread` = interquartile range / median, and the timer resolution it was read with."""

    median_s: float
    spread: float
    repeats: int
    inner: int
    resolution_s: float


def timer_resolution() -> float:
    """perf_counter's resolution in seconds (as the platform reports it)."""
    return float(time.get_clock_info("perf_counter").resolution)


def time_calls(fn: Callable[[], object], options: TimingOptions | None = None) -> Timing:
    """Time `fn()`: warm up, then group calls so a sample spans MIN_TICKS_PER_SAMPLE ticks."""
    opts = options or TimingOptions()
    resolution = timer_resolution()
    if not (resolution > 0 and math.isfinite(resolution)) or resolution > 1e-3:
        raise HwqError(f"the timer's resolution ({resolution} s) is too coarse to time layers")
    for _ in range(max(opts.warmup, 1)):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, resolution)
    inner = max(1, math.ceil(MIN_TICKS_PER_SAMPLE * resolution / once))
    samples: list[float] = []
    total = 0.0
    while len(samples) < opts.max_repeats and (
        len(samples) < opts.min_repeats or total < opts.min_seconds
    ):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        dt = time.perf_counter() - t0
        total += dt
        samples.append(dt / inner)
    arr = np.asarray(samples)
    median = float(np.median(arr))
    q75, q25 = np.percentile(arr, [75, 25])
    return Timing(median, float((q75 - q25) / median) if median > 0 else 0.0, len(arr), inner,
                  resolution)
