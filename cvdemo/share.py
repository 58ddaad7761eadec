"""Shareable Gradio demos: one ``gr.Blocks`` per capability, launched or embedded.

The demos live in :mod:`cvdemo.demos` (one module per capability, each ``build() -> gr.Blocks``)
and call the same ``cvdemo`` functions as the Streamlit pages. This module builds them by name,
bundles them in a ``gr.TabbedInterface``, starts each at most once per process on a free port
(for the pages' "Share this demo" section), and mounts them all under one path for a
Hugging Face Space, where only one port is public.

Command line::

    python -m cvdemo.share [NAME] [--share] [--port N]
    python -m cvdemo.share all --mount /gradio --port 7861    # the Space's Gradio process
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

DEMOS: dict[str, str] = {
    "detection": "Detection",
    "segmentation": "Segmentation",
    "fewshot": "Few-shot kNN",
    "clip": "CLIP",
    "architectures": "Architectures",
    "compression": "Compression",
}
NAMES = (*DEMOS, "all")

# Where a Space (or any reverse proxy) serves the mounted demos, e.g. "/gradio": pages then
# embed "<that>/<name>/" from the same public origin instead of starting a local server.
PUBLIC_BASE_ENV = "CVDEMO_GRADIO_BASE_URL"
HOST_ENV = "CVDEMO_SHARE_HOST"

# A classroom tool should not phone home (and offline machines would only wait on it).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


class ShareError(RuntimeError):
    """A demo could not be built or started; the message says why."""


def build_demo(name: str) -> "gr.Blocks":
    """The Blocks demo for ``name`` (one of :data:`NAMES`); ``all`` bundles every demo in tabs."""
    if name == "all":
        import gradio as gr

        demos = [build_demo(n) for n in DEMOS]
        return gr.TabbedInterface(demos, list(DEMOS.values()), title="cvdemo: computer vision, live")
    if name not in DEMOS:
        raise ShareError(f"Unknown demo '{name}'. Choose one of: {', '.join(NAMES)}.")
    module = importlib.import_module(f"cvdemo.demos.{name}")
    return module.build()


@dataclass
class RunningDemo:
    name: str
    local_url: str
    share_url: str | None = None
    share_note: str = ""  # why there is no public link, when asked for one
    blocks: object | None = None

    @property
    def port(self) -> int:
        return int(self.local_url.rstrip("/").rsplit(":", 1)[1])


_running: dict[str, RunningDemo] = {}
_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def share_link_possible(timeout: float = 2.0) -> tuple[bool, str]:
    """Whether Gradio's public-link service is reachable, and a sentence saying why not."""
    for host in ("api.gradio.app",):
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                return True, ""
        except OSError:
            continue
    return False, (
        "A public link needs Gradio's share service on the internet, which this machine cannot reach; "
        "the demo runs on the local address only. Deploy to Hugging Face Spaces for a permanent link."
    )


def serve(name: str, share: bool = False, host: str | None = None, port: int | None = None) -> RunningDemo:
    """Start demo ``name`` once per process (later calls return the running one)."""
    with _lock:
        running = _running.get(name)
        if running is not None:
            return running
        host = host or os.environ.get(HOST_ENV, "127.0.0.1")
        blocks = build_demo(name)
        note = ""
        if share:
            share, note = share_link_possible()
        _, local_url, share_url = blocks.launch(
            server_name=host,
            server_port=port or free_port(host),
            share=share,
            prevent_thread_lock=True,
            quiet=True,
            show_error=True,
            ssr_mode=False,
        )
        running = RunningDemo(name, local_url, share_url, note, blocks)
        _running[name] = running
        return running


def stop_all() -> None:
    with _lock:
        for running in _running.values():
            try:
                running.blocks.close()  # type: ignore[union-attr]
            except Exception:
                pass
        _running.clear()


def embed_url(name: str, browser_host: str | None = None) -> tuple[str, RunningDemo | None]:
    """The URL a browser should load for demo ``name``, and the local server if one was started.

    Behind a proxy (``$CVDEMO_GRADIO_BASE_URL`` set, as on Spaces) the demo is already mounted
    at ``<base>/<name>/``. Otherwise a local server starts; ``browser_host`` (the host name the
    browser used to reach the app) replaces the bind address so a classroom LAN works too.
    """
    base = os.environ.get(PUBLIC_BASE_ENV, "").rstrip("/")
    if base:
        return f"{base}/{name}/", None
    running = serve(name)
    url = running.local_url
    if browser_host and os.environ.get(HOST_ENV) == "0.0.0.0":
        url = f"http://{browser_host}:{running.port}/"
    return url, running


def mount_all(prefix: str = "/gradio"):
    """A FastAPI app serving every demo at ``<prefix>/<name>/`` (one process, one port)."""
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    app = FastAPI(title="cvdemo demos")
    for name in NAMES:
        # root_path: behind a proxy Gradio builds file URLs from X-Forwarded-Host and would drop the mount path.
        path = f"{prefix}/{name}"
        app = gr.mount_gradio_app(app, build_demo(name), path=path, root_path=path, ssr_mode=False)

    @app.get(prefix or "/")
    def index() -> RedirectResponse:
        return RedirectResponse(f"{prefix}/all/")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvdemo.share", description="Launch cvdemo's Gradio demos.")
    parser.add_argument("name", nargs="?", default="all", choices=NAMES)
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link (needs internet)")
    parser.add_argument("--host", default=os.environ.get(HOST_ENV, "127.0.0.1"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--mount", metavar="PREFIX", help="serve every demo under PREFIX/<name>/ (for Spaces)")
    args = parser.parse_args(argv)
    if args.mount:
        import uvicorn

        uvicorn.run(mount_all(args.mount.rstrip("/")), host=args.host, port=args.port or 7861, log_level="warning")
        return 0
    share, note = share_link_possible() if args.share else (False, "")
    if note:
        print(note)
    build_demo(args.name).launch(server_name=args.host, server_port=args.port, share=share, ssr_mode=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
