"""Image conversions the package's files share: any image input to RGB, RGB <-> ultralytics' BGR arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from cvdemo.images import ImageInputError, load_image


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
