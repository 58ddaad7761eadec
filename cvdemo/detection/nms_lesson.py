"""The NMS lesson: the candidates before non-maximum suppression, and which survive at any IoU threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from cvdemo.detection._common import _bgr, _rgb_image
from cvdemo.detection.iou import IoUWorking, iou_by_formula

if TYPE_CHECKING:
    import pandas as pd
    import torch


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

    @classmethod
    def from_raw(
        cls,
        rgb: Image.Image,
        raw: "torch.Tensor",
        input_shape: tuple[int, int],
        names: dict[int, str],
        conf: float,
        cls_list: list[int] | None,
        agnostic: bool,
        max_det: int,
    ) -> "NmsLesson":
        """The lesson from one forward pass's raw output (``input_shape``: the letterboxed network input)."""
        import torch
        from ultralytics.utils import ops
        from ultralytics.utils.nms import non_max_suppression

        raw = raw.detach().float().cpu()
        # IoU threshold 1.0 suppresses nothing (an IoU is never > 1): these are all NMS's inputs.
        out, anchors = non_max_suppression(
            raw, conf, 1.0, classes=cls_list, agnostic=agnostic, max_det=raw.shape[-1], return_idxs=True
        )
        candidates = out[0][:, :6].clone()
        net_boxes = candidates[:, :4].clone()
        candidates[:, :4] = ops.scale_boxes(input_shape, candidates[:, :4], (rgb.height, rgb.width))
        return cls(
            image=rgb,
            names=names,
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
