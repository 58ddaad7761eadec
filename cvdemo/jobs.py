"""Long work in a background thread that a page can watch (status, progress, phase) and stop.

The one job type of the project: the few-shot ladders and evaluations, the segmentation
:class:`~cvdemo.segmentation.Trainer`; :meth:`cvdemo.run_store.RunStore.start_job` shares one between sessions.

``run()`` works in the calling thread (tests, benches, the Gradio demo) and raises; ``start()``
works in a daemon thread and keeps a failure as ``error`` for the page to show.
"""

from __future__ import annotations

import threading
import time

from cvdemo.errors import CvdemoError


class BackgroundJob:
    """Subclasses implement ``_work()``, update ``progress`` (0..1) and ``phase``, and poll ``stopping``."""

    thread_name = "cvdemo-job"

    def __init__(self) -> None:
        self.status = "ready"  # ready | running | done | stopped | failed
        self.error: str | None = None
        self.progress = 0.0
        self.phase = ""
        self.seconds = 0.0
        self._started: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _work(self) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._started if self._started is not None and self.status == "running" else self.seconds

    def stop(self) -> None:
        """Ask the work to stop after the current step; what was done is kept."""
        self._stop.set()

    def run(self) -> "BackgroundJob":
        self.status = "running"
        self._started = time.perf_counter()
        try:
            self._work()
            self.status = "stopped" if self._stop.is_set() else "done"
            if self.status == "done":
                self.progress = 1.0
        except BaseException:
            self.status = "failed"
            raise
        finally:
            self.seconds = time.perf_counter() - self._started
        return self

    def start(self) -> threading.Thread:
        """Work in a daemon thread (it never keeps the server from exiting)."""
        if self._thread is None:
            self.status = "running"
            self._thread = threading.Thread(target=self._run_safely, name=self.thread_name, daemon=True)
            self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run_safely(self) -> None:
        try:
            self.run()
        except CvdemoError as exc:  # the library's student-worded errors (LadderError, ImageInputError, ...)
            self.error = str(exc)
        except Exception as exc:  # shown on the page, not a dead thread with a traceback
            self.error = f"{type(exc).__name__}: {exc}"
