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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
import warnings
import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from cvdemo.errors import CvdemoError
from cvdemo import datasets, networks, qdq, results, runtime, weights
from cvdemo.archives import ArchiveError, read_zip
from cvdemo.yolo_runtime import import_ultralytics
from cvdemo.images import ImageInputError, is_image_name, load_image, to_png_bytes

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from ultralytics.engine.results import Results

DETECTION_MODELS = ("yolov8n", "yolo11n")  # registry names of the COCO detectors the page offers
IMAGE_SIZES = (320, 416, 512, 640, 800, 960, 1280)
MAX_EVAL_IMAGES = 500  # a user zip larger than this is cut: CPU evaluation must stay interactive

# cvdemo.runtime's backend key for each ultralytics backend format (the latency badge's name).
FORMAT_BACKENDS = {"pt": "pytorch", "onnx": "onnxruntime", "openvino": "openvino"}


@lru_cache(maxsize=1)
def _raw_keeping_predictor() -> type:
    """ultralytics' DetectionPredictor that also keeps the raw network output of its last batch.

    One class object per process: ``YOLO.predict`` rebuilds its predictor when a different class is passed.
    """
    import_ultralytics()
    from ultralytics.models.yolo.detect import DetectionPredictor

    class RawKeepingPredictor(DetectionPredictor):
        last_raw: Any = None
        last_input_shape: tuple[int, int] = (0, 0)

        def postprocess(self, preds, img, orig_imgs, **kwargs):
            # A reference, not a copy: NMS below reads it and never writes into it.
            self.last_raw = preds[0] if isinstance(preds, (list, tuple)) else preds
            self.last_input_shape = (int(img.shape[2]), int(img.shape[3]))
            return super().postprocess(preds, img, orig_imgs, **kwargs)

    return RawKeepingPredictor


def _as_rgb(image: Any) -> Image.Image:
    """An RGB PIL image from anything :func:`cvdemo.images.load_image` accepts (errors are ImageInputError)."""
    if isinstance(image, Image.Image) and image.mode == "RGB":
        if image.width * image.height == 0:
            raise ImageInputError("The image has no pixels.")
        return image
    return load_image(image)


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


def _rgb_image(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))


# --------------------------------------------------------------------------------------------
# Detections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Milliseconds per image, as ultralytics' predictor measured them."""

    preprocess: float
    inference: float
    nms: float  # ultralytics' postprocess: NMS plus scaling boxes back to the original image

    @property
    def total(self) -> float:
        return self.preprocess + self.inference + self.nms

    def badge(self) -> str:
        return (
            f"{self.total:.0f} ms: {self.preprocess:.1f} pre · {self.inference:.1f} inference · "
            f"{self.nms:.1f} NMS"
        )


