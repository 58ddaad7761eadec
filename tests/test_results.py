"""The process-wide result cache: single-flight, failures not cached, byte-bounded LRU, content keys."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from cvdemo import results
from cvdemo.images import fingerprint
from cvdemo.results import ResultCache, size_of


def test_thirty_callers_same_key_compute_once():
    cache = ResultCache(2**20)
    calls = []
    started = threading.Event()
    release = threading.Event()

    def compute():
        calls.append(1)
        started.set()
        release.wait(5)
        return np.arange(10)

    with ThreadPoolExecutor(30) as pool:
        futures = [pool.submit(cache.get_or_compute, ("detect", "m"), compute) for _ in range(30)]
        started.wait(5)
        release.set()
        values = [f.result(10) for f in futures]
    assert len(calls) == 1
    assert all(v is values[0] for v in values)  # the same object for everyone
    stats = cache.stats()
    assert stats.misses == 1 and stats.hits + stats.shared == 29


def test_failure_reaches_waiters_and_is_not_cached():
    cache = ResultCache(2**20)
    attempts = []

    def failing():
        attempts.append(1)
        raise ValueError("no such picture")

    with pytest.raises(ValueError, match="no such picture"):
        cache.get_or_compute("k", failing)
    assert "k" not in cache
    assert cache.get_or_compute("k", lambda: 42) == 42  # the next caller tries again
    assert len(attempts) == 1 and cache.get_or_compute("k", failing) == 42


def test_byte_bound_evicts_least_recently_used():
    cache = ResultCache(3 * 1000 + 1000)
    make = lambda: np.zeros(1000, np.uint8)  # noqa: E731  ~1.1 kB each
    for k in "abc":
        cache.get_or_compute(k, make)
    cache.get_or_compute("a", make)  # a is now the most recent
    cache.get_or_compute("d", make)
    assert "b" not in cache  # least recently used went first
    assert {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.stats().bytes <= cache.max_bytes
    huge = cache.get_or_compute("huge", lambda: np.zeros(10_000, np.uint8))
    assert huge.shape == (10_000,) and "huge" not in cache  # larger than the budget: returned, not kept


def test_size_estimates_buffers_inside_objects():
    from dataclasses import dataclass

    @dataclass
    class Result:
        boxes: np.ndarray
        image: Image.Image

    value = Result(np.zeros((100, 4), np.float32), Image.new("RGB", (100, 50)))
    assert size_of(value) >= 1600 + 100 * 50 * 3
    assert size_of([value, value]) < 2 * size_of(value)  # counted once


def test_key_has_model_runtime_image_and_settings():
    img = Image.new("RGB", (32, 32), "red")
    same_pixels = Image.new("RGB", (32, 32), "red")
    other = Image.new("RGB", (32, 32), "blue")
    base = results.key("detect", "yolov8n.pt", "OpenVINO", img, {"conf": 0.25, "classes": [1, 2]})
    assert base == results.key("detect", "yolov8n.pt", "OpenVINO", same_pixels, {"classes": [1, 2], "conf": 0.25})
    assert base != results.key("detect", "yolov8n.pt", "OpenVINO", other, {"conf": 0.25, "classes": [1, 2]})
    assert base != results.key("detect", "yolov8s.pt", "OpenVINO", img, {"conf": 0.25, "classes": [1, 2]})
    assert base != results.key("detect", "yolov8n.pt", "PyTorch", img, {"conf": 0.25, "classes": [1, 2]})
    assert base != results.key("detect", "yolov8n.pt", "OpenVINO", img, {"conf": 0.3, "classes": [1, 2]})
    assert fingerprint(img) == fingerprint(same_pixels) != fingerprint(img.convert("L"))
    arr = np.ones((2, 2))
    assert results.key(arr) == results.key(arr.copy()) != results.key(arr.astype(np.float32))


def test_budget_from_environment(monkeypatch):
    monkeypatch.setenv(results.BUDGET_ENV, "3")
    assert results._budget_bytes() == 3 * 2**20
    monkeypatch.setenv(results.BUDGET_ENV, "lots")
    assert results._budget_bytes() == results.DEFAULT_BUDGET_MB * 2**20
