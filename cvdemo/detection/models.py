"""Which detectors the page offers, and which have an INT8 twin (their classroom quantized file) on this machine."""

from __future__ import annotations

from pathlib import Path

from cvdemo import qdq, weights

DETECTION_MODELS = ("yolov8n", "yolo11n")  # registry names of the COCO detectors the page offers


def int8_file(name: str) -> Path | None:
    """The INT8 (quantized ONNX) file of registry asset ``name`` on this machine, if any: its compressed twin."""
    asset = weights.get(name)
    for folder in (weights.weights_dir(), weights.cache_dir()):
        for filename in asset.candidates if folder is not None else ():
            path = folder / filename
            expected = asset.sha256.get(filename)
            if qdq.is_quantized_file(path) and (expected is None or weights.sha256_of(path) == expected):
                return path
    return None


def has_int8_twin(name: str) -> bool:
    """Whether the page can offer asset ``name``'s INT8 file beside its default (float) model."""
    return name in weights.REGISTRY and int8_file(name) is not None


def available_detectors() -> dict[str, bool]:
    """Registry names of the page's detectors and whether their weights are on this machine."""
    return {name: weights.available(name) for name in DETECTION_MODELS}


def page_default() -> str | None:
    """The detector the Detection page shows first: the first of :data:`DETECTION_MODELS` whose weights are
    on this machine (None: none are). The warm start and the classroom bench load the same one."""
    return next((name for name in DETECTION_MODELS if weights.available(name)), None)
