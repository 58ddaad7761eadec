"""The one Streamlit-aware module of cvdemo: shared widgets and process-wide model caching.

Pages call these helpers; everything else in ``cvdemo`` stays framework-free.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import streamlit as st

from cvdemo import cache, datasets, results, scheduler, text, weights
from cvdemo.images import ImageInputError, load_image, shared_image
from cvdemo.runtime import RuntimeInfo
from cvdemo.serve.client import InferenceServerError

T = TypeVar("T")


@st.cache_resource(show_spinner=False, max_entries=32)
def _shared(_factory: Callable[..., T], key: str, args: tuple, kwargs: tuple) -> T:
    # The object itself lives in cvdemo.cache, so the Gradio demos reuse it too.
    return cache.shared(_factory, *args, **dict(kwargs))


def page_link(path: str, label: str, icon: str) -> None:
    """``st.page_link`` to a page script of the app (``"app_pages/detection.py"``).

    Given a path, Streamlit resolves it on the file system on every run; given an ``st.Page`` it does
    not. The link's ``st.Page`` is built once per process and only read here (the navigation keeps its
    own pages: a page it runs carries per-run state).
    """
    st.page_link(cache.shared(st.Page, path), label=label, icon=icon)


def shared(factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``factory(*args, **kwargs)`` built once per process and shared by every session.

    Use it for models: ``detector = ui.shared(Detector, "yolov8n")``. Arguments must be
    hashable; a failure is not cached, so a model that appears later is picked up.
    """
    key = f"{factory.__module__}.{getattr(factory, '__qualname__', repr(factory))}"
    frozen_kwargs = tuple(sorted(kwargs.items()))
    if cache.has(factory, *args, **kwargs):  # the common case on a rerun: no spinner flash
        return _shared(factory, key, args, frozen_kwargs)
    with st.spinner(f"Loading {getattr(factory, '__name__', 'model')} (once per server)…", show_time=True):
        return _shared(factory, key, args, frozen_kwargs)


def literal(user_text: object) -> str:
    """User text (a file name, label, class name, query) for any Streamlit markdown context (messages,
    captions, image captions, spinners, status and expander labels), shown exactly as typed.
    One helper for the whole app: see :mod:`cvdemo.text` (``text.plot_literal`` for plotly labels)."""
    return text.md_literal(user_text)


def page_header(title: str, lesson: str) -> None:
    """Title plus the one-sentence lesson of the page."""
    st.title(title)
    st.caption(lesson)


def weights_missing(exc: Exception) -> None:
    """Explain a missing model file without a traceback."""
    if isinstance(exc, InferenceServerError):  # pages catch RuntimeError around model loading
        inference_server_error(exc)
        return
    st.warning(f"**Model weights missing.** {exc}", icon="📦")


def inference_server_error(exc: Exception) -> None:
    """The inference server (CVDEMO_INFERENCE_URL) is down or refused the work: say so, no traceback."""
    st.error(f"**This page's model runs on an inference server, which could not run it.** {exc}", icon=":material/cloud_off:")


def image_input(
    key: str,
    label: str = "Image",
    multiple: bool = False,
    camera: bool = True,
    samples: dict[str, Any] | None = None,
) -> list[tuple[str, Any]]:
    """Pick images from samples, uploads or a camera snapshot: ``[(name, RGB PIL image)]``.

    Bad files are reported by name with a readable message and skipped; the rest are kept.
    The browser's camera is used (``st.camera_input``), never the server's.
    """
    samples = datasets.sample_images() if samples is None else samples
    sources = (["Sample"] if samples else []) + ["Upload"] + (["Camera"] if camera else [])
    source = st.radio(f"{label} source", sources, horizontal=True, key=f"{key}_source")
    raw: list[tuple[str, Any]] = []
    if source == "Sample":
        picked = (
            st.multiselect("Sample images", list(samples), default=list(samples)[:1], key=f"{key}_samples")
            if multiple
            else [st.selectbox("Sample image", list(samples), key=f"{key}_sample")]
        )
        raw = [(name, samples[name]) for name in picked if name]
    elif source == "Upload":
        files = st.file_uploader(
            f"Upload {'images' if multiple else 'an image'}",
            type=None,  # accept anything: we check the bytes, not the extension
            accept_multiple_files=multiple,
            key=f"{key}_upload",
        )
        files = files if isinstance(files, list) else ([files] if files else [])
        raw = [(f.name, f) for f in files]
    else:
        snap = st.camera_input("Take a picture", key=f"{key}_camera")
        raw = [("camera.jpg", snap)] if snap is not None else []
    # An upload (a camera snapshot too) is decoded once per file: a rerun gets the same image object,
    # so its fingerprint (remembered per object) is not hashed again. Only the files picked now are kept.
    decoded_key = f"cvdemo_decoded_{key}"
    decoded: dict = st.session_state.get(decoded_key, {})
    kept: dict = {}
    images = []
    for name, src in raw:
        file_id = getattr(src, "file_id", None)
        try:
            if isinstance(src, Path):
                image = shared_image(src)
            elif file_id is None:
                image = load_image(src)
            else:
                image = kept[file_id] = decoded[file_id] if file_id in decoded else load_image(src)
            images.append((name, image))
        except ImageInputError as exc:  # the message names the file: shown as typed
            st.error(literal(exc), icon="🖼️")
    st.session_state[decoded_key] = kept
    return images


