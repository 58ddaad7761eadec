"""The segmentation Gradio demo: it builds, and its handler paints a real photo with the sample U-Net."""

from __future__ import annotations

import os

# See tests/test_segmentation.py: sleeping (not spinning) OpenMP threads, if torch is not loaded yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from cvdemo import cache, datasets, weights  # noqa: E402
from cvdemo import segmentation as seg  # noqa: E402
from cvdemo.demos import segmentation as demo  # noqa: E402
from cvdemo.images import load_image  # noqa: E402


def test_build_returns_blocks():
    blocks = demo.build()
    assert isinstance(blocks, gr.Blocks)
    assert demo.model_choices()[0] == demo.SERVER_MODEL
    # Published models are offered only when their weights are here.
    assert len(demo.model_choices()) == 1 + sum(weights.available(n) for n in seg.PRETRAINED)


def test_segment_paints_a_cat_with_the_server_unet(tmp_path):
    cat = load_image(datasets.dataset_path(seg.SAMPLE_DATASET) / "images" / "Maine_Coon_203.jpg")
    painted, legend, table, mask_path = demo.segment(cat, 0.5, demo.SERVER_MODEL, None)
    assert painted.size == cat.size
    mask = np.asarray(Image.open(mask_path))
    assert mask.shape == (cat.height, cat.width) and set(np.unique(mask)) <= {0, 1, 2}
    # A held-out cat: the fine-tuned U-Net calls most of its foreground "cat".
    assert (mask == 1).sum() > 3 * (mask == 2).sum() and (mask == 1).mean() > 0.2
    assert "cat" in legend and "%" in legend
    assert list(table.columns) == ["class", "index", "% of pixels"]
    assert table["% of pixels"].sum() == pytest.approx(100, abs=0.1)
    # The same model, downloaded from the page and uploaded here, gives the same mask.
    saved = tmp_path / "pets.safetensors"
    saved.write_bytes(cache.shared(seg.sample_model).to_bytes())
    _, _, _, again = demo.segment(cat, 0.5, demo.SERVER_MODEL, str(saved))
    assert np.array_equal(np.asarray(Image.open(again)), mask)


def test_bad_inputs_are_gradio_errors(tmp_path, bus_jpg):
    with pytest.raises(gr.Error, match="Upload a photo"):
        demo.segment(None)
    pickle_file = tmp_path / "model.safetensors"
    pickle_file.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle, whatever its name
    with pytest.raises(gr.Error, match="pickle"):
        demo.segment(load_image(bus_jpg), 0.5, demo.SERVER_MODEL, str(pickle_file))
    with pytest.raises(gr.Error, match="Unknown model"):
        demo.segment(load_image(bus_jpg), 0.5, "no such model", None)


def test_examples_are_held_out_pets_and_a_street():
    names = [os.path.basename(e[0]) for e in demo._examples()]
    assert names == ["Abyssinian_11.jpg", "British_Shorthair_102.jpg", "Maine_Coon_203.jpg", "bus.jpg"]
