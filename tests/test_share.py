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


def test_embed_url_uses_public_base_behind_a_proxy(monkeypatch):
    monkeypatch.setenv(share.PUBLIC_BASE_ENV, "/gradio/")
    url, running = share.embed_url("detection")
    assert url == "/gradio/detection/" and running is None


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
        codes = [c.value for c in at.code]
        assert any(c.startswith("http://127.0.0.1:") for c in codes), codes
        url = next(c for c in codes if c.startswith("http://127.0.0.1:"))
        import urllib.request

        with urllib.request.urlopen(url, timeout=30) as response:
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
