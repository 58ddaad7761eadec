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
