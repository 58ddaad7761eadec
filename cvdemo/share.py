"""Shareable Gradio demos: one ``gr.Blocks`` per capability, launched or embedded.

The demos live in :mod:`cvdemo.demos` (one module per capability, each ``build() -> gr.Blocks``)
and call the same ``cvdemo`` functions as the Streamlit pages. This module builds them by name,
bundles them in a ``gr.TabbedInterface``, starts each at most once per process on a free port
(for the pages' "Share this demo" section: on the interfaces the app itself serves, embedded
under the host name the browser used, so students on the classroom network reach it), and mounts
them all under one path for a Hugging Face Space, where only one port is public.

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
from urllib.parse import SplitResult, urljoin, urlsplit

from cvdemo.errors import CvdemoError

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


class ShareError(CvdemoError, RuntimeError):
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
    host: str = "127.0.0.1"  # the interface it listens on

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


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
ALL_INTERFACES = "0.0.0.0"


def is_loopback(host: str | None) -> bool:
    return bool(host) and (host in LOOPBACK_NAMES or host.startswith("127."))


def bind_host(app_address: str | None = None) -> str:
    """The interface the demo servers listen on: ``$CVDEMO_SHARE_HOST``, else the one the app serves.

    ``app_address`` is Streamlit's ``server.address`` (None when unset: Streamlit then serves every
    interface). The demos offer nothing the app does not, so they are exactly as reachable as the
    app: every interface for a default ``streamlit run``, loopback for an app kept on loopback.
    """
    explicit = os.environ.get(HOST_ENV, "").strip()
    if explicit:
        return explicit
    if not app_address or app_address in ("0.0.0.0", "::"):
        return ALL_INTERFACES
    if app_address.startswith("unix://") or is_loopback(app_address):
        return "127.0.0.1"  # a unix socket sits behind a proxy on this machine
    return app_address


def lan_address() -> str | None:
    """This machine's address on its local network (the one Streamlit's "Network URL" shows), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it only picks the route
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if is_loopback(address) or address == "0.0.0.0" else address


def serve(name: str, share: bool = False, host: str | None = None, port: int | None = None) -> RunningDemo:
    """Start demo ``name`` once per process (later calls return the running one)."""
    with _lock:
        running = _running.get(name)
        if running is not None:
            return running
        host = host or bind_host()
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
        running = RunningDemo(name, local_url, share_url, note, blocks, host)
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


@dataclass(frozen=True)
class Embed:
    """Where a page's "Share this demo" points, and who else can open it."""

    url: str  # what the page's iframe loads, as seen from the browser that opened the page
    student_url: str | None  # the link to hand out; None when no other machine can open it
    audience: str  # one sentence: who can open the link, and what to change if nobody else can
    running: RunningDemo | None = None  # the local server, unless a proxy serves the demos
    warnings: tuple[str, ...] = ()  # why the embedded demo may not load in this browser


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def embed(
    name: str,
    page_url: str | None = None,
    app_address: str | None = None,
    app_port: int | None = None,
) -> Embed:
    """Where the page for demo ``name`` should embed it, for the browser that opened ``page_url``.

    Behind a proxy (``$CVDEMO_GRADIO_BASE_URL`` set, as on Spaces) the demo is mounted at
    ``<base>/<name>/`` on the page's own origin: whoever opens the app opens the demo. Otherwise the
    demo server starts on the interface the app serves (:func:`bind_host`) and the iframe uses the
    host name the browser used for the app, so a student who opened the Network URL gets the demo
    from the lecturer's machine, not from their own. ``app_address`` / ``app_port`` are Streamlit's
    ``server.address`` / ``server.port``.
    """
    base = os.environ.get(PUBLIC_BASE_ENV, "").rstrip("/")
    if base:
        url = f"{base}/{name}/"
        absolute = urljoin(page_url, url) if page_url else url
        return Embed(url, absolute, "Anyone who can open this app can open this link: the same site serves it.")

    running = serve(name, host=bind_host(app_address))
    page = urlsplit(page_url) if page_url else None
    browser_host = page.hostname if page else None
    everywhere = running.host == ALL_INTERFACES
    if browser_host and (everywhere or running.host == browser_host):
        url = f"http://{_url_host(browser_host)}:{running.port}/"
    else:  # no browser address known (or not one the demo listens on): the demo's own address
        url = f"http://{'127.0.0.1' if everywhere else _url_host(running.host)}:{running.port}/"
    warnings = _embed_warnings(page, browser_host, everywhere, running.port, app_port)

    if is_loopback(running.host):
        audience = (
            f"Only this computer can open it: the demo listens on {running.host}, like the app. For students, "
            f"start Streamlit without `--server.address` (then the app and the demos serve the network) or set "
            f"`{HOST_ENV}=0.0.0.0`."
        )
        return Embed(url, None, audience, running, warnings)
    if browser_host and not is_loopback(browser_host):
        student_url: str | None = url  # this browser already came over the network
    else:  # the lecturer opened the app on this machine: hand out its network address instead
        lan = lan_address() if everywhere else running.host
        student_url = f"http://{_url_host(lan)}:{running.port}/" if lan else None
    if student_url is None:
        audience = "This computer has no network address right now, so only it can open the demo."
    else:
        audience = (
            "Anyone who can reach this computer, such as students on the same network, can open it: like the app, "
            f"the demo listens on every network interface (port {running.port}; a firewall must let it through "
            f"as it does the app's port{f' {app_port}' if app_port else ''})."
            if everywhere
            else f"Anyone who can reach {running.host}, such as students on the same network, can open it."
        )
    return Embed(url, student_url, audience, running, warnings)


def _embed_warnings(
    page: SplitResult | None, browser_host: str | None, everywhere: bool, demo_port: int, app_port: int | None
) -> tuple[str, ...]:
    """Why the embedded demo may not load in the browser that opened ``page`` (a urlsplit result)."""
    if page is None:
        return ()
    proxy_fix = f"serve the demos through the proxy instead (`deploy/nginx.conf`, `{PUBLIC_BASE_ENV}`)"
    warnings = []
    if browser_host and ":" in browser_host and everywhere:
        warnings.append(
            "You opened this app by an IPv6 address; the demo server listens on IPv4 only, so open the app by "
            "its IPv4 address or host name to see the demo here."
        )
    if page.scheme == "https":
        warnings.append(
            "This page came over HTTPS but the demo server speaks plain HTTP, so browsers will not show it "
            f"inside the page: {proxy_fix}."
        )
    elif app_port and (page.port or 80) != app_port:
        warnings.append(
            f"You reached this app through a proxy or a forwarded port ({page.port or 80}; the app listens on "
            f"{app_port}), which may not forward the demo's port {demo_port}: if the demo stays blank, {proxy_fix}."
        )
    return tuple(warnings)


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
    parser.add_argument("--host", default=os.environ.get(HOST_ENV, "127.0.0.1"),
                        help=f"interface to listen on (default ${HOST_ENV} or 127.0.0.1; 0.0.0.0 = the whole network)")
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
