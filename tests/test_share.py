"""Shareable Gradio demos: every Blocks builds, the embed server starts once, a real request works."""

from __future__ import annotations

import socket

import pytest

from cvdemo import share


@pytest.fixture
def echo_demo(monkeypatch):
    """A tiny Blocks in place of a real demo, for the server mechanics."""
    import gradio as gr

    def build(name: str):
        with gr.Blocks() as demo:
            box = gr.Textbox()
            out = gr.Textbox()
            box.submit(lambda s: s.upper(), box, out, api_name="shout")
        return demo

    monkeypatch.setattr(share, "build_demo", build)
    yield
    share.stop_all()


def test_free_port_is_free():
    port = share.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # would raise if taken


def test_serve_starts_once_and_reuses(echo_demo):
    from gradio_client import Client

    first = share.serve("detection")
    again = share.serve("detection")
    assert again is first and first.port > 0
    other = share.serve("clip")
    assert other.port != first.port
    client = Client(first.local_url, verbose=False)
    assert client.predict("hi", api_name="/shout") == "HI"


def test_embed_uses_public_base_behind_a_proxy(monkeypatch):
    monkeypatch.setenv(share.PUBLIC_BASE_ENV, "/gradio/")
    shared = share.embed("detection", page_url="https://space.example/detection")
    assert shared.url == "/gradio/detection/" and shared.running is None
    assert shared.student_url == "https://space.example/gradio/detection/"  # the same site: whoever opens the app
    assert "Anyone who can open this app" in shared.audience


