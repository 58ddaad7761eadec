"""cvdemo.detection with the real classroom YOLOv8n and the real coco8 set.

The classroom file is an INT8 QDQ ONNX; the default detector runs the float-activation graph
derived from it, the ``int8`` variant runs the file itself. Assertions hold on any CPU: the INT8
file's scores depend on the CPU's integer kernels (AVX-512 VNNI: bus + 4 persons on bus.jpg;
AVX2 only: bus + 3 persons), so only what is true everywhere is asserted for it (a bus and at
least three people); the float graph's scores are CPU-independent float math.

No real YOLO ``.pt`` is on these machines: the accelerated-export tests use a random-init
YOLOv8n checkpoint, so they compare raw network tensors, not detections.
"""

from __future__ import annotations

import io
import json
import os
import socket
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvdemo import detection, qdq, runtime, yolo_runtime
from cvdemo.detection import (
    Detector,
    LabeledSetError,
    check_label_text,
    detection_parity,
    distinct_scores,
    draw_iou_pair,
    drop_duplicate_images,
    duplicates_note,
    iou_by_formula,
    match_boxes,
    pr_figure,
    sample_set,
    yolo_zip_set,
)
from cvdemo.images import ImageInputError, fingerprint


@pytest.fixture(scope="session")
def detector() -> Detector:
    """The default: the float-activation graph derived from the classroom INT8 file."""
    return Detector("yolov8n")


@pytest.fixture(scope="session")
def int8_detector() -> Detector:
    """The compressed twin: the INT8 file itself."""
    return Detector("yolov8n", variant="int8")


@pytest.fixture(scope="session")
def bus(bus_jpg) -> Image.Image:
    return Image.open(bus_jpg).convert("RGB")


@pytest.fixture(scope="session")
def bus_detections(detector, bus):
    return detector.detect(bus, name="bus.jpg")


def _coco8_zip(
    data_dir: Path,
    label_edits: dict[str, str] | None = None,
    extra: dict[str, bytes] | None = None,
    yaml_text: str | None = None,
) -> bytes:
    """coco8's val split as a user would zip it (top folder, images/ + labels/, data.yaml)."""
    root = data_dir / "coco8"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted((root / "images" / "val").glob("*.jpg")):
            zf.write(path, f"mydata/images/val/{path.name}")
        for path in sorted((root / "labels" / "val").glob("*.txt")):
            text = (label_edits or {}).get(path.name, path.read_text())
            zf.writestr(f"mydata/labels/val/{path.name}", text)
        if yaml_text is None:
            zf.write(root / "data.yaml", "mydata/data.yaml")
        else:
            zf.writestr("mydata/data.yaml", yaml_text)
        for name, blob in (extra or {}).items():
            zf.writestr(name, blob)
    return buf.getvalue()


# --- detection ---------------------------------------------------------------------------------


def test_bus_has_a_bus_and_people(bus_detections, bus):
    counts = bus_detections.counts()
    assert counts.get("bus", 0) >= 1
    assert counts.get("person", 0) >= 3
    xyxy = bus_detections.xyxy
    assert xyxy.shape == (len(bus_detections), 4)
    # boxes are in pixels of the original 810x1080 photo, not of the 640 network input
    assert bus_detections.image_size == bus.size == (810, 1080)
    assert (xyxy[:, [0, 2]] <= bus.width + 0.5).all() and (xyxy[:, [1, 3]] <= bus.height + 0.5).all()
    assert xyxy[:, 3].max() > 640
    assert (bus_detections.scores >= 0.25).all()
    bus_box = xyxy[bus_detections.class_names.index("bus")]
    assert (bus_box[2] - bus_box[0]) > 0.8 * bus.width  # the bus spans the photo
    lat = bus_detections.latency
    assert lat.preprocess > 0 and lat.inference > 0 and lat.nms > 0
    assert "inference" in lat.badge() and "NMS" in lat.badge()


