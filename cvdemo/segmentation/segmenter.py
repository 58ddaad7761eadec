"""What every segmentation model is (image in, class index per pixel out) and how scores become labels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must not load torch
    import torch

class Segmenter:
    """Anything that turns an RGB image into a class-index mask of the same size."""

    class_names: list[str]
    background: int | None = 0  # class left unpainted in overlays (None: paint everything)
    title: str = ""

    def predict(self, image: Image.Image) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


MAX_UPSAMPLED_VALUES = 16_000_000  # classes x pixels of full-size scores held at once (64 MB of float32)


def labels_at_size(logits: "torch.Tensor", width: int, height: int) -> np.ndarray:
    """Class index per pixel of a (width x height) image from low-resolution scores (1, C, h, w).

    Scores are upsampled bilinearly (smooth edges) up to a memory budget; beyond it (a 50 MP photo,
    150 ADE20K classes) the label map is upsampled further with nearest neighbour.
    """
    import torch
    import torch.nn.functional as F

    classes = logits.shape[1]
    scale = min(1.0, math.sqrt(MAX_UPSAMPLED_VALUES / (classes * width * height)))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    labels = up[0].argmax(0).to(torch.uint8).numpy()
    if (w, h) != (width, height):
        labels = np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))
    return labels