@dataclass
class Detections:
    """What one image produced: ultralytics' ``Results`` plus the settings that produced it."""

    result: "Results"  # ultralytics' own result object: boxes, plot(), summary(), speed
    image_name: str
    model_name: str
    input_shape: tuple[int, int]  # (height, width) of the letterboxed network input
    conf: float
    iou: float
    runtime_info: runtime.RuntimeInfo | None = None  # what ran the network, for the latency badge
    # Drawn pictures by drawing options: a cached Detections is shared by every session that asked.
    _plots: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.result.boxes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the original image."""
        h, w = self.result.orig_shape
        return int(w), int(h)

    @property
    def xyxy(self) -> np.ndarray:
        """(N, 4) boxes in pixels of the original image."""
        return self.result.boxes.xyxy.cpu().numpy().astype(float)

    @property
    def scores(self) -> np.ndarray:
        return self.result.boxes.conf.cpu().numpy().astype(float)

    @property
    def class_ids(self) -> np.ndarray:
        return self.result.boxes.cls.cpu().numpy().astype(int)

    @property
    def class_names(self) -> list[str]:
        return [self.result.names[int(c)] for c in self.class_ids]

    @property
    def latency(self) -> Latency:
        s = self.result.speed
        return Latency(float(s["preprocess"] or 0), float(s["inference"] or 0), float(s["postprocess"] or 0))

    def table(self) -> "pd.DataFrame":
        """One row per box: class, score, box corners, size and area in pixels (highest score first)."""
        import pandas as pd

        xyxy = self.xyxy
        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        return pd.DataFrame(
            {
                "class": self.class_names,
                "class_id": self.class_ids,
                "score": self.scores.round(4),
                "x1": xyxy[:, 0].round(1),
                "y1": xyxy[:, 1].round(1),
                "x2": xyxy[:, 2].round(1),
                "y2": xyxy[:, 3].round(1),
                "width": w.round(1),
                "height": h.round(1),
                "area": (w * h).round(0),
            }
        )

    def counts(self) -> dict[str, int]:
        """Detections per class name, most frequent first."""
        names, counts = np.unique(np.array(self.class_names, dtype=object), return_counts=True)
        pairs = sorted(zip(names.tolist(), counts.tolist()), key=lambda p: (-p[1], p[0]))
        return {str(n): int(c) for n, c in pairs}

    def annotated(self, labels: bool = True, conf: bool = True, line_width: int | None = None) -> Image.Image:
        """The original image with boxes drawn by ultralytics' ``Results.plot`` (drawn once per options)."""
        options = (labels, conf, line_width)
        if options not in self._plots:
            self._plots[options] = _rgb_image(self.result.plot(labels=labels, conf=conf, line_width=line_width))
        return self._plots[options]

    def png(self) -> bytes:
        return to_png_bytes(self.annotated())

    def to_dict(self) -> dict:
        w, h = self.image_size
        lat = self.latency
        return {
            "image": self.image_name,
            "width": w,
            "height": h,
            "model": self.model_name,
            "input_size": list(self.input_shape),
            "conf": self.conf,
            "iou": self.iou,
            "speed_ms": {"preprocess": lat.preprocess, "inference": lat.inference, "nms": lat.nms},
            "detections": self.result.summary(decimals=3),  # ultralytics' own export format
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        table = self.table()
        table.insert(0, "image", self.image_name)
        return table.to_csv(index=False)


# --------------------------------------------------------------------------------------------
# NMS lesson and IoU
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IoUWorking:
    """Intersection over union of two xyxy boxes, with every intermediate number."""

    box_a: tuple[float, float, float, float]
    box_b: tuple[float, float, float, float]
    intersection: tuple[float, float, float, float] | None  # xyxy, None when the boxes do not overlap
    inter_width: float
    inter_height: float
    inter_area: float
    area_a: float
    area_b: float
    union: float
    iou: float

    def steps(self) -> list[str]:
        """The computation as lines of LaTeX, numbers included."""
        a, b, n = self.box_a, self.box_b, _tex_number
        return [
            rf"\text{{area}}_A = ({a[2]:.1f}-{a[0]:.1f})\times({a[3]:.1f}-{a[1]:.1f}) = {n(self.area_a)}",
            rf"\text{{area}}_B = ({b[2]:.1f}-{b[0]:.1f})\times({b[3]:.1f}-{b[1]:.1f}) = {n(self.area_b)}",
            rf"w_\cap = \min({a[2]:.1f},{b[2]:.1f}) - \max({a[0]:.1f},{b[0]:.1f}) \text{{ (0 if negative)}} = {self.inter_width:.1f}",
            rf"h_\cap = \min({a[3]:.1f},{b[3]:.1f}) - \max({a[1]:.1f},{b[1]:.1f}) \text{{ (0 if negative)}} = {self.inter_height:.1f}",
            rf"|A \cap B| = {self.inter_width:.1f}\times{self.inter_height:.1f} = {n(self.inter_area)}",
            rf"|A \cup B| = {n(self.area_a)} + {n(self.area_b)} - {n(self.inter_area)} = {n(self.union)}",
            rf"\text{{IoU}} = \frac{{{n(self.inter_area)}}}{{{n(self.union)}}} = {self.iou:.3f}",
        ]


def _tex_number(value: float) -> str:
    """12,345 with a thousands separator KaTeX does not space out."""
    return f"{value:,.0f}".replace(",", "{,}")


def iou_by_formula(box_a: Sequence[float], box_b: Sequence[float]) -> IoUWorking:
    """IoU = |A ∩ B| / |A ∪ B| for two (x1, y1, x2, y2) boxes, computed step by step."""
    a = tuple(float(v) for v in box_a)
    b = tuple(float(v) for v in box_b)
    if len(a) != 4 or len(b) != 4:
        raise ValueError("Boxes must have four numbers: x1, y1, x2, y2.")
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    ix1, iy1, ix2, iy2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    iw, ih = max(0.0, ix2 - ix1), max(0.0, iy2 - iy1)
    inter = iw * ih
    union = area_a + area_b - inter
    return IoUWorking(
        box_a=a,  # type: ignore[arg-type]
        box_b=b,  # type: ignore[arg-type]
        intersection=(ix1, iy1, ix2, iy2) if inter > 0 else None,
        inter_width=iw,
        inter_height=ih,
        inter_area=inter,
        area_a=area_a,
        area_b=area_b,
        union=union,
        iou=inter / union if union > 0 else 0.0,
    )


def draw_iou_pair(image: Image.Image, working: IoUWorking, margin: float = 0.25) -> Image.Image:
    """A crop around two boxes: A in blue, B in orange, their intersection filled."""
    a, b = working.box_a, working.box_b
    x1, y1 = min(a[0], b[0]), min(a[1], b[1])
    x2, y2 = max(a[2], b[2]), max(a[3], b[3])
    pad = margin * max(x2 - x1, y2 - y1, 1.0)
    left, top = max(0, int(x1 - pad)), max(0, int(y1 - pad))
    right, bottom = min(image.width, int(math.ceil(x2 + pad))), min(image.height, int(math.ceil(y2 + pad)))
    crop = image.crop((left, top, max(right, left + 1), max(bottom, top + 1))).convert("RGBA")
    overlay = Image.new("RGBA", crop.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)

    def shift(box: Sequence[float]) -> tuple[float, float, float, float]:
        return (box[0] - left, box[1] - top, box[2] - left, box[3] - top)

    width = max(2, round(max(crop.size) / 150))
    if working.intersection is not None:
        draw.rectangle(shift(working.intersection), fill=(255, 235, 59, 140))
    draw.rectangle(shift(a), outline=(30, 136, 229, 255), width=width)
    draw.rectangle(shift(b), outline=(255, 112, 67, 255), width=width)
    return Image.alpha_composite(crop, overlay).convert("RGB")


def image_fingerprint(image: Image.Image) -> str:
    """A digest of an image's pixels (mode, size and values): the same photo uploaded twice, or re-saved, has one."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def drop_duplicate_images(
    images: Sequence[tuple[str, Image.Image]],
) -> tuple[list[tuple[str, Image.Image]], list[tuple[str, str]]]:
    """The images without repeats (same pixels as an earlier one), and ``(skipped name, name it repeats)`` pairs."""
    kept: list[tuple[str, Image.Image]] = []
    first_name: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    for name, image in images:
        key = image_fingerprint(image)
        if key in first_name:
            skipped.append((name, first_name[key]))
        else:
            first_name[key] = name
            kept.append((name, image))
    return kept, skipped


def duplicates_note(skipped: Sequence[tuple[str, str]]) -> str:
    """One sentence for all skipped repeats, file names quoted as given (the page escapes them for markdown)."""
    parts = [
        f"“{name}” (the same pixels as “{original}”)" if name != original else f"a second “{name}”"
        for name, original in skipped
    ]
    if len(parts) == 1:
        return f"Skipped {parts[0]}: each photo is detected once."
    return f"Skipped {len(parts)} duplicates: {', '.join(parts)}. Each photo is detected once."


def distinct_scores(higher: float, lower: float, max_digits: int = 6) -> tuple[str, str] | None:
    """Two scores written with the fewest decimals (2 or more) that tell them apart; None when they are equal.

    "0.29 vs 0.29" would say nothing: 0.2913 and 0.2907 are written "0.2913" and "0.2907".
    """
    for digits in range(2, max_digits + 1):
        a, b = f"{higher:.{digits}f}", f"{lower:.{digits}f}"
        if a != b:
            return a, b
    return None


def _why_first(hi: int, lo: int, score_hi: float, score_lo: float) -> str:
    """Why NMS visits box ``hi`` before box ``lo``: its higher score, shown with enough digits, or a tie."""
    shown = distinct_scores(score_hi, score_lo)
    if shown is None:
        return f"#{hi} and #{lo} score the same ({score_hi:.2f}), and on a tie NMS keeps the one it ranks first, #{hi},"
    return f"#{hi} scores higher ({shown[0]} vs {shown[1]})"


@dataclass
class NmsLesson:
    """The boxes a detector proposes before NMS, and which survive NMS at any IoU threshold.

    Candidates are what ultralytics' ``non_max_suppression`` sees after the confidence filter
    (best class per anchor); survivors come from the same function at the chosen IoU, run on
    the cached raw output, so they equal ``Detector.detect`` at that IoU.
    """

    image: Image.Image
    names: dict[int, str]
    conf: float
    classes: tuple[int, ...] | None
    agnostic: bool
    max_det: int
    candidates: np.ndarray  # (N, 6) x1 y1 x2 y2 score class, original-image pixels, score descending
    input_shape: tuple[int, int]
    _raw: "torch.Tensor" = field(repr=False)
    _anchor_ids: np.ndarray = field(repr=False)  # (N,) column of the raw output each candidate came from
    _net_boxes: "torch.Tensor" = field(repr=False)  # (N, 4) candidates in network-input pixels (what NMS compares)
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.candidates)

    def label(self, i: int) -> str:
        return f"#{i} {self.names[int(self.candidates[i, 5])]} {self.candidates[i, 4]:.2f}"

    def survivors(self, iou: float) -> np.ndarray:
        """Indices into :attr:`candidates` that ultralytics' NMS keeps at this IoU threshold."""
        iou = float(iou)
        if iou not in self._cache:
            from ultralytics.utils.nms import non_max_suppression

            _, keep = non_max_suppression(
                self._raw,
                self.conf,
                iou,
                classes=list(self.classes) if self.classes else None,
                agnostic=self.agnostic,
                max_det=self.max_det,
                return_idxs=True,
            )
            position = {int(a): i for i, a in enumerate(self._anchor_ids)}
            self._cache[iou] = np.array([position[int(a)] for a in keep[0].view(-1).tolist()], dtype=int)
        return self._cache[iou]

    def suppressed_by(self, iou: float) -> dict[int, tuple[int, float]]:
        """For each removed candidate: (the kept box that removed it, their IoU).

        Greedy NMS visits boxes by descending score; a box is removed by the first kept box of
        its class (any class when agnostic) that overlaps it by more than the threshold.
        """
        from ultralytics.utils.metrics import box_iou

        kept = self.survivors(iou)
        if len(kept) == 0:
            return {}
        ious = box_iou(self._net_boxes, self._net_boxes[kept]).numpy()  # (N, K)
        scores, cls = self.candidates[:, 4], self.candidates[:, 5]
        out: dict[int, tuple[int, float]] = {}
        kept_set = set(kept.tolist())
        for j in range(len(self.candidates)):
            if j in kept_set:
                continue
            for col in np.argsort(-scores[kept], kind="stable"):
                k = int(kept[col])
                if k < j and (self.agnostic or cls[k] == cls[j]) and ious[j, col] > iou:
                    out[j] = (k, float(ious[j, col]))
                    break
        return out

    def table(self, iou: float) -> "pd.DataFrame":
        """Every candidate: class, score, kept or removed, and by which box."""
        import pandas as pd

        kept = set(self.survivors(iou).tolist())
        removed = self.suppressed_by(iou)
        rows = []
        for i, (x1, y1, x2, y2, score, cls) in enumerate(self.candidates.tolist()):
            by = removed.get(i)
            rows.append(
                {
                    "box": f"#{i}",
                    "class": self.names[int(cls)],
                    "score": round(score, 3),
                    "kept": i in kept,
                    "removed by": f"#{by[0]}" if by else ("max_det" if i not in kept else ""),
                    "IoU with it": round(by[1], 3) if by else None,
                    "x1": round(x1, 1),
                    "y1": round(y1, 1),
                    "x2": round(x2, 1),
                    "y2": round(y2, 1),
                }
            )
        return pd.DataFrame(rows)

    def plot(self, indices: Sequence[int] | np.ndarray | None = None, labels: bool = True) -> Image.Image:
        """The image with the given candidates (all when None) drawn with ultralytics' Annotator."""
        from ultralytics.utils.plotting import Annotator, colors

        indices = range(len(self.candidates)) if indices is None else indices
        annotator = Annotator(_bgr(self.image), line_width=None if labels else 2)
        for i in sorted(indices, key=lambda i: self.candidates[i, 4]):  # best boxes drawn last, on top
            box, cls = self.candidates[i, :4], int(self.candidates[i, 5])
            annotator.box_label(box, self.label(i) if labels else "", color=colors(cls, True))
        return _rgb_image(annotator.result())

    @property
    def n_proposals(self) -> int:
        """Boxes the network proposed before any threshold (one per grid cell: 8400 at 640 px)."""
        return int(self._raw.shape[-1])

    def pair_iou(self, i: int, j: int) -> IoUWorking:
        return iou_by_formula(self.candidates[i, :4], self.candidates[j, :4])

    def explain_pair(self, i: int, j: int, iou: float) -> str:
        """What NMS at this threshold does with candidates i and j, in one or two sentences."""
        if i == j:
            return "Pick two different boxes."
        # Candidates are sorted by score, so on a tie the lower index is the one NMS visits first.
        hi, lo = sorted((i, j), key=lambda k: (-self.candidates[k, 4], k))
        value = self.pair_iou(i, j).iou
        name_hi, name_lo = self.names[int(self.candidates[hi, 5])], self.names[int(self.candidates[lo, 5])]
        if not self.agnostic and name_hi != name_lo:
            return (
                f"Different classes ({name_hi} vs {name_lo}): class-aware NMS never compares them, "
                f"whatever their IoU ({value:.2f})."
            )
        removed = self.suppressed_by(iou)
        if value <= iou:
            return f"IoU {value:.3f} ≤ {iou:.2f}: this overlap is allowed, so neither box removes the other."
        if removed.get(lo, (None,))[0] == hi:
            return (
                f"IoU {value:.3f} > {iou:.2f}: #{lo} is removed, because "
                f"{_why_first(hi, lo, float(self.candidates[hi, 4]), float(self.candidates[lo, 4]))} "
                f"and overlaps it too much."
            )
        if hi in removed:
            return (
                f"IoU {value:.3f} > {iou:.2f}, but #{hi} was itself removed first (by #{removed[hi][0]}), "
                f"so it removes nothing."
            )
        if lo in removed:
            return f"IoU {value:.3f} > {iou:.2f}: #{lo} is removed, already by a better box, #{removed[lo][0]}."
        return f"IoU {value:.3f} > {iou:.2f}: the lower-scoring box #{lo} would be removed."

    def default_pair(self, iou: float) -> tuple[int, int]:
        """The closest call: the removed box whose IoU with its remover is nearest the threshold."""
        removed = self.suppressed_by(iou)
        if removed:
            j, (k, _) = min(removed.items(), key=lambda item: item[1][1])
            return k, j
        if len(self.candidates) >= 2:
            return 0, 1
        return 0, 0


# --------------------------------------------------------------------------------------------
# Labeled sets and evaluation
# --------------------------------------------------------------------------------------------


class LabeledSetError(CvdemoError, ValueError):
    """A labeled data set that cannot be evaluated; the message says what to fix."""


@dataclass
class LabeledSet:
    """A YOLO-format data set in a private temp folder, with a data.yaml written by cvdemo."""

    root: Path
    yaml_path: Path
    names: dict[int, str]
    n_images: int
    n_boxes: int
    description: str
    problems: list[str] = field(default_factory=list)  # what was left out, and why
    notes: list[str] = field(default_factory=list)
    _owned_dir: Path | None = field(default=None, repr=False)

    def cleanup(self) -> None:
        if self._owned_dir is not None and self._owned_dir.exists():
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> "LabeledSet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _write_yaml(root: Path, val: list[str], names: dict[int, str]) -> Path:
    """Our own data.yaml: a user's yaml is never handed to ultralytics (its ``download:`` key runs code)."""
    import yaml

    path = root / "cvdemo_data.yaml"
    path.write_text(
        yaml.safe_dump({"path": str(root), "train": val, "val": val, "names": {int(k): str(v) for k, v in names.items()}})
    )
    return path


def _names_from_yaml(text: str) -> dict[int, str]:
    import yaml

    data = yaml.safe_load(text)
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    raise ValueError("it has no 'names:' list or mapping")


def sample_set(name: str = "coco8", splits: Sequence[str] | None = None) -> LabeledSet:
    """A temp copy of a sample detection set (coco8 / coco128); all its splits unless given."""
    import yaml

    src = datasets.dataset_path(name)  # DataUnavailable says where to put it
    shipped = yaml.safe_load((src / "data.yaml").read_text())
    names = _names_from_yaml((src / "data.yaml").read_text())
    available = {k: shipped[k] for k in ("train", "val", "test") if isinstance(shipped.get(k), str)}
    chosen = list(splits) if splits else list(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise LabeledSetError(f"{name} has no split {', '.join(unknown)}; it has {', '.join(available)}.")
    folders = list(dict.fromkeys(available[s] for s in chosen))  # coco128: train == val
    root = datasets.temp_copy(name)
    n_images = sum(1 for f in folders for p in (root / f).rglob("*") if is_image_name(p.name))
    n_boxes = sum(
        sum(1 for line in p.read_text().splitlines() if line.strip())
        for f in folders
        for p in (root / f.replace("images", "labels", 1)).rglob("*.txt")
    )
    return LabeledSet(
        root=root,
        yaml_path=_write_yaml(root, folders, names),
        names=names,
        n_images=n_images,
        n_boxes=n_boxes,
        description=f"{name} ({', '.join(folders)}): {n_images} images",
        _owned_dir=root.parent,
    )


def _label_path_candidates(image_path: str) -> list[str]:
    """Where YOLO looks for an image's labels: the last ``images/`` folder becomes ``labels/``; or beside it."""
    stem_txt = str(PurePosixPath(image_path).with_suffix(".txt"))
    out = []
    rooted = "/" + stem_txt
    if "/images/" in rooted:
        head, _, tail = rooted.rpartition("/images/")
        out.append(f"{head}/labels/{tail}".lstrip("/"))
    out.append(stem_txt)
    return out


def check_label_text(text: str, file_name: str, n_classes: int) -> tuple[int, list[str]]:
    """Check one YOLO label file; returns (number of boxes, problems as sentences).

    Each line is ``class x_center y_center width height`` normalized to 0..1 (or a polygon
    ``class x1 y1 x2 y2 ...`` with at least three points, which ultralytics turns into a box).
    """
    problems: list[str] = []
    boxes = 0
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{file_name} line {number}"
        shown = line.strip()[:60]
        if len(tokens) != 5 and not (len(tokens) >= 7 and len(tokens) % 2 == 1):
            problems.append(
                f"{where}: expected 5 values 'class x_center y_center width height' (or a polygon "
                f"'class x1 y1 x2 y2 ...'), found {len(tokens)}: '{shown}'."
            )
            continue
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not _is_float(t))
            problems.append(f"{where}: '{bad}' is not a number: '{shown}'.")
            continue
        if not all(math.isfinite(v) for v in values):
            problems.append(f"{where}: values must be finite numbers: '{shown}'.")
            continue
        cls = values[0]
        if cls != int(cls) or cls < 0:
            problems.append(f"{where}: the class must be a whole number ≥ 0, found '{tokens[0]}'.")
            continue
        if cls >= n_classes:
            problems.append(f"{where}: class {int(cls)} does not exist (classes are 0–{n_classes - 1}).")
            continue
        coords = values[1:]
        if min(coords) < 0 or max(coords) > 1:
            problems.append(
                f"{where}: coordinates must be normalized to 0..1 (pixels divided by the image width/height): '{shown}'."
            )
            continue
        if len(tokens) == 5 and (coords[2] <= 0 or coords[3] <= 0):
            problems.append(f"{where}: width and height must be greater than 0: '{shown}'.")
            continue
        boxes += 1
    return boxes, problems


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def yolo_zip_set(src: bytes | IO[bytes], model_names: dict[int, str], max_images: int = MAX_EVAL_IMAGES) -> LabeledSet:
    """Check a user's YOLO-format zip and lay it out in a temp folder for evaluation.

    Expected: images (any folders) with a ``.txt`` label file each, in a parallel ``labels/``
    folder (``images/val/a.jpg`` → ``labels/val/a.txt``) or beside the image; class names in a
    ``data.yaml`` (``names:``) or ``classes.txt``, else the model's classes. Images whose label
    file has malformed lines, and images that do not decode, are left out and listed in
    :attr:`LabeledSet.problems`; everything else is kept. Raises :class:`LabeledSetError`.
    """
    try:
        contents = read_zip(src)
    except ArchiveError as exc:
        raise LabeledSetError(str(exc)) from None
    files = contents.files
    problems = list(contents.skipped)
    notes: list[str] = []

    names, names_source = dict(model_names), ""
    for path in sorted(files, key=lambda p: (p.count("/"), p)):
        base = PurePosixPath(path).name.lower()
        if base.endswith((".yaml", ".yml")):
            try:
                names, names_source = _names_from_yaml(files[path].decode("utf-8")), path
                break
            except Exception as exc:
                raise LabeledSetError(f"{path}: could not read the class names ({exc}).") from None
        if base == "classes.txt":
            lines = [ln.strip() for ln in files[path].decode("utf-8", "replace").splitlines() if ln.strip()]
            names, names_source = dict(enumerate(lines)), path
            break
    if names_source:
        mismatched = [
            f"{i}: yours '{n}', model '{model_names[i]}'"
            for i, n in sorted(names.items())
            if i in model_names and n.strip().lower() != model_names[i].lower()
        ]
        if mismatched:
            notes.append(
                "Class ids are compared, not names, and some differ from the model's ("
                + "; ".join(mismatched[:3])
                + ("; …" if len(mismatched) > 3 else "")
                + "): expect a low mAP for those classes."
            )
    else:
        notes.append(f"No data.yaml or classes.txt in the zip: class ids are read as the model's {len(names)} classes.")
    n_classes = min(len(names), len(model_names))

    label_files = {p for p in files if p.lower().endswith(".txt") and PurePosixPath(p).name.lower() != "classes.txt"}
    image_paths = sorted(p for p in files if is_image_name(p))
    if not image_paths:
        raise LabeledSetError(
            "The zip holds no images (.jpg, .png, ...). Expected YOLO layout: images/<split>/<name>.jpg "
            "with labels/<split>/<name>.txt."
        )
    if len(image_paths) > max_images:
        notes.append(f"The zip has {len(image_paths)} images; the first {max_images} are evaluated.")
        image_paths = image_paths[:max_images]

    owned = Path(tempfile.mkdtemp(prefix="cvdemo-yolozip-"))
    root = owned / "dataset"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    used_labels: set[str] = set()
    kept = boxes = background = 0
    taken: set[str] = set()
    for image_path in image_paths:
        label_path = next((c for c in _label_path_candidates(image_path) if c in label_files), None)
        if label_path is not None:
            used_labels.add(label_path)
        try:
            load_image(files[image_path])
        except ImageInputError as exc:
            problems.append(f"{image_path}: {exc} Left out.")
            continue
        text = ""
        if label_path is not None:
            try:
                text = files[label_path].decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{label_path}: not a text file. {image_path} left out.")
                continue
            n, line_problems = check_label_text(text, label_path, n_classes)
            if line_problems:
                problems.extend(line_problems)
                problems.append(f"{image_path} left out because its label file has malformed lines.")
                continue
            boxes += n
        else:
            background += 1
        stem, suffix = PurePosixPath(image_path).stem, PurePosixPath(image_path).suffix.lower()
        unique, k = stem, 1
        while unique in taken:  # same file name in two folders
            unique, k = f"{stem}_{k}", k + 1
        taken.add(unique)
        (root / "images" / "val" / f"{unique}{suffix}").write_bytes(files[image_path])
        (root / "labels" / "val" / f"{unique}.txt").write_text(text)
        kept += 1

    orphans = sorted(label_files - used_labels)
    if orphans:
        notes.append(f"{len(orphans)} label file(s) have no matching image and were ignored (e.g. {orphans[0]}).")
    if background:
        notes.append(f"{background} image(s) have no label file: they count as images with no objects.")
    if kept == 0 or boxes == 0:
        shutil.rmtree(owned, ignore_errors=True)
        reason = " ".join(problems[:3]) if problems else "No image has a label file with boxes."
        raise LabeledSetError(f"Nothing to evaluate in this zip. {reason}")
    return LabeledSet(
        root=root,
        yaml_path=_write_yaml(root, ["images/val"], names),
        names=names,
        n_images=kept,
        n_boxes=boxes,
        description=f"your zip: {kept} images",
        problems=problems,
        notes=notes,
        _owned_dir=owned,
    )


@dataclass
class Evaluation:
    """mAP and curves from ultralytics' DetectionValidator (plain numbers: safe to keep in a session)."""

    dataset: str
    model_name: str
    map50: float
    map50_95: float
    precision: float
    recall: float
    n_images: int
    n_instances: int
    per_class: "pd.DataFrame"  # ultralytics' metrics.summary(): P, R, F1, mAP50, mAP75, mAP50-95 per class
    recall_axis: np.ndarray  # (1000,) recall values of the PR curve
    precision_by_class: dict[str, np.ndarray]  # class -> (1000,) precision at IoU 0.5
    speed_ms: dict[str, float]
    seconds: float

    @property
    def mean_precision(self) -> np.ndarray:
        """The "all classes" PR curve (mean over classes), whose area is mAP50."""
        if not self.precision_by_class:
            return np.zeros_like(self.recall_axis)
        return np.mean(list(self.precision_by_class.values()), axis=0)


def pr_figure(evaluation: Evaluation, max_classes: int = 12):
    """A plotly PR curve: thin lines per class (the most frequent ones), the mean in bold."""
    import plotly.graph_objects as go

    fig = go.Figure()
    order = evaluation.per_class.sort_values("Instances", ascending=False)["Class"].tolist()
    for name in order[:max_classes]:
        if name in evaluation.precision_by_class:
            fig.add_trace(
                go.Scatter(
                    x=evaluation.recall_axis,
                    y=evaluation.precision_by_class[name],
                    mode="lines",
                    name=name,
                    line={"width": 1},
                    opacity=0.6,
                )
            )
    fig.add_trace(
        go.Scatter(
            x=evaluation.recall_axis,
            y=evaluation.mean_precision,
            mode="lines",
            name=f"all classes (mAP50 {evaluation.map50:.3f})",
            line={"width": 4, "color": "#1565c0"},
        )
    )
    fig.update_layout(
        xaxis={"title": "Recall", "range": [0, 1]},
        yaxis={"title": "Precision", "range": [0, 1.02]},
        title="Precision–recall curve at IoU 0.5",
        legend={"orientation": "v"},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        height=420,
    )
    return fig


# --------------------------------------------------------------------------------------------
# Box matching and the float graph's parity check
# --------------------------------------------------------------------------------------------


def match_boxes(
    xyxy_a: np.ndarray, cls_a: np.ndarray, xyxy_b: np.ndarray, cls_b: np.ndarray, min_iou: float = 0.5
) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, iou)`` of boxes of A and B with the same class and IoU ≥ ``min_iou``, each box in one pair.

    Greedy by IoU, highest first (the way ultralytics' validator matches predictions to labels).
    """
    if len(xyxy_a) == 0 or len(xyxy_b) == 0:
        return []
    import torch
    from ultralytics.utils.metrics import box_iou

    iou = box_iou(torch.as_tensor(xyxy_a, dtype=torch.float32), torch.as_tensor(xyxy_b, dtype=torch.float32)).numpy()
    iou = np.where(np.asarray(cls_a)[:, None] == np.asarray(cls_b)[None, :], iou, 0.0)
    rows, cols = np.nonzero(iou >= min_iou)
    pairs: list[tuple[int, int, float]] = []
    used_a: set[int] = set()
    used_b: set[int] = set()
    for k in np.argsort(-iou[rows, cols], kind="stable"):
        i, j = int(rows[k]), int(cols[k])
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j, float(iou[i, j])))
    return pairs


@dataclass(frozen=True)
class DetectionParity:
    """Whether two graphs find the same objects: their confident boxes, matched across the two."""

    images: int
    confident: int  # boxes scoring >= confident_score in either graph
    matched: int  # of those, found by the other graph (same class, IoU >= min_iou, any score >= conf)
    confident_score: float
    min_iou: float
    tolerance: float  # share of confident boxes that must be found by the other graph

    @property
    def share(self) -> float:
        return self.matched / self.confident if self.confident else 1.0

    @property
    def passed(self) -> bool:
        return self.share >= self.tolerance

    def describe(self) -> str:
        return (
            f"{self.matched} of {self.confident} boxes scoring ≥ {self.confident_score:.1f} found by the other graph "
            f"(same class, IoU ≥ {self.min_iou:.1f}) on {self.images} images; at least {self.tolerance:.0%} needed"
        )


# Quantization noise moves a few confident boxes (measured: 16 of 16 matched on an AVX-512 VNNI Xeon, 17 of 18
# under AVX2-only emulation); a broken graph matches almost none.
PARITY_SCORE, PARITY_IOU, PARITY_TOLERANCE = 0.5, 0.5, 0.8
RAW_TOLERANCE = {"boxes": 0.05, "scores": 1e-4}  # two FP32 runtimes of one graph: measured 1e-3 px and 1e-6


def detection_parity(
    reference: Sequence["Results"],
    candidate: Sequence["Results"],
    confident_score: float = PARITY_SCORE,
    min_iou: float = PARITY_IOU,
    tolerance: float = PARITY_TOLERANCE,
) -> DetectionParity:
    """Every box one graph scores ≥ ``confident_score`` should be found by the other (same class, IoU ≥ ``min_iou``).

    Quantization moves scores by a few hundredths, so a borderline box (0.3 in one graph, 0.2 in
    the other) may come and go; a confident one should not. ``reference``/``candidate``: the two
    graphs' ultralytics results on the same images, at the same confidence threshold.
    """
    confident = matched = 0
    for a, b in zip(reference, candidate, strict=True):
        boxes_a, boxes_b = a.boxes, b.boxes
        pairs = match_boxes(boxes_a.xyxy.numpy(), boxes_a.cls.numpy(), boxes_b.xyxy.numpy(), boxes_b.cls.numpy(), min_iou)
        paired_a, paired_b = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
        for scores, paired in ((boxes_a.conf.numpy(), paired_a), (boxes_b.conf.numpy(), paired_b)):
            sure = np.nonzero(scores >= confident_score)[0]
            confident += len(sure)
            matched += sum(int(k) in paired for k in sure)
    return DetectionParity(len(reference), confident, matched, confident_score, min_iou, tolerance)


def raw_difference(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict[str, float]:
    """Largest |Δ| of two runs' raw (1, 4 + classes, anchors) outputs: box coordinates in pixels, and class scores."""
    out = {"boxes": 0.0, "scores": 0.0}
    for a, b in zip(reference, candidate, strict=True):
        if a.shape != b.shape:
            return {"boxes": math.inf, "scores": math.inf}
        out["boxes"] = max(out["boxes"], float(np.abs(a[:, :4] - b[:, :4]).max()))
        out["scores"] = max(out["scores"], float(np.abs(a[:, 4:] - b[:, 4:]).max()))
    return out


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------

FLOAT, INT8 = "float", "int8"
VARIANTS = {FLOAT: "FP32 activations", INT8: "INT8"}  # Detector(variant=...) -> what the badge calls it


def detect_input(image: Image.Image, raw: bool = False, **settings: Any) -> dict:
    """One image and its predict settings as the plain dict :meth:`Detector.predict_batch` takes."""
    classes = settings.get("classes")
    return {
        "image": np.asarray(image.convert("RGB"), dtype=np.uint8),
        "conf": float(settings.get("conf", 0.25)),
        "iou": float(settings.get("iou", 0.45)),
        "classes": [int(c) for c in classes] if classes else None,
        "imgsz": int(settings.get("imgsz", 640)),
        "max_det": int(settings.get("max_det", 300)),
        "raw": bool(raw),
    }


class Detector:
    """A YOLO detect model from the weights registry (or a file path), shared across sessions.

    ``Detector("yolov8n")`` resolves the registry asset: the official ``.pt`` online, or the
    classroom INT8 QDQ ONNX file offline. ``variant`` picks the precision that runs:

    * ``"float"`` (default): a ``.pt`` runs as before (with ``accelerated``, exported once with
      ultralytics' own ``YOLO.export``, OpenVINO when installed, else ONNX; if that fails, PyTorch,
      and :attr:`fallback_reason` says why). An INT8 QDQ file is rewritten once into its
      float-activation graph (:func:`cvdemo.qdq.float_activation_file`): INT8 kernels differ by
      CPU, float math does not, so every machine shows the same boxes. That graph must find the
      same objects as the INT8 file on a few sample photos (:func:`detection_parity`), else the
      INT8 file runs and :attr:`fallback_reason` says why. With ``accelerated``, OpenVINO runs it
      too when installed, matches ONNX Runtime's raw output and measures faster here.
    * ``"int8"``: the INT8 file as it is, in ONNX Runtime: the compressed twin.

    Calls are serialized with a lock: one ultralytics predictor is not safe to use from two
    threads at once.
    """

    def __init__(self, weights_name: str = "yolov8n", accelerated: bool = True, variant: str = FLOAT):
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant '{variant}'. Choose {' or '.join(VARIANTS)}.")
        if weights_name in weights.REGISTRY:
            self.path = weights.resolve(weights_name)  # WeightsUnavailable says which file to put where
            self.name = weights_name
        else:
            self.path = Path(weights_name)
            self.name = self.path.stem
            if not self.path.is_file():
                raise FileNotFoundError(f"No model file at {self.path}.")
        self.accelerated = accelerated
        self.exported_path: Path | None = None  # the export that runs, when one was made from the .pt
        self.derived_path: Path | None = None  # the float-activation graph that runs, when derived from an INT8 file
        self.fallback_reason: str | None = None  # why the asked-for path is not the one that runs
        self.parity: DetectionParity | None = None  # float graph vs INT8 file, when one was derived
        self.latency_ms: dict[str, float] = {}  # best-of-5 per runtime behind the float graph's choice
        self.notes: list[str] = []  # runtimes tried and refused, for the curious
        self._lock = threading.Lock()
        import_ultralytics()
        if variant == INT8:
            if not qdq.is_quantized_file(self.path):
                found = int8_file(weights_name) if weights_name in weights.REGISTRY else None
                if found is None:
                    raise ValueError(f"{self.name} has no INT8 file on this machine ({self.path.name} is not quantized).")
                self.path = found
            self._adopt(self._yolo(self.path), INT8)
        elif self.path.suffix == ".pt" and accelerated:
            try:
                exported = export_pt(self.path)
                self._adopt(self._yolo(exported))
                self.exported_path = exported
            except Exception as exc:  # anything: a missing package, an exporter or runtime error
                self.fallback_reason = _short_reason(exc)
                runtime.warn_once(str(self.path), f"export failed: {self.fallback_reason}")
                self._adopt(self._yolo(self.path))
        elif qdq.is_quantized_file(self.path):
            model = self._float_twin(accelerated)
            self._adopt(model, FLOAT if self.derived_path else INT8)
        else:
            self._adopt(self._yolo(self.path))
        # The inference server runs the registry's default (accelerated, float) model: others always run here.
        self.serve_key: str | None = (
            f"{self.name}/detect" if weights_name in weights.REGISTRY and accelerated and variant == FLOAT else None
        )

    def _yolo(self, path: Path) -> Any:
        """An ultralytics YOLO on a model file (or OpenVINO folder), its predictor built now, not in a student's request."""
        from ultralytics import YOLO

        model = YOLO(str(path), task="detect")
        _run(model, Image.new("RGB", (64, 64)))
        return model

    def _adopt(self, model: Any, variant: str | None = None) -> None:
        """Run ``model`` from now on, and read what the page needs from its backend.

        ``variant``: INT8 or FLOAT when the model is the INT8 file or the float graph derived from it.
        """
        self.model = model
        backend = model.predictor.model
        self.format: str = str(backend.format)
        self.names: dict[int, str] = {int(k): str(v) for k, v in backend.names.items()}
        static = self.format != "pt" and not getattr(backend, "dynamic", False) and hasattr(backend, "imgsz")
        # Static exports (like the classroom ONNX) only take the size they were exported at.
        self.fixed_imgsz: int | None = int(max(backend.imgsz)) if static else None
        self.end2end: bool = bool(getattr(backend, "end2end", False))
        self.precision: str | None = _openvino_precision(backend) if self.format == "openvino" else None
        self.variant: str | None = variant

    def _float_twin(self, accelerated: bool) -> Any:
        """The INT8 file's float-activation graph, if it finds what the INT8 file finds; else the INT8 file."""
        int8 = self._yolo(self.path)
        try:
            float_path = qdq.float_activation_file(self.path)
            onnx_float = self._yolo(float_path)
        except Exception as exc:  # an unusual graph the edit cannot handle, an unwritable cache...
            return self._refuse_float(int8, f"could not derive it ({_short_reason(exc)})")
        images = runtime.parity_images()
        reference = [_run(int8, im)[0] for im in images]
        float_runs = [_run(onnx_float, im, copy_raw=True) for im in images]
        self.parity = detection_parity(reference, [r for r, _ in float_runs])
        if not self.parity.passed:
            return self._refuse_float(int8, f"it does not find what the INT8 file finds: {self.parity.describe()}")
        self.derived_path = float_path
        candidates = {runtime.ONNXRUNTIME: onnx_float}
        if accelerated and runtime.backend_installed(runtime.OPENVINO):
            try:
                openvino = self._yolo(openvino_folder(float_path))
                diff = raw_difference([raw for _, raw in float_runs], [_run(openvino, im, copy_raw=True)[1] for im in images])
                if all(diff[k] <= RAW_TOLERANCE[k] for k in diff):
                    candidates[runtime.OPENVINO] = openvino
                else:  # e.g. bf16 on a CPU with AMX: other numbers than FP32, so other boxes than elsewhere
                    self.notes.append(
                        f"OpenVINO refused: its output differs from ONNX Runtime's by {diff['boxes']:.2g} px / "
                        f"{diff['scores']:.2g} in scores (precision {_openvino_precision(openvino.predictor.model)})"
                    )
            except Exception as exc:
                self.notes.append(f"OpenVINO could not run it ({_short_reason(exc)})")
        if len(candidates) > 1:  # measure, interleaved, best of 5: the faster runtime on *this* machine wins
            image = images[0]
            self.latency_ms = {name: math.inf for name in candidates}
            for _ in range(5):
                for name, model in candidates.items():
                    start = time.perf_counter()
                    _run(model, image)
                    self.latency_ms[name] = min(self.latency_ms[name], 1000 * (time.perf_counter() - start))
            return candidates[min(self.latency_ms, key=self.latency_ms.__getitem__)]
        return onnx_float

    def _refuse_float(self, int8: Any, reason: str) -> Any:
        self.fallback_reason = f"FP32-activation graph refused: {reason}"
        runtime.log.warning("%s runs its INT8 file: %s", self.name, self.fallback_reason)
        return int8

    @property
    def description(self) -> str:
        """E.g. "yolov8n (yolov8n.pt, openvino)", "yolov8n (yolov8n_coco_int8_qdq.onnx, FP32 activations, openvino)"."""
        variant = f", {VARIANTS[self.variant]}" if self.variant else ""
        return f"{self.name} ({self.path.name}{variant}, {self.format})"

    @property
    def identity(self) -> str:
        """What the results depend on: the weights file (path, size, mtime), the export that runs, its format."""
        stat = self.path.stat()
        # the variant and the derived graph too: the float twin and the INT8 file share one weights file
        return (
            f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}|{self.exported_path}|{self.derived_path}|"
            f"{self.variant}|{self.format}|{self.precision}"
        )

    def _scheduled_predict(self, image: Image.Image, **kwargs: Any) -> tuple["Results", tuple[int, int], Any]:
        """:meth:`_predict` through this network's FIFO scheduler (one at a time, process-wide gate)."""
        return networks.scheduler("detector", self, self.identity).run((image, kwargs))

    @property
    def runtime_info(self) -> runtime.RuntimeInfo:
        """What runs, for the latency badge: e.g. "ONNX Runtime · FP32 activations (derived from the INT8 file …)",
        or "… on the inference server"."""
        from cvdemo.serve.client import served_runtime

        return served_runtime(self._local_runtime_info(), getattr(self, "serve_key", None))

    def _local_runtime_info(self) -> runtime.RuntimeInfo:
        name = runtime.BACKEND_LABELS.get(FORMAT_BACKENDS.get(self.format, ""), self.format)
        if self.precision and self.precision != "f32":
            name += f" {self.precision}"  # OpenVINO chose a lower precision on this CPU: say so
        if self.variant:
            name += f" · {VARIANTS[self.variant]}"
        no_pytorch = "" if self.accelerated else ", no PyTorch weights to run"
        if self.exported_path is not None:
            return runtime.RuntimeInfo(name, True, f"exported from {self.path.name}")
        if self.format == "pt":
            return runtime.RuntimeInfo(name, False, f"export failed: {self.fallback_reason}" if self.fallback_reason else None)
        if self.derived_path is not None:
            return runtime.RuntimeInfo(name, True, f"derived from the INT8 file {self.path.name}{no_pytorch}")
        if self.fallback_reason is not None:
            return runtime.RuntimeInfo(name, True, f"{self.fallback_reason}; running the INT8 file {self.path.name}")
        kind = "INT8 ONNX" if self.variant == INT8 else self.format.upper()
        # accelerated=False cannot switch an export back to PyTorch: there are no PyTorch weights.
        return runtime.RuntimeInfo(name, True, f"{kind} file {self.path.name}{no_pytorch}")

    @property
    def backend_label(self) -> str:
        """E.g. "OpenVINO (exported from yolov8n.pt)" or "ONNX Runtime · INT8 (INT8 ONNX file yolov8n_coco_int8_qdq.onnx)"."""
        return self.runtime_info.label

    def _predict(self, image: Image.Image, raw: bool = False, **kwargs: Any) -> tuple["Results", tuple[int, int], Any]:
        """One forward pass: the result, the network input shape and (with ``raw``, or when local) the raw output.

        With ``CVDEMO_INFERENCE_URL`` set the network runs on the inference server (:mod:`cvdemo.serve`)
        and its plain output becomes the same ultralytics ``Results`` here.
        """
        from cvdemo.serve.client import remote_batch_fn

        remote = remote_batch_fn(self.serve_key) if getattr(self, "serve_key", None) else None
        if remote is None:
            return self._predict_local(image, **kwargs)
        output = remote([detect_input(image, raw=raw, **kwargs)])[0]
        return self._results_from(output, image)

    def _predict_local(self, image: Image.Image, **kwargs: Any) -> tuple["Results", tuple[int, int], Any]:
        """One ultralytics predict call in this process."""
        with self._lock:
            result, raw = _run(self.model, image, **kwargs)
            return result, self.model.predictor.last_input_shape, raw

    def predict_batch(self, inputs: Sequence[dict]) -> list[dict]:
        """The detector's batch function on plain values (what the inference server runs).

        Each input is :func:`detect_input`'s dict; each output holds the boxes as an ``(N, 6)`` array
        (x1, y1, x2, y2, score, class in original-image pixels), the network input shape, ultralytics'
        timing and, when asked, the raw network output. One predict call per image: the classroom
        INT8 export takes one image at a time, and images of different shapes letterbox differently.
        """
        outputs = []
        for item in inputs:
            settings = {k: item[k] for k in ("conf", "iou", "imgsz", "max_det")}
            result, input_shape, raw = self._predict_local(
                Image.fromarray(np.asarray(item["image"], dtype=np.uint8)), classes=item.get("classes"), **settings
            )
            output = {
                "boxes": result.boxes.data.cpu().numpy().astype(np.float32),
                "input_shape": list(input_shape),
                "speed": {k: float(v or 0) for k, v in result.speed.items()},
                "path": str(result.path),
            }
            if item.get("raw"):
                output["raw"] = raw.detach().float().cpu().numpy()
            outputs.append(output)
        return outputs

    def _results_from(self, output: dict, image: Image.Image) -> tuple["Results", tuple[int, int], Any]:
        """:meth:`predict_batch`'s plain output as the ultralytics ``Results`` a local predict returns."""
        import torch
        from ultralytics.engine.results import Results

        boxes = torch.from_numpy(np.asarray(output["boxes"], dtype=np.float32).reshape(-1, 6))
        result = Results(_bgr(image), path=output.get("path", "image0.jpg"), names=dict(self.names), boxes=boxes)
        result.speed = dict(output["speed"])
        raw = torch.from_numpy(np.asarray(output["raw"])) if "raw" in output else None
        h, w = output["input_shape"]
        return result, (int(h), int(w)), raw

    def detect(
        self,
        image: Any,
        conf: float = 0.25,
        iou: float = 0.45,
        classes: Sequence[int] | None = None,
        imgsz: int = 640,
        max_det: int = 300,
        name: str = "image",
    ) -> Detections:
        """Boxes in pixels of ``image`` (PIL/bytes/path/array), with ultralytics' timing split.

        Computed once per process per (model, image content, settings): the same picture with the
        same settings from another session gets the same (read-only) result, with its own ``name``.
        """
        rgb = _as_rgb(image)
        settings = dict(conf=conf, iou=iou, classes=list(classes) if classes else None, imgsz=imgsz, max_det=max_det)

        def compute() -> Detections:
            result, input_shape, _ = self._scheduled_predict(rgb, **settings)
            return Detections(result, name, self.description, input_shape, conf, iou, self.runtime_info)

        found = results.cached(results.key("detect", self.identity, rgb, settings), compute)
        return found if found.image_name == name else dataclasses.replace(found, image_name=name)

    def nms_lesson(
        self,
        image: Any,
        conf: float = 0.25,
        classes: Sequence[int] | None = None,
        imgsz: int = 640,
        agnostic: bool = False,
        max_det: int = 300,
    ) -> NmsLesson:
        """Run the network once and keep its raw output, for NMS at any IoU threshold."""
        if self.end2end:
            raise ValueError(
                f"{self.name} is an end-to-end (NMS-free) model: it outputs final boxes, there is no NMS to show."
            )
        rgb = _as_rgb(image)
        cls_list = list(classes) if classes else None
        settings = dict(conf=conf, classes=cls_list, imgsz=imgsz, agnostic=agnostic, max_det=max_det)
        return results.cached(
            results.key("nms_lesson", self.identity, rgb, settings),
            lambda: self._nms_lesson(rgb, conf, cls_list, imgsz, agnostic, max_det),
        )

    def _nms_lesson(
        self, rgb: Image.Image, conf: float, cls_list: list[int] | None, imgsz: int, agnostic: bool, max_det: int
    ) -> NmsLesson:
        import torch
        from ultralytics.utils import ops
        from ultralytics.utils.nms import non_max_suppression

        _, input_shape, raw = self._scheduled_predict(
            rgb, raw=True, conf=conf, iou=0.45, classes=cls_list, imgsz=imgsz, max_det=max_det
        )
        raw = raw.detach().float().cpu()
        # IoU threshold 1.0 suppresses nothing (an IoU is never > 1): these are all NMS's inputs.
        out, anchors = non_max_suppression(
            raw, conf, 1.0, classes=cls_list, agnostic=agnostic, max_det=raw.shape[-1], return_idxs=True
        )
        candidates = out[0][:, :6].clone()
        net_boxes = candidates[:, :4].clone()
        candidates[:, :4] = ops.scale_boxes(input_shape, candidates[:, :4], (rgb.height, rgb.width))
        return NmsLesson(
            image=rgb,
            names=dict(self.names),
            conf=conf,
            classes=tuple(cls_list) if cls_list else None,
            agnostic=agnostic,
            max_det=max_det,
            candidates=candidates.numpy().astype(float),
            input_shape=input_shape,
            _raw=raw,
            _anchor_ids=anchors[0].view(-1).numpy(),
            _net_boxes=net_boxes.to(torch.float32),
        )

    def evaluate(
        self,
        labeled: LabeledSet,
        imgsz: int = 640,
        progress: Callable[[int, int], None] | None = None,
    ) -> Evaluation:
        """mAP50, mAP50-95 and the PR curve with ultralytics' DetectionValidator.

        ``progress(images_done, images_total)`` is called after every batch.

        Everything the validator writes (label caches, its run folder) stays in the set's temp folder.
        """
        import_ultralytics()
        import pandas as pd
        from ultralytics.models.yolo.detect import DetectionValidator

        args = {
            **self.model.overrides,
            "data": str(labeled.yaml_path),
            "imgsz": self.fixed_imgsz or imgsz,
            "batch": 1 if self.format != "pt" else 4,
            "rect": True,
            "plots": False,  # the PR curve comes from the metrics object, not from PNGs
            "save_json": False,
            "verbose": False,
            "project": str(labeled.root / "runs"),
            "name": "val",
            "exist_ok": True,
            "mode": "val",
        }
        validator = DetectionValidator(args=args)
        if progress is not None:

            def report(v: DetectionValidator) -> None:
                total = len(v.dataloader.dataset)
                progress(min((v.batch_i + 1) * (v.dataloader.batch_size or 1), total), total)

            validator.add_callback("on_val_batch_end", report)
        start = time.perf_counter()
        # The PyTorch module is shared with the predictor: do not run both at once. (ONNX gets its own session.)
        with self._lock if self.format == "pt" else contextlib.nullcontext():
            validator(model=self.model.model)
        seconds = time.perf_counter() - start
        metrics = validator.metrics
        box = metrics.box
        summary = pd.DataFrame(metrics.summary(decimals=4))
        if not summary.empty:
            summary = summary.astype({"Images": int, "Instances": int})
        class_names = [metrics.names[int(i)] for i in box.ap_class_index]
        curves = np.asarray(box.prec_values)
        return Evaluation(
            dataset=labeled.description,
            model_name=self.description,
            map50=float(box.map50),
            map50_95=float(box.map),
            precision=float(box.mp),
            recall=float(box.mr),
            n_images=len(validator.dataloader.dataset),
            n_instances=int(np.sum(metrics.nt_per_class)) if metrics.nt_per_class is not None else 0,
            per_class=summary,
            recall_axis=np.asarray(box.px, dtype=float),
            precision_by_class={n: curves[i].astype(float) for i, n in enumerate(class_names) if i < len(curves)},
            speed_ms={k: float(v) for k, v in validator.speed.items() if k != "loss"},
            seconds=seconds,
        )


