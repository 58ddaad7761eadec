"""The Gradio detection demo builds and its handler returns real detections (no server started)."""

from __future__ import annotations

import gradio as gr
import pytest
from PIL import Image

from cvdemo.demos import detection as demo


def test_build_returns_blocks():
    blocks = demo.build()
    assert isinstance(blocks, gr.Blocks)
    assert any(getattr(fn, "name", "") == "detect_image" for fn in blocks.fns.values())


def test_handler_detects_bus_and_people(bus_jpg):
    annotated, table, summary = demo.detect_image(Image.open(bus_jpg).convert("RGB"), 0.25, 0.45)
    assert annotated.size == (810, 1080)
    assert (table["class"] == "bus").sum() >= 1 and (table["class"] == "person").sum() >= 3
    assert summary.startswith(f"**{len(table)} objects**") and "inference" in summary


def test_handler_errors_are_messages():
    with pytest.raises(gr.Error, match="Add an image"):
        demo.detect_image(None)
    with pytest.raises(gr.Error, match="megapixel"):
        demo.detect_image(Image.new("1", (8000, 7000)))


def test_dead_inference_server_is_a_sentence_not_a_generic_error(monkeypatch, bus_jpg):
    """CVDEMO_INFERENCE_URL at an address where nothing listens: the visitor reads what to do."""
    import socket

    from cvdemo.serve.client import INFERENCE_URL_ENV

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there
    monkeypatch.setenv(INFERENCE_URL_ENV, url)
    with pytest.raises(gr.Error) as info:
        demo.detect_image(Image.open(bus_jpg).convert("RGB"), 0.31, 0.45)  # settings no other test cached
    message = str(info.value)
    assert url in message and "does not answer" in message and "python -m cvdemo.serve" in message


def test_streamed_handlers_show_the_sentence_too():
    from cvdemo.demos import shows_errors
    from cvdemo.serve.client import InferenceServerUnavailable

    @shows_errors
    def stream():
        yield 1
        raise InferenceServerUnavailable("http://127.0.0.1:9")

    outputs = stream()
    assert next(outputs) == 1
    with pytest.raises(gr.Error, match="does not answer"):
        next(outputs)
