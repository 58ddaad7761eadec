"""The Segmentation page through the real app: data, a tiny training run, predict, save/load, bad uploads."""

from __future__ import annotations

import io
import os
import time
import zipfile

# See tests/test_segmentation.py: sleeping (not spinning) OpenMP threads, if torch is not loaded yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from conftest import open_page  # noqa: E402
from markdown_view import formatting, rendered_text  # noqa: E402

PAGE = "app_pages/segmentation.py"


def _page() -> AppTest:
    return open_page(PAGE, timeout=180)


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for kind in (at.success, at.warning, at.error, at.info):
        parts += [e.value for e in kind]
    return "\n".join(parts)


def _train_tiny(at: AppTest) -> None:
    """One fine-tune epoch at 96 px: the plumbing, not the quality (tests/test_segmentation.py has that)."""
    at.slider(key="seg_frozen").set_value(0)
    at.slider(key="seg_finetune").set_value(1)
    at.select_slider(key="seg_size").set_value(96)
    at.run()
    at.button(key="seg_train").click().run()
    deadline = time.time() + 150
    while at.session_state["seg_trainer"].running and time.time() < deadline:
        time.sleep(0.5)
    at.run()  # the polling panel's rerun: show the finished run
    assert not at.exception, at.exception


@pytest.fixture(scope="module")
def trained() -> AppTest:
    at = _page()
    _train_tiny(at)
    return at


def test_page_shows_the_sample_data_and_the_recipe():
    at = _page()
    text = _texts(at)
    assert at.title[0].value == "Semantic segmentation"
    assert "**26 image/mask pairs**" in text and "`2` dog" in text
    assert at.slider(key="seg_nval").value == 6
    assert at.slider(key="seg_frozen").value == 3 and at.slider(key="seg_finetune").value == 5
    assert at.select_slider(key="seg_size").value == 96  # the quick default: half the time of 160 px
    assert at.select_slider(key="seg_factor").value == 0.1  # differential learning rate
    assert at.toggle(key="seg_pretrained").value is True  # EfficientNet-Lite0's ImageNet weights are here
    captions = [rendered_text(c) for image in at.image for c in image.captions]
    assert "Abyssinian_1" in captions  # the gallery of masks over photos


def test_tiny_training_run_reports_held_out_iou_and_offers_the_model(trained):
    at = trained
    trainer = at.session_state["seg_trainer"]
    assert trainer.status == "done" and len(trainer.history) == 1
    assert any("Finished after 1 of 1 epochs" in s.value for s in at.success)
    metrics = {m.label: float(m.value) for m in at.metric}
    assert 0.0 <= metrics["Foreground IoU (n = 6)"] <= 1.0 and 0.0 <= metrics["Mean IoU"] <= 1.0
    # few held-out images: the page says how many and how far single images spread
    assert any("Per image, the foreground IoU runs from" in c.value and "these 6 images" in c.value for c in at.caption)
    per_class = at.dataframe[0].value
    assert list(per_class["class"]) == ["background", "cat", "dog"]
    assert per_class["pixels (truth)"].sum() > 0
    runs = at.session_state["seg_runs"]
    assert len(runs) == 1 and runs[0].encoder_weights == "ImageNet" and runs[0].held_out_images == 6
    labels = [b.label for b in at.download_button]
    assert "Download the trained model (.safetensors)" in labels


def test_predict_with_the_session_model_shows_overlay_legend_and_downloads(trained):
    at = trained
    at.segmented_control(key="seg_section").set_value("Predict").run()
    assert not at.exception, at.exception
    choice = at.selectbox(key="seg_predict_model")
    assert choice.value.startswith("Your Unet + efficientnet_lite0")
    text = _texts(at)
    # The published models are not on this machine: the page names the files.
    assert "segformer-b0-512x512-ade-160k.safetensors" in text and "lraspp_mobilenet_v3_large-d234d4ea.pth" in text
    shares = at.dataframe[0].value
    assert set(shares["class"]) <= {"background", "cat", "dog"}
    assert shares["% of pixels"].sum() == pytest.approx(100, abs=0.1)
    assert any("background" in h.value for h in at.get("html"))
    labels = [b.label for b in at.download_button]
    assert "Mask PNG (pixel value = class index)" in labels and "Overlay PNG" in labels
    at.slider(key="seg_pred_opacity").set_value(0.9).run()  # the opacity fragment reruns without errors
    assert not at.exception
    # A published model that is missing: a warning that names its file, not a traceback.
    missing = next(o for o in choice.options if "SegFormer" in o)
    at.selectbox(key="seg_predict_model").set_value(missing).run()
    assert not at.exception
    assert any("segformer-b0-512x512-ade-160k.safetensors" in w.value for w in at.warning)


def test_instance_section_names_the_missing_yolo_seg_file_and_still_shows_semantic(trained):
    at = trained
    at.segmented_control(key="seg_section").set_value("Instance vs semantic").run()
    assert not at.exception, at.exception
    assert any("yolov8n-seg.pt" in w.value for w in at.warning)
    assert at.selectbox(key="seg_instance_model").value.startswith("Your Unet")
    assert any(rendered_text(c).startswith("Unet + efficientnet_lite0") for image in at.image for c in image.captions)


