"""One scheduler per network: FIFO queue, micro-batching, and one compute gate for the whole process.

When 30 students ask a network at once, their requests queue in arrival order; requests that
arrive within a few milliseconds of each other run as one batch (when the network takes a batch),
and a process-wide FIFO gate (``$CVDEMO_INFERENCE_CONCURRENCY`` permits, 1 on machines with at
most 4 cores) keeps two networks from fighting over the same cores. The first student is served
first instead of everyone finishing together at the end.

``Scheduler(name, batch_fn, max_batch)``: ``batch_fn(list of inputs) -> list of outputs`` in the
same order. That function is the seam for running the network elsewhere (a remote batch function
for a Ray Serve deployment has the same signature). ``submit(x)`` returns a :class:`Ticket`
(``.ahead()``: requests queued before it, ``.result()``); ``run(x)`` waits for it and, while it
waits, tells the current waiting notice (:func:`waiting_notice`) how many requests are ahead.

A batch function must not wait for another scheduler (it runs while holding the gate); calls made
from inside a batch run inline. A scheduler made with ``holds_gate=False`` leaves the gate to its batch
function, which takes it around its local compute only (preprocessing, e.g. resizing photos, stays
outside); a wait on the inference server never holds it (:meth:`ComputeGate.stepped_aside`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from cvdemo import cache

In = TypeVar("In")
Out = TypeVar("Out")

CONCURRENCY_ENV = "CVDEMO_INFERENCE_CONCURRENCY"
BATCH_WINDOW_S = 0.005  # requests arriving within 5 ms of the first one join its batch


def default_concurrency() -> int:
    """Permits of the compute gate: ``$CVDEMO_INFERENCE_CONCURRENCY``, else 1 on <= 4 cores, else 2."""
    raw = os.environ.get(CONCURRENCY_ENV, "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            pass
    return 1 if (os.cpu_count() or 1) <= 4 else 2


class ComputeGate:
    """A FIFO semaphore: whoever asked first gets the next permit. Reentrant per thread."""

    def __init__(self, permits: int) -> None:
        self.permits = max(1, int(permits))
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._active = 0
        self._held = threading.local()
        self.peak_active = 0  # for tests and the bench: never above ``permits``

    def holding(self) -> bool:
        return getattr(self._held, "depth", 0) > 0

    def idle(self) -> bool:
        """Nobody holds a permit or waits for one."""
        with self._cond:
            return self._active == 0 and not self._waiting

    def acquire(self, on_wait: Callable[[int], None] | None = None, every: float = 0.2) -> None:
        """Wait for a permit in arrival order; meanwhile ``on_wait(holders and waiters ahead)`` every ``every`` s."""
        me = object()
        with self._cond:
            self._waiting.append(me)
            ready = lambda: self._waiting[0] is me and self._active < self.permits  # noqa: E731
            while not self._cond.wait_for(ready, timeout=every if on_wait else None):
                ahead = self._active + self._waiting.index(me)
                self._cond.release()  # never draw a notice while holding the gate's lock
                try:
                    on_wait(ahead)
                finally:
                    self._cond.acquire()
            self._waiting.popleft()
            self._active += 1
            self.peak_active = max(self.peak_active, self._active)
            self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    @contextmanager
    def hold(self, on_wait: Callable[[int], None] | None = None, every: float = 0.2) -> Iterator[None]:
        """Hold a permit for the block (reentrant: a thread that holds one passes straight through)."""
        if self.holding():  # work started inside a batch: it already has the cores
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        self.acquire(on_wait, every)
        self._held.depth = 1
        try:
            yield
        finally:
            self._held.depth = 0
            self.release()

    @contextmanager
    def stepped_aside(self) -> Iterator[None]:
        """Inside a :meth:`hold`: give the permit back for the block, then queue for it again.

        For a wait on another machine (the inference server): the cores here are free meanwhile, so the
        next local batch runs instead of idling behind a network round trip. Outside a hold: nothing.
        """
        depth = getattr(self._held, "depth", 0)
        if depth == 0:
            yield
            return
        self._held.depth = 0
        self.release()
        try:
            yield
        finally:
            self.acquire()
            self._held.depth = depth

    @contextmanager
    def turn(self, lease: float, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """A permit for at most ``lease`` seconds: after that the next in line goes too (the block goes on).

        For page runs: a burst is served in arrival order, yet a page that works for minutes (an
        evaluation) does not keep the others out.
        """
        self.acquire(on_wait)
        released = threading.Event()
        lock = threading.Lock()

        def give_back() -> None:
            with lock:
                if not released.is_set():
                    released.set()
                    self.release()

        timer = threading.Timer(lease, give_back)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            give_back()


_gate_lock = threading.Lock()


def _new_compute_gate() -> ComputeGate:
    return ComputeGate(default_concurrency())


def compute_gate() -> ComputeGate:
    """The process-wide gate every scheduler's batches pass through (built once, like every shared model)."""
    return cache.shared(_new_compute_gate)


