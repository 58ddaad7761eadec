"""Honest numbers for small evaluation sets: a proportion with its sample size and confidence interval.

An accuracy on 64 images moves by several points when a few images change, so every accuracy the
app compares is shown with n and a Wilson score interval (Wilson 1927; Agresti & Coull 1998): unlike
the textbook p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and keeps its coverage near 0 % and 100 %,
where compressed models' agreement scores live.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for ``successes`` out of ``n`` trials.

    ``n == 0`` gives ``(nan, nan)``: there is nothing to estimate.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"Need 0 <= successes <= n, got {successes} of {n}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}.")
    if n == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # clamp the rounding error at the ends: k = 0 gives exactly 0, k = n exactly 1
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == n else min(1.0, centre + half))


def proportion_interval(share: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """:func:`wilson_interval` for a share measured on ``n`` items (``share * n`` is rounded to a count)."""
    if n == 0 or math.isnan(share):
        return math.nan, math.nan
    return wilson_interval(round(share * n), n, confidence)


def format_interval(low: float, high: float, digits: int = 0) -> str:
    """``"72–90 %"`` (percent, en dash); ``"–"`` when there is no interval."""
    if math.isnan(low) or math.isnan(high):
        return "–"
    return f"{100 * low:.{digits}f}–{100 * high:.{digits}f} %"


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two intervals share any value (a rough "not shown to differ" for the page's wording)."""
    return a[0] <= b[1] and b[0] <= a[1]
