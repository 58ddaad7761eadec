"""What a mask looks like to people: class colours, overlays on the photo, legend, % of pixels, mask PNG."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from cvdemo.segmentation.dataset import IGNORE_INDEX

# Bright, distinguishable colours for the first classes (projector friendly); index 0 is grey
# because it is usually "background" and is not painted over the photo.
_BASE_PALETTE = [
    (90, 90, 90), (255, 20, 147), (30, 144, 255), (50, 205, 50), (255, 140, 0), (148, 0, 211),
    (255, 215, 0), (0, 206, 209), (220, 20, 60), (139, 69, 19), (0, 128, 128), (154, 205, 50),
]


def palette(n: int) -> np.ndarray:
    """``n`` RGB colours (uint8): a bright hand-picked set, then the PASCAL VOC bit-pattern map."""
    colours = list(_BASE_PALETTE[:n])
    for i in range(len(colours), n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return np.array(colours, dtype=np.uint8).reshape(-1, 3)


def colorize(mask: np.ndarray, n_classes: int) -> Image.Image:
    """The mask as an RGB picture (ignore pixels white)."""
    table = np.full((256, 3), 255, dtype=np.uint8)
    table[:n_classes] = palette(n_classes)
    return Image.fromarray(table[mask])


def overlay(
    image: Image.Image,
    mask: np.ndarray,
    n_classes: int,
    opacity: float = 0.5,
    skip: Sequence[int] = (0,),
) -> Image.Image:
    """Blend class colours over the photo; classes in ``skip`` (background) stay unpainted."""
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask {mask.shape[::-1]} and image {image.size} differ in size")
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    colours = colorize(mask, n_classes)
    paint = np.asarray(colours, dtype=np.float32)
    where = np.isin(mask, list(skip), invert=True) & (mask != IGNORE_INDEX)
    alpha = float(np.clip(opacity, 0.0, 1.0)) * where[..., None]
    return Image.fromarray((base * (1 - alpha) + paint * alpha + 0.5).astype(np.uint8))


MAX_DISPLAY_SIDE = 2048


def display_copy(image: Image.Image, max_side: int = MAX_DISPLAY_SIDE) -> Image.Image:
    """The photo shrunk to at most ``max_side`` pixels on its long side (a 50 MP upload stays usable)."""
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.BILINEAR, reducing_gap=2.0)


def mask_png(mask: np.ndarray, n_classes: int) -> bytes:
    """The mask as a palette PNG: pixel value = class index (machine readable), colours for people."""
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:n_classes] = palette(n_classes)
    pal[IGNORE_INDEX] = (255, 255, 255)
    img.putpalette(pal.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class ClassShare:
    index: int
    name: str
    color: tuple[int, int, int]
    pixels: int
    fraction: float

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.color)


def class_shares(mask: np.ndarray, class_names: Sequence[str], min_fraction: float = 0.0) -> list[ClassShare]:
    """Classes present in a mask, largest first, with their colour and share of the image's pixels."""
    n = len(class_names)
    counts = np.bincount(mask.ravel(), minlength=256)
    total = max(int(mask.size), 1)
    colours = palette(n)
    rows = [
        ClassShare(i, class_names[i], tuple(int(c) for c in colours[i]), int(counts[i]), counts[i] / total)
        for i in range(n)
        if counts[i] and counts[i] / total >= min_fraction
    ]
    return sorted(rows, key=lambda r: -r.pixels)


def legend_html(shares: Sequence[ClassShare]) -> str:
    """Coloured chips with class name and percentage (for st.html / gr.HTML)."""
    chips = "".join(
        f'<span style="display:inline-flex;align-items:center;margin:2px 10px 2px 0;font-size:1rem">'
        f'<span style="width:1em;height:1em;background:{s.hex};border:1px solid #444;border-radius:3px;'
        f'margin-right:6px;display:inline-block"></span>{s.name} {100 * s.fraction:.1f}%</span>'
        for s in shares
    )
    return f'<div style="display:flex;flex-wrap:wrap">{chips}</div>'
