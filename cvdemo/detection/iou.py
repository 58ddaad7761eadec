"""Intersection over union spelled out with the numbers of two boxes, and a picture of the pair."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from PIL import Image, ImageDraw


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
