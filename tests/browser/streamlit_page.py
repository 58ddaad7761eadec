"""Driving a Streamlit page in Playwright: act as a user, wait for the run to finish, catch exceptions.

AppTest runs scripts without a browser; these helpers work on what a student's browser shows.
Every action that makes Streamlit rerun goes through :func:`rerun_after`, which waits for the run
it started (seen by a MutationObserver, however short) and then for the page to settle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable
from urllib.parse import urljoin

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect
except ImportError:  # the fixtures in conftest.py say what to install
    expect = PlaywrightTimeout = None

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Locator, Page

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

# Counts the runs that start from now on, even one shorter than a polling interval.
_WATCH_RUNS_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  window.__cvdemoRuns = 0;
  if (window.__cvdemoWatch) window.__cvdemoWatch.disconnect();
  window.__cvdemoWatch = new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'running') window.__cvdemoRuns += 1;
  });
  window.__cvdemoWatch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""

# Settling: the page must stay idle for QUIET_MS in a row. Sampled every POLL_MS in the page, and a
# MutationObserver stamps every start of a run, so a run shorter than a sample still restarts the wait.
_SETTLED_JS = """([quietMs, reset]) => {
  const busy = (%s)();
  const now = performance.now();
  const app = document.querySelector('[data-testid="stApp"]');
  if (app && window.__cvdemoBusyApp !== app) {
    if (window.__cvdemoBusyWatch) window.__cvdemoBusyWatch.disconnect();
    window.__cvdemoBusyApp = app;
    window.__cvdemoBusyWatch = new MutationObserver(() => {
      if (app.getAttribute('data-test-script-state') === 'running') window.__cvdemoLastBusy = performance.now();
    });
    window.__cvdemoBusyWatch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  }
  if (reset || busy || window.__cvdemoLastBusy === undefined) window.__cvdemoLastBusy = now;
  return !busy && now - window.__cvdemoLastBusy >= quietMs;
}""" % _BUSY_JS

EXCEPTION = '[data-testid="stException"]'
RUN_TIMEOUT = 240.0  # seconds a single run may take on a loaded 2-core machine (first model loads, exports)
QUIET_MS = 500  # idle this long in a row = settled (a widget's follow-up rerun starts well within it)
POLL_MS = 50


def settle(page: Page, timeout: float = RUN_TIMEOUT, quiet_ms: int = QUIET_MS) -> None:
    """Wait until Streamlit is idle: not running, no spinner or skeleton, for ``quiet_ms`` in a row; no exception."""
    page.evaluate(_SETTLED_JS, [quiet_ms, True])  # the quiet time counts from now
    try:
        page.wait_for_function(_SETTLED_JS, arg=[quiet_ms, False], polling=POLL_MS, timeout=timeout * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"the page was still busy ({page.evaluate(_BUSY_JS)}) after {timeout:.0f} s") from None
    assert_no_exception(page)


def rerun_after(
    page: Page, action: Callable[[], object], timeout: float = RUN_TIMEOUT, changed: Callable[[], bool] | None = None
) -> None:
    """Do ``action`` (a click, a key), wait for the run it starts to begin, then for the page to settle.

    ``changed`` says after the action whether it changed anything; when not, no run is awaited.
    """
    page.evaluate(_WATCH_RUNS_JS)
    action()
    if changed is None or changed():
        try:
            page.wait_for_function("() => window.__cvdemoRuns > 0", timeout=10_000)
        except PlaywrightTimeout:
            pass  # nothing reran (e.g. opening an expander): settling still checks the page
    settle(page, timeout)


def assert_no_exception(page: Page) -> None:
    """No Streamlit exception box anywhere on the page (the redacted "error" element included)."""
    boxes = page.locator(EXCEPTION)
    if boxes.count():
        raise AssertionError(f"the page shows an exception: {boxes.first.inner_text()[:500]!r} on {page.url}")


def open_page(page: Page, base_url: str, path: str = "", timeout: float = RUN_TIMEOUT) -> None:
    """Load a page by its URL (a new Streamlit session) and wait for its first run to finish."""
    page.goto(f"{base_url}/{path}", wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stApp"]')
    settle(page, timeout)


def main(page: Page) -> Locator:
    """The page's own content (not the sidebar)."""
    return page.locator('[data-testid="stMain"]')


def click(page: Page, target: Locator, timeout: float = RUN_TIMEOUT) -> None:
    rerun_after(page, target.click, timeout)


def choose(page: Page, group: str, option: str, timeout: float = RUN_TIMEOUT) -> None:
    """Pick ``option`` of the radio group labelled ``group``, as a user clicks its text."""
    click(page, main(page).get_by_role("radiogroup", name=group).get_by_text(option, exact=True), timeout)


def set_slider(page: Page, label: str, key: str, presses: int = 0, timeout: float = RUN_TIMEOUT) -> None:
    """Move the slider labelled ``label`` with the keyboard: ``key`` ("Home" / "End"), then ArrowRight x presses."""
    thumb = main(page).locator('[data-testid="stSlider"]').filter(has_text=label).get_by_role("slider").first

    def move() -> None:
        thumb.focus()
        thumb.press(key)
        for _ in range(presses):
            thumb.press("ArrowRight")
        page.keyboard.press("Tab")  # leave the slider: Streamlit sends the value on release

    before = slider_value(page, label)
    rerun_after(page, move, timeout, changed=lambda: slider_value(page, label) != before)  # already there: no run


def slider_value(page: Page, label: str) -> str:
    """The value a slider shows (its range input's value)."""
    return main(page).locator('[data-testid="stSlider"]').filter(has_text=label).get_by_role("slider").first.input_value()


def type_text(page: Page, field: Locator, text: str, submit: str = "Enter", timeout: float = RUN_TIMEOUT) -> None:
    """Replace a text field's content and submit it (Enter; Control+Enter for a text area)."""
    field.fill(text)
    rerun_after(page, lambda: field.press(submit), timeout)


def upload(page: Page, files: list[Path], uploader: str | None = None, timeout: float = RUN_TIMEOUT) -> None:
    """Choose ``files`` in the browser's file chooser, opened by the uploader's own button."""
    zones = main(page).get_by_test_id("stFileUploader")
    zone = zones.filter(has_text=uploader) if uploader else zones.first
    with page.expect_file_chooser() as chooser:
        zone.get_by_role("button", name="Upload", exact=True).click()
    rerun_after(page, lambda: chooser.value.set_files(files), timeout)


def image_with_caption(page: Page, caption: object) -> Locator:
    """The ``<img>`` of the st.image whose caption matches (a string or a compiled pattern)."""
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
    with open(info.value.path(), "rb") as handle:
        return handle.read()


def start_shared_demo(page: Page, timeout: float = RUN_TIMEOUT) -> Locator:
    """Open the page's "Share this demo" expander and start the demo: the expander (links, captions, iframe)."""
    section = main(page).get_by_test_id("stExpander").filter(has_text="Share this demo")
    section.get_by_text("Share this demo").click()
    click(page, section.get_by_text("Start the shareable demo"), timeout)
    # starting a Gradio server (and the demo's first model) can take a while on a loaded 2-core machine
    expect(section.locator('[data-testid="stIFrame"]')).to_be_visible(timeout=timeout * 1000)
    return section