@contextmanager
def page_run() -> Iterator[None]:
    """Around each page run (app.py): take a turn, then say why the page waits while a model is busy.

    Thirty page runs at once on two cores all finish at the end (the first student waits as long as
    the last); a FIFO gate (``$CVDEMO_PAGE_CONCURRENCY`` runs at once, default one per core) serves
    them in arrival order and shows "N students ahead of you". A run keeps its turn at most
    ``scheduler.PAGE_TURN_SECONDS``, so a long evaluation does not keep the class out. Inside, a wait for a model another
    session is using shows "3 requests ahead of you" in the same placeholder, removed when done.
    """
    placeholder = st.empty()
    shown = [False]

    def show(message: str | None) -> None:
        if message is None:
            if shown[0]:
                placeholder.empty()
                shown[0] = False
            return
        placeholder.info(message, icon=":material/hourglass_top:")
        shown[0] = True

    def queued(ahead: int) -> None:
        show(f"{ahead} student{'s' * (ahead != 1)} ahead of you: this page starts in a moment…")

    gate = scheduler.page_gate()
    try:
        with gate.turn(scheduler.PAGE_TURN_SECONDS, on_wait=queued) if gate is not None else nullcontext():
            show(None)
            with scheduler.waiting_notice(show):
                try:
                    yield
                finally:
                    show(None)
    finally:
        _collect_garbage_now_and_then(gate)  # after the turn, and only when nobody waits for one


GC_INTERVAL_SECONDS = 10.0
_gc_lock = threading.Lock()
_last_gc = [time.monotonic()]


def _collect_garbage_now_and_then(gate: "scheduler.ComputeGate | None" = None) -> None:
    """A full garbage collection after a page run, when no other page run is under way or waiting,
    at most every ``GC_INTERVAL_SECONDS``.

    Streamlit's own collection after every script run is off (``runner.postScriptGC`` in
    .streamlit/config.toml): with the models loaded it holds the GIL 0.1-0.3 s per run, the largest
    part of a classroom burst. Cycles that page runs leave behind (frames of interrupted runs holding
    images) are still freed: once the burst is over, not once per student.
    """
    now = time.monotonic()
    if now - _last_gc[0] < GC_INTERVAL_SECONDS or (gate is not None and not gate.idle()):
        return
    if not _gc_lock.acquire(blocking=False):
        return
    try:
        if time.monotonic() - _last_gc[0] < GC_INTERVAL_SECONDS:  # another run collected since our check
            return
        _last_gc[0] = now
        gc.collect()
    finally:
        _gc_lock.release()


def wait_for(ticket: "scheduler.Ticket[T]") -> T:
    """The ticket's result; meanwhile "N requests ahead of you" in a placeholder (removed afterwards)."""
    placeholder = st.empty()
    try:
        return ticket.wait(lambda message: placeholder.info(message, icon=":material/hourglass_top:"))
    finally:
        placeholder.empty()


@st.cache_data(ttl=30, show_spinner=False)
def _asset_rows() -> list[dict]:
    return weights.status_rows()


@st.cache_resource(ttl=2, show_spinner=False)
def _process_memory_mb() -> float | None:
    # Read once per 2 s for the whole server, not once per page run of every student.
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:
        return None


RUNTIME_KEY = "cvdemo_runtime"
RUNTIME_ACCELERATED, RUNTIME_PYTORCH = "Accelerated", "PyTorch"


def _keep_a_runtime() -> None:
    # A single-choice switch must never end empty: put the last choice back (the browser also refuses,
    # required=True; this covers any other client).
    if st.session_state.get(RUNTIME_KEY) not in (RUNTIME_PYTORCH, RUNTIME_ACCELERATED):
        st.session_state[RUNTIME_KEY] = st.session_state.get(_RUNTIME_LAST_KEY, RUNTIME_ACCELERATED)


_RUNTIME_LAST_KEY = "cvdemo_runtime_last"


def runtime_choice() -> None:
    """The sidebar's "PyTorch / accelerated" switch, so a lecturer can show the difference live.

    Exactly one runtime is always selected: clicking the selected one does nothing.
    """
    st.session_state.setdefault(RUNTIME_KEY, RUNTIME_ACCELERATED)  # the default, kept in state (see above)
    choice = st.segmented_control(
        "Inference runtime",
        [RUNTIME_PYTORCH, RUNTIME_ACCELERATED],
        required=True,
        key=RUNTIME_KEY,
        on_change=_keep_a_runtime,
        help="Accelerated: each network is exported once to ONNX and run by OpenVINO or ONNX Runtime, "
        "whichever is faster here and matches PyTorch's outputs on real photos. PyTorch: eager mode, "
        "op by op. Latency badges on the pages name the runtime that answered.",
    )
    st.session_state[_RUNTIME_LAST_KEY] = choice or RUNTIME_ACCELERATED


