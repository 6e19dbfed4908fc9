"""Timing callables: warm-up, repeats until enough samples and time, median and spread, with the
timer's resolution checked (a call shorter than the timer can see is timed in groups).

`time_interleaved` times several callables in turns (`rounds` rounds, each giving every callable
its share of samples), so that a change of the machine's load during a measurement spreads over
all of them instead of falling on one: what a shared machine needs for layers and networks that
are compared with each other. Given factories (`renew`), each round times a fresh callable:
two sessions of one single-layer model, timed side by side, differ by 10-35 % on a virtual
machine (where their weights and buffers fall in memory), more than one session's median
varies, so a layer's figure pools several sessions.

Two clocks: `wall` (perf_counter) and `cpu` (the calling thread's CPU time, thread_time): with one
runtime thread the computation runs on the calling thread, so its CPU time is the layer's time
without the intervals another process held the core: what a machine shared with other work can
still measure reproducibly. With more threads only `wall` sees the work of all of them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hwq.errors import HwqError

# A sample must last this many timer ticks, so that the tick adds at most 0.1 % to it.
MIN_TICKS_PER_SAMPLE = 1000


@dataclass(frozen=True)
class TimingOptions:
    """How long to time: `warmup` untimed calls, then samples until at least `min_repeats` and
    `min_seconds` of timed calls (at most `max_repeats` samples). A sample groups calls until it
    lasts `min_sample_s` (and MIN_TICKS_PER_SAMPLE timer ticks): a short layer and a whole network
    then see the same share of a shared machine's interruptions, so their times compare."""

    warmup: int = 3
    min_repeats: int = 15
    max_repeats: int = 200
    min_seconds: float = 0.2
    min_sample_s: float = 0.01
    clock: str = "wall"


STATISTICS = ("median", "p10")
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
_CLOCK_INFO = {"wall": "perf_counter", "cpu": "thread_time"}


@dataclass(frozen=True)
class Timing:
    """One measurement: the median and the 10th percentile of the seconds per call over
    `repeats` samples of `inner` calls each, `spread` = interquartile range / median, and the
    timer resolution it was read with."""

    median_s: float
    p10_s: float
    spread: float
    repeats: int
    inner: int
    resolution_s: float

    def value(self, statistic: str) -> float:
        """The figure a table keeps: `median` (any machine) or `p10` (a machine shared with
        other work, where preempted samples make the median jump)."""
        if statistic not in STATISTICS:
            raise ValueError(f"statistic: expected one of {STATISTICS}, found {statistic!r}")
        return self.median_s if statistic == "median" else self.p10_s


def timer_resolution(clock: str = "wall") -> float:
    """The clock's resolution in seconds (as the platform reports it)."""
    return float(time.get_clock_info(_CLOCK_INFO[clock]).resolution)


def time_calls(fn: Callable[[], object], options: TimingOptions | None = None) -> Timing:
    """Time `fn()`: warm up, then group calls so a sample spans MIN_TICKS_PER_SAMPLE ticks."""
    return time_interleaved([fn], options, rounds=1)[0]


def time_interleaved(fns: Sequence[Callable[[], object]], options: TimingOptions | None = None,
                     rounds: int = 3,
                     renew: Sequence[Callable[[], Callable[[], object]]] | None = None,
                     ) -> list[Timing]:
    """Time every callable (module doc): each round gives each one 1/rounds of its repeats and
    seconds; the median and spread are over all its samples. With `renew` (one factory per
    callable), every round after the first times a fresh callable from its factory, warmed up
    again: a runtime session allocates its buffers anew, so a layer's figure is the median over
    several memory placements, not the luck of one (module doc)."""
    opts = options or TimingOptions()
    if opts.clock not in CLOCKS:
        raise ValueError(f"clock: expected one of {tuple(CLOCKS)}, found {opts.clock!r}")
    clock = CLOCKS[opts.clock]
    resolution = timer_resolution(opts.clock)
    if not (resolution > 0 and math.isfinite(resolution)) or resolution > 1e-3:
        raise HwqError(f"the timer's resolution ({resolution} s) is too coarse to time layers")
    target = max(MIN_TICKS_PER_SAMPLE * resolution, opts.min_sample_s)
    inner = []
    for fn in fns:
        _warm_up(fn, opts)
        inner.append(calls_per_sample(fn, clock, target))
    samples: list[list[float]] = [[] for _ in fns]
    rounds = max(1, rounds)
    if renew is not None and len(renew) != len(fns):
        raise ValueError(f"renew: expected {len(fns)} factories, found {len(renew)}")
    current = list(fns)
    for r in range(1, rounds + 1):
        if renew is not None and r > 1:
            current = [make() for make in renew]
            for fn in current:
                _warm_up(fn, opts)
        for i, fn in enumerate(current):
            want_n = math.ceil(opts.min_repeats * r / rounds)
            want_s = opts.min_seconds * r / rounds
            cap = math.ceil(opts.max_repeats * r / rounds)
            got = samples[i]
            while len(got) < cap and (len(got) < want_n or sum(got) * inner[i] < want_s):
                t0 = clock()
                for _ in range(inner[i]):
                    fn()
                got.append((clock() - t0) / inner[i])
    return [_summary(np.asarray(s), n, resolution) for s, n in zip(samples, inner)]


def _warm_up(fn: Callable[[], object], opts: TimingOptions) -> None:
    for _ in range(max(opts.warmup, 1)):
        fn()


CALIBRATION_CALLS = 10**6  # a clock that has not advanced after this many calls is refused


def calls_per_sample(fn: Callable[[], object], clock: Callable[[], float],
                     target_s: float) -> int:
    """How many calls of `fn` make a sample of `target_s`: 1, 10, 100, ... calls are timed
    until they last a tenth of the target (at least 10 us), and the sample holds target / that
    time per call. One call alone is not enough: a clock that advances in steps coarser than it
    reports (a thread's CPU time on some virtual machines) can read 0 for a short call, which
    sized a sample at ten million calls."""
    need = max(target_s / 10, 1e-5)
    n = 1
    while True:
        t0 = clock()
        for _ in range(n):
            fn()
        elapsed = clock() - t0
        if elapsed >= need:
            return max(1, math.ceil(target_s * n / elapsed - 1e-9))
        if n >= CALIBRATION_CALLS:
            raise HwqError(f"the clock did not advance past {elapsed:.3g} s in {n} calls: "
                           "it cannot time these calls (try --clock wall)")
        n *= 10


def _summary(arr: np.ndarray, inner: int, resolution: float) -> Timing:
    median = float(np.median(arr))
    q75, q25, p10 = np.percentile(arr, [75, 25, 10])
    return Timing(median, float(p10), float((q75 - q25) / median) if median > 0 else 0.0,
                  len(arr), inner, resolution)
