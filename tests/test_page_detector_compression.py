"""The Compression page's detector section (FP32 activations vs INT8) through the real app shell (AppTest)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from conftest import open_page
from cvdemo.compression import detector as dc

PAGE = "app_pages/compression.py"


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _detector_table(at: AppTest):
    return next(d.value for d in at.dataframe if "mAP50-95" in d.value.columns)


def test_detector_section_measures_once_and_shows_it_to_every_session():
    at = open_page(PAGE, timeout=900)
    assert at.radio(key="dx_dataset").value == "coco8"
    if not dc.has_result("yolov8n", "coco8"):
        assert _button(at, "dx_run").label == "Compare float and INT8"
        assert any("Not measured on this server yet" in i.value for i in at.info)
        _button(at, "dx_run").click().run()
    assert not at.exception and not at.error
    table = _detector_table(at)
    assert list(table["model"][:2]) == ["FP32 activations · ONNX Runtime", "INT8 · ONNX Runtime"]
    result = dc.remembered("yolov8n", "coco8")
    # what the page shows is the measured result, not a constant
    assert _metric(at, "INT8 speed-up here") == f"{result.speedup:.2f}x"
    assert _metric(at, "Box agreement (F1)") == f"{result.agreement.f1:.2f}"
    assert _metric(at, "INT8 boxes matched") == f"{result.agreement.matched} / {result.agreement.int8_boxes}"
    text = " ".join(m.value for m in at.markdown)
    assert f"Flags read from {result.cpu.source}:" in text and "**Same boxes?**" in text
    assert any(c.value.startswith("yolov8n · latency on bus.jpg") for c in at.caption)
    assert any(e.label == "Boxes image by image (8 images)" for e in at.expander)

    other = open_page(PAGE, timeout=120)  # another student: the result is there without a click
    assert _button(other, "dx_run").label == "Measure again"
    assert list(_detector_table(other)["inference ms"]) == list(table["inference ms"])
