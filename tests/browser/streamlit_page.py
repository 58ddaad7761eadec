"""Driving a Streamlit page in Playwright: wait for a run to finish, find widgets, catch exceptions.

AppTest runs scripts without a browser; these helpers work on what a student's browser shows.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urljoin

from typing import TYPE_CHECKING

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures in conftest.py say what to install
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import FrameLocator, Locator, Page

# Streamlit's front end marks its root with the script's state ("running", "notRunning", ...) and
# the websocket's; a run is over when it is connected, not running, and nothing is loading.
_BUSY_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return 'no app';
  if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return 'connecting';
  const state = app.getAttribute('data-test-script-state');
  if (state !== 'notRunning') return 'script ' + state;
  for (const id of ['stSpinner', 'stSkeleton', 'stStatusWidget']) {
    if (document.querySelector(`[data-testid="${id}"]`)) return id;
  }
  return '';
}"""

EXCEPTION = '[data-testid="stException"]'


def settle(page: Page, timeout: float = 240, quiet_checks: int = 4, interval_ms: int = 250) -> None:
    """Wait until Streamlit's run has finished: not running, no spinner or skeleton, several checks in a row.

    A click starts a rerun a few milliseconds later, so one idle look is not enough; a run that
    starts within ``quiet_checks * interval_ms`` is caught and waited for.
    """
    deadline = time.monotonic() + timeout
    quiet, busy = 0, ""
    while quiet < quiet_checks:
        if time.monotonic() > deadline:
            raise AssertionError(f"the page was still busy ({busy}) after {timeout:.0f} s")
        busy = page.evaluate(_BUSY_JS)
        quiet = 0 if busy else quiet + 1
        page.wait_for_timeout(interval_ms)
    assert_no_exception(page)


def assert_no_exception(page: Page) -> None:
    """No Streamlit exception box anywhere on the page (the redacted "error" element included)."""
    boxes = page.locator(EXCEPTION)
    if boxes.count():
        raise AssertionError(f"the page shows an exception: {boxes.first.inner_text()[:500]!r} on {page.url}")


def open_page(page: Page, base_url: str, path: str = "", timeout: float = 240) -> None:
    page.goto(f"{base_url}/{path}", wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stApp"]')
    settle(page, timeout)


def main(page: Page) -> Locator:
    """The page's own content (not the sidebar)."""
    return page.locator('[data-testid="stMain"]')


def click_and_settle(target: Locator, page: Page, timeout: float = 240) -> None:
    target.click()
    settle(page, timeout)


def set_slider(page: Page, label: str, key: str, presses: int = 0, timeout: float = 240) -> None:
    """Move the slider labelled ``label`` with the keyboard: ``key`` ("Home" / "End"), then ArrowRight x presses."""
    widget = main(page).locator('[data-testid="stSlider"]').filter(has_text=label)
    thumb = widget.get_by_role("slider").first
    thumb.focus()
    thumb.press(key)
    for _ in range(presses):
        thumb.press("ArrowRight")
    page.keyboard.press("Tab")  # leave the slider: Streamlit sends the value on release
    settle(page, timeout)


def slider_value(page: Page, label: str) -> str:
    """The value a slider shows (its range input's value)."""
    return main(page).locator('[data-testid="stSlider"]').filter(has_text=label).get_by_role("slider").first.input_value()


def choose(page: Page, group: str, option: str, timeout: float = 240) -> None:
    """Pick ``option`` of the radio group labelled ``group``, as a user clicks its text."""
    main(page).get_by_role("radiogroup", name=group).get_by_text(option, exact=True).click()
    settle(page, timeout)


def upload(page: Page, files: list, uploader: str | None = None, timeout: float = 240) -> None:
    """Choose ``files`` in the browser's file chooser, opened by the uploader's own button."""
    zones = main(page).get_by_test_id("stFileUploader")
    zone = zones.filter(has_text=uploader) if uploader else zones.first
    with page.expect_file_chooser() as chooser:
        zone.get_by_role("button", name="Upload", exact=True).click()
    chooser.value.set_files(files)
    settle(page, timeout)


def image_with_caption(page: Page, caption: str | re.Pattern) -> Locator:
    """The ``<img>`` of the st.image whose caption matches."""
    holder = main(page).locator('[data-testid="stImage"]').filter(
        has=page.locator('[data-testid="stImageCaption"]', has_text=caption)
    )
    return holder.locator("img").first


def expect_loaded(image: Locator, timeout: float = 30_000) -> None:
    """The image was delivered and decoded by the browser (not just an empty ``<img>`` tag)."""
    expect(image).to_be_visible(timeout=timeout)
    image.evaluate("img => img.decode()")
    assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the image did not load"


def image_bytes(page: Page, image: Locator) -> bytes:
    """The image file the browser shows, fetched again with the page's own session."""
    src = image.get_attribute("src")
    assert src, "the image has no src"
    response = page.request.get(urljoin(page.url, src))
    assert response.ok, f"GET {src} -> {response.status}"
    return response.body()


def download(page: Page, button_label: str) -> bytes:
    """Click a download button and return the file the browser received."""
    button = main(page).locator('[data-testid="stDownloadButton"]').filter(has_text=button_label).first
    with page.expect_download() as info:
        button.click()
    path = info.value.path()
    with open(path, "rb") as handle:
        return handle.read()


def frame_of(page: Page, selector: str = '[data-testid="stIFrame"]') -> FrameLocator:
    return page.frame_locator(selector)


def start_shared_demo(page: Page, timeout: float = 240) -> Locator:
    """Open the page's "Share this demo" expander, start the demo; the expander (links, captions, iframe)."""
    section = main(page).get_by_test_id("stExpander").filter(has_text="Share this demo")
    section.get_by_text("Share this demo").click()
    section.get_by_text("Start the shareable demo").click()
    settle(page, timeout)
    expect(section.locator('[data-testid="stIFrame"]')).to_be_visible()
    return section
