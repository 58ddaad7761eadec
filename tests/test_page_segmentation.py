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
    assert at.select_slider(key="seg_factor").value == 0.1  # differential learning rate
    assert at.toggle(key="seg_pretrained").value is True  # EfficientNet-Lite0's ImageNet weights are here
    captions = [c for image in at.image for c in image.captions]
    assert "Abyssinian_1" in captions  # the gallery of masks over photos


def test_tiny_training_run_reports_held_out_iou_and_offers_the_model(trained):
    at = trained
    trainer = at.session_state["seg_trainer"]
    assert trainer.status == "done" and len(trainer.history) == 1
    assert any("Finished after 1 of 1 epochs" in s.value for s in at.success)
    metrics = {m.label: float(m.value) for m in at.metric}
    assert 0.0 <= metrics["Foreground IoU"] <= 1.0 and 0.0 <= metrics["Mean IoU"] <= 1.0
    per_class = at.dataframe[0].value
    assert list(per_class["class"]) == ["background", "cat", "dog"]
    assert per_class["pixels (truth)"].sum() > 0
    runs = at.session_state["seg_runs"]
    assert len(runs) == 1 and runs[0]["encoder weights"] == "ImageNet"
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
    assert any(c.startswith("Unet + efficientnet_lite0") for image in at.image for c in image.captions)


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
    assert any("Loaded unet.safetensors" in s.value for s in at.success)
    at.segmented_control(key="seg_section").set_value("Predict").run()
    assert any(o.startswith("Uploaded: unet.safetensors") for o in at.selectbox(key="seg_predict_model").options)


def test_bad_zip_is_a_clear_message_and_the_page_keeps_working():
    at = _page()
    at.radio(key="seg_data_source").set_value("Your zip of images and masks").run()
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    at.file_uploader(key="seg_zip").set_value(("empty.zip", empty.getvalue(), "application/zip")).run()
    assert not at.exception
    assert any("empty.zip: The zip archive is empty." in e.value for e in at.error)
    assert at.button(key="seg_train").disabled  # nothing to train on, nothing crashes
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("images/a.jpg", b"not an image")
        archive.writestr("masks/a.png", b"")
    at.file_uploader(key="seg_zip").set_value(("bad.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception
    assert any("No usable image/mask pairs" in e.value and "a.jpg" in e.value for e in at.error)
