"""The app shell: Home and every page render through st.navigation without an exception."""

from __future__ import annotations

import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO
from cvdemo.catalog import PAGES


def _app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=240)


def test_home_shows_a_card_per_page():
    at = _app().run()
    assert not at.exception
    assert at.title[0].value.startswith("cvdemo")
    text = " ".join(m.value for m in at.markdown)
    for page in PAGES:
        assert page.lesson in text
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "CPU cores" in sidebar and "server memory" in sidebar


@pytest.mark.parametrize("page", [p.path for p in PAGES])
def test_every_page_renders(page):
    at = _app().run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.title, f"{page} shows no title"


def test_light_imports_stay_light():
    """Home must not pay for torch: the shell modules import no heavy library."""
    code = (
        "import sys, cvdemo.ui, cvdemo.weights, cvdemo.images, cvdemo.datasets, cvdemo.catalog;"
        "cvdemo.datasets.sample_images(); cvdemo.weights.status_rows();"
        "heavy = [m for m in ('torch', 'ultralytics', 'open_clip', 'timm') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at start-up: {out.stdout}"


def test_ultralytics_does_not_pin_torch_to_one_thread():
    """ultralytics sets OMP_NUM_THREADS=1 and torch threads to cpu_count-1 unless told otherwise."""
    code = (
        "import os; os.environ.pop('OMP_NUM_THREADS', None);"
        "from cvdemo.detection import Detector; from cvdemo.datasets import packaged_images;"
        "Detector('yolov8n').detect(packaged_images()['bus.jpg']);"
        "import torch; print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    threads = int(out.stdout.strip().splitlines()[-1])
    assert threads == torch_default_threads(), out.stdout


def torch_default_threads() -> int:
    code = "import os; os.environ.pop('OMP_NUM_THREADS', None); import torch; print(torch.get_num_threads())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
