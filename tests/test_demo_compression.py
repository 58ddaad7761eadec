"""The shareable Gradio compression demo: it builds, and its handler measures a real compressed model."""

from __future__ import annotations

import pytest

from cvdemo import compression as cx
from cvdemo.demos import compression as demo


def test_build_returns_blocks():
    import gradio as gr

    blocks = demo.build()
    assert isinstance(blocks, gr.Blocks)
    assert "compress" in {fn.api_name for fn in blocks.fns.values()}


def test_low_rank_classifier_run_returns_the_comparison():
    table, text = demo.run("low_rank", 128, images=8, repeats=3)
    assert list(table["model"]) == ["Original (FP32, PyTorch)", "Low-rank SVD (rank 128), PyTorch"]
    original, factorised = table.iloc[0], table.iloc[1]
    # the 1280 x 1000 classifier becomes 1280 x 128 + 128 x 1000
    assert original["params"] - factorised["params"] == 1280 * 1000 - 128 * (1280 + 1000)
    assert factorised["file MB"] < original["file MB"] and factorised["MMACs"] < original["MMACs"]
    assert original["agreement"] == 1.0 and 0 <= factorised["agreement"] <= 1
    assert "**Lecture:**" in text and "**Here:**" in text


def test_bad_knobs_become_gradio_errors():
    import gradio as gr

    with pytest.raises(gr.Error, match="removes nothing"):
        demo.run("prune_unstructured", 0, images=8, repeats=1)
    with pytest.raises(gr.Error, match="Pick a technique"):
        demo.run("magic", 1, images=8, repeats=1)
    assert demo.spec_for("prune_structured", 50).knobs == {"amount": 0.5, "fine_tune_epochs": 0}


@pytest.mark.parametrize("technique", cx.list_techniques())
def test_every_registered_technique_has_a_demo_slider(technique):
    label, low, high, default, step = demo.knob_slider(technique)
    assert low <= default <= high and step > 0 and label
    spec = demo.spec_for(technique, default)
    assert spec.technique == technique and spec.label == cx.get_technique(technique).label
    resolved = cx.get_technique(technique).resolve(spec.knobs)
    assert set(resolved) >= {k.key for k in cx.get_technique(technique).knobs}
