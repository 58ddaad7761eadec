"""Issue 19: "Share this demo" reaches a browser on another machine, not only the lecturer's.

The app is opened from a non-loopback address: this machine's network address (any user), and
a browser in its own network namespace joined by a veth pair (root only: a second machine as far
as the network stack is concerned; its 127.0.0.1 is not the server's).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from cvdemo import share

from .conftest import REPO
from .streamlit_page import expect, open_page, start_shared_demo

pytestmark = pytest.mark.browser


def test_share_link_answers_on_the_network_address(page, app_port):
    """Opened by the Network URL, the page embeds the demo at that same address, and it answers there."""
    address = share.lan_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    open_page(page, f"http://{address}:{app_port}", "architectures")
    section = start_shared_demo(page)
    src = section.locator('[data-testid="stIFrame"]').get_attribute("src")
    links = section.get_by_test_id("stCode").all_inner_texts()
    assert re.fullmatch(rf"http://{re.escape(address)}:\d+/", src), src
    assert links == [src], links  # the link for students is the one this browser uses
    with urllib.request.urlopen(src, timeout=30) as response:
        assert response.status == 200 and b"gradio" in response.read().lower()
    demo = page.frame_locator('[data-testid="stIFrame"]')
    demo.get_by_label("Typed network", exact=True).check(timeout=120_000)
    demo.get_by_role("button", name="Count").click()
    expect(demo.get_by_role("heading", name=re.compile(r"at 3×32×32"))).to_be_visible(timeout=60_000)


@pytest.fixture
def other_machine():
    """A network namespace joined to this one by a veth pair: (its name, the server's address on the link)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("a network namespace needs root (this test runs as root in CI)")
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("the `ip` tool (iproute2) is missing")
    pid = os.getpid()
    namespace, here, there = f"cvdemo-test-{pid}", f"cvd{pid % 10**7}h", f"cvd{pid % 10**7}n"
    octet, block = (pid >> 6) & 255, (pid & 63) * 4
    server, student = f"10.231.{octet}.{block + 1}", f"10.231.{octet}.{block + 2}"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([ip, *args], capture_output=True, text=True)

    created = run("netns", "add", namespace)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {created.stderr.strip()}")
    try:
        steps = [
            ("link", "add", here, "type", "veth", "peer", "name", there),
            ("link", "set", there, "netns", namespace),
            ("addr", "add", f"{server}/30", "dev", here),
            ("link", "set", here, "up"),
            ("-n", namespace, "addr", "add", f"{student}/30", "dev", there),
            ("-n", namespace, "link", "set", there, "up"),
            ("-n", namespace, "link", "set", "lo", "up"),
        ]
        for step in steps:
            done = run(*step)
            if done.returncode != 0:
                pytest.skip(f"cannot wire the namespace (ip {' '.join(step)}): {done.stderr.strip()}")
        yield namespace, server
    finally:
        run("netns", "del", namespace)
        run("link", "del", here)


def in_namespace(namespace: str, *command: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *command],
        capture_output=True, text=True, timeout=timeout, cwd=REPO / "tests",
    )


def test_a_student_on_another_machine_gets_the_demo(other_machine, app_port, shots_dir, browser):
    namespace, server = other_machine
    # The student's machine really is another one: the server's loopback is not reachable from it.
    probe = in_namespace(namespace, sys.executable, "-c",
                         f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{app_port}/', timeout=5)")
    assert probe.returncode != 0, "the namespace reaches the server's loopback: not another machine"

    visit = in_namespace(namespace, sys.executable, "-m", "browser.student_elsewhere",
                         f"http://{server}:{app_port}/architectures", str(shots_dir / "student_elsewhere.png"))
    assert visit.returncode == 0, visit.stderr[-3000:]
    report = json.loads(visit.stdout.strip().splitlines()[-1])
    assert report.get("iframe", "").startswith(f"http://{server}:"), report
    assert "error" not in report, report
    assert report["answer"].endswith("at 3×32×32"), report
    assert report["links"] == [report["iframe"]], report
    assert any("Anyone who can reach this computer" in c for c in report["captions"]), report
