"""What one image produced: :class:`Detections` over ultralytics' ``Results``, and its :class:`StageLatency` split."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cvdemo import runtime
from cvdemo.detection._common import _rgb_image
from cvdemo.images import to_png_bytes

if TYPE_CHECKING:
    import pandas as pd
    from ultralytics.engine.results import Results


@dataclass(frozen=True)
class StageLatency:
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
    def latency(self) -> StageLatency:
        s = self.result.speed
        return StageLatency(float(s["preprocess"] or 0), float(s["inference"] or 0), float(s["postprocess"] or 0))

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