# --- waiting notices: how a page learns why it waits, without cvdemo importing Streamlit ---------

_notice = threading.local()


@contextmanager
def waiting_notice(show: Callable[[str | None], None]) -> Iterator[None]:
    """While inside, waits in this thread call ``show(message)`` about every 0.2 s, then ``show(None)``.

    ``cvdemo.ui`` installs one around each page run that writes into a placeholder.
    """
    previous = getattr(_notice, "show", None)
    _notice.show = show
    try:
        yield
    finally:
        _notice.show = previous


PAGE_CONCURRENCY_ENV = "CVDEMO_PAGE_CONCURRENCY"


PAGE_TURN_SECONDS = 5.0  # a page run keeps its turn at most this long (see ComputeGate.turn)


def page_concurrency() -> int:
    """Page runs at once (``$CVDEMO_PAGE_CONCURRENCY``, default: the number of cores; 0 = no limit)."""
    raw = os.environ.get(PAGE_CONCURRENCY_ENV, "").strip()
    try:
        return max(0, int(raw)) if raw else (os.cpu_count() or 1)
    except ValueError:
        return os.cpu_count() or 1


_page_gate: ComputeGate | None = None


def page_gate() -> ComputeGate | None:
    """The FIFO admission gate around page runs (None when switched off with 0)."""
    global _page_gate
    permits = page_concurrency()
    if permits == 0:
        return None
    with _gate_lock:
        if _page_gate is None or _page_gate.permits != permits:
            _page_gate = ComputeGate(permits)
        return _page_gate


def _show(message: str | None) -> None:
    show = getattr(_notice, "show", None)
    if show is not None:
        try:
            show(message)
        except Exception:  # a notice that cannot be drawn (session gone) must not fail the work
            pass


def clear_notice() -> None:
    """The wait is over: remove the notice (if one is shown)."""
    _show(None)


def notice_sharing() -> None:
    """Called while a result another session is computing is awaited (see :mod:`cvdemo.results`)."""
    _show("Another student asked for the same result a moment ago: sharing it as soon as it is ready…")


def ahead_message(ahead: int) -> str:
    if ahead <= 0:
        return "Running your request…"
    return f"{ahead} request{'s' * (ahead != 1)} ahead of you: waiting for the model…"


# --- tickets and schedulers ----------------------------------------------------------------------


class Ticket(Generic[Out]):
    """One queued request: ``ahead()`` counts the requests before it, ``result()`` waits for it."""

    def __init__(self, scheduler: "Scheduler", item: Any, group: Any) -> None:
        self.scheduler = scheduler
        self.item = item
        self.group = group
        self.future: Future = Future()
        self.submitted = time.perf_counter()

    def ahead(self) -> int:
        """Requests of this network that will run before this one (0 once it is running or done)."""
        return self.scheduler._ahead_of(self)

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> Out:
        return self.future.result(timeout)

    def wait(self, show: Callable[[str], None] | None = None, every: float = 0.2) -> Out:
        """The result; meanwhile ``show(message)`` every ``every`` seconds (default: the waiting notice)."""
        notice = show or _show
        try:
            while True:
                try:
                    return self.future.result(timeout=every)
                except TimeoutError:
                    notice(ahead_message(self.ahead()))
        finally:
            if show is None:
                clear_notice()


