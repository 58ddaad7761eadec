"""Fixtures for the browser journeys: the real app (``streamlit run app.py``) once per session, Chromium.

Needs the ``playwright`` Python package (requirements.txt) and a Chromium: Debian's
``/usr/bin/chromium`` (``apt-get install chromium``), ``$CVDEMO_CHROMIUM``, or Playwright's own
(``python -m playwright install chromium``). Without them the journeys are skipped, and fail
instead when ``CVDEMO_REQUIRE_BROWSER=1`` (as ``.ci/run`` sets): CI must not pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "CVDEMO_REQUIRE_BROWSER"
CHROMIUM_ENV = "CVDEMO_CHROMIUM"
SHOTS_ENV = "CVDEMO_BROWSER_SHOTS"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    "install the browser tests' needs: `pip install -r requirements.txt` (the playwright package) and "
    "`apt-get install chromium` (or set CVDEMO_CHROMIUM to a Chromium binary, or run "
    "`python -m playwright install chromium`)"
)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: a journey in headless Chromium against `streamlit run app.py`")


def unavailable(reason: str) -> None:
    """Skip with what to install, or fail when the browser tests are required (CI)."""
    message = f"Browser journeys cannot run: {reason}. To run them, {INSTALL_HINT}."
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1: they are required here.)", pytrace=False)
    pytest.skip(message)


def chromium_executable() -> str | None:
    """Debian's Chromium (or $CVDEMO_CHROMIUM); None lets Playwright use its own download, if any."""
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        return chosen if Path(chosen).exists() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def playwright_driver():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the `playwright` Python package is not installed")
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)  # a page's first run loads models; waits for a run's end use settle()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver):
    executable = chromium_executable()
    if executable is None:
        chosen = os.environ.get(CHROMIUM_ENV)
        if chosen:
            unavailable(f"{CHROMIUM_ENV}={chosen} does not exist")
        if not Path(playwright_driver.chromium.executable_path).exists():
            unavailable("no Chromium found (/usr/bin/chromium is missing)")
    try:
        launched = playwright_driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception as exc:
        unavailable(f"Chromium ({executable or 'Playwright build'}) did not start: {str(exc).splitlines()[0]}")
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def app_url(browser, tmp_path_factory):
    """``streamlit run app.py`` on a free port, as a user starts it (every interface), with the test environment.

    tests/conftest.py already put the classroom weights/data, offline mode and a temporary cache
    into os.environ; the server inherits them. Started after the browser, so a missing browser
    costs no server start.
    """
    port = free_port()
    env = dict(os.environ)
    env.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("yolo-config")))
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            pytest.fail(f"streamlit run app.py exited with {server.returncode}:\n{log_tail()}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"streamlit run app.py did not answer within 180 s:\n{log_tail()}", pytrace=False)
        time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="package")
def app_port(app_url) -> int:
    return int(app_url.rsplit(":", 1)[1])


@pytest.fixture(scope="package")
def shots_dir(tmp_path_factory) -> Path:
    """Where each journey leaves a screenshot of what the browser saw last ($CVDEMO_BROWSER_SHOTS to keep them)."""
    chosen = os.environ.get(SHOTS_ENV)
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return Path(chosen)
    return tmp_path_factory.mktemp("browser-shots")


@pytest.fixture
def page(browser, app_url, shots_dir, request):
    """A fresh browser tab, so a fresh Streamlit session; screenshotted when the journey ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    yield tab
    try:
        screenshot_whole_page(tab, shots_dir / f"{request.node.name}.png")
    finally:
        context.close()


def screenshot_whole_page(tab, path: Path) -> None:
    """Streamlit scrolls inside its main block, not the document: grow the viewport to fit it first."""
    try:
        height = tab.evaluate(
            "() => { const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 1000; }"
        )
        tab.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 100, 8000))})
        tab.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")  # laid out
        tab.screenshot(path=str(path))
    except Exception:  # a screenshot is for people; never the reason a journey fails
        pass


@pytest.fixture(scope="package")
def samples_dir() -> Path:
    """Files to upload: a real photo and a text file that pretends to be nothing."""
    from cvdemo.datasets import packaged_images

    folder = Path(tempfile.mkdtemp(prefix="cvdemo-uploads-"))
    shutil.copy(packaged_images()["bus.jpg"], folder / "bus.jpg")
    (folder / "lecture notes.txt").write_text("Not a picture: the slides are on the course page.\n")
    return folder
