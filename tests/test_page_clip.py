"""The CLIP page through the real app: engine banner, zero-shot, search, image -> image, evaluate, bad input.

The CIFAR-10 gallery's embeddings come from the session cache folder that tests/test_clip.py
fills (or this module fills it itself when run alone), so the page rebuilds it without the model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO, set_runtime as _set_runtime
from cvdemo import cache, catalog, clip

CIFAR = "CIFAR-10 subset (500 tiny photos, 10 classes)"
PAGE = "app_pages/clip_search.py"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "clip_cache"
    root.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVDEMO_CACHE_DIR", str(root))
        engine = cache.shared(clip.create_engine, "conse")
        clip.ImageIndex(engine).add(clip.sample_gallery(CIFAR).images)  # no-op when already cached
    return root


@pytest.fixture
def page(monkeypatch, cache_root) -> AppTest:
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(cache_root))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=240)
    at.switch_page(PAGE).run()  # no Home run first: see conftest.open_page
    assert not at.exception, at.exception
    return at


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_engine_banner_and_zero_shot_on_a_photo(page):
    at = page
    banner = _texts(at.info)
    assert "ConSE" in banner and "not CLIP" in banner and "python -m cvdemo.weights fetch clip" in banner
    verdict = _texts(at.success)
    assert "**bus**" in verdict  # bus.jpg with the "Street scene" labels and the 80-prompt ensemble
    assert len(at.get("plotly_chart")) >= 1
    badge = _texts(at.markdown)
    assert "image embedded in" in badge and ("· OpenVINO]" in badge or "· ONNX Runtime]" in badge)
    _set_runtime(at, "PyTorch")
    assert "**bus**" in _texts(at.success) and "· PyTorch]" in _texts(at.markdown)  # re-embedded in PyTorch
    _set_runtime(at, "Accelerated")

    at.radio(key="clip_template").set_value("a photo of a {}.").run()
    assert "**bus**" in _texts(at.success)
    before = re.search(r"probability (\d+)%", _texts(at.success)).group(1)
    at.select_slider(key=f"clip_temperature_{cache.shared(clip.create_engine, 'conse').name}").set_value(0.5).run()
    after = re.search(r"probability (\d+)%", _texts(at.success)).group(1)
    assert int(after) < int(before)  # a hotter softmax is less sure of the same cosine

    threshold_key = f"clip_threshold_{cache.shared(clip.create_engine, 'conse').name}_{clip.TEMPLATE_CHOICES['a photo of a {}.']}"
    assert at.slider(key=threshold_key).value == 0.32  # calibrated for ConSE with this template
    at.slider(key=threshold_key).set_value(0.99).run()
    warning = _texts(at.warning)
    assert "None of the above" in warning and "sum to 1" in warning


def test_bad_labels_are_explained(page):
    at = page
    at.text_area(key="clip_labels_Street scene").set_value(" , ,").run()
    assert not at.exception
    assert "Type at least one label" in _texts(at.error)
    at.text_area(key="clip_labels_Street scene").set_value("cat, Cat").run()
    notes = _texts(at.info)
    assert "Duplicate labels were removed" in notes and "always 100%" in notes


def test_search_tab_text_and_image_queries(page):
    at = page
    captions = _texts(at.caption)
    assert "Gallery: **500 images**" in captions and "500 read from the disk cache" in captions
    found = re.search(r"Labels among the top 10: (.*)", captions).group(1)
    ships = int(re.search(r"ship × (\d+)", found).group(1))
    assert ships >= 3, found  # chance would be 1 in 10

    at.text_input(key="clip_query").set_value("ship " * 2000).run()
    assert "only the first 300 were used" in _texts(at.info)
    at.text_input(key="clip_query").set_value("").run()
    assert "Type a query" in _texts(at.warning)

    at.text_input(key="clip_query").set_value("a photo of a frog").run()
    more = [b for b in at.button if str(b.key).startswith("clip_more_")]
    assert len(more) == 10
    more[0].click().run()
    assert "Image → image" in _texts(at.markdown)
    assert "**1.000**" in _texts(at.caption)  # the query image itself comes first


def test_map_and_evaluate_tabs(page):
    at = page
    assert "PCA of all image and text vectors" in _texts(at.caption)  # the map of the auto-built gallery
    assert len(at.get("plotly_chart")) >= 2  # zero-shot bars + map
    at.button(key="clip_eval_run").click().run()
    assert not at.exception
    assert "500 images, 10 classes" in _texts(at.markdown)
    table = at.dataframe[-1].value
    assert len(table) == 6
    zero_shot = table[table["labeled examples per class"] == 0]["top-1 accuracy"]
    assert zero_shot.max() >= 0.25


def test_engine_toggle_and_comparison_when_clip_is_present(monkeypatch, cache_root):
    """With CLIP weights the page defaults to CLIP and compares engines (a random tiny CLIP stands in)."""
    from test_clip import TINY

    real_create = clip.create_engine

    def create_engine(key: str, cache_dir=None, accelerated=True):
        if key == "clip":
            return clip.ClipModel(
                "clip", pretrained=False, arch="ViT-B-32", cache_dir=False, model_kwargs=TINY, accelerated=accelerated
            )
        return real_create(key, cache_dir, accelerated)

    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(cache_root))
    monkeypatch.setattr(clip, "available_engines", lambda: ["clip", "conse"])
    monkeypatch.setattr(clip, "create_engine", create_engine)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=240)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert "contrastive loss" in _texts(at.success)  # the CLIP banner
    assert at.radio(key="clip_template").value == catalog.CLIP_TEMPLATE == "a photo of a {}."  # CLIP's text tower is slow on a CPU
    at.toggle(key="clip_compare").set_value(True).run()
    assert not at.exception, at.exception
    assert "random init" in _texts(at.markdown) and "ConSE" in _texts(at.markdown)
    assert len(at.get("plotly_chart")) >= 2  # one bar chart per engine


def test_first_templates_are_template_choices():
    # The page and the warm start read the first template from cvdemo.catalog: it must be a choice the page offers.
    assert catalog.zero_shot_template(True) == catalog.CLIP_TEMPLATE in clip.TEMPLATE_CHOICES
    assert catalog.zero_shot_template(False) == catalog.CONSE_TEMPLATE == clip.ENSEMBLE


# --- issue 19: honest defaults, literal user text, unusable queries ---------------------------------------


def test_nothing_fits_preset_says_none_of_the_above_on_the_bus_with_every_template(page):
    at = page
    at.selectbox(key="clip_preset").set_value("Nothing fits (chair, banana, spaceship)").run()
    for template in clip.TEMPLATE_CHOICES:
        at.radio(key="clip_template").set_value(template).run()
        assert not at.exception, at.exception
        warning = _texts(at.warning)
        assert "None of the above" in warning, (template, _texts(at.success))
    at.selectbox(key="clip_preset").set_value("Street scene").run()
    assert "**bus**" in _texts(at.success)  # the right label stays above the calibrated threshold


def test_user_text_is_shown_literally_and_emoji_queries_are_explained(page):
    at = page
    at.selectbox(key="clip_preset").set_value("Custom").run()
    at.text_area(key="clip_labels_Custom").set_value("**bus**, <b>car</b>, :red[tree], 🚌").run()
    assert not at.exception, at.exception
    messages = _texts(at.success) + _texts(at.warning) + _texts(at.info)
    assert "\\*\\*bus\\*\\*" in messages or "\\<b\\>car\\</b\\>" in messages  # escaped, not rendered
    assert "no words the text encoder can read" in messages and "🚌" in messages
    labels = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]
    assert "&lt;b&gt;car&lt;/b&gt;" in labels and "<b>car</b>" not in labels  # plotly would render <b>
    at.text_input(key="clip_query").set_value("😀😀").run()
    assert "has no words the text encoder can read" in _texts(at.warning)


# --- issue 18: Verify and Fast search tabs -----------------------------------------------------------------


def test_verify_tab_verdicts_evaluation_and_threshold(page):
    at = page
    assert at.slider(key="clip_verify_threshold_" + cache.shared(clip.create_engine, "conse").name).value == 0.58
    verdicts = _texts(at.success) + _texts(at.error)
    assert "**Same** — cosine" in verdicts  # bus.jpg against its flipped copy (the default change)
    at.toggle(key="clip_verify_changed").set_value(False).run()
    assert "**Different** — cosine" in _texts(at.error)  # bus.jpg against another sample photo
    at.selectbox(key="clip_verify_b_sample").set_value("bus.jpg").run()
    assert "identical" in _texts(at.success)
    at.selectbox(key="clip_verify_set_photo").set_value("Ants and bees (153 photos)").run()
    at.slider(key="clip_verify_n_photo").set_value(8).run()
    at.button(key="clip_verify_run").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["AUC"]) > 0.6 and "%" in metrics["Equal-error rate"]
    assert "96 same and 48 different pairs" not in _texts(at.caption)
    assert "48 same and 48 different pairs" in _texts(at.caption)
    eer_button = at.button(key="clip_verify_use_eer")
    eer = float(re.search(r"\((-?[\d.]+)\)", eer_button.label).group(1))
    eer_button.click().run()
    assert at.slider(key="clip_verify_threshold_" + cache.shared(clip.create_engine, "conse").name).value == pytest.approx(eer)
    assert "What breaks verification" in _texts(at.markdown) or "hardest is" in _texts(at.markdown)


def test_fast_search_tab_compares_and_follows_the_sliders(page):
    at = page
    at.radio(key="clip_fast_source").set_value("synthetic").run()
    at.select_slider(key="clip_fast_size").set_value(10_000).run()
    at.button(key="clip_fast_run").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert list(table["method"].str.split(" ").str[0]) == ["brute", "LSH", "FAISS"]
    assert table.iloc[0]["recall_at_k"] == 1.0
    state = at.session_state["clip_fast_search"]
    assert len(state.sweep) == 6  # the bits slider's value with 1..32 tables
    at.slider(key="clip_fast_bits").set_value(16).run()  # a slider move measures the new point
    assert len(at.session_state["clip_fast_search"].sweep) == 7
    assert "Your sliders (16 bits × 8 tables)" in _texts(at.caption)
    at.slider(key="clip_fast_k").set_value(50).run()
    at.radio(key="clip_fast_source").set_value("gallery").run()
    assert not at.exception, at.exception
