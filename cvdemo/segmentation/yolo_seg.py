"""Instance segmentation with YOLO-seg, for the "instance vs semantic" comparison."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cvdemo import weights

@dataclass
class Instance:
    class_name: str
    score: float
    box: tuple[float, float, float, float]  # xyxy pixels
    pixels: int


@dataclass
class InstanceResult:
    annotated: Image.Image  # each instance its own colour
    instances: list[Instance]
    semantic: np.ndarray  # the same instances merged per class: what a semantic model would output
    class_names: list[str]  # index -> name for ``semantic`` (0 = background)


def load_instance_model(name: str = "yolov8n-seg"):
    """An ultralytics YOLO-seg model (raises ``WeightsUnavailable`` naming the missing file)."""
    from cvdemo.yolo_runtime import import_ultralytics  # no auto-install, no thread pinning

    path = weights.resolve(name)
    import_ultralytics()
    from ultralytics import YOLO

    return YOLO(str(path), task="segment")


def _polygon_area(points: np.ndarray) -> float:
    """Shoelace formula: the area in pixels enclosed by an (N, 2) polygon."""
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def instances(model, image: Image.Image, conf: float = 0.25, imgsz: int = 640, max_det: int = 100) -> InstanceResult:
    """YOLO-seg instances of ``image`` and the semantic mask they collapse to.

    Masks come back as polygons in the photo's pixel coordinates (ultralytics' ``masks.xy``), so
    nothing full-size is held per instance, however large the photo.
    """
    from PIL import ImageDraw

    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])  # ultralytics takes arrays as BGR
    result = model.predict(bgr, conf=conf, imgsz=imgsz, max_det=max_det, verbose=False)[0]
    names = result.names
    boxes = result.boxes
    classes = [int(c) for c in boxes.cls.tolist()] if boxes is not None else []
    present = sorted(set(classes))
    semantic = Image.new("L", image.size, 0)
    found: list[Instance] = []
    if result.masks is not None and classes:
        polygons = result.masks.xy
        scores = boxes.conf.tolist()
        draw = ImageDraw.Draw(semantic)
        for i in sorted(range(len(classes)), key=lambda k: scores[k]):  # higher scores painted last
            if len(polygons[i]) >= 3:
                draw.polygon([tuple(p) for p in polygons[i].tolist()], fill=present.index(classes[i]) + 1)
        for i, cls in enumerate(classes):
            found.append(
                Instance(names[cls], float(scores[i]), tuple(float(v) for v in boxes.xyxy[i].tolist()),
                         int(round(_polygon_area(polygons[i]))))
            )
    annotated = Image.fromarray(result.plot()[..., ::-1])
    return InstanceResult(annotated, found, np.asarray(semantic), ["background"] + [names[c] for c in present])
