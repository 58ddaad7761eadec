"""A student on another machine: open a page's "Share this demo" and use the embedded demo.

Run inside a network namespace by test_share_network.py (``ip netns exec NS python -m
browser.student_elsewhere URL``), so the lecturer's loopback is not this browser's loopback.
Prints one JSON line: what the page embedded and whether the demo answered inside it.
"""

from __future__ import annotations

import json
import re
import sys

from browser.conftest import CHROMIUM_ARGS, chromium_executable
from browser.streamlit_page import expect, open_page, start_shared_demo


def visit(page_url: str) -> dict:
    from playwright.sync_api import sync_playwright

    base, path = page_url.rsplit("/", 1)
    report: dict = {"page": page_url}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            open_page(page, base, path)
            section = start_shared_demo(page)
            report["iframe"] = section.locator('[data-testid="stIFrame"]').get_attribute("src")
            report["links"] = section.get_by_test_id("stCode").all_inner_texts()
            report["captions"] = section.get_by_test_id("stCaptionContainer").all_inner_texts()
            demo = page.frame_locator('[data-testid="stIFrame"]')
            demo.get_by_label("Typed network", exact=True).check(timeout=120_000)
            demo.get_by_role("button", name="Count").click()
            heading = demo.get_by_role("heading", name=re.compile(r"at 3×32×32"))
            expect(heading).to_be_visible(timeout=60_000)
            report["answer"] = heading.inner_text()
        except Exception as exc:  # reported, so the test shows what the student saw
            report["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        finally:
            page.screenshot(path=sys.argv[2]) if len(sys.argv) > 2 else None
            browser.close()
    return report


if __name__ == "__main__":
    print(json.dumps(visit(sys.argv[1])))
