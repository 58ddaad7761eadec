"""Accuracy with its sample size and a confidence interval: on 20-150 test images, 85 % vs 80 % is often noise.

:func:`accuracy_estimate` wraps :func:`cvdemo.stats.wilson_interval` (the app's one interval) with the
counts it came from, so a page can print "85.0% (17/20, 95% CI 64–95%)".
Repeated random draws (accuracy vs shots) report their spread instead: :func:`spread`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cvdemo.stats import wilson_interval

CONFIDENCE = 0.95


@dataclass(frozen=True)
class AccuracyEstimate:
    """``correct`` of ``n`` test images right, with a ``confidence`` interval ``[low, high]``."""

    correct: int
    n: int
    low: float
    high: float
    confidence: float = CONFIDENCE

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def interval(self) -> str:
        """E.g. "64–95%" (whole percents, en dash)."""
        return f"{self.low:.0%}–{self.high:.0%}".replace("%–", "–")

    def describe(self) -> str:
        """E.g. "85.0% (17/20, 95% CI 64–95%)": the number, what it is out of, and how sure it is."""
        if not self.n:
            return "no test images"
        return f"{self.value:.1%} ({self.correct}/{self.n}, {self.confidence:.0%} CI {self.interval})"


def accuracy_estimate(correct: int, n: int, confidence: float = CONFIDENCE) -> AccuracyEstimate:
    """Accuracy ``correct / n`` with its Wilson score interval (binomial test images)."""
    correct, n = int(correct), int(n)
    if n < 0 or not 0 <= correct <= max(n, 0):
        raise ValueError(f"Need 0 <= correct <= n; got {correct} of {n}.")
    if n == 0:
        return AccuracyEstimate(0, 0, 0.0, 1.0, confidence)
    low, high = wilson_interval(correct, n, confidence)  # one interval for the whole app (cvdemo.stats)
    return AccuracyEstimate(correct, n, float(low), float(high), confidence)


def estimate_from(y_true: Sequence[Any], y_pred: Sequence[Any], confidence: float = CONFIDENCE) -> AccuracyEstimate:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return accuracy_estimate(int((y_true == y_pred).sum()), len(y_true), confidence)


def per_class_estimates(
    y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any]
) -> dict[str, AccuracyEstimate]:
    """Accuracy within each true class (recall), each with its own n and interval."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {str(c): estimate_from(y_true[y_true == c], y_pred[y_true == c]) for c in classes}


@dataclass(frozen=True)
class Spread:
    """Mean and standard deviation of an accuracy over ``runs`` random draws."""

    mean: float
    std: float
    runs: int

    def describe(self) -> str:
        return f"{self.mean:.1%} ± {self.std:.1%} (mean ± s.d. of {self.runs} draws)"


def spread(values: Sequence[float]) -> Spread:
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return Spread(float("nan"), float("nan"), 0)
    return Spread(float(values.mean()), float(values.std()), len(values))
