"""The run store: stable keys, safetensors entries (never pickle), corruption, size bound, single flight."""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from cvdemo import run_store
from cvdemo.jobs import BackgroundJob
from cvdemo.model_files import looks_like_pickle, looks_like_safetensors


@dataclass
class Recipe:
    epochs: int = 3
    lr: float = 3e-3


def _key(**changes) -> str:
    parts = {"what": "training", "settings": {"recipe": Recipe(), "size": 96, "classes": ["cat", "dog"]},
             "data": run_store.digest(np.arange(12, dtype=np.uint8), "pets"), "model": "lite0 sha", "version": "1"}
    parts.update(changes)
    return run_store.run_key(parts.pop("what"), **parts)


@pytest.fixture()
def store(tmp_path) -> run_store.RunStore:
    return run_store.RunStore(tmp_path / "runs", max_bytes=10 * 2**20)


def test_keys_are_stable_and_cover_every_input():
    assert _key() == _key()  # same inputs, same key (no object ids, no dict order)
    reordered = {"classes": ["cat", "dog"], "size": 96, "recipe": {"lr": 3e-3, "epochs": 3}}
    assert _key(settings=reordered) == _key()
    others = {
        _key(settings={"recipe": Recipe(epochs=4), "size": 96, "classes": ["cat", "dog"]}),  # a setting
        _key(settings={"recipe": Recipe(), "size": 128, "classes": ["cat", "dog"]}),
        _key(data=run_store.digest(np.arange(1, 13, dtype=np.uint8), "pets")),  # the data's content
        _key(model="other weights"),
        _key(version="2"),
        _key(what="evaluation"),
    }
    assert _key() not in others and len(others) == 6
    with pytest.raises(TypeError):
        run_store.run_key("x", {"callback": print}, "", "", "1")  # not a setting: refused, never a repr


def test_digest_sees_pixels_not_objects():
    from PIL import Image

    a = Image.new("RGB", (8, 8), (10, 20, 30))
    assert run_store.digest(a) == run_store.digest(a.copy())
    assert run_store.digest(a) != run_store.digest(Image.new("RGB", (8, 8), (10, 20, 31)))
    assert run_store.digest([b"ab", "c"]) != run_store.digest([b"a", "bc"])


def test_put_then_get_round_trips_results_and_arrays(store):
    key = _key()
    weights = {"conv.weight": np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)}
    curves = {"history": [{"epoch": 1, "iou": 0.5}, {"epoch": 2, "iou": float("nan")}], "note": "é <b>"}
    put = store.put(key, "training", curves, {**weights, "confusion": np.eye(3, dtype=np.int64)})
    got = store.get(key)
    assert got is not None and got.key == key and got.what == "training"
    assert got.result["history"][0] == {"epoch": 1, "iou": 0.5} and np.isnan(got.result["history"][1]["iou"])
    assert got.result["note"] == "é <b>"
    assert np.array_equal(got.arrays["conv.weight"], weights["conv.weight"])
    assert got.arrays["confusion"].dtype == np.int64
    assert got.created == pytest.approx(put.created) and run_store.stored_when(got.created)
    assert store.get(_key(version="2")) is None  # never stored: a miss
    assert key in store and _key(version="2") not in store


def test_entries_are_safetensors_never_pickle(store):
    key = _key()
    store.put(key, "training", {"a": 1}, {"w": np.zeros(3, np.float32)})
    data = store.path(key).read_bytes()
    assert looks_like_safetensors(data) and not looks_like_pickle(data)
    assert not list(store.root.glob("*.tmp"))  # the temp file was renamed into place
    with pytest.raises(TypeError):  # Python objects cannot become a stored run
        store.put(key, "training", {"a": 1}, {"w": np.array([object()])})
    with pytest.raises(TypeError):
        store.put(key, "training", {"model": object()})