def accelerated() -> bool:
    """Whether this session asked for the accelerated runtime (the default)."""
    return st.session_state.get(RUNTIME_KEY) != RUNTIME_PYTORCH


def latency_badge(milliseconds: float, runtime_info: RuntimeInfo, what: str = "", per: str = "") -> str:
    """Markdown for a latency badge naming the runtime, e.g. "⏱ query embedded in 6 ms · OpenVINO"."""
    return f":green-badge[:material/timer: {what}{milliseconds:,.0f} ms{per} · {runtime_info.name}]"


def runtime_note(runtime_info: RuntimeInfo) -> None:
    """When the accelerated path was asked for and refused, say why (the badge then says PyTorch)."""
    if accelerated() and not runtime_info.accelerated and runtime_info.detail:
        st.caption(f"Running in {runtime_info.label}.")


def remembered(key: tuple, compute: Callable[[], T], max_entries: int = 32) -> tuple[T, float]:
    """``compute()`` once per ``key`` in this session, with the milliseconds that first run took.

    For one-image work behind a latency badge: sliders rerun the page without re-running the
    model, and a key that names the runtime re-runs it (and re-times it) when the switch flips.
    ``key[0]`` names the caller (``("clip_image", ...)``): each caller keeps its own last
    ``max_entries`` results, the oldest evicted first, so one page's results do not push out another's.
    """
    memo: dict = st.session_state.setdefault("cvdemo_remembered", {}).setdefault(key[0], {})
    if key not in memo:
        started = time.perf_counter()
        value = compute()
        memo[key] = (value, 1000 * (time.perf_counter() - started))
        while len(memo) > max_entries:
            memo.pop(next(iter(memo)))
    return memo[key]


def sidebar_status() -> None:
    """Runtime switch and model assets, for the lecturer's peace of mind (see also :func:`sidebar_footer`)."""
    with st.sidebar:
        runtime_choice()
        rows = _asset_rows()
        ready = sum(r["available"] for r in rows)
        with st.expander(f"Model assets: {ready}/{len(rows)} on this machine"):
            for r in rows:
                mark = "✅" if r["available"] else "⬜"
                st.markdown(f"{mark} `{r['asset']}` — {r['description']}")
            folder = weights.weights_dir()
            st.caption(
                f"Weights folder: `{folder}`" if folder else f"Set `${weights.WEIGHTS_ENV}` to a folder of weights."
            )
            st.caption("Prefetch for class: `python -m cvdemo.weights fetch`")


def sidebar_footer() -> None:
    """Torch threads, cores and server memory, written after the page ran (so torch is loaded)."""
    with st.sidebar:
        torch = sys.modules.get("torch")
        threads = f"{torch.get_num_threads()} torch threads" if torch else "torch not loaded yet"
        memory = _process_memory_mb()
        st.caption(
            f"{threads} · {os.cpu_count()} CPU cores"
            + (f" · server memory {memory:,.0f} MB" if memory is not None else "")
            + f" · {results.stats().summary()}"
        )


def _page_url() -> str | None:
    """The URL this browser used to open the app (scheme, host, port), as the browser reports it."""
    try:
        url = st.context.url
    except Exception:
        url = None
    if url:
        return url
    try:  # older front ends: rebuild it from the Host header
        host = st.context.headers.get("Host")
    except Exception:
        host = None
    return f"http://{host}/" if host else None


def share_section(name: str, height: int = 760) -> None:
    """'Share this demo': start the page's Gradio twin once per process and embed it."""
    from cvdemo import share

    with st.expander("Share this demo", icon=":material/share:"):
        st.caption(
            "A Gradio version of this page, built on the same code, that students open on their own devices. "
            "It starts once per server and is reused by every session."
        )
        if not st.toggle("Start the shareable demo", key=f"share_{name}"):
            return
        try:
            with st.spinner("Starting the Gradio demo…"):
                shared_demo = share.embed(
                    name,
                    page_url=_page_url(),
                    app_address=st.get_option("server.address"),
                    app_port=st.get_option("server.port"),
                )
        except Exception as exc:  # a demo that cannot start must not take the page down
            st.error(f"The shareable demo could not start: {exc}")
            return
        if shared_demo.student_url:
            st.markdown("Link for students:")
            st.code(shared_demo.student_url, language=None)
        else:
            st.markdown("Link on this computer:")
            st.code(shared_demo.url, language=None)
        st.caption(shared_demo.audience)
        for warning in shared_demo.warnings:
            st.warning(warning, icon=":material/lan:")
        running = shared_demo.running
        if running is not None and running.share_url:
            st.markdown("Public link, valid for about a week:")
            st.code(running.share_url, language=None)
        elif running is not None:
            st.caption(f"For a public link run `python -m cvdemo.share {name} --share` on a machine with internet.")
        st.iframe(shared_demo.url, height=height)