def _run(model: Any, image: Image.Image, copy_raw: bool = False, **kwargs: Any) -> tuple["Results", Any]:
    """One ``model.predict`` on one image: ultralytics' result and the network's raw output (a numpy copy if asked)."""
    result = model.predict(image, predictor=_raw_keeping_predictor(), verbose=False, **kwargs)[0]
    raw = model.predictor.last_raw
    if copy_raw:
        raw = np.array(raw.detach().cpu().numpy() if hasattr(raw, "detach") else raw, dtype=np.float32, copy=True)
    return result, raw


def export_folder(pt: Path) -> Path:
    """The cache folder of one ``.pt``'s exports, keyed by its bytes: a changed file gets a new export."""
    return runtime.cache_folder() / "yolo" / f"{pt.stem}-{weights.sha256_of(pt)[:16]}"


def export_format() -> str:
    """OpenVINO when its package imports (fastest on Intel CPUs), else ONNX (onnxruntime is always installed)."""
    import importlib

    try:
        importlib.import_module("openvino")
    except Exception:  # not installed, or a broken install: ONNX still works
        return "onnx"
    return "openvino"


def export_pt(pt: Path, fmt: str | None = None) -> Path:
    """The ultralytics export of ``pt`` in cvdemo's cache (made once, then reused): an ONNX file or OpenVINO folder.

    ultralytics writes its export beside the ``.pt`` and weights folders may be read-only, so the
    ``.pt`` is copied into a private temp folder in the cache, exported there, and the export moved
    into place with one rename: a half-written export is never found by a later load.
    """
    fmt = fmt or export_format()
    folder = export_folder(pt)
    final = folder / (f"{pt.stem}_openvino_model" if fmt == "openvino" else f"{pt.stem}.onnx")
    if _export_complete(final):
        return final
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
    try:
        copy = work / pt.name
        shutil.copyfile(pt, copy)
        import_ultralytics()
        from ultralytics import YOLO

        # fp32 (quantize=32: ultralytics' replacement of half=False/int8=False), dynamic so any page image
        # size works; no onnxslim (not installed, and auto-install is off), CPU only.
        options: dict[str, Any] = {"format": fmt, "dynamic": True, "quantize": 32, "device": "cpu"}
        if fmt == "onnx":
            options["simplify"] = False  # the OpenVINO exporter refuses this argument
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace deprecation noise inside the exporter
            out = Path(YOLO(str(copy), task="detect").export(**options))
        if not _export_complete(out):
            raise RuntimeError(f"ultralytics reported {out.name} but wrote no complete export")
        try:
            os.replace(out, final)
        except OSError:
            if not _export_complete(final):  # not another process that finished first: a real error
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _export_complete(path: Path) -> bool:
    if path.suffix == ".onnx":
        return path.is_file()
    return path.is_dir() and any(path.glob("*.xml")) and (path / "metadata.yaml").is_file()