def test_a_pickle_in_place_of_an_entry_is_refused_unread(store, caplog):
    key = _key()
    store.root.mkdir(parents=True)
    store.path(key).write_bytes(pickle.dumps({"result": {"a": 1}}))
    with caplog.at_level(logging.WARNING, logger="cvdemo.run_store"):
        assert store.get(key) is None
    assert "pickle" in caplog.text and not store.path(key).exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other run"])
def test_damaged_entries_are_a_logged_miss_never_a_crash(store, caplog, damage):
    key = _key()
    store.put(key, "training", {"a": 1}, {"w": np.arange(1000, dtype=np.float32)})
    path = store.path(key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x01not a run" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid entry under another run's name
        os.replace(path, store.path(_key(version="9")))
        key = _key(version="9")
    with caplog.at_level(logging.WARNING, logger="cvdemo.run_store"):
        assert store.get(key) is None
    assert "unreadable" in caplog.text
    # the next run of that key is stored and read again
    store.put(key, "training", {"a": 2})
    assert store.get(key).result == {"a": 2}


def test_the_store_keeps_within_its_budget_dropping_the_least_recently_used(tmp_path):
    one_mb = np.zeros(2**18, np.float32)  # 1 MiB of tensor data
    store = run_store.RunStore(tmp_path / "runs", max_bytes=int(3.5 * 2**20))
    keys = [_key(version=str(i)) for i in range(4)]
    for i, key in enumerate(keys[:3]):
        store.put(key, "t", {"i": i}, {"w": one_mb})
        os.utime(store.path(key), (1000 + i, 1000 + i))  # distinct ages, whatever the clock's resolution
    assert store.get(keys[0]) is not None  # read: now the most recently used
    store.put(keys[3], "t", {"i": 3}, {"w": one_mb})
    assert [k in store for k in keys] == [True, False, True, True]  # keys[1] was the least recently used
    assert store.size_bytes() <= store.max_bytes
    huge = store.put(_key(version="huge"), "t", {}, {"w": np.zeros(2**20, np.float32)})  # 4 MiB > budget
    assert huge.arrays["w"].shape == (2**20,) and _key(version="huge") not in store
    assert [k in store for k in keys] == [True, False, True, True]  # nothing dropped for it


def test_an_unwritable_store_logs_and_hands_the_run_back(tmp_path, caplog):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the folder should be")
    store = run_store.RunStore(blocker, max_bytes=2**20)
    with caplog.at_level(logging.WARNING, logger="cvdemo.run_store"):
        run = store.put(_key(), "training", {"a": 1})
    assert run.result == {"a": 1} and "could not store" in caplog.text
    assert store.get(_key()) is None


def test_two_callers_compute_the_same_run_once(store):
    calls = []
    gate = threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)
        return {"value": 42}, {"w": np.ones(2, np.float32)}

    got = []
    threads = [threading.Thread(target=lambda: got.append(store.get_or_compute(_key(), "t", compute))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and [g.result for g in got] == [{"value": 42}] * 3
    assert store.get_or_compute(_key(), "t", compute).result == {"value": 42} and len(calls) == 1

    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.get_or_compute(_key(version="2"), "t", broken)
    assert _key(version="2") not in store  # a failure is not stored


class _Sleeper(BackgroundJob):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def _work(self) -> None:
        self.release.wait(10)


def test_a_background_run_is_shared_while_it_runs(store):
    first, here = store.start_job(_key(), _Sleeper)
    again, here_again = store.start_job(_key(), _Sleeper)
    assert here and not here_again and again is first and store.running_job(_key()) is first
    other, other_here = store.start_job(_key(version="2"), _Sleeper)
    assert other_here and other is not first
    for job in (first, other):
        job.release.set()
        job.join(10)
    assert store.running_job(_key()) is None
    fresh, fresh_here = store.start_job(_key(), _Sleeper)  # finished: a new request starts a new one
    assert fresh_here and fresh is not first
    fresh.release.set()
    fresh.join(10)


def test_the_process_store_lives_under_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(run_store.BUDGET_ENV, "2")
    store = run_store.store()
    assert store.root == tmp_path / "runs" and store.max_bytes == 2 * 2**20
    assert run_store.store() is store
