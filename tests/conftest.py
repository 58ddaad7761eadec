"""Test defaults: real weights and data from ../shared, no network, small thread count."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# OpenMP threads sleep instead of spinning while they wait: the suite runs Gradio servers and
# subprocesses beside torch on 2 cores, where spinning made training several times slower.
# (Not set for the app: on an idle CPU spinning halves PyTorch's batch-1 latency.) Before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Point at the classroom folders unless the caller chose others (CI sets them explicitly).
os.environ.setdefault("CVDEMO_WEIGHTS_DIR", str(SHARED / "weights"))
os.environ.setdefault("CVDEMO_DATA_DIR", str(SHARED / "data"))
os.environ.setdefault("CVDEMO_OFFLINE", "1")
# Tests never write into the user's cache (CLIP gallery indexes, downloads).
os.environ.setdefault("CVDEMO_CACHE_DIR", tempfile.mkdtemp(prefix="cvdemo-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")


@pytest.fixture(scope="session", autouse=True)
def _scan_streamlit_components_once():
    """Every new AppTest rescans all installed packages' metadata for Streamlit components (1-2 s on
    2 cores, for each of the ~120 AppTests here); the installed packages do not change during a
    session, so scan once and hand every AppTest the same answer."""
    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # another Streamlit: nothing to share
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest_scanner, "scan_component_manifests", functools.cache(manifest_scanner.scan_component_manifests))
        yield


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return Path(os.environ["CVDEMO_WEIGHTS_DIR"])


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(os.environ["CVDEMO_DATA_DIR"])


@pytest.fixture(scope="session")
def bus_jpg() -> Path:
    from cvdemo.datasets import packaged_images

    return packaged_images()["bus.jpg"]


def open_page(page: str, timeout: float = 240):
    """An AppTest of the real app (app.py's navigation and sidebar) switched to ``page``, run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout)
    # Straight to the page: app.py still builds st.navigation and the sidebar, without a Home run first
    # (the pages' URL paths are their file names, so AppTest finds them before a first run).
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def set_runtime(at, choice: str) -> None:
    """Flip the sidebar's "PyTorch / Accelerated" switch and rerun.

    AppTest does not list app.py's sidebar widgets after switch_page, so set its state by key.
    """
    at.session_state["cvdemo_runtime"] = choice
    at.run()
    assert not at.exception, at.exception