def test_table_counts_and_downloads(bus_detections, bus):
    table = bus_detections.table()
    assert list(table.columns[:3]) == ["class", "class_id", "score"]
    assert len(table) == len(bus_detections)
    np.testing.assert_allclose(table["area"], table["width"] * table["height"], rtol=1e-3, atol=1)
    assert sum(bus_detections.counts().values()) == len(table)

    png = Image.open(io.BytesIO(bus_detections.png()))
    assert png.format == "PNG" and png.size == bus.size
    assert np.abs(np.asarray(png, dtype=int) - np.asarray(bus, dtype=int)).mean() > 1  # boxes were drawn

    data = json.loads(bus_detections.to_json())
    assert data["image"] == "bus.jpg" and (data["width"], data["height"]) == bus.size
    assert {d["name"] for d in data["detections"]} >= {"bus", "person"}
    assert set(data["speed_ms"]) == {"preprocess", "inference", "nms"}

    csv = pd.read_csv(io.StringIO(bus_detections.to_csv()))
    assert len(csv) == len(bus_detections)
    assert set(csv["class"]) >= {"bus", "person"}
    np.testing.assert_allclose(csv[["x1", "y1", "x2", "y2"]].to_numpy(), bus_detections.xyxy, atol=0.06)


@pytest.mark.parametrize("variant", ["float", "int8"])
def test_class_filter_and_confidence(detector, int8_detector, bus, variant):
    model = detector if variant == "float" else int8_detector
    people = model.detect(bus, classes=[0])
    assert len(people) >= 3 and set(people.class_names) == {"person"}
    everything = model.detect(bus, conf=0.25)
    # a threshold between the scores seen here, so both sides of it are non-empty on any CPU
    scores = np.sort(everything.scores)
    threshold = float(scores[len(scores) // 2] - 1e-4)
    sure = model.detect(bus, conf=threshold)
    expected = everything.scores >= threshold
    assert 1 <= len(sure) < len(everything)
    # exactly the boxes whose score is >= the threshold (the forward pass is the same, so the numbers are too)
    assert len(sure) == expected.sum() and (sure.scores >= threshold).all()
    np.testing.assert_allclose(sure.xyxy, everything.xyxy[expected], atol=1e-3)
    assert sure.class_names == [n for n, keep in zip(everything.class_names, expected) if keep]


def test_detect_accepts_bytes_and_rejects_bad_input(detector, bus_jpg):
    assert len(detector.detect(bus_jpg.read_bytes())) >= 4
    with pytest.raises(ImageInputError, match="0 bytes"):
        detector.detect(b"")
    with pytest.raises(ImageInputError, match="not an image"):
        detector.detect(b"this is a text file, not a photo")
    huge = io.BytesIO()
    Image.new("1", (8000, 7000)).save(huge, format="PNG")  # 56 megapixels, a few kB on disk
    with pytest.raises(ImageInputError, match="megapixel"):
        detector.detect(huge.getvalue())


def test_model_facts(detector):
    assert detector.format in ("onnx", "openvino") and detector.fixed_imgsz == 640
    assert len(detector.names) == 80 and detector.names[0] == "person"
    import ultralytics.utils.checks

    assert ultralytics.utils.checks.AUTOINSTALL is False  # never pip-installs at runtime


def test_annotation_works_without_network_and_with_unicode_names(bus_detections, monkeypatch):
    """Non-ASCII labels make ultralytics draw with PIL and look for a font; offline it must still draw."""

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    result = bus_detections.result
    monkeypatch.setattr(result, "names", {**result.names, 0: "Fußgänger", 5: "автобус"})
    image = bus_detections.annotated()
    assert image.size == (810, 1080)


# --- NMS lesson and IoU ------------------------------------------------------------------------


def test_nms_lesson_matches_ultralytics(detector, bus, bus_detections):
    lesson = detector.nms_lesson(bus, conf=0.25)
    assert len(lesson) > len(bus_detections)  # many raw candidates per object
    kept = lesson.survivors(0.45)
    np.testing.assert_allclose(lesson.candidates[kept, :4], bus_detections.xyxy, atol=1e-3)
    assert len(lesson.survivors(1.0)) == len(lesson)  # a threshold of 1 removes nothing
    assert len(lesson.survivors(0.1)) <= len(kept)

    removed = lesson.suppressed_by(0.45)
    assert set(removed) == set(range(len(lesson))) - set(kept.tolist())
    for j, (k, iou) in removed.items():
        assert k in kept and iou > 0.45
        assert lesson.candidates[k, 5] == lesson.candidates[j, 5]  # class-aware NMS
        assert lesson.candidates[k, 4] >= lesson.candidates[j, 4]

    table = lesson.table(0.45)
    assert len(table) == len(lesson) and table["kept"].sum() == len(kept)
    a, b = lesson.default_pair(0.45)
    assert lesson.pair_iou(a, b).iou > 0.45
    assert lesson.plot().size == bus.size and lesson.plot(kept).size == bus.size


def test_nms_explanation_shows_scores_apart_or_says_they_tie(detector, bus):
    """Issue 19: "#11 scores higher (0.29 vs 0.29)": the text follows the numbers."""
    import dataclasses

    assert distinct_scores(0.35, 0.29) == ("0.35", "0.29")
    assert distinct_scores(0.2913, 0.2907) == ("0.2913", "0.2907")
    assert distinct_scores(0.29, 0.29) is None
    lesson = detector.nms_lesson(bus, conf=0.25)
    removed = lesson.suppressed_by(0.45)
    j, (k, _) = next(iter(removed.items()))  # a real pair: k kept, j removed by it
    shown = distinct_scores(float(lesson.candidates[k, 4]), float(lesson.candidates[j, 4]))
    assert shown is not None and shown[0] != shown[1]
    assert f"#{j} is removed, because #{k} scores higher ({shown[0]} vs {shown[1]})" in lesson.explain_pair(j, k, 0.45)

    def with_scores(high: float, low: float):
        scores = lesson.candidates.copy()
        scores[k, 4], scores[j, 4] = high, low
        return dataclasses.replace(lesson, candidates=scores)

    near = with_scores(0.2913, 0.2907).explain_pair(k, j, 0.45)
    assert "(0.2913 vs 0.2907)" in near and "0.29 vs 0.29" not in near
    tie = with_scores(0.29, 0.29).explain_pair(j, k, 0.45)
    assert "scores higher" not in tie
    assert f"#{j} is removed, because #{k} and #{j} score the same (0.29)" in tie and f"ranks first, #{k}" in tie


def test_duplicate_photos_are_detected_once(bus):
    """Issue 19: the same file uploaded twice gave two identical tabs."""
    resaved = io.BytesIO()
    bus.save(resaved, format="PNG")  # lossless: the same pixels under another name and format
    other = Image.new("RGB", bus.size, "white")
    images = [
        ("bus.jpg", bus),
        ("bus *copy* <b>.png", Image.open(resaved).convert("RGB")),
        ("blank.jpg", other),
        ("bus.jpg", bus.copy()),
    ]
    kept, skipped = drop_duplicate_images(images)
    assert [name for name, _ in kept] == ["bus.jpg", "blank.jpg"]
    assert skipped == [("bus *copy* <b>.png", "bus.jpg"), ("bus.jpg", "bus.jpg")]
    assert fingerprint(bus) == fingerprint(bus.copy()) != fingerprint(bus.convert("L"))
    note = duplicates_note(skipped)
    assert note == "Skipped 2 duplicates: “bus *copy* <b>.png” (the same pixels as “bus.jpg”), a second “bus.jpg”. Each photo is detected once."
    assert duplicates_note(skipped[:1]) == "Skipped “bus *copy* <b>.png” (the same pixels as “bus.jpg”): each photo is detected once."
    assert drop_duplicate_images([]) == ([], [])


@pytest.mark.parametrize("variant", ["float", "int8"])
def test_nms_keeps_at_most_its_input_and_no_same_class_overlap_above_the_threshold(detector, int8_detector, bus, variant):
    from ultralytics.utils.metrics import box_iou

    model = detector if variant == "float" else int8_detector
    lesson = model.nms_lesson(bus, conf=0.1)
    classes = lesson.candidates[:, 5]
    for iou in (0.2, 0.45, 0.7):
        kept = lesson.survivors(iou)
        assert 0 < len(kept) <= len(lesson) and len(set(kept.tolist())) == len(kept)
        # NMS compares boxes in network-input pixels (before scaling back and clipping to the photo)
        overlap = box_iou(lesson._net_boxes[kept], lesson._net_boxes[kept]).numpy()
        same_class = classes[kept][:, None] == classes[kept][None, :]
        np.fill_diagonal(overlap, 0)
        assert (overlap[same_class] <= iou + 1e-6).all()
    assert len(lesson.survivors(0.2)) <= len(lesson.survivors(0.7))  # a stricter threshold removes more


def test_iou_by_formula_by_hand_and_against_ultralytics(detector, bus):
    w = iou_by_formula((0, 0, 10, 10), (5, 5, 15, 15))
    assert (w.inter_area, w.union) == (25, 175) and w.iou == pytest.approx(1 / 7)
    assert w.intersection == (5, 5, 10, 10)
    assert iou_by_formula((0, 0, 10, 10), (20, 20, 30, 30)).iou == 0
    assert iou_by_formula((0, 0, 10, 10), (20, 20, 30, 30)).intersection is None
    assert iou_by_formula((1, 2, 3, 4), (1, 2, 3, 4)).iou == 1
    assert iou_by_formula((0, 0, 10, 10), (10, 0, 20, 10)).iou == 0  # touching edges do not overlap
    assert any("IoU" in s and "0.143" in s for s in w.steps())

    import torch
    from ultralytics.utils.metrics import box_iou

    boxes = detector.nms_lesson(bus).candidates[:, :4]
    expected = box_iou(torch.tensor(boxes), torch.tensor(boxes)).numpy()
    for i, j in [(0, 1), (0, 4), (2, 3), (1, len(boxes) - 1)]:
        assert iou_by_formula(boxes[i], boxes[j]).iou == pytest.approx(expected[i, j], abs=1e-5)

    crop = draw_iou_pair(bus, iou_by_formula(boxes[0], boxes[1]))
    assert 0 < crop.width <= bus.width and 0 < crop.height <= bus.height


# --- labeled sets and evaluation ---------------------------------------------------------------


def test_coco8_map_and_nothing_written_to_data(detector, data_dir):
    before = sorted(p for p in (data_dir / "coco8").rglob("*"))
    calls: list[tuple[int, int]] = []
    with sample_set("coco8") as labeled:
        assert labeled.n_images == 8 and labeled.n_boxes > 20
        assert data_dir not in labeled.root.parents
        evaluation = detector.evaluate(labeled, progress=lambda done, total: calls.append((done, total)))
    assert not labeled.root.exists()  # temp copy, caches and run folder are gone
    assert sorted(p for p in (data_dir / "coco8").rglob("*")) == before
    assert evaluation.map50 >= 0.8
    assert 0.4 < evaluation.map50_95 < evaluation.map50
    assert evaluation.n_images == 8 and evaluation.n_instances == labeled.n_boxes
    assert calls[-1] == (8, 8) and len(calls) == 8
    assert "person" in set(evaluation.per_class["Class"])
    assert evaluation.recall_axis.shape == (1000,)
    assert evaluation.mean_precision.shape == (1000,) and evaluation.mean_precision.max() <= 1
    # the area under the mean PR curve is mAP50 (ultralytics interpolates it the same way, up to 101 points)
    area = np.trapezoid(evaluation.mean_precision, evaluation.recall_axis)
    assert area == pytest.approx(evaluation.map50, abs=0.05)
    fig = pr_figure(evaluation)
    assert fig.data[-1].name.startswith("all classes")


def test_user_zip_with_malformed_lines_keeps_the_rest(detector, data_dir, tmp_path):
    marker = tmp_path / "download_script_ran"
    blob = _coco8_zip(
        data_dir,
        label_edits={
            "000000000042.txt": "16 0.6 0.34 0.54\n",  # 4 values
            "000000000049.txt": "person 0.5 0.5 0.2 0.2\n0 0.5 0.5 1.7 0.2\n",  # name instead of id, not normalized
        },
        extra={"mydata/data.yaml.bak": b"x", "../evil.txt": b"x"},
        # a user's yaml may carry ultralytics' `download:` key (a script it runs): it must never reach ultralytics
        yaml_text=(data_dir / "coco8/data.yaml").read_text() + "\ndownload: touch " + str(marker) + "\n",
    )
    with yolo_zip_set(blob, detector.names) as labeled:
        assert labeled.n_images == 2
        text = " ".join(labeled.problems)
        assert "labels/val/000000000042.txt line 1: expected 5 values" in text
        assert "000000000049.txt line 1: 'person' is not a number" in text
        assert "normalized to 0..1" in text
        assert "images/val/000000000042.jpg left out" in text
        assert "unsafe path" in text
        evaluation = detector.evaluate(labeled)
        assert evaluation.n_images == 2 and evaluation.map50 > 0.3
        yaml_text = labeled.yaml_path.read_text()
    assert "download" not in yaml_text and not marker.exists()


def test_user_zip_bad_inputs_have_clear_messages(detector, data_dir):
    with pytest.raises(LabeledSetError, match="not a valid zip"):
        yolo_zip_set(b"PK not really", detector.names)
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(LabeledSetError, match="empty"):
        yolo_zip_set(empty.getvalue(), detector.names)
    only_text = io.BytesIO()
    with zipfile.ZipFile(only_text, "w") as zf:
        zf.writestr("labels/a.txt", "0 0.5 0.5 0.1 0.1")
    with pytest.raises(LabeledSetError, match="no images"):
        yolo_zip_set(only_text.getvalue(), detector.names)
    all_bad = _coco8_zip(data_dir, label_edits={p.name: "0 0.5\n" for p in (data_dir / "coco8/labels/val").glob("*")})
    with pytest.raises(LabeledSetError, match="Nothing to evaluate.*expected 5 values"):
        yolo_zip_set(all_bad, detector.names)


def test_label_line_rules():
    good = "0 0.5 0.5 0.2 0.2\n\n3 0.1 0.1 0.3 0.1 0.2 0.4\n"  # a box, a blank line, a triangle
    assert check_label_text(good, "a.txt", 80) == (2, [])
    cases = {
        "0 0.5 0.5 0.2": "expected 5 values",
        "1.5 0.5 0.5 0.2 0.2": "whole number",
        "80 0.5 0.5 0.2 0.2": "class 80 does not exist (classes are 0–79)",
        "0 0.5 0.5 0 0.2": "greater than 0",
        "0 0.5 nan 0.2 0.2": "finite",
        "0 512 300 40 80": "normalized",
    }
    for line, message in cases.items():
        n, problems = check_label_text(line, "b.txt", 80)
        assert n == 0 and len(problems) == 1 and message in problems[0] and "b.txt line 1" in problems[0]


def test_names_from_yaml_or_classes_txt(detector, data_dir):
    blob = _coco8_zip(data_dir, yaml_text="names: [cat, dog]\n")
    with pytest.raises(LabeledSetError, match="class 25 does not exist"):
        # coco8 uses ids up to 58, but this yaml declares two classes: every file is then malformed
        yolo_zip_set(blob, detector.names)
    flat = io.BytesIO()
    with zipfile.ZipFile(flat, "w") as zf:
        image = data_dir / "coco8/images/val/000000000042.jpg"
        zf.write(image, "shots/dog.jpg")
        zf.writestr("shots/dog.txt", "0 0.6 0.34 0.54 0.51\n")  # label beside the image
        zf.writestr("shots/classes.txt", "dog\n")
    with yolo_zip_set(flat.getvalue(), detector.names) as labeled:
        assert labeled.names == {0: "dog"} and labeled.n_boxes == 1
        assert any("differ from the model's" in n for n in labeled.notes)


def test_pt_checkpoints_load_safely(tmp_path):
    """A .pt file takes the PyTorch path (weights_only load, dynamic image size)."""
    from ultralytics import YOLO

    path = tmp_path / "tiny_random.pt"
    YOLO("yolov8n.yaml", task="detect").save(str(path))  # architecture only: random weights, no download
    model = Detector(str(path), accelerated=False)
    assert model.format == "pt" and model.fixed_imgsz is None
    result = model.detect(Image.new("RGB", (320, 240), (90, 120, 200)), conf=0.0001, imgsz=320)
    assert result.input_shape[1] == 320 and result.latency.inference > 0
    lesson = model.nms_lesson(Image.new("RGB", (320, 240), (90, 120, 200)), conf=0.0001, imgsz=320)
    assert len(lesson.survivors(0.5)) <= len(lesson)
    assert yolo_runtime._ULTRALYTICS_ENV["ULTRALYTICS_SAFE_LOAD"] == "1"


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pt_file_that_runs_code_is_refused(tmp_path):
    import torch

    marker = tmp_path / "code_ran"
    path = tmp_path / "yolov8n.pt"
    torch.save({"model": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(Exception):
        Detector(str(path))
    assert not marker.exists()


# --- accelerated export of .pt checkpoints ---------------------------------------------------


@pytest.fixture(scope="module")
def random_pt(tmp_path_factory) -> Path:
    """A random-init YOLOv8n checkpoint (architecture only, no download) in its own weights folder."""
    yolo_runtime.import_ultralytics()
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("weights") / "tiny_random.pt"
    YOLO("yolov8n.yaml", task="detect").save(str(path))
    return path


@pytest.fixture(scope="module")
def accelerated(random_pt) -> Detector:
    return Detector(str(random_pt))


@pytest.fixture(scope="module")
def pytorch(random_pt) -> Detector:
    return Detector(str(random_pt), accelerated=False)


def _raw(detector: Detector, image: Image.Image, imgsz: int) -> np.ndarray:
    """The network's raw (1, 84, anchors) output; a high conf keeps NMS on a random net's output trivial."""
    return detector.nms_lesson(image, conf=0.9, imgsz=imgsz)._raw.numpy()


def _no_export(*args, **kwargs):
    raise RuntimeError("exporter disabled in this test")


def test_default_runs_the_float_graph_derived_from_the_int8_file(detector):
    source = Path(os.environ["CVDEMO_WEIGHTS_DIR"]) / "yolov8n_coco_int8_qdq.onnx"
    assert detector.path == source and detector.variant == "float" and detector.fallback_reason is None
    assert detector.derived_path == qdq.float_activation_file(source)  # cached: the same file again
    assert detector.derived_path.parent.parent == runtime.cache_folder() / "qdq"
    runtime_name = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}[detector.format]
    assert detector.runtime_info.name == f"{runtime_name} · FP32 activations"
    assert detector.backend_label == (
        f"{runtime_name} · FP32 activations (derived from the INT8 file yolov8n_coco_int8_qdq.onnx)"
    )
    assert detector.description == f"yolov8n (yolov8n_coco_int8_qdq.onnx, FP32 activations, {detector.format})"
    assert detector.parity is not None and detector.parity.passed and detector.parity.confident > 0
    if detector.latency_ms:  # both runtimes passed: the faster one here runs
        assert min(detector.latency_ms, key=detector.latency_ms.get) == detection.FORMAT_BACKENDS[detector.format]
    # There are no PyTorch weights to switch to: the float graph runs in ONNX Runtime, and the label says why.
    plain = Detector("yolov8n", accelerated=False)
    assert plain.format == "onnx" and plain.derived_path == detector.derived_path and plain.latency_ms == {}
    assert plain.backend_label.endswith("no PyTorch weights to run)")


def test_int8_twin_runs_the_file_as_it_is(int8_detector, detector):
    assert int8_detector.format == "onnx" and int8_detector.variant == "int8"
    assert int8_detector.path == detector.path and int8_detector.derived_path is None
    assert int8_detector.backend_label == "ONNX Runtime · INT8 (INT8 ONNX file yolov8n_coco_int8_qdq.onnx)"
    assert int8_detector.description == "yolov8n (yolov8n_coco_int8_qdq.onnx, INT8, onnx)"
    with pytest.raises(ValueError, match="Unknown variant"):
        Detector("yolov8n", variant="fp16")


def test_float_graph_gives_the_same_boxes_on_every_cpu(bus_detections):
    """Float math: these are the scores on an AVX-512 VNNI Xeon and under AVX2-only (Haswell) emulation alike."""
    expected = {"bus": [0.855], "person": [0.916, 0.915, 0.908, 0.380]}
    seen: dict[str, list[float]] = {}
    for name, score in zip(bus_detections.class_names, bus_detections.scores):
        seen.setdefault(name, []).append(float(score))
    assert sorted(seen) == sorted(expected)
    for name, scores in expected.items():
        np.testing.assert_allclose(sorted(seen[name], reverse=True), scores, atol=0.005)


def test_both_variants_find_the_bus_and_people_and_agree(bus_detections, int8_detector, bus):
    twin = int8_detector.detect(bus, name="bus.jpg")
    for result in (bus_detections, twin):
        counts = result.counts()
        assert counts.get("bus", 0) >= 1 and counts.get("person", 0) >= 3
    parity = detection_parity([twin.result], [bus_detections.result])
    assert parity.passed and parity.matched == parity.confident >= 4  # bus + 3 people score >= 0.5 in both


def test_match_boxes_pairs_same_class_boxes_by_iou():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], dtype=float)
    b = np.array([[1, 1, 10, 10], [20, 20, 30, 31], [50, 50, 60, 60], [0, 0, 10, 10]], dtype=float)
    pairs = match_boxes(a, np.array([0, 1, 2]), b, np.array([0, 1, 5, 0]))
    assert [(i, j) for i, j, _ in pairs] == [(0, 3), (1, 1)]  # each box once, best IoU first; class 2 != 5
    assert pairs[0][2] == pytest.approx(1.0) and pairs[1][2] == pytest.approx(100 / 110)
    assert match_boxes(a, np.zeros(3), b[:0], np.zeros(0)) == []
    assert match_boxes(a[:1], np.zeros(1), np.array([[0, 0, 10, 4.9]]), np.zeros(1)) == []  # IoU 0.49
    assert len(match_boxes(a[:1], np.zeros(1), np.array([[0, 0, 10, 6.0]]), np.zeros(1))) == 1  # IoU 0.6
    assert match_boxes(a[:1], np.zeros(1), np.array([[0, 0, 10, 6.0]]), np.zeros(1), min_iou=0.7) == []


def test_float_graph_refused_by_parity_falls_back_to_the_int8_file(monkeypatch, caplog):
    strict = lambda ref, cand: detection.DetectionParity(len(ref), 10, 9, 0.5, 0.5, 1.0)  # noqa: E731  90% < 100%
    monkeypatch.setattr("cvdemo.detection.detector.detection_parity", strict)  # where Detector looks it up
    with caplog.at_level("WARNING", logger="cvdemo.runtime"):
        model = Detector("yolov8n")
    assert model.variant == "int8" and model.derived_path is None and model.format == "onnx"
    assert model.fallback_reason.startswith("FP32-activation graph refused: it does not find what the INT8 file finds")
    assert model.runtime_info.name == "ONNX Runtime · INT8"
    assert "9 of 10 boxes" in model.backend_label and "running the INT8 file" in model.backend_label
    assert "runs its INT8 file" in caplog.text


def test_float_graph_that_cannot_be_derived_falls_back(monkeypatch):
    def fail(source):
        raise PermissionError(f"cache folder is read-only: {source.name}")

    monkeypatch.setattr(qdq, "float_activation_file", fail)
    model = Detector("yolov8n", accelerated=False)
    assert model.variant == "int8" and "could not derive it (cache folder is read-only" in model.fallback_reason
    counts = model.detect(Image.open(_bus_path()).convert("RGB")).counts()
    assert counts.get("bus", 0) >= 1 and counts.get("person", 0) >= 3


def _bus_path() -> Path:
    from cvdemo.datasets import packaged_images

    return packaged_images()["bus.jpg"]


@pytest.mark.skipif(not runtime.backend_installed("openvino"), reason="OpenVINO not installed")
def test_openvino_that_differs_from_onnx_runtime_is_refused(monkeypatch):
    monkeypatch.setattr("cvdemo.detection.detector.RAW_TOLERANCE", {"boxes": -1.0, "scores": -1.0})  # nothing can pass
    model = Detector("yolov8n")
    assert model.format == "onnx" and model.variant == "float" and model.latency_ms == {}
    assert any(note.startswith("OpenVINO refused: its output differs") for note in model.notes)
    folder = model.derived_path.parent / "yolov8n_coco_int8_qdq_float_openvino_model"
    assert sorted(p.name for p in folder.iterdir()) == [
        "metadata.yaml", "yolov8n_coco_int8_qdq_float.bin", "yolov8n_coco_int8_qdq_float.xml"
    ]


def test_int8_variant_of_a_model_without_an_int8_file_is_a_clear_error(random_pt):
    with pytest.raises(ValueError, match="tiny_random has no INT8 file on this machine"):
        Detector(str(random_pt), variant="int8")
    assert detection.has_int8_twin("yolov8n") and not detection.has_int8_twin("yolo11n")


def test_pt_is_exported_once_into_the_cache(random_pt, accelerated, monkeypatch):
    from cvdemo import runtime
    from ultralytics.engine.model import Model

    assert accelerated.format in ("openvino", "onnx") and accelerated.fallback_reason is None
    assert accelerated.fixed_imgsz is None  # dynamic export: the page's image-size choice still applies
    runtime_name = {"openvino": "OpenVINO", "onnx": "ONNX Runtime"}[accelerated.format]
    assert accelerated.backend_label.startswith(runtime_name)
    assert accelerated.backend_label.endswith("(exported from tiny_random.pt)")
    assert accelerated.description == f"tiny_random (tiny_random.pt, {accelerated.format})"
    folder = accelerated.exported_path.parent
    assert folder.parent == runtime.cache_folder() / "yolo"
    assert folder.name.startswith("tiny_random-") and len(folder.name) == len("tiny_random-") + 16
    assert [p.name for p in folder.iterdir()] == [accelerated.exported_path.name]  # no temp folder left behind
    assert [p.name for p in random_pt.parent.iterdir()] == ["tiny_random.pt"]  # nothing beside the weights

    monkeypatch.setattr(Model, "export", _no_export)  # a second load must not export again
    again = Detector(str(random_pt))
    assert again.exported_path == accelerated.exported_path and again.fallback_reason is None
    assert again.format == accelerated.format


def test_export_matches_pytorch(accelerated, pytorch, bus):
    assert pytorch.format == "pt" and pytorch.backend_label == "PyTorch"
    assert pytorch.exported_path is None and pytorch.fallback_reason is None
    # OpenVINO computes in bf16 on CPUs with AMX/AVX512-BF16 (the label says so): ~3 significant digits.
    low_precision = accelerated.precision not in (None, "f32")
    assert ("bf16" in accelerated.backend_label) == (accelerated.precision == "bf16")
    shapes = set()
    for imgsz in (640, 320):
        fast, slow = _raw(accelerated, bus, imgsz), _raw(pytorch, bus, imgsz)
        assert fast.shape == slow.shape
        shapes.add(fast.shape)
        # Boxes in input pixels; class scores compared as logits (a random net's scores are ~1e-4).
        np.testing.assert_allclose(fast[:, :4], slow[:, :4], atol=0.5 if low_precision else 0.01)
        logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
        np.testing.assert_allclose(
            logit(fast[:, 4:].astype(np.float64)), logit(slow[:, 4:].astype(np.float64)), atol=0.2 if low_precision else 0.01
        )
    assert len(shapes) == 2  # the export took both input sizes (dynamic shapes)


def test_exported_model_evaluates(accelerated):
    with sample_set("coco8", ["val"]) as labeled:
        evaluation = accelerated.evaluate(labeled, imgsz=320)
    assert evaluation.n_images == 4 and 0 <= evaluation.map50 <= 1  # a random net: the pipeline, not the score
    assert accelerated.format in evaluation.model_name


def test_failed_export_falls_back_to_pytorch(random_pt, monkeypatch, tmp_path, caplog):
    from ultralytics.engine.model import Model

    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path / "cache"))  # no export from other tests to reuse
    monkeypatch.setattr(Model, "export", _no_export)
    with caplog.at_level("WARNING", logger="cvdemo.runtime"):
        model = Detector(str(random_pt))
    assert model.format == "pt" and model.exported_path is None
    assert model.fallback_reason == "exporter disabled in this test"
    assert model.backend_label == "PyTorch (export failed: exporter disabled in this test)"
    assert [r.name for r in caplog.records] == ["cvdemo.runtime"] and "exporter disabled" in caplog.text
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # the temp export folder is gone
    assert model.detect(Image.new("RGB", (320, 240)), conf=0.9).latency.inference > 0


def test_onnx_export_without_openvino(random_pt, pytorch, monkeypatch, tmp_path, bus):
    import sys

    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    model = Detector(str(random_pt))
    assert model.format == "onnx" and model.fallback_reason is None and model.fixed_imgsz is None
    assert model.exported_path.name == "tiny_random.onnx"
    assert model.backend_label == "ONNX Runtime (exported from tiny_random.pt)"
    np.testing.assert_allclose(_raw(model, bus, 416), _raw(pytorch, bus, 416), rtol=1e-3, atol=1e-4)
