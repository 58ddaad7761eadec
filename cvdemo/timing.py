"""Timing on a shared CPU: the app's one timing loop (:func:`time_interleaved`) and one latency
summary (:class:`Latency`). Pages, lessons and ``bench/`` scripts all time through here.

Candidates take turns (A, B, C, A, B, C, ...) after a warm-up, so the noise of a shared machine
falls evenly on all of them; a latency is reported as the median and the best of the timed runs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call: median and best of ``repeats`` timed runs on ``threads`` CPU threads."""

    median_ms: float
    best_ms: float
    repeats: int
    threads: int

    @classmethod
    def from_seconds(cls, samples: Sequence[float], threads: int) -> "Latency":
        return cls(statistics.median(samples) * 1e3, min(samples) * 1e3, len(samples), threads)


def time_interleaved(
    runners: dict[str, Callable[[], object]],
    repeats: int = 20,
    warmup: int = 3,
    pause: float = 0.002,
    budget: float | None = None,
    min_repeats: int = 5,
    number: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call for each runner, taking turns (A, B, C, A, B, C, ...) after a warm-up.

    Taking turns spreads the noise of a shared machine evenly over the candidates; the short
    ``pause`` before each timed call lets the previous runtime's worker threads go to sleep.
    Each sample is the mean of ``number`` back-to-back calls (for calls too short to time alone).

    ``budget`` (seconds per runner): a runner whose warm-up call shows that ``repeats`` runs would
    take longer gets fewer runs, never fewer than ``min_repeats``, and one warm-up call only (FP16
    on a CPU without FP16 arithmetic takes a second per batch: 20 runs of it were a minute of waiting).
    """
    counts: dict[str, int] = {}
    for name, run in runners.items():
        if warmup <= 0 and budget is None:
            counts[name] = repeats
            continue
        start = time.perf_counter()
        run()
        first = time.perf_counter() - start
        slow = budget is not None and first * repeats > budget
        for _ in range(0 if slow and first > budget / min_repeats else warmup - 1):
            run()
        counts[name] = max(min(min_repeats, repeats), int(budget / first)) if slow else repeats
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for turn in range(max(counts.values(), default=0)):
        for name, run in runners.items():
            if turn >= counts[name]:
                continue
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            for _ in range(number):
                run()
            samples[name].append((time.perf_counter() - start) / number)
    return samples
