"""Box matching, and whether two graphs of one detector find the same objects (float graph vs INT8 file)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from ultralytics.engine.results import Results


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
