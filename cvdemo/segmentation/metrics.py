"""Per-class IoU, mean IoU, foreground IoU and pixel accuracy from a pixel confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from cvdemo.segmentation.dataset import IGNORE_INDEX, SegSample

if TYPE_CHECKING:
    from cvdemo.segmentation.segmenter import Segmenter

def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """(truth x prediction) pixel counts, ignoring pixels labelled 255."""
    valid = truth != IGNORE_INDEX
    t = truth[valid].astype(np.int64)
    p = np.clip(pred[valid].astype(np.int64), 0, n_classes - 1)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclass
class SegMetrics:
    class_names: list[str]
    matrix: np.ndarray  # confusion, rows = truth, columns = prediction

    @property
    def per_class_iou(self) -> np.ndarray:
        """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    @property
    def miou(self) -> float:
        return float(np.nanmean(self.per_class_iou))

    @property
    def foreground_iou(self) -> float:
        """IoU of 'any object' (every class but 0) against background: did it find the pet?"""
        m = self.matrix
        tp = m[1:, 1:].sum()
        union = m[1:, :].sum() + m[:, 1:].sum() - tp
        return float(tp / union) if union else float("nan")

    @property
    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def table(self) -> list[dict]:
        """One row per class: IoU, labelled and predicted pixels."""
        iou = self.per_class_iou
        return [
            {
                "class": name,
                "IoU": None if np.isnan(iou[i]) else round(float(iou[i]), 3),
                "pixels (truth)": int(self.matrix[i].sum()),
                "pixels (predicted)": int(self.matrix[:, i].sum()),
            }
            for i, name in enumerate(self.class_names)
        ]


def evaluate(model: "Segmenter", samples: Sequence[SegSample], max_side: int = 1024) -> SegMetrics:
    """Confusion matrix of ``model`` over ``samples`` at each image's resolution (capped at ``max_side``)."""
    n = len(model.class_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    for s in samples:
        image, mask = s.image, s.mask
        if max(image.size) > max_side:  # a 12 MP phone photo scores the same at 1 MP, 12x cheaper
            scale = max_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.BILINEAR, reducing_gap=2.0)
            mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
        matrix += confusion(model.predict(image), mask, n)
    return SegMetrics(list(model.class_names), matrix)
