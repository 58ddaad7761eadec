"""Object detection with ultralytics YOLO: detect, explain NMS, measure mAP.

* :class:`Detector` wraps ``ultralytics.YOLO`` for any detect model the weights registry
  resolves (``.pt`` or an ONNX file). A ``.pt`` is by default exported once with ultralytics'
  own ``YOLO.export`` (OpenVINO, else ONNX) into cvdemo's cache and run from there. An INT8
  QDQ ONNX file runs, by default, as the float-activation graph derived from it
  (:mod:`cvdemo.qdq`): the same boxes on every CPU, where the INT8 file's scores depend on the
  CPU's integer kernels; ``variant="int8"`` runs the INT8 file itself (the compressed twin).
  :attr:`Detector.runtime_info` names what runs. :meth:`Detector.detect`
  returns :class:`Detections`, a thin layer over ultralytics' own ``Results`` (boxes,
  ``plot()``, ``summary()``, ``speed``) with the table and downloads the page shows.
* :func:`match_boxes` pairs two sets of boxes (same class, IoU ≥ 0.5): the parity check of
  the float graph and the float-vs-INT8 box agreement on the Compression page use it.
* :meth:`Detector.nms_lesson` keeps the network's raw output once and re-runs ultralytics'
  own ``non_max_suppression`` on it at any IoU threshold, so a slider can show the
  candidates before NMS and the survivors after without another forward pass.
* :func:`iou_by_formula` spells out intersection over union with the numbers of two boxes.
* :func:`sample_set` / :func:`yolo_zip_set` prepare a labeled set in a temp folder (a copy of
  coco8/coco128, or a user's YOLO-format zip checked line by line) and
  :meth:`Detector.evaluate` runs ultralytics' ``DetectionValidator`` on it for mAP and the
  PR curve. Nothing is ever written next to the read-only data.

ultralytics is imported lazily (``import cvdemo.detection`` stays light) and always with
auto-install, downloads and code-unpickling switched off: see :mod:`cvdemo.yolo_runtime`.

Where things are (``from cvdemo import detection as det`` reaches every name below):

* ``detector.py``     — :class:`Detector` (which runtime runs, detect, NMS lesson, evaluate, serving), variants
* ``detections.py``   — :class:`Detections` (table, counts, annotated picture, JSON/CSV) and :class:`StageLatency`
* ``predictor.py``    — one ultralytics predict call that keeps the network's raw output
* ``export.py``       — ``.pt`` exports and OpenVINO folders in the cache, built in a temp folder, published by one rename
* ``models.py``       — the page's detectors and the one it shows first, their INT8 twins on this machine
* ``parity.py``       — :func:`match_boxes`, :func:`detection_parity` (float graph vs INT8 file), :func:`raw_difference`
* ``nms_lesson.py``   — :class:`NmsLesson`: candidates before NMS, survivors and who removed whom at any IoU
* ``iou.py``          — :func:`iou_by_formula` step by step, :func:`draw_iou_pair`
* ``duplicates.py``   — the same photo picked twice is detected once (:func:`drop_duplicate_images`)
* ``labeled_sets.py`` — :class:`LabeledSet` from a sample set or a user's YOLO zip, :func:`check_label_text`
* ``evaluation.py``   — :class:`Evaluation` (mAP, PR curves) from ultralytics' validator, :func:`pr_figure`
* ``page_state.py``   — the Detection page's session state as typed dataclasses
* ``_common.py``      — image conversions the files share (any input to RGB, RGB <-> BGR arrays)
"""

from cvdemo.detection.detections import Detections, StageLatency
from cvdemo.detection.detector import (
    FLOAT,
    FORMAT_BACKENDS,
    IMAGE_SIZES,
    INT8,
    VARIANTS,
    Detector,
    detect_input,
)
from cvdemo.detection.duplicates import drop_duplicate_images, duplicates_note
from cvdemo.detection.evaluation import Evaluation, pr_figure
from cvdemo.detection.export import export_folder, export_format, export_pt, openvino_folder
from cvdemo.detection.iou import IoUWorking, draw_iou_pair, iou_by_formula
from cvdemo.detection.labeled_sets import (
    MAX_EVAL_IMAGES,
    LabeledSet,
    LabeledSetError,
    check_label_text,
    sample_set,
    yolo_zip_set,
)
from cvdemo.detection.models import DETECTION_MODELS, available_detectors, has_int8_twin, int8_file, page_default
from cvdemo.detection.nms_lesson import NmsLesson, distinct_scores
from cvdemo.detection.page_state import EvaluationState
from cvdemo.detection.parity import (
    PARITY_IOU,
    PARITY_SCORE,
    PARITY_TOLERANCE,
    RAW_TOLERANCE,
    DetectionParity,
    detection_parity,
    match_boxes,
    raw_difference,
)
from cvdemo.yolo_runtime import import_ultralytics  # bench_detection imports it from here

__all__ = [
    "DETECTION_MODELS",
    "FLOAT",
    "FORMAT_BACKENDS",
    "IMAGE_SIZES",
    "INT8",
    "MAX_EVAL_IMAGES",
    "PARITY_IOU",
    "PARITY_SCORE",
    "PARITY_TOLERANCE",
    "RAW_TOLERANCE",
    "VARIANTS",
    "DetectionParity",
    "Detections",
    "Detector",
    "Evaluation",
    "EvaluationState",
    "IoUWorking",
    "LabeledSet",
    "LabeledSetError",
    "StageLatency",
    "NmsLesson",
    "available_detectors",
    "check_label_text",
    "detect_input",
    "detection_parity",
    "distinct_scores",
    "draw_iou_pair",
    "drop_duplicate_images",
    "duplicates_note",
    "export_folder",
    "export_format",
    "export_pt",
    "has_int8_twin",
    "import_ultralytics",
    "int8_file",
    "iou_by_formula",
    "match_boxes",
    "openvino_folder",
    "page_default",
    "pr_figure",
    "raw_difference",
    "sample_set",
    "yolo_zip_set",
]
