"""Schedulers: FIFO order, micro-batching, results to the right caller, errors only to their callers, bounded compute."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cvdemo import scheduler
from cvdemo.scheduler import ComputeGate, Scheduler


def _blocked_scheduler(max_batch: int = 1, gate: ComputeGate | None = None):
    """A scheduler whose first batch waits for ``release``, so later requests pile up behind it."""
    seen: list[list] = []
    release = threading.Event()

    def batch_fn(items):
        seen.append(list(items))
        if len(seen) == 1:
            release.wait(5)
        return [f"out-{x}" for x in items]

    return Scheduler("test", batch_fn, max_batch=max_batch, gate=gate or ComputeGate(1)), seen, release


def _wait_until(condition, timeout=5.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_fifo_order_and_ahead_counts():
    sched, seen, release = _blocked_scheduler(max_batch=1)
    first = sched.submit(0)
    _wait_until(lambda: seen)  # the first request is running
    tickets = [sched.submit(i) for i in range(1, 6)]
    assert [t.ahead() for t in tickets] == [1, 2, 3, 4, 5]
    assert first.ahead() == 0
    release.set()
    assert [t.result(5) for t in tickets] == [f"out-{i}" for i in range(1, 6)]
    assert [batch[0] for batch in seen] == [0, 1, 2, 3, 4, 5]  # served in arrival order
    assert tickets[0].ahead() == 0


def test_near_simultaneous_requests_run_as_one_batch_and_each_gets_its_own_result():
    sched, seen, release = _blocked_scheduler(max_batch=8)
    sched.submit("warm")
    _wait_until(lambda: seen)
    tickets = [sched.submit(i) for i in range(12)]  # queued while the network is busy
    release.set()
    assert [t.result(5) for t in tickets] == [f"out-{i}" for i in range(12)]
    assert seen[1:] == [list(range(8)), list(range(8, 12))]  # batches of max_batch, in order


def test_groups_do_not_share_a_batch():
    sched, seen, release = _blocked_scheduler(max_batch=8)
    sched.submit("warm", group="a")
    _wait_until(lambda: seen)
    tickets = [sched.submit(i, group=("small" if i % 2 else "large")) for i in range(6)]
    release.set()
    assert [t.result(5) for t in tickets] == [f"out-{i}" for i in range(6)]
    assert seen[1:] == [[0, 2, 4], [1, 3, 5]]


def test_an_exception_goes_only_to_its_callers():
    def batch_fn(items):
        if "bad" in items:
            raise ValueError("bad input")
        return [x.upper() for x in items]

    sched = Scheduler("errors", batch_fn, max_batch=8, window=0.05, gate=ComputeGate(1))
    with ThreadPoolExecutor(6) as pool:
        futures = {x: pool.submit(sched.run, x) for x in ["a", "b", "bad", "c", "d"]}
        with pytest.raises(ValueError, match="bad input"):
            futures["bad"].result(5)
        assert {x: f.result(5) for x, f in futures.items() if x != "bad"} == {"a": "A", "b": "B", "c": "C", "d": "D"}


def test_gate_bounds_concurrency_across_schedulers():
    gate = ComputeGate(1)
    active, peak = [0], [0]
    lock = threading.Lock()

    def busy(items):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return items

    networks = [Scheduler(f"net{i}", busy, max_batch=2, gate=gate) for i in range(3)]
    with ThreadPoolExecutor(12) as pool:
        outs = list(pool.map(lambda i: networks[i % 3].run(i), range(24)))
    assert outs == list(range(24))
    assert peak[0] == 1 and gate.peak_active == 1


def test_gate_is_fifo_and_reentrant():
    gate = ComputeGate(1)
    order = []
    with gate.hold():
        with gate.hold():  # nested use in the same thread does not deadlock
            assert gate.holding()
    assert not gate.holding()

    def take(i):
        with gate.hold():
            order.append(i)

    with gate.hold():
        workers = []
        for i in range(4):
            w = threading.Thread(target=take, args=(i,))
            w.start()
            workers.append(w)
            _wait_until(lambda: len(gate._waiting) == i + 1)
    for w in workers:
        w.join(5)
    assert order == [0, 1, 2, 3]


def test_submit_from_inside_a_batch_runs_inline():
    gate = ComputeGate(1)
    inner = Scheduler("inner", lambda items: [x * 10 for x in items], gate=gate)
    outer = Scheduler("outer", lambda items: [inner.run(x) + 1 for x in items], gate=gate)
    assert outer.run(4) == 41


def test_waiting_notice_says_how_many_are_ahead():
    sched, seen, release = _blocked_scheduler(max_batch=1)
    sched.submit(0)
    _wait_until(lambda: seen)
    sched.submit(1)
    messages = []
    threading.Timer(0.5, release.set).start()
    with scheduler.waiting_notice(messages.append):
        assert sched.run(2) == "out-2"
    assert messages and messages[0] == "2 requests ahead of you: waiting for the model…"


def test_concurrency_setting(monkeypatch):
    monkeypatch.setenv(scheduler.CONCURRENCY_ENV, "3")
    assert scheduler.default_concurrency() == 3
    monkeypatch.setenv(scheduler.CONCURRENCY_ENV, "")
    assert scheduler.default_concurrency() >= 1


def test_a_turn_is_given_back_after_its_lease():
    gate = ComputeGate(1)
    entered = threading.Event()

    def next_student():
        gate.acquire()
        entered.set()
        gate.release()

    with gate.turn(lease=0.2):
        waiter = threading.Thread(target=next_student)
        waiter.start()
        assert entered.wait(5)  # the long block still runs, but the next one got in after the lease
    waiter.join(5)
    assert gate._active == 0  # the turn was given back once, not twice


def test_gate_reports_how_many_are_ahead():
    gate = ComputeGate(1)
    seen = []
    gate.acquire()  # someone else's turn
    threading.Timer(0.5, gate.release).start()
    gate.acquire(on_wait=seen.append, every=0.05)
    assert seen and set(seen) == {1}
    gate.release()


def test_page_concurrency_setting(monkeypatch):
    monkeypatch.setenv(scheduler.PAGE_CONCURRENCY_ENV, "0")
    assert scheduler.page_gate() is None
    monkeypatch.setenv(scheduler.PAGE_CONCURRENCY_ENV, "3")
    assert scheduler.page_gate().permits == 3


def test_a_hold_steps_aside_for_a_wait_elsewhere():
    gate = ComputeGate(1)
    other_ran = threading.Event()

    def other():
        with gate.hold():
            other_ran.set()

    with gate.hold():
        with gate.stepped_aside():  # e.g. waiting on the inference server
            assert not gate.holding() and gate._active == 0
            worker = threading.Thread(target=other)
            worker.start()
            assert other_ran.wait(5)  # the cores went to someone else meanwhile
            worker.join(5)
        assert gate.holding() and gate._active == 1  # queued again and got it back
        with gate.hold():  # still reentrant afterwards
            assert gate.holding()
    assert not gate.holding() and gate._active == 0
    with gate.stepped_aside():  # outside a hold: nothing to give back
        assert gate._active == 0


def test_a_scheduler_that_leaves_the_gate_to_its_batch_function():
    gate = ComputeGate(1)
    seen = []

    def batch_fn(items):
        seen.append(gate.holding())  # e.g. resizing photos: no gate
        with gate.hold():
            seen.append(gate.holding())
            return items

    assert Scheduler("self-gated", batch_fn, gate=gate, holds_gate=False).run(3) == 3
    assert seen == [False, True]
