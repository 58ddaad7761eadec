"""Process-wide result cache: identical work is done once per server, whoever asks.

Thirty students who open the Detection page on the default sample ask for the same boxes; the
first request runs the network and the other 29 get the same result object. The cache is an LRU
bounded by an estimate of the bytes it holds (``$CVDEMO_RESULT_CACHE_MB``, default 256 MB), and
it is *single-flight*: while a key is being computed, later callers sleep on the same future
instead of computing it again. A failure is handed to the callers waiting for it and not cached.

Keys are tuples built by cvdemo's model classes, never by pages: ``(what, model identity,
runtime, image fingerprint, settings...)``. Use :func:`key` to turn images and arrays into
fingerprints. Cached values are shared between sessions: treat them as read-only.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Hashable, TypeVar

import numpy as np

from cvdemo import cache
from cvdemo.serve.client import inference_url

T = TypeVar("T")

BUDGET_ENV = "CVDEMO_RESULT_CACHE_MB"
DEFAULT_BUDGET_MB = 256


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int  # computations started
    shared: int  # callers that waited for a computation another caller had started
    entries: int
    bytes: int
    max_bytes: int

    def summary(self) -> str:
        """E.g. "result cache 12 hits · 3 computed · 41 MB of 256 MB"."""
        return (
            f"result cache {self.hits + self.shared:,} hits · {self.misses:,} computed · "
            f"{self.bytes / 2**20:,.0f} MB of {self.max_bytes / 2**20:,.0f} MB"
        )


def size_of(value: Any, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Estimated bytes held by ``value``: arrays, tensors, images, bytes, frames, containers, objects.

    An estimate for the cache's budget, not an exact count: buffers dominate, and each object is
    counted once even when reachable twice.
    """
    seen = set() if _seen is None else _seen
    if id(value) in seen or _depth > 8:
        return 0
    seen.add(id(value))
    if value is None or isinstance(value, (bool, int, float, complex)):
        return 16
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return len(value) + 48
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + 112
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return int(value.element_size() * value.nelement()) + 128
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(value, pil.Image):
        return value.width * value.height * max(len(value.getbands()), 1) + 200
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series)):
        usage = value.memory_usage(deep=True)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    nested = lambda v: size_of(v, seen, _depth + 1)  # noqa: E731
    if isinstance(value, dict):
        return 64 + sum(nested(k) + nested(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 56 + sum(nested(v) for v in value)
    if dataclasses.is_dataclass(value):
        return 64 + sum(nested(getattr(value, f.name, None)) for f in dataclasses.fields(value))
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict):
        return 64 + sum(nested(v) for k, v in attrs.items() if not callable(v))
    return 64


def key(*parts: Any) -> tuple:
    """A hashable cache key: images and arrays become content fingerprints, lists become tuples.

    Where the networks run is part of every key: with ``CVDEMO_INFERENCE_URL`` set, a result carries
    the inference server's name in its runtime badge (and fails with its message when it does not answer).
    """
    return (*(_part(p) for p in parts), ("inference", inference_url() or "here"))


def _part(part: Any) -> Hashable:
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(part, pil.Image):
        from cvdemo.images import fingerprint

        return ("image", fingerprint(part))
    if isinstance(part, np.ndarray):
        import hashlib

        contiguous = np.ascontiguousarray(part)
        digest = hashlib.blake2b(contiguous.data, digest_size=16).hexdigest()
        return ("array", part.dtype.str, part.shape, digest)
    if isinstance(part, (list, tuple)):
        return tuple(_part(p) for p in part)
    if isinstance(part, dict):
        return tuple(sorted((str(k), _part(v)) for k, v in part.items()))
    if isinstance(part, (set, frozenset)):
        return tuple(sorted(_part(p) for p in part))
    hash(part)  # fail here, with the offending part, rather than inside the dict
    return part


class ResultCache:
    """A byte-bounded LRU of computed results with single-flight computation (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._computing: dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self._bytes = self._hits = self._misses = self._shared = 0

    def get_or_compute(
        self, cache_key: Hashable, compute: Callable[[], T], on_wait: Callable[[], None] | None = None
    ) -> T:
        """The cached value for ``cache_key``, else ``compute()`` run once however many callers ask.

        ``on_wait`` (if given) is called about every 0.2 s while this caller waits for another
        caller's computation (a page uses it to say why it waits).
        """
        with self._lock:
            if cache_key in self._entries:
                self._entries.move_to_end(cache_key)
                self._hits += 1
                return self._entries[cache_key][0]
            pending = self._computing.get(cache_key)
            if pending is None:
                pending = self._computing[cache_key] = Future()
                owner = True
                self._misses += 1
            else:
                owner = False
                self._shared += 1
        if not owner:
            return _wait(pending, on_wait)  # sleeps on a condition: no spinning, GIL released
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._computing[cache_key]  # not cached: the next caller tries again
            pending.set_exception(exc)
            raise
        self._store(cache_key, value)
        pending.set_result(value)
        return value

    def get(self, cache_key: Hashable, default: Any = None) -> Any:
        """The cached value (counted as a hit), else ``default``; never computes or waits."""
        with self._lock:
            found = self._entries.get(cache_key)
            if found is None:
                return default
            self._entries.move_to_end(cache_key)
            self._hits += 1
            return found[0]

    def put(self, cache_key: Hashable, value: Any) -> None:
        """Store a value computed elsewhere (e.g. one row of a batch)."""
        self._store(cache_key, value, computing=False)

    def _store(self, cache_key: Hashable, value: Any, computing: bool = True) -> None:
        size = size_of(value)
        with self._lock:
            if computing:
                del self._computing[cache_key]
            old = self._entries.pop(cache_key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:  # larger than the whole budget: hand it out, keep nothing
                return
            self._entries[cache_key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                _, (_, freed) = self._entries.popitem(last=False)
                self._bytes -= freed

    def __contains__(self, cache_key: Hashable) -> bool:
        with self._lock:
            return cache_key in self._entries

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._shared, len(self._entries), self._bytes, self.max_bytes)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = self._hits = self._misses = self._shared = 0


def _wait(pending: Future, on_wait: Callable[[], None] | None) -> Any:
    if on_wait is None:
        return pending.result()
    while True:
        try:
            return pending.result(timeout=0.2)
        except TimeoutError:
            on_wait()


def budget_from_env(env: str, default_mb: float) -> int:
    """Bytes from a megabytes setting ``$env`` (unset or unreadable: ``default_mb``; below 0: 0).

    Shared by the budgets of this cache and of :mod:`cvdemo.run_store`.
    """
    raw = os.environ.get(env, "").strip()
    try:
        mb = float(raw) if raw else default_mb
    except ValueError:
        mb = default_mb
    return int(max(mb, 0) * 2**20)


def _budget_bytes() -> int:
    return budget_from_env(BUDGET_ENV, DEFAULT_BUDGET_MB)


def _new_process_cache() -> ResultCache:
    return ResultCache(_budget_bytes())


def process_cache() -> ResultCache:
    """The one result cache of this process (budget read from ``$CVDEMO_RESULT_CACHE_MB`` once)."""
    return cache.shared(_new_process_cache)  # built once per process, like every shared model


def cached(cache_key: tuple, compute: Callable[[], T]) -> T:
    """``compute()`` once per process per ``cache_key`` (see the module docstring).

    While another caller computes the same key, the current waiting notice (see
    :mod:`cvdemo.scheduler`) says so.
    """
    from cvdemo import scheduler

    try:
        return process_cache().get_or_compute(cache_key, compute, on_wait=scheduler.notice_sharing)
    finally:
        scheduler.clear_notice()


def stats() -> CacheStats:
    return process_cache().stats()