class Scheduler(Generic[In, Out]):
    """FIFO queue with micro-batching in front of one network, served by one worker thread.

    Requests in the same ``group`` (e.g. same input size) can share a batch; a batch takes the
    oldest request plus up to ``max_batch - 1`` later ones of its group that arrive within
    ``window`` seconds. If a batch fails, its requests are retried one by one, so an exception
    reaches only the callers whose input caused it.
    """

    def __init__(
        self,
        name: str,
        batch_fn: Callable[[list[In]], Sequence[Out]],
        max_batch: int = 1,
        window: float = BATCH_WINDOW_S,
        gate: ComputeGate | None = None,
        holds_gate: bool = True,
    ) -> None:
        self.name = name
        self.holds_gate = holds_gate  # False: batch_fn takes the gate itself, around its local compute
        self.batch_fn = batch_fn
        self.max_batch = max(1, int(max_batch))
        self.window = window
        self.gate = gate
        self._queue: deque[Ticket] = deque()
        self._running: list[Ticket] = []
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[int] = []  # sizes of the batches run (recent ones), for tests and the bench

    # -- public
    def submit(self, item: In, group: Any = None) -> Ticket[Out]:
        ticket: Ticket[Out] = Ticket(self, item, group)
        if self._gate().holding():  # called from inside a batch: run inline, never wait on ourselves
            self._run_batch([ticket], gated=False)
            return ticket
        with self._cond:
            self._queue.append(ticket)
            self._ensure_worker()
            self._cond.notify_all()
        return ticket

    def run(self, item: In, group: Any = None) -> Out:
        """Submit and wait, showing "N requests ahead of you" in the current waiting notice."""
        return self.submit(item, group).wait()

    def queued(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._running)

    # -- internals
    def _gate(self) -> ComputeGate:
        return self.gate if self.gate is not None else compute_gate()

    def _ahead_of(self, ticket: Ticket) -> int:
        with self._cond:
            if ticket in self._running or ticket.future.done():
                return 0
            try:
                position = self._queue.index(ticket)
            except ValueError:
                return 0
            return position + len(self._running)

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._serve, name=f"cvdemo-{self.name}", daemon=True)
            self._worker.start()

    def _next_batch(self) -> list[Ticket]:
        with self._cond:
            while not self._queue:
                if not self._cond.wait(timeout=60):
                    return []  # idle a minute: let the thread end; the next submit starts another
            first = self._queue.popleft()
            batch = [first]
            if self.max_batch > 1:
                deadline = time.perf_counter() + self.window
                while len(batch) < self.max_batch:
                    batch += self._take_group(first.group, self.max_batch - len(batch))
                    remaining = deadline - time.perf_counter()
                    if len(batch) >= self.max_batch or remaining <= 0:
                        break
                    self._cond.wait(timeout=remaining)
            self._running = batch
            return batch

    def _take_group(self, group: Any, limit: int) -> list[Ticket]:
        taken = [t for t in self._queue if t.group == group][:limit]
        for t in taken:
            self._queue.remove(t)
        return taken

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                with self._cond:
                    if not self._queue:
                        self._worker = None
                        return
                continue
            try:
                self._run_batch(batch, gated=True)
            finally:
                with self._cond:
                    self._running = []

    def _run_batch(self, batch: list[Ticket], gated: bool) -> None:
        items = [t.item for t in batch]
        try:
            with self._gate().hold() if self.holds_gate else nullcontext():
                outputs = list(self.batch_fn(items))
            if len(outputs) != len(items):
                raise RuntimeError(f"{self.name}: batch function returned {len(outputs)} results for {len(items)} inputs")
        except BaseException as exc:  # noqa: BLE001 - handed to the callers, never lost
            if len(batch) > 1:  # find whose input failed: one at a time
                for ticket in batch:
                    self._run_batch([ticket], gated)
                return
            batch[0].future.set_exception(exc)
            return
        self.batches = (self.batches + [len(batch)])[-256:]
        for ticket, output in zip(batch, outputs):
            ticket.future.set_result(output)


# --- one scheduler per network, per process ------------------------------------------------------

_schedulers: dict[str, Scheduler] = {}
_schedulers_lock = threading.Lock()


def for_network(
    name: str, batch_fn: Callable[[list[Any]], Sequence[Any]], max_batch: int = 1, holds_gate: bool = True
) -> Scheduler:
    """The scheduler named ``name`` (created on first use with ``batch_fn``), shared by the process."""
    with _schedulers_lock:
        found = _schedulers.get(name)
        if found is None:
            found = _schedulers[name] = Scheduler(name, batch_fn, max_batch, holds_gate=holds_gate)
        return found


def existing(name: str) -> Scheduler | None:
    """The scheduler named ``name`` if one was created (no work, no waiting)."""
    with _schedulers_lock:
        return _schedulers.get(name)
