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
