"""The Detection page through the real app shell (AppTest), with the classroom model and data.

Counts are read from the page's own table, never assumed: the INT8 twin's scores depend on the
CPU's integer kernels, and the page text must follow whatever the model found.
"""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import open_page
from cvdemo.clip.prompts import md_literal
from cvdemo.detection import duplicates_note
from markdown_view import rendered_text

PAGE = "app_pages/detection.py"


def _page() -> AppTest:
    return open_page(PAGE, timeout=180)


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [s.value for s in at.subheader] + [c.value for c in at.caption]
    return " ".join(str(p) for p in parts)


def _frames(at: AppTest) -> list:
    return [d.value for d in at.dataframe]


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _assert_bus_and_people_counted(at: AppTest, images: int = 1) -> None:
    """A bus and at least three people in the table, and a headline built from the table."""
    table = _frames(at)[0]
    assert (table["class"] == "bus").sum() >= 1 and (table["class"] == "person").sum() >= 3
    noun = "image" if images == 1 else "images"
    assert any(s.value == f"{len(table)} detections in {images} {noun}" for s in at.subheader), [
        s.value for s in at.subheader
    ]


@pytest.fixture(scope="module")
def page() -> AppTest:
    return _page()


def test_sample_image_shows_detections_table_counts_and_downloads(page):
    at = page
    assert not at.error
    _assert_bus_and_people_counted(at)
    text = _texts(at)
    assert "inference" in text and "NMS" in text and "input 640×640" in text  # latency badge
    # the badge names what runs: the float-activation graph derived from the classroom INT8 file
    assert "NMS · ONNX Runtime · FP32 activations]" in text or "NMS · OpenVINO · FP32 activations]" in text
    assert "derived from the INT8 file yolov8n_coco_int8_qdq.onnx" in text
    assert at.radio(key="det_variant").value == "float"
    table, counts = _frames(at)[:2]
    assert {"class", "score", "x1", "y1", "x2", "y2", "area"} <= set(table.columns)
    assert f"{len(table)} objects" in text
    assert dict(zip(counts["class"], counts["count"]))["person"] == (table["class"] == "person").sum()
    assert [b.label for b in at.get("download_button")] == ["Annotated PNG", "Detections JSON", "Detections CSV"]
    assert at.select_slider(key="det_imgsz").disabled  # the ONNX export has a fixed input size
    assert len(at.get("image")) >= 2  # original and annotated side by side


def test_class_filter_and_several_images(page):
    at = page
    at.multiselect(key="det_classes").set_value(["bus"]).run()
    table = _frames(at)[0]
    assert set(table["class"]) == {"bus"}
    at.multiselect(key="det_classes").set_value([]).run()
    at.multiselect(key="det_samples").set_value(["bus.jpg", "zidane.jpg"]).run()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["bus.jpg", "zidane.jpg"]
    tables = _frames(at)
    total = len(tables[0]) + len(tables[2])  # each tab: detections table, then the per-class counts
    assert any(s.value == f"{total} detections in 2 images" for s in at.subheader)
    assert len(at.get("download_button")) == 6


def test_nms_lesson_follows_its_slider(page):
    at = page
    at.multiselect(key="det_samples").set_value(["bus.jpg"]).run()
    at.toggle(key="nms_on").set_value(True).run()
    assert not at.exception
    assert _metric(at, "Boxes the network proposed") == "8,400"
    candidates = int(_metric(at, "Score ≥ 0.25"))
    detections = len(_frames(at)[0])  # the detections above ran NMS at the same IoU (0.45)
    assert int(_metric(at, "Kept by NMS")) == detections and candidates > detections
    assert int(_metric(at, "Removed by NMS")) == candidates - detections
    assert len(at.latex) == 2 and "IoU" in at.latex[1].value
    assert any("removed" in i.value for i in at.info)
    at.slider(key="nms_iou").set_value(1.0).run()
    assert int(_metric(at, "Kept by NMS")) == candidates  # threshold 1: NMS removes nothing
    at.toggle(key="nms_on").set_value(False).run()


def test_evaluate_coco8(page):
    at = page
    assert at.radio(key="eval_source").value.startswith("coco8")
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert not at.exception and not at.error
    assert float(_metric(at, "mAP50")) >= 0.8
    assert 0.4 < float(_metric(at, "mAP50-95")) < 1
    assert _metric(at, "Images / boxes") == "8 / 30"
    assert len(at.get("plotly_chart")) == 1