def test_save_then_load_and_bad_uploads(trained):
    at = trained
    at.segmented_control(key="seg_section").set_value("Train a U-Net").run()
    model_bytes = at.session_state["seg_trainer"].model.to_bytes()
    uploader = at.file_uploader(key="seg_load")
    uploader.set_value(("config.json", b"{}", "application/json")).run()
    assert any(".safetensors file of the model" in w.value for w in at.warning)
    at.file_uploader(key="seg_load").set_value(("model.safetensors", b"\x80\x04\x95" + b"\x00" * 40,
                                                "application/octet-stream")).run()
    assert not at.exception and any("pickle" in e.value for e in at.error)
    at.file_uploader(key="seg_load").set_value(("unet.safetensors", model_bytes, "application/octet-stream")).run()
    assert not at.exception
    assert any("Loaded unet.safetensors" in rendered_text(s.value) for s in at.success)
    loaded = at.session_state["seg_uploaded"][1]
    at.run()
    assert at.session_state["seg_uploaded"][1] is loaded  # a rerun keeps the upload's model, no second load
    at.segmented_control(key="seg_section").set_value("Predict").run()
    assert any(o.startswith("Uploaded: unet.safetensors") for o in at.selectbox(key="seg_predict_model").options)


def test_bad_zip_is_a_clear_message_and_the_page_keeps_working():
    at = _page()
    at.radio(key="seg_data_source").set_value("Your zip of images and masks").run()
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    at.file_uploader(key="seg_zip").set_value(("empty.zip", empty.getvalue(), "application/zip")).run()
    assert not at.exception
    assert any("empty.zip: The zip archive is empty." in rendered_text(e.value) for e in at.error)
    assert at.button(key="seg_train").disabled  # nothing to train on, nothing crashes
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("images/a.jpg", b"not an image")
        archive.writestr("masks/a.png", b"")
    at.file_uploader(key="seg_zip").set_value(("bad.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception
    assert any("No usable image/mask pairs" in e.value and "a.jpg" in rendered_text(e.value) for e in at.error)


def _png(array) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_user_names_in_a_zip_are_shown_as_typed():
    """Class names, file names and the zip's name never turn into bold text, links or HTML."""
    import numpy as np

    at = _page()
    at.radio(key="seg_data_source").set_value("Your zip of images and masks").run()
    buf = io.BytesIO()
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 1
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("classes.txt", "__back__\n<b>pet</b>\n")
        for stem in ("__init__", "*star*"):
            archive.writestr(f"images/{stem}.png", _png(np.full((32, 32, 3), 120)))
            archive.writestr(f"masks/{stem}.png", _png(mask))
        archive.writestr("images/[x](y).png", b"not an image")
        archive.writestr("masks/[x](y).png", _png(mask))
    at.file_uploader(key="seg_zip").set_value(("__my__.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception, at.exception
    summary = next(m.value for m in at.markdown if "image/mask pairs" in m.value)
    assert "0 __back__" in rendered_text(summary) and "1 <b>pet</b>" in rendered_text(summary)
    assert formatting(summary) == {"strong", "code"}  # the page's own bold count and class indices only
    captions = [c for image in at.image for c in image.captions]
    assert {rendered_text(c) for c in captions} >= {"__init__", "*star*"}
    assert all(formatting(c) == set() for c in captions)
    problems = [w.value for w in at.warning]
    assert any("[x](y)" in rendered_text(p) and "a" not in formatting(p) for p in problems), problems


def _tiny_settings(at: AppTest, finetune: int = 1) -> None:
    """A one-epoch run with its own learning rate: not the run the other tests train."""
    at.slider(key="seg_frozen").set_value(0)
    at.slider(key="seg_finetune").set_value(finetune)
    at.select_slider(key="seg_lr").set_value(1e-3)
    at.run()


def _wait(at: AppTest) -> None:
    deadline = time.time() + 150
    while at.session_state["seg_trainer"].running and time.time() < deadline:
        time.sleep(0.5)
    at.run()
    assert not at.exception, at.exception


def test_a_stored_run_shows_at_once_with_its_note_and_trains_again_live():
    first = _page()
    _tiny_settings(first)
    assert not any("exactly these settings" in i.value for i in first.info)  # nothing stored yet
    first.button(key="seg_train").click().run()
    _wait(first)
    live = first.session_state["seg_trainer"]
    assert live.status == "done" and live.stored_at is None

    other = _page()  # another student, the same settings: the stored run, no training
    _tiny_settings(other)
    assert not other.exception, other.exception
    shown = other.session_state["seg_trainer"]
    assert shown is not live and shown.stored_at is not None and shown.status == "done" and not shown.running
    note = next(i.value for i in other.info if "exactly these settings" in i.value)
    assert "This run was trained at" in note and "on this server" in note and "**Train again**" in note
    assert [r.val_foreground_iou for r in shown.history] == [r.val_foreground_iou for r in live.history]
    metrics = {m.label: m.value for m in other.metric}
    assert float(metrics["Foreground IoU (n = 6)"]) == pytest.approx(live.metrics.foreground_iou, abs=1e-3)
    assert any("Per image, the foreground IoU runs from" in c.value for c in other.caption)
    assert other.session_state["seg_runs"][0].trained.startswith("stored")
    assert "Download the trained model (.safetensors)" in [b.label for b in other.download_button]

    other.button(key="seg_retrain").click().run()  # Train again: live, with progress
    again = other.session_state["seg_trainer"]
    assert again.stored_at is None and again is not shown
    _wait(other)
    assert any("Finished after 1 of 1 epochs" in s.value for s in other.success)
    assert not any("exactly these settings" in i.value for i in other.info)

    _tiny_settings(other, finetune=2)  # a changed setting: never the stored run's note
    assert not any("exactly these settings" in i.value for i in other.info)
    assert other.session_state["seg_trainer"] is again


def test_the_page_default_is_the_run_the_warm_start_stores():
    from cvdemo import segmentation as seg

    at = _page()
    assert not at.exception, at.exception
    assert at.session_state["seg_settings_key"] == seg.runs.run_key(*seg.runs.page_default())
