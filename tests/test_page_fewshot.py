"""The Few-shot page through the real app: sample set, classification, cached features, bad input, and the
transfer-learning ladder (run, table, export and re-import)."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import open_page, set_runtime as _set_runtime
from cvdemo import fewshot as fs

PAGE = "app_pages/fewshot.py"


def _page() -> AppTest:
    return open_page(PAGE, timeout=240)


def _texts(at: AppTest, *kinds: str) -> str:
    return " ".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def _png(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="PNG")
    return buf.getvalue()


def _button(at: AppTest, label: str):
    return next(b for b in at.button if label in b.label)


def _add_class(at: AppTest, name: str) -> None:
    at.text_input(key="fewshot_new_class").set_value(name)
    _button(at, "Add class").click().run()


def _uploader(at: AppTest, label: str):
    return next(u for u in at.file_uploader if u.label.startswith(label))


def _state(at: AppTest) -> fs.FewshotSession:
    return at.session_state["fewshot"]


@pytest.fixture(scope="module")
def loaded() -> AppTest:
    """The page with the default sample (10 ants + 10 bees), then classifying a clear validation ant."""
    at = _page()
    assert "at least 2 classes" in _texts(at, "info")
    _button(at, "Load ants vs bees").click().run()
    assert not at.exception, at.exception
    assert "Added 20 images from the ants/bees sample set." in _texts(at, "success")  # shown once
    # the default query (the first validation ant) is predicted ants and not called unlike every example
    assert "#### Prediction: **ants**" in _texts(at, "markdown")
    assert "unlike every example" not in _texts(at, "warning")
    assert any("How the \"unlike every example\" check was set (this query: like the examples)" in e.label
               for e in at.expander)
    clear_ant = next(name for name in fs.query_samples() if "2211974567" in name)  # a validation ant
    at.selectbox(key="fewshot_query_sample").set_value(clear_ant).run()
    return at


def test_sample_set_classifies_a_query(loaded):
    at = loaded
    markdown = _texts(at, "markdown")
    assert "**ants** · 10 images" in markdown and "**bees** · 10 images" in markdown
    assert "#### Prediction: **ants** (100% of the vote)" in markdown
    captions = _texts(at, "caption")
    assert "#1 **ants** · d = " in captions and "#3 " in captions  # the k=3 nearest examples, with distances
    assert "20 examples → 1280-d vectors from `efficientnet_lite0/head`" in captions
    assert at.get("plotly_chart"), "no probability chart"
    assert at.metric[0].label == "Leave-one-out accuracy" and at.metric[0].value.endswith("%")
    assert "/20 · 95% CI " in at.metric[0].delta  # n and an interval next to the accuracy
    # the other backbones are listed as missing, with the reason, not crashing the page
    assert "ResNet-18 (11.7M)** — Model weights for 'resnet18'" in markdown


def test_changing_k_metric_or_query_does_not_recompute_examples(loaded):
    at = loaded
    cache = _state(at).cache
    before = cache.computed
    at.slider(key="fewshot_k").set_value(1).run()
    at.radio(key="fewshot_metric").set_value("euclidean").run()
    at.radio(key="fewshot_weighting").set_value("distance").run()
    assert not at.exception, at.exception
    assert _state(at).cache.computed == before
    assert "the 1 nearest examples (euclidean distance" in _texts(at, "markdown")
    at.selectbox(key="fewshot_query_sample").set_value("bus.jpg").run()
    # the examples stay cached; the query is embedded afresh (its badge shows the live latency)
    assert _state(at).cache.computed == before
    assert "Prediction:" in _texts(at, "markdown")
    assert "cannot say \"none of these\"" in _texts(at, "warning")  # a bus is far from every ant and bee
    assert "looks unlike every example" in _texts(at, "warning")


def test_augmented_views_are_drawn_once_per_photo_settings_and_seed(loaded, monkeypatch):
    at = loaded
    real, calls = fs.view_grid, []
    monkeypatch.setattr(fs, "view_grid", lambda *a, **k: calls.append(1) or real(*a, **k))
    at.number_input(key="fewshot_aug_seed").set_value(7).run()
    at.run()  # a rerun (any widget elsewhere) shows the same views without drawing them again
    assert not at.exception, at.exception
    assert len(calls) == 1
    assert "ms per view on this CPU" in _texts(at, "caption")
    at.number_input(key="fewshot_aug_seed").set_value(0).run()


def test_runtime_switch_is_named_on_the_latency_badge(loaded):
    at = loaded
    accelerated = _texts(at, "markdown")
    assert "query embedded in" in accelerated
    assert "· OpenVINO]" in accelerated or "· ONNX Runtime]" in accelerated
    assert "last embedding run: " in _texts(at, "caption")  # the examples' per-image time, with its runtime
    _set_runtime(at, "PyTorch")
    assert not at.exception, at.exception
    markdown = _texts(at, "markdown")
    assert "· PyTorch]" in markdown and "#### Prediction: **" in markdown
    _set_runtime(at, "Accelerated")
    assert "· PyTorch]" not in _texts(at, "markdown")


def test_reloading_the_sample_says_so_once(loaded):
    at = loaded
    _button(at, "Load ants vs bees").click().run()
    warnings = [str(w.value) for w in at.warning]
    assert "20 images were already in the set and were skipped (10 in 'ants', 10 in 'bees')." in warnings
    assert not any("skipped." in w and "is already in" in w for w in warnings)  # not 20 separate banners


def test_class_names_and_file_names_are_shown_literally():
    at = _page()
    _add_class(at, "**bold** <i>x")
    assert "Class '\\*\\*bold\\*\\* \\<i\\>x' created" in _texts(at, "success")
    assert "**\\*\\*bold\\*\\* \\<i\\>x** · 0 images" in _texts(at, "markdown")
    _uploader(at, "Add images to").set_value(("*star*.png", _png(), "image/png")).run()
    assert "Added 1 image to '\\*\\*bold\\*\\* \\<i\\>x'." in _texts(at, "success") and not at.exception


def test_bad_ladder_settings_get_a_sentence(loaded):
    at = loaded
    at.select_slider(key="fewshot_lr_factor").set_value(0.5).run()
    assert "factor must be at least 1" in _texts(at, "warning")
    assert _button(at, "Run the ladder").disabled
    at.select_slider(key="fewshot_lr_factor").set_value(10)
    at.slider(key="fewshot_head_epochs").set_value(0).run()
    assert "Training the head needs at least 1 epoch" in _texts(at, "warning")
    at.slider(key="fewshot_head_epochs").set_value(15).run()
    assert not _button(at, "Run the ladder").disabled and not at.exception


def test_ladder_runs_on_the_page_and_its_model_comes_back(loaded):
    at = loaded
    assert at.radio(key="fewshot_heldout").value == "validation"  # the sample's own held-out images
    at.slider(key="fewshot_head_epochs").set_value(2)
    at.slider(key="fewshot_unfreeze_epochs").set_value(1).run()
    _button(at, "Run the ladder").click().run()
    assert not at.exception, at.exception
    session = _state(at).ladder
    session.job.join()
    at.run()
    assert not at.exception, at.exception
    assert session.job.status == "done" and "153 ants/bees validation images held out" in session.held_out
    table = next(df.value for df in at.dataframe if "rung" in df.value.columns)
    assert len(table) == 4 and table["held-out accuracy"].str.contains("/153)", regex=False).all()
    assert table["95% CI"].str.contains("–", regex=False).all()
    assert "Best on these held-out images" in _texts(at, "markdown")
    groups = next(df.value for df in at.dataframe if "group" in df.value.columns)
    assert list(groups["group"]) == ["new head", "block group 7", "head convolution"]
    # export, then bring the model back: it classifies the query on the page
    data = session.classifier.to_safetensors()
    _uploader(at, "A .safetensors or .onnx file").set_value(("ladder.safetensors", data, "application/octet-stream"))
    at.run()
    assert "Loaded ladder.safetensors: classes ants, bees" in _texts(at, "success")
    assert "The query **" in _texts(at, "markdown") and not at.exception
    pickle = b"\x80\x04\x95" + b"\x00" * 20
    _uploader(at, "A .safetensors or .onnx file").set_value(("model.pth", pickle, "application/octet-stream"))
    at.run()
    assert "Loading a pickle can run any code, so it is refused" in _texts(at, "error")


def test_accuracy_vs_shots_draws_from_the_examples_and_tests_on_the_held_out_images(loaded):
    at = loaded
    _button(at, "Run accuracy vs shots").click().run()
    assert not at.exception, at.exception
    run = _state(at).shots
    run.stop()  # only its inputs are checked here; the curves are tested in test_fewshot_ladder
    run.join()
    assert len(run.pool) == len(run.pool_digests) == 20 and len(run.test) == len(run.test_digests) == 153
    assert _state(at).shots_held_out == "153 held-out images"


def test_bad_uploads_and_names_get_a_sentence(loaded):
    at = loaded
    _add_class(at, "Ants")
    assert "already a class called 'ants'" in _texts(at, "error")
    uploader = _uploader(at, "Add images to 'ants'")
    uploader.set_value([("notes.txt", b"not a picture", "text/plain"), ("red.png", _png(), "image/png")]).run()
    assert not at.exception, at.exception
    assert "notes.txt is not an image Pillow can read" in _texts(at, "error")
    assert "**ants** · 11 images" in _texts(at, "markdown")  # the good file was still added
    zip_buf = io.BytesIO()
    with zipfile.ZipFile(zip_buf, "w") as archive:
        archive.writestr("../../escape.png", _png())
        archive.writestr("wasps/w1.png", _png((240, 200, 0)))
    _uploader(at, "Import a zip").set_value(("set.zip", zip_buf.getvalue(), "application/zip")).run()
    assert "../../escape.png: unsafe path" in _texts(at, "warning")
    assert "**wasps** · 1 image" in _texts(at, "markdown") and not at.exception
    _uploader(at, "Import a zip").set_value(("junk.zip", b"nope", "application/zip")).run()
    assert "junk.zip: That file is not a valid zip archive." in _texts(at, "error")


def test_camera_snapshots_go_to_the_chosen_class(loaded):
    at = loaded
    at.toggle(key="fewshot_camera_on").set_value(True).run()
    at.selectbox(key="fewshot_camera_class").set_value("bees").run()
    photo = io.BytesIO()
    Image.new("RGB", (320, 240), (250, 200, 20)).save(photo, format="JPEG")
    at.camera_input(key="fewshot_camera").set_value(("photo.jpg", photo.getvalue(), "image/jpeg")).run()
    assert not at.exception, at.exception
    assert "Added 1 image to 'bees' from the camera." in _texts(at, "success")
    snap = _state(at).examples.classes["bees"][-1]
    assert snap.name == "camera 11.jpg"
    computed = _state(at).cache.computed
    at.button(key=f"fewshot_rm_{snap.uid}").click().run()  # the ✕ under its thumbnail
    assert "**bees** · 10 images" in _texts(at, "markdown")
    assert _state(at).cache.computed == computed  # removing never re-embeds the rest


def test_one_class_only_and_empty_class_are_explained():
    at = _page()
    _add_class(at, "   ")
    assert "Give the class a name." in _texts(at, "error")
    _add_class(at, "cats")
    assert "Class 'cats' created" in _texts(at, "success")
    _uploader(at, "Add images to 'cats'").set_value(("c.png", _png(), "image/png")).run()
    _add_class(at, "dogs")
    assert "Only one class ('cats') has images ('dogs' is still empty)" in _texts(at, "info")
    assert not at.get("plotly_chart") and not at.exception


def test_page_without_the_sample_data(monkeypatch, tmp_path):
    monkeypatch.setenv("CVDEMO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path))
    at = _page()
    assert _button(at, "Load ants vs bees").disabled
    assert "at least 2 classes" in _texts(at, "info") and not at.exception


def test_import_of_an_exported_set_restores_its_features():
    examples = fs.load_sample_set(2)
    cache = fs.EmbeddingCache()
    items, _ = examples.labelled()
    cache.embed(fs.FeatureExtractor("efficientnet_lite0"), [e.image for e in items], [e.digest for e in items])
    blob = fs.export_zip(examples, cache)
    at = _page()
    _uploader(at, "Import a zip").set_value(("prepared.zip", blob, "application/zip")).run()
    assert not at.exception, at.exception
    assert "carried 4 precomputed embeddings" in _texts(at, "info")
    # the four examples were not embedded again (the query is embedded outside the cache)
    assert _state(at).cache.computed == 0
    assert "Prediction:" in _texts(at, "markdown")