def test_uploads_bad_files_are_reported_and_good_ones_kept(bus_jpg):
    at = _page()
    at.radio(key="det_source").set_value("Upload").run()
    huge = io.BytesIO()
    Image.new("1", (8000, 7000)).save(huge, format="PNG")
    at.file_uploader(key="det_upload").set_value(
        [
            ("bus.jpg", bus_jpg.read_bytes(), "image/jpeg"),
            ("notes.txt", b"not a photo", "text/plain"),
            ("empty.jpg", b"", "image/jpeg"),
            ("huge.png", huge.getvalue(), "image/png"),
        ]
    ).run()
    assert not at.exception
    errors = " ".join(rendered_text(e.value) for e in at.error)  # what the student reads
    assert "notes.txt is not an image" in errors
    assert "empty.jpg is empty (0 bytes)" in errors
    assert "huge.png" in errors and "megapixel" in errors
    _assert_bus_and_people_counted(at)


def test_same_photo_uploaded_twice_is_detected_once(bus_jpg):
    from cvdemo.datasets import packaged_images

    at = _page()
    at.radio(key="det_source").set_value("Upload").run()
    bus = bus_jpg.read_bytes()
    at.file_uploader(key="det_upload").set_value(
        [
            ("bus.jpg", bus, "image/jpeg"),
            ("zidane.jpg", packaged_images()["zidane.jpg"].read_bytes(), "image/jpeg"),
            ("**bus** [copy](x).jpg", bus, "image/jpeg"),
        ]
    ).run()
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs] == ["bus.jpg", "zidane.jpg"]
    assert any(s.value.endswith("in 2 images") for s in at.subheader)
    assert len(at.warning) == 1  # one message, the name escaped so markdown shows it as it is
    expected = md_literal(duplicates_note([("**bus** [copy](x).jpg", "bus.jpg")]))
    assert at.warning[0].value == expected and "“\\*\\*bus\\*\\* \\[copy\\]\\(x\\)\\.jpg”" in expected


def test_camera_snapshot(bus_jpg):
    at = _page()
    at.radio(key="det_source").set_value("Camera").run()
    at.camera_input(key="det_camera").set_value(("camera.jpg", bus_jpg.read_bytes(), "image/jpeg")).run()
    assert not at.exception
    _assert_bus_and_people_counted(at)


def test_int8_twin_is_one_click_away():
    at = _page()
    at.radio(key="det_variant").set_value("int8").run()
    assert not at.exception and not at.error
    _assert_bus_and_people_counted(at)
    text = _texts(at)
    assert "NMS · ONNX Runtime · INT8]" in text and "INT8 ONNX file yolov8n_coco_int8_qdq.onnx" in text
    assert "yolov8n (yolov8n_coco_int8_qdq.onnx, INT8, onnx)" in text


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in files.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def test_user_zip_evaluation_reports_malformed_lines(data_dir):
    at = _page()
    at.radio(key="eval_source").set_value("Your YOLO-format zip").run()
    val = data_dir / "coco8"
    files = {f"images/val/{p.name}": p.read_bytes() for p in (val / "images/val").glob("*.jpg")}
    files |= {f"labels/val/{p.name}": p.read_bytes() for p in (val / "labels/val").glob("*.txt")}
    files["labels/val/000000000042.txt"] = b"16 0.6 0.34\n"
    at.file_uploader(key="eval_zip").set_value(("mine.zip", _zip(files), "application/zip")).run()
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert not at.exception and not at.error
    assert _metric(at, "Images / boxes").startswith("3 /")
    problems = " ".join(e.label for e in at.expander)
    assert "problem(s) in the zip" in problems
    assert "labels/val/000000000042.txt line 1: expected 5 values" in _texts(at)

    at.file_uploader(key="eval_zip").set_value(("empty.zip", _zip({}), "application/zip")).run()
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert not at.exception
    assert any("The zip archive is empty" in e.value for e in at.error)


def test_missing_weights_is_explained_and_page_survives():
    from cvdemo import weights

    if weights.available("yolo11n"):
        pytest.skip("yolo11n weights are on this machine")
    at = _page()
    at.selectbox(key="det_model").set_value("yolo11n").run()  # no yolo11n file on the classroom machines
    assert not at.exception
    assert any("Model weights missing" in w.value and "yolo11n" in w.value for w in at.warning)
    assert any("needs a model" in i.value for i in at.info)
