"""Finished runs kept on disk: a long run a lecturer starts in class is computed once per server.

A *run* is a training or evaluation whose result depends only on its inputs: the default U-Net on the
sample pets, CLIP's class vectors for a label set, a compression comparison. Its key is a stable hash
of everything it depends on (:func:`run_key`): what it is, every setting, the data's content
fingerprint, the model/weights identity and a recipe version (bump it when the code changes the
result). The value is a JSON result (metrics, curves, timings) plus named arrays (trained weights,
vectors), written as one safetensors file: tensors and a JSON header, never a pickle.

The store lives under the app's cache root (``$CVDEMO_CACHE_DIR/runs``), is bounded in bytes
(``$CVDEMO_RUN_STORE_MB``, default 512; the least recently used run goes first), writes atomically
(a temp file renamed into place), and ignores an unreadable or foreign entry with a log line (it is
deleted: the next run rewrites it). Two sessions asking for the same run compute it once:
:meth:`RunStore.get_or_compute` for work done in the caller's thread, :meth:`RunStore.start_job`
for a background job (:class:`cvdemo.jobs.BackgroundJob`) other sessions can watch while it runs.

Example (a run computed once, stored, replayed after a restart)::

    store = run_store.store()
    key = run_store.run_key("compression", settings, data=digest, model=weights_id, version="1")
    run = store.get_or_compute(key, "compression", lambda: (result_dict, {"curve": array}))
    run.result, run.arrays, run.created
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from cvdemo.files import atomic_write
from cvdemo.model_files import looks_like_pickle, looks_like_safetensors

log = logging.getLogger("cvdemo.run_store")

BUDGET_ENV = "CVDEMO_RUN_STORE_MB"
DEFAULT_BUDGET_MB = 512
FORMAT_KEY = "cvdemo_run"  # safetensors metadata key holding the run's JSON
SUFFIX = ".safetensors"

J = TypeVar("J")


# --- keys ------------------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """JSON-ready, order-independent form of settings (dataclasses, numpy scalars, sets, paths)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return digest(value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"run_key: {type(value).__name__} is not a setting (use numbers, text, lists, dicts, dataclasses)")


def run_key(what: str, settings: Mapping[str, Any] | Any, data: str, model: str, version: str) -> str:
    """A stable hex key for a run: the same inputs give the same key in every process and on every day.

    ``settings``: every setting that changes the result (a dict or a dataclass); ``data``: the data's
    content fingerprint (:func:`digest`); ``model``: the model/weights identity (e.g. a weights file's
    sha256 and the library versions); ``version``: the recipe/code version of this kind of run.
    """
    payload = {"what": what, "settings": _canonical(settings), "data": data, "model": model, "version": version}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def digest(*parts: Any) -> str:
    """Content fingerprint of data: bytes, text, numpy arrays, PIL images (their pixels), nested lists."""
    h = hashlib.blake2b(digest_size=16)

    def feed(part: Any) -> None:
        if isinstance(part, (bytes, bytearray, memoryview)):
            h.update(b"b%d:" % len(part))
            h.update(part)
        elif isinstance(part, str):
            h.update(b"s:" + part.encode("utf-8") + b"\0")
        elif isinstance(part, np.ndarray):
            h.update(f"a{part.dtype.str}{part.shape}:".encode())
            h.update(np.ascontiguousarray(part).data)
        elif isinstance(part, (list, tuple)):
            h.update(b"[%d" % len(part))
            for p in part:
                feed(p)
            h.update(b"]")
        elif hasattr(part, "getbands") and hasattr(part, "tobytes"):  # a PIL image
            from cvdemo.images import fingerprint

            h.update(b"i:" + fingerprint(part).encode())
        else:
            h.update(b"j:" + json.dumps(_canonical(part), sort_keys=True).encode())

    for part in parts:
        feed(part)
    return h.hexdigest()


# --- stored runs -----------------------------------------------------------------------------------


def stored_when(created: float) -> str:
    """``14:05 on 3 Dec 2026``: when a stored run was made (trained, measured), in the server's local time."""
    local = time.localtime(created)
    return f"{time.strftime('%H:%M', local)} on {local.tm_mday} {time.strftime('%b %Y', local)}"


@dataclass(frozen=True)
class StoredRun:
    """A finished run read back from the store (or just written). Treat it as read-only: it is shared."""

    key: str
    what: str
    created: float  # Unix time the run finished
    result: dict  # JSON: metrics, curves, timings, settings
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # trained weights, vectors


