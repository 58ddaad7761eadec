"""Shared timing helper for bench/ scripts: warm-up, repeats, median, ratios in one run.

The machines are shared and noisy, so candidates are interleaved (A, B, A, B, ...) by the app's
one timing loop (:func:`cvdemo.timing.time_interleaved`) and each is summarised by its best and
median time; ratios compare like with like.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

from cvdemo.timing import time_interleaved


@dataclass
class Timing:
    name: str
    samples: list[float]

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def __str__(self) -> str:
        return f"{self.name:<40} best {self.best * 1e3:9.2f} ms   median {self.median * 1e3:9.2f} ms   (n={len(self.samples)})"


def quantile(seconds: list[float], q: float) -> float:
    """The ``q``-quantile of ``seconds``, interpolated between neighbours (numpy's default and
    ``statistics.quantiles(method="inclusive")``); nan when empty. One definition of p95 for every bench."""
    s = sorted(seconds)
    if not s:
        return float("nan")
    position = q * (len(s) - 1)
    below = int(position)
    above = min(below + 1, len(s) - 1)
    return s[below] + (position - below) * (s[above] - s[below])


def compare(
    candidates: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2, number: int = 1
) -> dict[str, Timing]:
    """Time each callable ``repeats`` times, interleaved; each sample is the mean of ``number`` calls."""
    samples = time_interleaved(candidates, repeats=repeats, warmup=warmup, pause=0.0, number=number)
    return {name: Timing(name, s) for name, s in samples.items()}


def report(timings: dict[str, Timing], reference: str, goal: float | None = None, lower_is_better: bool = True) -> float:
    """Print every timing and each one's ratio to ``reference`` (best of repeats); return the last ratio."""
    ref = timings[reference]
    ratio = 1.0
    for name, timing in timings.items():
        print(timing)
    for name, timing in timings.items():
        if name == reference:
            continue
        ratio = timing.best / ref.best
        verdict = ""
        if goal is not None:
            ok = ratio <= goal if lower_is_better else ratio >= goal
            verdict = f"   goal {'<=' if lower_is_better else '>='} {goal:.2f}x: {'OK' if ok else 'MISSED'}"
        print(f"ratio {name} / {reference}: {ratio:.3f}x{verdict}")
    return ratio
