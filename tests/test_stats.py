"""cvdemo.stats: Wilson intervals against published values and an independent implementation."""

from __future__ import annotations

import math

import pytest

from cvdemo.stats import format_interval, intervals_overlap, proportion_interval, wilson_interval


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (8, 10, 0.4902, 0.9433),  # by hand: centre 0.7167, half-width 0.2266
        # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score without correction)
        (0, 10, 0.0, 0.2775),
        (1, 29, 0.0061, 0.1718),
        (15, 148, 0.0624, 0.1605),
        (81, 263, 0.2553, 0.3662),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_matches_published_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_matches_scipy_everywhere_on_small_sets():
    from scipy.stats import binomtest

    for n in (1, 7, 32, 64, 153):
        for k in range(n + 1):
            ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_properties_and_bad_input():
    low, high = wilson_interval(53, 64)
    assert low < 53 / 64 < high and 0.15 < high - low < 0.2  # about +-9 points on 64 images
    assert wilson_interval(53, 64, confidence=0.99)[0] < low  # more confidence, wider
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    for bad in ((5, 4), (-1, 4), (1, -1)):
        with pytest.raises(ValueError):
            wilson_interval(*bad)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)


def test_helpers():
    assert proportion_interval(0.828125, 64) == wilson_interval(53, 64)
    assert all(math.isnan(x) for x in proportion_interval(float("nan"), 64))
    assert format_interval(0.7179, 0.9012) == "72–90 %" and format_interval(float("nan"), 1.0) == "–"
    assert format_interval(0.7179, 0.9012, 1) == "71.8–90.1 %"
    assert intervals_overlap((0.1, 0.5), (0.4, 0.9)) and not intervals_overlap((0.1, 0.3), (0.4, 0.9))
