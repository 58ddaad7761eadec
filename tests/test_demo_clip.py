"""Gradio twin of the CLIP page: builds, and its handlers return real zero-shot and search results."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from PIL import Image

from cvdemo import cache, clip
from cvdemo.demos import clip as demo

CIFAR = "CIFAR-10 subset (500 tiny photos, 10 classes)"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    """The session cache folder with the CIFAR embeddings (shared with tests/test_clip.py)."""
    root = tmp_path_factory.getbasetemp() / "clip_cache"
    root.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVDEMO_CACHE_DIR", str(root))
        clip.ImageIndex(cache.shared(clip.create_engine, "conse")).add(clip.sample_gallery(CIFAR).images)
    return root


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, cache_root):
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(cache_root))


def test_build_returns_blocks():
    import gradio as gr

    blocks = demo.build()
    assert isinstance(blocks, gr.Blocks)
    names = {d.get("api_name") for d in blocks.config["dependencies"]}
    assert {"classify", "search", "verify", "evaluate_verification"} <= names


def test_classify_handler_labels_a_real_photo(bus_jpg):
    probabilities, figure, verdict = demo.classify(
        Image.open(bus_jpg), "bus, cat, banana", "a photo of a {}.", 0.0, 0.3
    )
    assert max(probabilities, key=probabilities.get) == "bus"
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert "**bus**" in verdict and "ConSE" in verdict
    assert [t.type for t in figure.data] == ["bar", "bar"]


def test_classify_handler_rejects_bad_input(bus_jpg):
    import gradio as gr

    with pytest.raises(gr.Error, match="image first"):
        demo.classify(None, "cat, dog")
    with pytest.raises(gr.Error, match="at least one label"):
        demo.classify(Image.open(bus_jpg), " , ")
    with pytest.raises(gr.Error, match="not an image"):
        demo.classify(b"definitely not a picture", "cat, dog")


def test_search_and_similar_handlers():
    import gradio as gr

    items, ids, status = demo.search("a photo of a ship", 5)
    assert len(items) == len(ids) == 5 and "Top 5 of 500" in status
    assert all(isinstance(img, Image.Image) for img, _ in items)
    assert sum("ship" in caption for _, caption in items) >= 2
    again, again_ids, _ = demo.similar(ids, 3, types.SimpleNamespace(index=1))
    assert again_ids[0] == ids[1] and again[0][1].startswith("1.000")
    with pytest.raises(gr.Error, match="Type a query"):
        demo.search("   ", 5)


def test_evaluate_verification_handler():
    figure, text = demo.evaluate_verification(clip.CLASS, 0.5)
    assert "AUC" in text and "equal-error rate" in text and "CIFAR-10" in text  # the first labeled sample set
    assert any("your threshold 0.50" in (t.name or "") for t in figure.data)


def test_dead_inference_server_is_a_sentence_not_a_generic_error(monkeypatch, bus_jpg):
    import socket

    import gradio as gr

    from cvdemo.serve.client import INFERENCE_URL_ENV

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there
    monkeypatch.setenv(INFERENCE_URL_ENV, url)
    photo = Image.open(bus_jpg).convert("RGB").rotate(90, expand=True)  # a picture no other test embedded
    with pytest.raises(gr.Error, match="does not answer") as info:
        demo.classify(photo, "bus, cat, banana", "a photo of a {}.")
    assert url in str(info.value)
