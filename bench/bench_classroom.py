"""Classroom burst: N students open the same page at the same moment; how long until each page is done?

Starts the app (``streamlit run app.py`` in ``--app-dir``, default this checkout) and a bare Streamlit
app (``bench/bare_app``: st.navigation and 6 trivial pages) on free loopback ports, warms each page
with one visit (``--cold`` skips that), then for every page sends N simultaneous sessions to the bare
app and then to the app. Each student is a real Streamlit session speaking the websocket protocol a
browser speaks (no browser competes for the server's cores). A student's time runs from connecting
to the end of the page's script run. Meanwhile a probe pings the app's websocket every 0.25 s (the
server's event loop answers pings: a long answer means a starved event loop).

Prints per page: p50 / p95 / first / last, the ratio of the page's p95 to the bare app's p95 measured
just before it (the number that matters on a shared machine), the worst ping, errors and exceptions,
and the server's peak RSS. Example (before/after a change: run once per checkout, same machine)::

    python -m bench.bench_classroom --n 30 --pages home,detection,clip_search,architectures
    python -m bench.bench_classroom --app-dir /tmp/main-checkout --n 30

Then the same number of *different* photos (coco128, see ../shared/data/MANIFEST.md) at the same moment
on the Detection page's model, by three paths (``--photo-paths``): in this process (the page's own
``Detector.detect``, its scheduler and micro-batches), through the page's Gradio twin (started here as
``python -m cvdemo.share detection`` from ``--app-dir``, called with gradio_client) and through Ray
Serve (a local Ray instance on loopback, ``CVDEMO_INFERENCE_URL`` set; needs requirements-serve.txt, skipped
with a note when Ray is not installed). Prints p50 / p95 / first / last per path beside the goal (p95 <=
9.9 s, the Gradio twin's p95 in issue 14). ``--photos 0`` skips them; ``--pages none`` runs only them.

Environment (weights, data, CVDEMO_* settings) is passed to both servers as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.timing import quantile

REPO = Path(__file__).resolve().parents[1]
BARE_APP = Path(__file__).resolve().parent / "bare_app" / "app.py"
BARE_PAGE = "page2"  # a non-default page, like the app's model pages

# Text each finished page must show (a heading or markdown), so a page that stopped early is not "done".
EXPECT = {
    "": "cvdemo: see what",
    "detection": "Object detection",
    "clip_search": "CLIP search",
    "architectures": "",
    "fewshot": "",
    "segmentation": "Semantic segmentation",
    "compression": "",
}


@dataclass
class Burst:
    label: str
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exceptions: int = 0
    unfinished: int = 0
    worst_ping: float = float("nan")
    peak_rss_mb: float = float("nan")

    def quantile(self, q: float) -> float:
        return quantile(self.seconds, q)


# --- one student over the websocket protocol ------------------------------------------------------


def _texts(delta) -> list[str]:
    el = delta.new_element
    kind = el.WhichOneof("type")
    if kind == "heading":
        return [el.heading.body]
    if kind == "markdown":
        return [el.markdown.body]
    return []


async def student(port: int, page: str, expect: str, start_at: float) -> dict:
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    t0 = time.perf_counter()
    out = {"seconds": None, "exceptions": 0, "error": None, "seen": not expect}
    try:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/_stcore/stream",
            subprotocols=["streamlit"],
            max_size=None,
            origin=f"http://127.0.0.1:{port}",
            open_timeout=300,
            ping_interval=None,  # a browser answers pings but sends none
        ) as ws:
            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_name = page
            await ws.send(msg.SerializeToString())
            while True:
                fm = ForwardMsg()
                fm.ParseFromString(await asyncio.wait_for(ws.recv(), timeout=600))
                kind = fm.WhichOneof("type")
                if kind == "delta":
                    if fm.delta.new_element.WhichOneof("type") == "exception":
                        out["exceptions"] += 1
                    if expect and any(expect in t for t in _texts(fm.delta)):
                        out["seen"] = True
                elif kind == "script_finished":
                    if fm.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                        out["seconds"] = time.perf_counter() - t0
                        if not out["seen"]:
                            out["error"] = f"page finished without showing {expect!r}"
                        return out
                    if fm.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                        out["error"] = "compile error"
                        return out
    except Exception as exc:  # noqa: BLE001 - a load test reports, it does not crash
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def ping_probe(port: int, stop: asyncio.Event) -> float:
    """Worst websocket ping round trip (seconds) while the burst runs."""
    import websockets

    worst = 0.0
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"], origin=f"http://127.0.0.1:{port}",
        ping_interval=None, max_size=None,
    ) as ws:
        while not stop.is_set():
            t0 = time.perf_counter()
            waiter = await ws.ping()
            await waiter
            worst = max(worst, time.perf_counter() - t0)
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.25)
            except asyncio.TimeoutError:
                pass
    return worst


def watch_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            peak[0] = max(peak[0], rss / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.2)


async def _burst(port: int, page: str, n: int, stagger: float, expect: str) -> tuple[list[dict], float]:
    stop = asyncio.Event()
    probe = asyncio.create_task(ping_probe(port, stop))
    await asyncio.sleep(0.3)
    now = time.perf_counter() + 0.05
    starts = [now + stagger * i / max(n - 1, 1) for i in range(n)]
    outs = await asyncio.gather(*(student(port, page, expect, s) for s in starts))
    stop.set()
    try:
        worst = await asyncio.wait_for(probe, timeout=60)
    except Exception:  # noqa: BLE001
        worst = float("nan")
    return outs, worst


def burst(label: str, port: int, pid: int, page: str, n: int, stagger: float = 0.0, expect: str = "") -> Burst:
    stop, peak = threading.Event(), [0.0]
    watcher = threading.Thread(target=watch_rss, args=(pid, stop, peak), daemon=True)
    watcher.start()
    outs, worst = asyncio.run(_burst(port, page, n, stagger, expect))
    stop.set()
    watcher.join()
    result = Burst(label, worst_ping=worst, peak_rss_mb=peak[0])
    for o in outs:
        if o["seconds"] is None:
            result.unfinished += 1
        else:
            result.seconds.append(o["seconds"])
        if o["error"]:
            result.errors.append(o["error"])
        result.exceptions += o["exceptions"]
    return result


# --- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(app_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a server started from ``app_dir`` (its own Ultralytics settings folder)."""
    env = dict(os.environ, **(extra_env or {}))
    env.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="bench-yolo-"))
    env["PYTHONPATH"] = str(app_dir)
    return env