def _openvino_precision(backend: Any) -> str | None:
    """The precision OpenVINO computes in, e.g. "f32", or "bf16" (its CPU default where the CPU has AMX/AVX512-BF16)."""
    try:
        return str(backend.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name())
    except Exception:
        return None


def _short_reason(exc: BaseException) -> str:
    """An exception as one short line for a badge (ultralytics messages can span screens)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def openvino_folder(onnx_path: Path) -> Path:
    """An ONNX file as an ultralytics-style OpenVINO folder beside it (made once): IR files plus ``metadata.yaml``.

    ultralytics picks its OpenVINO backend from the folder name (``*_openvino_model``) and reads
    class names, stride and input size from the yaml: the same metadata the ONNX file carries.
    Weights stay FP32 (no FP16 compression of the IR). Written in a temp folder and renamed.
    """
    import onnx
    import openvino as ov
    import yaml

    final = onnx_path.parent / f"{onnx_path.stem}_openvino_model"
    if _export_complete(final):
        return final
    work = Path(tempfile.mkdtemp(prefix=".openvino-", dir=onnx_path.parent))
    try:
        metadata = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        ov.save_model(ov.convert_model(str(onnx_path)), str(work / f"{onnx_path.stem}.xml"), compress_to_fp16=False)
        (work / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
        try:
            os.replace(work, final)
        except OSError:
            if not _export_complete(final):  # not another process that finished first: a real error
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


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