class RunStore:
    """Finished runs as safetensors files in one folder, bounded in bytes, least recently used first out."""

    def __init__(self, root: str | os.PathLike, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._jobs: dict[str, Any] = {}

    def path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("A run key is a hex string from run_key().")
        return self.root / f"{key}{SUFFIX}"

    # -- read ------------------------------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> StoredRun | None:
        """The stored run, or None (never stored, evicted, or unreadable: logged and removed)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("run store: cannot read %s (%s); ignored", path.name, exc)
            return None
        try:
            run = _decode(key, data)
        except Exception as exc:  # noqa: BLE001 - a damaged entry is a miss, never a crash
            log.warning("run store: %s is unreadable (%s); ignored and removed", path.name, exc)
            _remove(path)
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return run

    # -- write -----------------------------------------------------------------------------------

    def put(self, key: str, what: str, result: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> StoredRun:
        """Store a finished run (replacing one with the same key) and return it as read back.

        A run larger than the whole budget, or a disk that refuses the write, is logged and not
        stored; the run is returned all the same.
        """
        run = StoredRun(key, what, time.time(), json.loads(json.dumps(_canonical(dict(result)))),
                        {name: _as_array(value) for name, value in (arrays or {}).items()})
        path = self.path(key)
        try:
            blob = _encode(run)
            if len(blob) > self.max_bytes:
                log.warning("run store: %s run of %.1f MB is larger than the store (%.1f MB); not stored",
                            what, len(blob) / 2**20, self.max_bytes / 2**20)
                return run
            with atomic_write(path) as fh:  # readers see the old file or the new one, never half of one
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
        except (OSError, TypeError, ValueError) as exc:
            log.warning("run store: could not store the %s run (%s)", what, exc)
            return run
        self._evict(keep=path)
        return run

    def _evict(self, keep: Path | None = None) -> None:
        """Remove least recently used runs until the folder fits the budget."""
        entries = []
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            _remove(path)
            total -= size

    def entries(self) -> list[Path]:
        return sorted(self.root.glob(f"*{SUFFIX}")) if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries() if p.exists())

    # -- single flight ---------------------------------------------------------------------------

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get_or_compute(
        self, key: str, what: str, compute: Callable[[], tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> StoredRun:
        """The stored run, else ``compute()`` -> ``(result, arrays)`` stored and returned.

        Single-flight in this process: a second caller with the same key waits for the first and
        reads its result. A failure is raised to its caller and nothing is stored.
        """
        found = self.get(key)
        if found is not None:
            return found
        with self._lock(key):
            found = self.get(key)
            if found is not None:
                return found
            result, arrays = compute()
            return self.put(key, what, result, arrays)

    def start_job(self, key: str, factory: Callable[[], J]) -> tuple[J, bool]:
        """The background job computing run ``key``: the one already running, else ``factory()`` started.

        Returns ``(job, started_here)``. A job is anything with ``start()`` and ``running``
        (:class:`cvdemo.jobs.BackgroundJob`); the job itself stores its result when it finishes.
        """
        with self._guard:
            job = self._jobs.get(key)
            if job is not None and job.running:
                return job, False
            job = factory()
            self._jobs[key] = job
            job.start()
            return job, True

    def running_job(self, key: str) -> Any | None:
        """The background job computing ``key`` right now, if any (no waiting)."""
        with self._guard:
            job = self._jobs.get(key)
            return job if job is not None and job.running else None


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor: to numpy without importing torch here
        value = value.detach().cpu().contiguous().numpy()
    array = np.ascontiguousarray(value)
    if array.dtype == object:
        raise TypeError("run arrays hold numbers only (no Python objects)")
    return array


def _encode(run: StoredRun) -> bytes:
    from safetensors.numpy import save

    meta = {"key": run.key, "what": run.what, "created": run.created, "result": run.result}
    return save(dict(run.arrays), metadata={FORMAT_KEY: json.dumps(meta, allow_nan=True)})


def _decode(key: str, data: bytes) -> StoredRun:
    from safetensors.numpy import load

    # The project's model-file rule: safetensors only; a pickle is refused unread.
    if looks_like_pickle(data):
        raise ValueError("a pickle, not a safetensors file")
    if not looks_like_safetensors(data):
        raise ValueError("not a safetensors file")
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    meta = json.loads((header.get("__metadata__") or {})[FORMAT_KEY])
    if meta.get("key") != key:
        raise ValueError("the file holds another run")
    arrays = load(bytes(data))
    return StoredRun(key, str(meta["what"]), float(meta["created"]), dict(meta["result"]), arrays)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("run store: could not remove %s (%s)", path.name, exc)


_stores: dict[tuple[str, int], RunStore] = {}
_stores_lock = threading.Lock()


def store() -> RunStore:
    """The process's run store, under ``weights.cache_root()/runs`` (one object per folder and budget)."""
    from cvdemo import results, weights

    spec = (str(weights.cache_root() / "runs"), results.budget_from_env(BUDGET_ENV, DEFAULT_BUDGET_MB))
    with _stores_lock:
        if spec not in _stores:
            _stores[spec] = RunStore(*spec)
        return _stores[spec]
