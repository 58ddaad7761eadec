"""The shareable Gradio few-shot demo: it builds, and its handler classifies a real validation image."""

from __future__ import annotations

import pytest

from cvdemo import fewshot as fs
from cvdemo.demos import fewshot as demo


def test_build_returns_blocks():
    import gradio as gr

    blocks = demo.build()
    assert isinstance(blocks, gr.Blocks)
    assert {"classify", "ladder"} <= {fn.api_name for fn in blocks.fns.values()}


def test_classify_a_validation_bee():
    bee = next(path for name, path in fs.query_samples().items() if "abeja" in name)  # a validation bee
    probabilities, neighbours = demo.classify(str(bee), k=3)
    assert set(probabilities) == {"ants", "bees"}
    assert probabilities["bees"] == pytest.approx(1.0) and sum(probabilities.values()) == pytest.approx(1.0)
    assert len(neighbours) == 3 and neighbours[0][1].startswith("#1 bees · d = ")
    assert neighbours[0][0].size == (160, 160)  # thumbnails of the training examples
    assert len(demo.training_examples()) == 2 * demo.PER_CLASS


def test_classify_rejects_missing_or_broken_input():
    import gradio as gr

    with pytest.raises(gr.Error, match="Upload an image"):
        demo.classify(None)
    with pytest.raises(gr.Error, match="not an image"):
        demo.classify(b"certainly not a picture")


def test_ladder_table_on_the_sample():
    table = demo.ladder_table(head_epochs=1, unfreeze_epochs=1, lr_factor=10, start="head")
    assert list(table["method"]) == ["knn", "linear_probe", "head", "unfreeze"]
    assert (table["n"] == 153).all() and table["accuracy"].between(0, 1).all()
    assert table.set_index("method").loc["knn", "accuracy"] > 0.7
    # the streaming handler joins the same (finished) run: one run per process and settings
    *_, (shown, curves, summary) = list(demo.run_ladder(1, 1, 10, "head"))
    assert len(shown) == 4 and "95% CI" in shown.columns and "Best on these held-out images" in summary
    assert len(curves.data) >= 2


def test_ladder_bad_settings_are_a_gradio_error():
    import gradio as gr

    with pytest.raises(gr.Error, match="factor must be at least 1"):
        list(demo.run_ladder(1, 1, 0.5, "head"))
