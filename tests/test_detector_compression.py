"""cvdemo.compression.detector: the classroom YOLOv8n as FP32-activation graph vs INT8 file, on real coco8.

Nothing here asserts a count or a score of the INT8 file (they depend on the CPU's integer
kernels) or a speed (that is bench/bench_detection.py's job): only what holds on any CPU.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from cvdemo.compression import detector as dc
from cvdemo.compression import CpuFeatures


@pytest.fixture(scope="module")
def models():
    return dc.detectors("yolov8n")


@pytest.fixture(scope="module")
def result(models) -> dc.DetectorComparison:
    onnx_float, int8_model, page_float = models
    steps: list[tuple[float, str]] = []
    out = dc.compare(onnx_float, int8_model, "coco8", repeats=3, page_model=page_float,
                     progress=lambda f, text: steps.append((f, text)))
    out.steps = steps  # for the progress test
    return out


def test_detectors_are_the_float_graph_and_the_int8_file(models):
    onnx_float, int8_model, page_float = models
    assert (onnx_float.variant, onnx_float.format) == ("float", "onnx")
    assert (int8_model.variant, int8_model.format) == ("int8", "onnx")
    assert page_float.variant == "float" and page_float.derived_path == onnx_float.derived_path
    assert dc.row_name(onnx_float) == "FP32 activations · ONNX Runtime" and dc.row_name(int8_model) == "INT8 · ONNX Runtime"
    assert dc.detectors("yolov8n")[1] is int8_model  # shared per process (cvdemo.cache)


def test_table_has_latency_size_and_map_for_both(result, models):
    table = result.table
    expected = ["float", "int8"] + (["page"] if models[2].format != "onnx" else [])
    assert list(table.index) == expected
    assert table.loc["float", "model"] == "FP32 activations · ONNX Runtime"
    assert table.loc["int8", "model"] == "INT8 · ONNX Runtime"
    assert table.loc["int8", "file"] == "yolov8n_coco_int8_qdq.onnx"
    assert table.loc["int8", "file MB"] < table.loc["float", "file MB"] / 3  # 1 byte per weight instead of 4
    assert (table["inference ms"] > 0).all() and (table["best ms"] <= table["inference ms"]).all()
    assert table.loc["float", "speed-up"] == 1.0
    assert result.speedup == pytest.approx(table.loc["float", "inference ms"] / table.loc["int8", "inference ms"])
    assert {k: len(v) for k, v in result.latency_samples_ms.items()} == {k: 3 for k in expected}
    # float math: the same mAP on every CPU; the INT8 file's moves with the CPU, so only a sane range for it
    assert table.loc["float", "mAP50"] >= 0.8 and 0.6 < table.loc["float", "mAP50-95"] < table.loc["float", "mAP50"]
    assert 0.3 < table.loc["int8", "mAP50-95"] < table.loc["int8", "mAP50"] <= 1
    if "page" in expected:  # latency only: the same graph as the float row
        assert np.isnan(table.loc["page", "mAP50"])
    assert result.evaluations["float"].n_images == 8 and result.dataset.startswith("coco8")
    assert result.image_name == "bus.jpg"


def test_box_agreement_is_consistent(result):
    agree = result.agreement
    per_image = agree.per_image
    assert agree.images == len(per_image) == 8
    assert agree.float_boxes == per_image["float boxes"].sum() and agree.int8_boxes == per_image["INT8 boxes"].sum()
    assert agree.matched == per_image["matched"].sum()
    assert (per_image["matched"] <= per_image[["float boxes", "INT8 boxes"]].min(axis=1)).all()
    assert 0 < agree.matched <= min(agree.float_boxes, agree.int8_boxes)
    assert agree.f1 == pytest.approx(2 * agree.matched / (agree.float_boxes + agree.int8_boxes))
    assert 0 <= agree.unmatched_borderline <= agree.unmatched == agree.float_boxes + agree.int8_boxes - 2 * agree.matched
    assert agree.f1 >= 0.7 and agree.mean_iou >= 0.8  # the same network: most boxes agree on any CPU


def test_box_agreement_on_bus(models, bus_jpg):
    onnx_float, int8_model, _ = models
    agree = dc.box_agreement([("bus.jpg", Image.open(bus_jpg).convert("RGB"))], onnx_float, int8_model)
    row = agree.per_image.iloc[0]
    assert row["image"] == "bus.jpg" and row["matched"] >= 4  # the bus and three people, on any CPU
    assert "bus" not in row["only float"] and "bus" not in row["only INT8"]


def test_progress_is_reported_in_order(result):
    fractions = [f for f, _ in result.steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    texts = " ".join(t for _, t in result.steps)
    assert "Timing" in texts and "mAP of INT8 · ONNX Runtime: image 8 of 8" in texts and "Box agreement: image 8 of 8" in texts


def test_explanation_names_this_cpu_and_the_numbers(result):
    text = dc.explain(result)
    assert f"Flags read from {result.cpu.source}" in text  # CPUID: what the kernels dispatch on
    assert f"{result.table.loc['int8', 'mAP50-95']:.3f} in INT8" in text
    assert f"{result.agreement.matched} of {result.agreement.int8_boxes} INT8 boxes" in text
    if result.cpu.vnni:
        assert "INT8 dot-product instruction (VNNI)" in text


def test_explanation_for_an_avx2_only_cpu(result):
    haswell = CpuFeatures("Intel Core i7-4770 (Haswell)", frozenset({"avx", "avx2", "fma"}), 2)
    slower = dataclasses.replace(result, cpu=haswell, table=result.table.assign(**{"inference ms": [100.0, 120.0, 90.0][: len(result.table)]}))
    text = dc.explain(slower)
    assert "no INT8 dot-product instruction (no VNNI)" in text and "vpmaddubsw" in text
    assert "INT8 is **slower**" in text and "0.83×" in text and "avx2" in text
    faster = dataclasses.replace(result, table=result.table.assign(**{"inference ms": [100.0, 70.0, 90.0][: len(result.table)]}))
    assert "INT8 runs **1.43×** as fast" in dc.explain(faster)


def test_remembered_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(dc, "_results", {})
    monkeypatch.setattr(dc, "detectors", lambda name: ("float", "int8", "page"))
    monkeypatch.setattr(dc, "compare", lambda *args, **kwargs: calls.append(args) or f"result {len(calls)}")
    assert not dc.has_result("yolov8n", "coco8")
    assert dc.remembered("yolov8n", "coco8") == "result 1" and dc.has_result("yolov8n", "coco8")
    assert dc.remembered("yolov8n", "coco8") == "result 1"  # a second session: no recomputation
    assert dc.remembered("yolov8n", "coco8", refresh=True) == "result 2"
    assert calls == [("float", "int8", "coco8")] * 2


def test_a_re_measure_does_not_keep_other_sessions_waiting(monkeypatch):
    import threading

    started, release = threading.Event(), threading.Event()

    def slow_compare(*args, **kwargs):
        started.set()
        release.wait(10)
        return "new result"

    monkeypatch.setattr(dc, "_results", {("yolov8n", "coco8"): "old result"})
    monkeypatch.setattr(dc, "detectors", lambda name: ("float", "int8", "page"))
    monkeypatch.setattr(dc, "compare", slow_compare)
    lecturer = threading.Thread(target=dc.remembered, args=("yolov8n", "coco8"), kwargs={"refresh": True})
    lecturer.start()
    assert started.wait(10)
    try:
        assert dc.remembered("yolov8n", "coco8") == "old result"  # while "Measure again" runs: the last result
    finally:
        release.set()
        lecturer.join(10)
    assert dc.remembered("yolov8n", "coco8") == "new result"


def test_clear_messages_when_the_comparison_cannot_run(models):
    with pytest.raises(dc.ComparisonUnavailable, match="yolo11n has no INT8 file on this machine"):
        dc.detectors("yolo11n")
    onnx_float, int8_model, _ = models
    with pytest.raises(dc.ComparisonUnavailable, match="Needs the float-activation graph and the INT8 file"):
        dc.compare(int8_model, int8_model)
    with pytest.raises(dc.ComparisonUnavailable, match="Unknown data set 'coco9'"):
        dc.compare(onnx_float, int8_model, "coco9")
