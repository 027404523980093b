"""Timing: samples long enough to measure, rounds that interleave the contenders, medians.

Every table of the benchmark is built from :func:`run_rounds` and :func:`ratio`: the
contenders of a case run back to back in each round, and a ratio is the median of the
per-round ratios, so a machine that slows down for a while (it is shared) slows all of them
alike. :func:`measure` takes them again while they are in doubt (:mod:`.trust`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from .trust import MEASURE_TRIES, doubts, others_busy, snapshot, spread

Times = dict[Any, list[float]]  # seconds per call, one sample per round, by contender


def _alone(seconds: float) -> float:
    return seconds


def sample(fn: Callable[[], Any], budget: float,
           agree: Callable[[float], float] = _alone) -> float:
    """Seconds per call of ``fn``, calling it often enough that one sample lasts ``budget``.

    ``agree`` turns this process's seconds into the ones every process uses: several ranks
    timing calls that hold collectives must make the same number of calls, and a sample is
    then the slowest rank's (:func:`fastopt.bench.distributed.slowest`)."""
    start = time.perf_counter()
    fn()
    once = agree(time.perf_counter() - start)
    calls = max(1, int(budget / max(once, 1e-7)))
    agree(0.0)  # every rank starts the timed calls together
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return agree((time.perf_counter() - start) / calls)


def run_rounds(contenders: dict[Any, Callable[[], Any]], rounds: int, budget: float,
               agree: Callable[[float], float] = _alone) -> Times:
    """Seconds per call of each contender, one sample per round, all of them in every round."""
    times: Times = {key: [] for key in contenders}
    for _ in range(rounds):
        for key, fn in contenders.items():
            times[key].append(sample(fn, budget, agree))
    return times


def ratio(times: Times, key: Hashable, base: Hashable) -> float:
    """Median over rounds of ``key``'s time / ``base``'s time in the same round."""
    return float(np.median(np.array(times[key]) / np.array(times[base])))


def medians(times: Times) -> dict[Any, float]:
    """Each contender's median seconds per call."""
    return {key: float(np.median(samples)) for key, samples in times.items()}


def measure(contenders: dict[Any, Callable[[], Any]], rounds: int, budget: float,
            roofline: tuple[Hashable, Hashable] | None = None,
            scale: float = 1.0) -> tuple[Times, float | None, str, int]:
    """:func:`run_rounds`, again while the times are in doubt, at most
    :data:`~.trust.MEASURE_TRIES` times; ``roofline`` = (probe, step) names the contenders
    whose ratio, times ``scale`` (the step's bytes over the probe's), is a roofline share.
    Returns the times least in doubt (fewest codes, then the
    smallest spread of any contender's rounds), the other processes' load while they were
    taken (cores), their codes and how many measurements were taken."""
    best: tuple[tuple[int, float], Times, float | None, str] | None = None
    attempts = 0
    while attempts < MEASURE_TRIES:
        attempts += 1
        before = snapshot()
        times = run_rounds(contenders, rounds, budget)
        others = others_busy(before, snapshot())
        share = ratio(times, *roofline) * scale if roofline else None
        codes = doubts(times, share, others)
        rank = (len(codes), max(spread(samples) for samples in times.values()))
        if best is None or rank < best[0]:
            best = (rank, times, others, codes)
        if not codes:
            break
    assert best is not None
    return best[1], best[2], best[3], attempts