def start_server(script: Path, port: int, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = server_env(script.parent, extra_env)
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(script.name), "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]
    return subprocess.Popen(cmd, cwd=script.parent, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_answering(url: str, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Return once ``url`` answers; raise if ``proc`` exits first or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # an error status raises (HTTPError is an OSError)
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    wait_answering(f"http://127.0.0.1:{port}/_stcore/health", proc, f"server on port {port}", timeout)


def table_rows(results: list[tuple[str, Burst, Burst]]) -> list[str]:
    rows = [
        "| page | p50 s | p95 s | first s | last s | bare p95 s | p95 / bare | worst ping s | errors | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for page, bare, app in results:
        ratio = app.quantile(0.95) / bare.quantile(0.95) if bare.seconds else float("nan")
        problems = len(app.errors) + app.exceptions + app.unfinished
        rows.append(
            f"| {page or 'home'} | {app.quantile(0.5):.1f} | {app.quantile(0.95):.1f} | {app.quantile(0.0):.1f} | "
            f"{app.quantile(1.0):.1f} | {bare.quantile(0.95):.1f} | {ratio:.2f}x | {app.worst_ping:.2f} | "
            f"{problems}{' (' + app.errors[0][:60] + ')' if app.errors else ''} | {app.peak_rss_mb:,.0f} |"
        )
    return rows


# --- different photos on the Detection page's model: in process, Gradio twin, Ray Serve ----------------

PHOTO_PATHS = ("in-process", "gradio", "ray")
PHOTO_GOAL_P95 = 9.9  # seconds: the Gradio twin's p95 for 30 different photos in issue 14


def detection_page_model():
    """The model the Detection page (and its Gradio twin) shows first (:func:`cvdemo.detection.page_default`)."""
    from cvdemo import cache
    from cvdemo.detection import FLOAT, Detector, page_default

    model_name = page_default()
    if model_name is None:
        raise SystemExit("No detector weights here: set CVDEMO_WEIGHTS_DIR.")
    return cache.shared(Detector, model_name, accelerated=True, variant=FLOAT)


def page_detect(detector, path: Path):
    """One student's photo with the Detection page's first settings (decoding included, as on the page)."""
    from cvdemo import catalog

    return detector.detect(path, conf=catalog.DETECTION_CONF, iou=catalog.DETECTION_IOU,
                           imgsz=detector.fixed_imgsz or catalog.DETECTION_IMGSZ, name=path.name)  # fmt: skip


def in_process_burst(paths: list[Path], warm: Path) -> list[float]:
    from bench.bench_serve import burst as thread_burst

    detector = detection_page_model()
    page_detect(detector, warm)  # first-call kernel builds; the timed photos are all new to the result cache
    return thread_burst(lambda path: page_detect(detector, path), paths)


def gradio_burst(app_dir: Path, paths: list[Path], warm: Path, log: Path) -> list[float]:
    """The photos through the Detection page's Gradio twin in its own process (its queue, its model)."""
    from gradio_client import Client, handle_file

    from bench.bench_serve import burst as thread_burst
    from cvdemo import catalog

    port = free_port()
    twin = subprocess.Popen([sys.executable, "-m", "cvdemo.share", "detection", "--port", str(port)], cwd=app_dir,
                            env=server_env(app_dir), stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_answering(f"{url}config", twin, f"the Gradio twin (log {log})", timeout=180)
        client = Client(url, verbose=False)

        def detect(path: Path):
            return client.predict(handle_file(str(path)), catalog.DETECTION_CONF, catalog.DETECTION_IOU,
                                  api_name="/detect_image")

        detect(warm)  # loads the model in the twin's process
        return thread_burst(detect, paths)
    finally:
        twin.terminate()
        try:
            twin.wait(20)
        except subprocess.TimeoutExpired:
            twin.kill()


def ray_burst(paths: list[Path], warm: Path) -> list[float]:
    """The photos through Ray Serve: a local Ray instance, one replica with every core, ``@serve.batch``."""
    from bench.bench_serve import burst as thread_burst
    from cvdemo.serve.client import INFERENCE_URL_ENV
    from cvdemo.serve.deployment import local_server

    detector = detection_page_model()
    cores = os.cpu_count() or 1
    with local_server([detector.name], ray_cpus=cores, num_replicas=1, num_cpus=cores, max_batch_size=16,
                      batch_wait_timeout_s=0.01) as url:  # fmt: skip
        os.environ[INFERENCE_URL_ENV] = url
        try:
            page_detect(detector, warm)
            return thread_burst(lambda path: page_detect(detector, path), paths)
        finally:
            os.environ.pop(INFERENCE_URL_ENV, None)


def photo_bursts(n: int, which: list[str], app_dir: Path, logs: Path) -> None:
    from bench.bench_serve import photo_paths, summary

    *paths, warm = photo_paths(n + 1)  # the last one only warms each path up
    detector = detection_page_model()
    print(f"\n{n} different photos at the same moment on the Detection page's model ({detector.description}); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    rows = ["| path | p50 s | p95 s | first s | last s | p95 <= 9.9 s |", "|---|---|---|---|---|---|"]
    for path in which:
        try:
            if path == "in-process":
                label, seconds = "in process (the page's code)", in_process_burst(paths, warm)
            elif path == "gradio":
                label, seconds = "Gradio twin (gradio_client)", gradio_burst(app_dir, paths, warm, logs / "gradio.log")
            else:
                try:
                    import ray  # noqa: F401
                except ImportError:
                    print("Ray Serve: skipped (pip install -r requirements-serve.txt)", flush=True)
                    continue
                label, seconds = "Ray Serve (1 replica, all cores)", ray_burst(paths, warm)
        except Exception as exc:  # noqa: BLE001 - one path failing does not hide the others
            rows.append(f"| {path} | failed: {type(exc).__name__}: {str(exc)[:80]} | | | | |")
            print(rows[-1], flush=True)
            continue
        r = summary(seconds)
        rows.append(f"| {label} | {r['p50']:.1f} | {r['p95']:.1f} | {r['first']:.1f} | {r['last']:.1f} | "
                    f"{'yes' if r['p95'] <= PHOTO_GOAL_P95 else 'no'} |")  # fmt: skip
        print(rows[-1], flush=True)
    print("\n".join(rows) + f"\nload average now {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="students per burst")
    ap.add_argument("--pages", default="home,detection,clip_search,architectures",
                    help="comma-separated URL paths ('home' for the start page; 'none': only the photo bursts)")
    ap.add_argument("--app-dir", type=Path, default=REPO, help="checkout whose app.py is measured")
    ap.add_argument("--stagger", type=float, default=0.0, help="seconds over which the N students arrive")
    ap.add_argument("--cold", action="store_true", help="no warm-up visit before the bursts")
    ap.add_argument("--first-visit", action="store_true",
                    help="also time one student on each page right after the server started (a cold start)")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds to wait after the server answers, before the first visit (e.g. a warm start's time)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra env for the app server")
    ap.add_argument("--bare-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra env for the bare app, e.g. STREAMLIT_RUNNER_POST_SCRIPT_GC=false to give it the "
                    "app's .streamlit/config.toml settings (a like-for-like floor)")
    ap.add_argument("--photos", type=int, default=30,
                    help="different coco128 photos at once on the Detection page's model (0: none)")
    ap.add_argument("--photo-paths", default=",".join(PHOTO_PATHS),
                    help=f"which of {','.join(PHOTO_PATHS)} get the photo burst (Ray: requirements-serve.txt)")
    a = ap.parse_args()
    pages = [] if a.pages == "none" else ["" if p in ("home", "") else p for p in a.pages.split(",")]
    extra = dict(kv.split("=", 1) for kv in a.env)
    photo_which = [p for p in a.photo_paths.split(",") if p]
    unknown = set(photo_which) - set(PHOTO_PATHS)
    if unknown:
        ap.error(f"--photo-paths: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PHOTO_PATHS)})")

    logs = Path(tempfile.mkdtemp(prefix="bench-classroom-"))
    if pages:
        page_bursts(a, pages, extra, logs)
    if a.photos > 0 and photo_which:
        photo_bursts(a.photos, photo_which, a.app_dir.resolve(), logs)


def page_bursts(a: argparse.Namespace, pages: list[str], extra: dict[str, str], logs: Path) -> None:
    bare_port, app_port = free_port(), free_port()
    bare = start_server(BARE_APP, bare_port, logs / "bare.log", dict(kv.split("=", 1) for kv in a.bare_env))
    app = start_server(a.app_dir.resolve() / "app.py", app_port, logs / "app.log", extra)
    try:
        wait_healthy(bare_port, bare)
        t0 = time.perf_counter()
        wait_healthy(app_port, app)
        print(f"# {a.app_dir.resolve()} · N={a.n} · stagger {a.stagger:g} s · {os.cpu_count()} cores · "
              f"load average {os.getloadavg()[0]:.1f} · logs {logs}"
              + (f" · bare app with {' '.join(a.bare_env)}" if a.bare_env else ""), flush=True)
        time.sleep(a.settle)
        if a.first_visit:
            for page in pages:
                first = burst("first", app_port, app.pid, page, 1, expect=EXPECT.get(page, ""))
                print(f"first visit after start: {page or 'home'} {first.quantile(0):.1f} s "
                      f"({time.perf_counter() - t0:.0f} s after the server answered)", flush=True)
        if not a.cold:
            for page in pages:
                burst("warm", bare_port, bare.pid, BARE_PAGE, 1)
                warm = burst("warm", app_port, app.pid, page, 1, expect=EXPECT.get(page, ""))
                print(f"warm-up visit: {page or 'home'} {warm.quantile(0):.1f} s"
                      + (f" errors: {warm.errors[:1]}" if warm.errors else ""), flush=True)
        results = []
        for page in pages:
            bare_burst = burst("bare", bare_port, bare.pid, BARE_PAGE, a.n, a.stagger)
            app_burst = burst(page, app_port, app.pid, page, a.n, a.stagger, EXPECT.get(page, ""))
            results.append((page, bare_burst, app_burst))
            print(table_rows([results[-1]])[-1], flush=True)
        print("\n".join(table_rows(results)))
        bare_pings = [b.worst_ping for _, b, _ in results]
        print(f"bare app: worst ping {max(bare_pings):.2f} s, p95s "
              + ", ".join(f"{b.quantile(0.95):.1f}" for _, b, _ in results)
              + f" s; load average now {os.getloadavg()[0]:.1f}")
    finally:
        for proc in (bare, app):
            proc.terminate()
        for proc in (bare, app):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