@pytest.mark.parametrize(
    ("app_address", "bound"),
    [(None, "0.0.0.0"), ("", "0.0.0.0"), ("0.0.0.0", "0.0.0.0"), ("::", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"),
     ("localhost", "127.0.0.1"), ("unix:///tmp/app.sock", "127.0.0.1"), ("192.0.2.7", "192.0.2.7")],
)
def test_demos_listen_where_the_app_listens(monkeypatch, app_address, bound):
    monkeypatch.delenv(share.HOST_ENV, raising=False)
    assert share.bind_host(app_address) == bound


def test_share_host_variable_overrides(monkeypatch):
    monkeypatch.setenv(share.HOST_ENV, "127.0.0.1")
    assert share.bind_host(None) == "127.0.0.1"


def test_a_student_on_the_network_URL_gets_the_demo_from_that_host(echo_demo, monkeypatch):
    monkeypatch.delenv(share.HOST_ENV, raising=False)
    shared = share.embed("detection", page_url="http://192.0.2.50:8501/detection", app_port=8501)
    port = shared.running.port
    assert shared.running.host == "0.0.0.0"
    assert shared.url == shared.student_url == f"http://192.0.2.50:{port}/"
    assert "Anyone who can reach this computer" in shared.audience and "every network interface" in shared.audience
    assert not shared.warnings


def test_the_lecturer_on_localhost_gets_the_network_link_to_hand_out(echo_demo, monkeypatch):
    monkeypatch.delenv(share.HOST_ENV, raising=False)
    monkeypatch.setattr(share, "lan_address", lambda: "192.0.2.9")
    shared = share.embed("detection", page_url="http://localhost:8501/detection", app_port=8501)
    port = shared.running.port
    assert shared.url == f"http://localhost:{port}/"  # what this browser can load
    assert shared.student_url == f"http://192.0.2.9:{port}/"  # what the class can load


def test_an_app_kept_on_loopback_keeps_its_demo_there_and_says_so(echo_demo, monkeypatch):
    monkeypatch.delenv(share.HOST_ENV, raising=False)
    shared = share.embed("detection", page_url="http://127.0.0.1:8501/", app_address="127.0.0.1", app_port=8501)
    assert shared.running.host == "127.0.0.1" and shared.student_url is None
    assert shared.url == f"http://127.0.0.1:{shared.running.port}/"
    assert shared.audience.startswith("Only this computer can open it") and share.HOST_ENV in shared.audience


@pytest.mark.parametrize(
    ("page_url", "says"),
    [("https://class.example/detection", "HTTPS"), ("http://class.example/detection", "proxy or a forwarded port")],
)
def test_a_page_reached_through_a_proxy_says_the_demo_may_not_load(echo_demo, monkeypatch, page_url, says):
    monkeypatch.delenv(share.HOST_ENV, raising=False)
    shared = share.embed("detection", page_url=page_url, app_port=8501)
    assert len(shared.warnings) == 1 and says in shared.warnings[0] and share.PUBLIC_BASE_ENV in shared.warnings[0]


def test_the_demo_answers_on_this_machines_network_address(echo_demo, monkeypatch):
    """Not only on loopback: fetched from the non-loopback address, as another machine would."""
    import urllib.request

    monkeypatch.delenv(share.HOST_ENV, raising=False)
    address = share.lan_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    shared = share.embed("detection", page_url=f"http://{address}:8501/detection", app_port=8501)
    assert shared.url == f"http://{address}:{shared.running.port}/"
    with urllib.request.urlopen(shared.url, timeout=30) as response:
        assert response.status == 200 and b"gradio" in response.read().lower()


def test_unknown_demo_is_a_clear_error():
    with pytest.raises(share.ShareError, match="Choose one of"):
        share.build_demo("nope")


def test_share_link_offline_says_why(monkeypatch):
    monkeypatch.setattr(share.socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    ok, note = share.share_link_possible()
    assert not ok and "cannot reach" in note


@pytest.mark.parametrize("name", list(share.DEMOS))
def test_each_demo_builds(name):
    import gradio as gr

    assert isinstance(share.build_demo(name), gr.Blocks)


def test_bundle_has_a_tab_per_demo():
    import gradio as gr

    bundle = share.build_demo("all")
    assert isinstance(bundle, gr.TabbedInterface)


def test_launched_detection_demo_finds_the_bus(bus_jpg):
    """A real HTTP round trip: gradio_client sends bus.jpg, the demo answers with a bus and people."""
    from gradio_client import Client, handle_file

    running = share.serve("detection")
    try:
        client = Client(running.local_url, verbose=False)
        annotated, table, summary = client.predict(handle_file(str(bus_jpg)), 0.25, 0.45, api_name="/detect_image")
        classes = [row[list(table["headers"]).index("class")] for row in table["data"]]
        assert "bus" in classes and classes.count("person") >= 3
        assert annotated and "objects" in summary
    finally:
        share.stop_all()


def test_page_share_section_embeds_the_running_demo():
    from streamlit.testing.v1 import AppTest

    from conftest import REPO

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=240).run()
    at.switch_page("app_pages/architectures.py").run()
    at.toggle(key="share_architectures").set_value(True).run()
    try:
        assert not at.exception
        links = [c.value for c in at.code if c.value.startswith("http://")]
        assert len(links) == 1, links  # the link to hand out: this machine's network address when it has one
        address = share.lan_address()
        assert links[0].startswith(f"http://{address or '127.0.0.1'}:"), links
        assert any("can open it" in c.value for c in at.caption)  # who can open it, in a sentence
        import urllib.request

        with urllib.request.urlopen(links[0], timeout=30) as response:
            assert response.status == 200 and b"gradio" in response.read().lower()
    finally:
        share.stop_all()


def test_space_mount_serves_every_demo_with_its_own_root():
    """The Space's single-port layout: every demo under /gradio/<name>/, file URLs keep the prefix."""
    from fastapi.testclient import TestClient

    client = TestClient(share.mount_all("/gradio"))
    for name in share.NAMES:
        config = client.get(f"/gradio/{name}/config", headers={"X-Forwarded-Host": "space.example"})
        assert config.status_code == 200, name
        assert config.json()["root"].endswith(f"/gradio/{name}")
