"""Semantic segmentation: train a U-Net with a pretrained encoder on the CPU, then paint every pixel.

The lecture's transfer-learning recipe, runnable in a minute on two cores:

* data: image + mask pairs (``images/<name>.jpg`` + ``masks/<name>.png``, class index per pixel,
  255 = ignore) from the data folder or a user's zip, validated pair by pair;
* model: ``segmentation_models_pytorch`` U-Net / FPN / DeepLabV3+ on a timm encoder whose
  ImageNet weights come from :mod:`cvdemo.weights` (EfficientNet-Lite0 works offline);
* training: stage 1 trains the decoder with the encoder frozen, stage 2 unfreezes the encoder with
  a lower (differential) learning rate; augmentations from ``torchvision.transforms.v2``;
* evaluation: per-class IoU from a confusion matrix on held-out images;
* prediction: mask, overlay, legend, % of pixels per class, mask PNG; pretrained semantic models
  (SegFormer-B0 ADE20K, LR-ASPP VOC) and YOLO-seg instances when their weights are on the machine.

Models are saved as safetensors with their config (JSON) in the file's metadata: never pickle.
"""

from __future__ import annotations

import io
import json
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from PIL import Image

from cvdemo import backbones, datasets, weights
from cvdemo.archives import ArchiveError, read_zip
from cvdemo.images import ImageInputError, is_image_name, load_image

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must not load torch
    import torch
    import torch.nn as nn

IGNORE_INDEX = 255
MAX_CLASSES = 32  # mask values above this (other than 255) are taken as a mistake, not a class
MAX_PAIRS = 300  # more image/mask pairs than a CPU lesson can train on
SAMPLE_DATASET = "oxford_pets_seg26"
SAMPLE_CLASSES: dict[str, tuple[str, ...]] = {SAMPLE_DATASET: ("background", "cat", "dog")}
IMAGE_DIRS = {"images", "image", "imgs", "jpegimages"}
MASK_DIRS = {"masks", "mask", "labels", "annotations", "segmentationclass"}
CLASSES_FILE = "classes.txt"
FORMAT_KEY = "cvdemo_segmentation"  # safetensors metadata key holding the model config JSON

ARCHITECTURES: dict[str, str] = {
    "Unet": "U-Net (skip connections at every scale)",
    "FPN": "FPN (feature pyramid, light decoder)",
    "DeepLabV3Plus": "DeepLabV3+ (atrous pyramid + light skip)",
}

# Bright, distinguishable colours for the first classes (projector friendly); index 0 is grey
# because it is usually "background" and is not painted over the photo.
_BASE_PALETTE = [
    (90, 90, 90), (255, 20, 147), (30, 144, 255), (50, 205, 50), (255, 140, 0), (148, 0, 211),
    (255, 215, 0), (0, 206, 209), (220, 20, 60), (139, 69, 19), (0, 128, 128), (154, 205, 50),
]

ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)


class SegDataError(ValueError):
    """A segmentation data set cannot be used; the message says why (and names the file)."""


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message says why."""


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


@dataclass
class SegSample:
    """One labelled image: RGB image and a class-index mask of the same size (255 = ignore)."""

    name: str
    image: Image.Image
    mask: np.ndarray  # (H, W) uint8

    @property
    def main_class(self) -> int:
        """The most frequent non-background class (0 when there is none): used to stratify splits."""
        counts = np.bincount(self.mask[self.mask != IGNORE_INDEX].ravel(), minlength=2)
        counts[0] = 0
        return int(counts.argmax()) if counts.any() else 0


@dataclass
class SegDataset:
    samples: list[SegSample]
    class_names: list[str]
    problems: list[str] = field(default_factory=list)  # skipped files, one sentence each
    source: str = ""

    def pixel_shares(self) -> dict[str, float]:
        """Fraction of labelled pixels per class over the whole set."""
        counts = np.zeros(len(self.class_names), dtype=np.int64)
        for s in self.samples:
            valid = s.mask[s.mask != IGNORE_INDEX]
            counts += np.bincount(valid.ravel(), minlength=len(self.class_names))[: len(self.class_names)]
        total = max(int(counts.sum()), 1)
        return {name: float(c) / total for name, c in zip(self.class_names, counts)}


def _mask_array(mask: Image.Image, name: str) -> np.ndarray:
    """Class indices from a mask image; colour masks are refused (they are not indices)."""
    if mask.mode in ("P", "L"):
        return np.asarray(mask, dtype=np.uint8)
    if mask.mode == "1":
        return np.asarray(mask, dtype=np.uint8)  # True -> 1
    if mask.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(mask)
        if arr.max() > 255:
            raise SegDataError(f"{name} holds values above 255; masks must hold class indices 0–{MAX_CLASSES - 1}.")
        return arr.astype(np.uint8)
    if mask.mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(mask.convert("RGB"))
        if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            return np.ascontiguousarray(arr[..., 0])  # grey saved as RGB: fine
    raise SegDataError(
        f"{name} is a colour ({mask.mode}) image; a mask must be single-channel class indices "
        f"(0 = background, 1, 2, … and 255 = ignore), e.g. a mode L or P PNG."
    )


def _read_mask(data: bytes, name: str) -> np.ndarray:
    if not data:
        raise SegDataError(f"{name} is empty (0 bytes).")
    try:
        with Image.open(io.BytesIO(data)) as mask:
            mask.load()
            if mask.width * mask.height > 50_000_000:
                raise SegDataError(f"{name} is larger than 50 megapixels.")
            return _mask_array(mask, name)
    except SegDataError:
        raise
    except Exception:
        raise SegDataError(f"{name} is not an image Pillow can read, so it cannot be a mask.") from None


def _check_values(mask: np.ndarray, name: str, n_classes: int | None) -> None:
    values = np.unique(mask)
    limit = n_classes if n_classes is not None else MAX_CLASSES
    unknown = [int(v) for v in values if v != IGNORE_INDEX and v >= limit]
    if unknown:
        shown = ", ".join(map(str, unknown[:6])) + (" …" if len(unknown) > 6 else "")
        raise SegDataError(
            f"{name} has pixel values {shown} that are not classes (allowed: 0–{limit - 1}, and 255 = ignore)."
        )


def _class_names_from(text: str) -> list[str]:
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) < 2:
        raise SegDataError(f"{CLASSES_FILE} must list at least 2 class names, one per line (line 1 = value 0).")
    if len(names) > MAX_CLASSES:
        raise SegDataError(f"{CLASSES_FILE} lists {len(names)} classes; the limit is {MAX_CLASSES}.")
    return names


def pair_files(
    files: dict[str, bytes],
    class_names: Sequence[str] | None = None,
    source: str = "",
) -> SegDataset:
    """Pair ``images/<stem>.*`` with ``masks/<stem>.png`` and validate every pair.

    A bad pair (unreadable image, missing mask, size mismatch, unknown mask values) is skipped
    with a sentence naming the file in ``problems``; the good pairs are kept. Raises
    :class:`SegDataError` only when no usable pair is left.
    """
    problems: list[str] = []
    images: dict[str, tuple[str, bytes]] = {}
    masks: dict[str, tuple[str, bytes]] = {}
    names_text = None
    for path, blob in sorted(files.items()):
        pure = PurePosixPath(path)
        if pure.name.lower() == CLASSES_FILE:
            names_text = blob.decode("utf-8", errors="replace")
            continue
        folder = pure.parent.name.lower()
        if folder in MASK_DIRS:
            masks.setdefault(pure.stem, (path, blob))
        elif folder in IMAGE_DIRS:
            if is_image_name(pure.name):
                images.setdefault(pure.stem, (path, blob))
            else:
                problems.append(f"{path}: not an image file name (.jpg, .png, …), skipped.")
        elif not pure.name.startswith(".") and pure.name.lower() not in ("readme.md", "readme.txt", "license"):
            problems.append(f"{path}: not inside an images/ or masks/ folder, skipped.")
    if class_names is None and names_text is not None:
        class_names = _class_names_from(names_text)
    n_classes = len(class_names) if class_names is not None else None

    samples: list[SegSample] = []
    for stem, (img_path, img_blob) in images.items():
        if stem not in masks:
            problems.append(f"{img_path} has no mask (expected masks/{stem}.png), skipped.")
            continue
        mask_path, mask_blob = masks[stem]
        named = io.BytesIO(img_blob)
        named.name = img_path  # so the message names the file
        try:
            image = load_image(named)
        except ImageInputError as exc:
            problems.append(f"{exc} ({img_path} skipped with its mask.)")
            continue
        try:
            mask = _read_mask(mask_blob, mask_path)
            if mask.shape != (image.height, image.width):
                raise SegDataError(
                    f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} pixels but its image {img_path} is "
                    f"{image.width}x{image.height}; a mask must have its image's size."
                )
            _check_values(mask, mask_path, n_classes)
        except SegDataError as exc:
            problems.append(f"{exc} Skipped with its image.")
            continue
        samples.append(SegSample(stem, image, mask))
    for stem, (mask_path, _) in masks.items():
        if stem not in images:
            problems.append(f"{mask_path} has no image with the same name, skipped.")
    if not samples:
        detail = (" " + " ".join(problems[:3])) if problems else ""
        raise SegDataError(
            "No usable image/mask pairs: expected images/<name>.jpg with masks/<name>.png (same name, same size, "
            "class index per pixel, 255 = ignore)." + detail
        )
    if len(samples) > MAX_PAIRS:
        problems.append(f"Only the first {MAX_PAIRS} of {len(samples)} pairs are used (a CPU lesson).")
        samples = samples[:MAX_PAIRS]
    if class_names is None:
        top = max(int(np.max(np.where(s.mask == IGNORE_INDEX, 0, s.mask))) for s in samples)
        class_names = ["background"] + [f"class {i}" for i in range(1, max(top, 1) + 1)]
    if all(not np.any((s.mask != 0) & (s.mask != IGNORE_INDEX)) for s in samples):
        raise SegDataError(
            "No mask has any pixel of a class other than 0 (background); 255 means 'ignore' here. "
            "Save the objects as 1, 2, … in the masks."
        )
    return SegDataset(samples, list(class_names), problems, source)


def load_folder(root: str | Path, class_names: Sequence[str] | None = None) -> SegDataset:
    """Image/mask pairs from ``root/images`` and ``root/masks`` (the data folder layout)."""
    root = Path(root)
    files = {
        str(p.relative_to(root).as_posix()): p.read_bytes()
        for sub in ("images", "masks")
        if (root / sub).is_dir()
        for p in sorted((root / sub).iterdir())
        if p.is_file()
    }
    if (root / CLASSES_FILE).is_file():
        files[CLASSES_FILE] = (root / CLASSES_FILE).read_bytes()
    if not files:
        raise SegDataError(f"{root.name} has no images/ and masks/ folders.")
    return pair_files(files, class_names, source=root.name)


def load_sample(name: str = SAMPLE_DATASET) -> SegDataset:
    """A segmentation data set from the data folder (raises ``DataUnavailable`` when missing)."""
    return load_folder(datasets.dataset_path(name), SAMPLE_CLASSES.get(name))


def load_zip(src: bytes | Any, name: str = "the zip") -> SegDataset:
    """Image/mask pairs from a user's zip (``images/``, ``masks/``, optional ``classes.txt``)."""
    try:
        contents = read_zip(src)
    except ArchiveError as exc:
        raise SegDataError(f"{name}: {exc}") from None
    dataset = pair_files(contents.files, source=name)
    dataset.problems = contents.skipped + dataset.problems
    return dataset


def split(samples: Sequence[SegSample], n_val: int, seed: int = 0) -> tuple[list[SegSample], list[SegSample]]:
    """Hold out ``n_val`` samples, stratified by each image's main class, reproducibly."""
    if not 0 < n_val < len(samples):
        raise SegDataError(f"Hold out between 1 and {len(samples) - 1} of the {len(samples)} images, not {n_val}.")
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.main_class, []).append(i)
    # Largest-remainder allocation keeps each class's share in the held-out set.
    quotas = {c: n_val * len(idx) / len(samples) for c, idx in groups.items()}
    counts = {c: int(q) for c, q in quotas.items()}
    for c in sorted(quotas, key=lambda c: quotas[c] - counts[c], reverse=True)[: n_val - sum(counts.values())]:
        counts[c] += 1
    rng = random.Random(seed)
    val_idx: set[int] = set()
    for c, idx in sorted(groups.items()):
        val_idx.update(rng.sample(idx, min(counts[c], len(idx))))
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


# --------------------------------------------------------------------------------------------
# colours, overlays, statistics
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


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


@dataclass
class ModelConfig:
    """Everything needed to rebuild a trained model (saved as JSON inside the safetensors file)."""

    architecture: str = "Unet"  # key of ARCHITECTURES
    encoder: str = "efficientnet_lite0"  # key of cvdemo.backbones.BACKBONES
    class_names: list[str] = field(default_factory=lambda: list(SAMPLE_CLASSES[SAMPLE_DATASET]))
    img_size: int = 160
    pretrained_encoder: bool = True
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    metrics: dict[str, float] = field(default_factory=dict)  # held-out results, for the record

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            config = cls(**known)
        except Exception as exc:
            raise ModelFileError(f"The model's config is not valid JSON for this app: {exc}") from None
        if config.architecture not in ARCHITECTURES:
            raise ModelFileError(f"Unknown architecture '{config.architecture}' (known: {', '.join(ARCHITECTURES)}).")
        if config.encoder not in backbones.BACKBONES:
            raise ModelFileError(f"Unknown encoder '{config.encoder}' (known: {', '.join(backbones.BACKBONES)}).")
        names = config.class_names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not 2 <= len(names) <= MAX_CLASSES:
            raise ModelFileError(f"The model's config must name between 2 and {MAX_CLASSES} classes.")
        if not isinstance(config.img_size, int) or config.img_size % 32 or not 32 <= config.img_size <= 1024:
            raise ModelFileError("The model's input size must be a multiple of 32 between 32 and 1024 pixels.")
        if len(config.mean) != 3 or len(config.std) != 3 or not all(float(v) > 0 for v in config.std):
            raise ModelFileError("The model's config needs 3 mean and 3 positive std values.")
        return config


def smp_encoder_name(encoder: str) -> str:
    """smp's name for a timm encoder: its timm-universal wrapper ``tu-<timm arch>``."""
    return "tu-" + backbones.BACKBONES[encoder].arch


def encoder_choices() -> dict[str, str]:
    """Encoders to offer: every backbone, labelled with whether its ImageNet weights are here."""
    ready = set(backbones.available_backbones())
    return {
        name: spec.label + ("" if name in ready else " — no ImageNet weights on this machine")
        for name, spec in backbones.BACKBONES.items()
    }


def build_network(config: ModelConfig) -> "nn.Module":
    """A randomly initialised smp network for ``config`` (weights are loaded separately)."""
    import segmentation_models_pytorch as smp

    cls = getattr(smp, config.architecture)
    return cls(
        encoder_name=smp_encoder_name(config.encoder),
        encoder_weights=None,  # smp would download; ours come from the registry
        classes=len(config.class_names),
    )


def load_encoder_weights(network: "nn.Module", encoder: str) -> list[str]:
    """Copy the registry's ImageNet weights of ``encoder`` into the network's encoder.

    The encoder is timm's ``features_only`` version of the classifier, which drops the head
    (e.g. conv_head/bn2/classifier for EfficientNet): those keys are the only ones allowed to be
    left over, every encoder tensor must be filled. Returns the dropped keys.
    Raises :class:`cvdemo.weights.WeightsUnavailable` when the weights are not on this machine.
    """
    source = backbones.create_backbone(encoder, pretrained=True).state_dict()
    target = network.encoder.model.state_dict()
    # timm's FeatureListNet flattens the first Sequential level: "stages.0.x" -> "stages_0.x".
    aliases: dict[str, str] = {}
    for key in source:
        aliases[key] = key
        parts = key.split(".")
        if len(parts) > 2:
            aliases.setdefault(f"{parts[0]}_{parts[1]}." + ".".join(parts[2:]), key)
    missing = [k for k in target if k not in aliases]
    if missing:
        raise ValueError(f"The {encoder} checkpoint does not cover its encoder (missing e.g. {missing[:3]}).")
    mapped = {k: source[aliases[k]] for k in target}
    wrong = [k for k in target if tuple(mapped[k].shape) != tuple(target[k].shape)]
    if wrong:
        raise ValueError(f"The {encoder} checkpoint has other shapes than its encoder (e.g. {wrong[:3]}).")
    network.encoder.model.load_state_dict(mapped, strict=True)
    used = {aliases[k] for k in target}
    return sorted(k for k in source if k not in used)


class SegModel(Segmenter):
    """A trainable smp network with its config: predict, save and load."""

    def __init__(self, config: ModelConfig, network: "nn.Module | None" = None):
        """A new network for ``config`` (ImageNet encoder when ``pretrained_encoder``), or wrap ``network``."""
        import torch

        self.config = config
        self.class_names = list(config.class_names)
        self.background = 0 if self.class_names[0].lower() in ("background", "bg", "_background_") else None
        self.title = f"{config.architecture} + {config.encoder}"
        self.dropped_keys: list[str] = []
        if network is None:
            import timm

            network = build_network(config)
            if config.pretrained_encoder:
                self.dropped_keys = load_encoder_weights(network, config.encoder)
            # timm's normalisation for this encoder's ImageNet weights (EfficientNet-Lite0: mean=std=0.5);
            # a random encoder gets the same, so both differ only in their starting weights.
            cfg = timm.models.get_pretrained_cfg(backbones.BACKBONES[config.encoder].arch)
            config.mean, config.std = list(cfg.mean), list(cfg.std)
        self.network = network.to(memory_format=torch.channels_last).eval()

    def normalize(self, batch: "torch.Tensor") -> "torch.Tensor":
        """uint8 NCHW -> normalised float, channels_last (faster convolutions on CPU)."""
        import torch

        mean = torch.tensor(self.config.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.config.std).view(1, 3, 1, 1) * 255
        return ((batch.float() - mean) / std).contiguous(memory_format=torch.channels_last)

    def logits(self, image: Image.Image) -> "torch.Tensor":
        """Class scores (1, C, img_size, img_size): the network sees every photo at its training size."""
        import torch

        size = self.config.img_size
        small = image.convert("RGB").resize((size, size), Image.BILINEAR, reducing_gap=2.0)
        batch = torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)[None]
        with torch.inference_mode():
            return self.network.eval()(self.normalize(batch))

    def predict(self, image: Image.Image) -> np.ndarray:
        """Class index per pixel, at the photo's own size."""
        import torch

        with torch.inference_mode():
            return labels_at_size(self.logits(image), image.width, image.height)

    # -- save / load: safetensors with the config as metadata ----------------------------------

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        state = {k: v.detach().contiguous() for k, v in self.network.state_dict().items()}
        return save(state, metadata={FORMAT_KEY: self.config.to_json()})

    @classmethod
    def from_bytes(cls, data: bytes, config_json: str | None = None, name: str = "the file") -> "SegModel":
        """Load a model saved by :meth:`to_bytes` (safetensors only: a pickle is refused unread)."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        if not data:
            raise ModelFileError(f"{name} is empty (0 bytes).")
        if data[:2] == b"\x80\x02" or data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
            raise ModelFileError(
                f"{name} looks like a PyTorch pickle (.pt/.pth). Pickles can run code, so only .safetensors "
                "model files are accepted here."
            )
        try:
            header_len = int.from_bytes(data[:8], "little")
            header = json.loads(data[8 : 8 + header_len])
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
            state = load(data)
        except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError, MemoryError):
            raise ModelFileError(f"{name} is not a valid .safetensors file.") from None
        meta = (header.get("__metadata__") or {}).get(FORMAT_KEY)
        text = config_json or meta
        if text is None:
            raise ModelFileError(
                f"{name} has no cvdemo segmentation config in its metadata; upload the JSON config saved with it."
            )
        config = ModelConfig.from_json(text)
        network = build_network(config)
        try:
            # strict: smp's non-strict loading would silently drop tensors of another shape
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = str(exc).split("\n\t", 1)[-1][:160]
            raise ModelFileError(
                f"{name} does not match a {config.architecture} with a {config.encoder} encoder and "
                f"{len(config.class_names)} classes ({detail})."
            ) from None
        return cls(config, network)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        path.with_suffix(".json").write_text(self.config.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SegModel":
        path = Path(path)
        config = path.with_suffix(".json")
        return cls.from_bytes(path.read_bytes(), config.read_text() if config.is_file() else None, path.name)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """The two-stage transfer-learning recipe. Without a pretrained encoder nothing is frozen."""

    frozen_epochs: int = 3  # stage 1: encoder frozen, decoder learns at ``lr``
    finetune_epochs: int = 5  # stage 2: everything learns, encoder at ``lr * encoder_lr_factor``
    lr: float = 3e-3
    encoder_lr_factor: float = 0.1  # differential learning rate for the pretrained encoder
    batch_size: int = 8
    augment: bool = True
    seed: int = 0

    @property
    def epochs(self) -> int:
        return self.frozen_epochs + self.finetune_epochs


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    stage: str  # "frozen encoder" | "fine-tune" | "all layers"
    train_loss: float
    val_miou: float
    val_foreground_iou: float
    seconds: float


def augmentation(size: int, augment: bool):
    """Joint image+mask transforms (torchvision v2 keeps masks nearest-neighbour)."""
    from torchvision.transforms import v2

    if not augment:
        return None
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.5, 1.0), ratio=(0.75, 1.333), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
        ]
    )


def _as_tensors(samples: Sequence[SegSample], size: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Images (uint8 NCHW) and masks (int64 NHW) resized once to ``size`` x ``size``."""
    import torch

    images = np.stack(
        [np.asarray(s.image.resize((size, size), Image.BILINEAR, reducing_gap=2.0)) for s in samples]
    )
    masks = np.stack([np.asarray(Image.fromarray(s.mask).resize((size, size), Image.NEAREST)) for s in samples])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(masks.astype(np.int64))


class Trainer:
    """Trains a :class:`SegModel` epoch by epoch; stoppable, observable from another thread.

    ``run()`` trains in the calling thread; ``start()`` trains in a background thread (the page
    polls ``history`` / ``progress`` while the student watches the curves).
    """

    def __init__(
        self,
        model: SegModel,
        train: Sequence[SegSample],
        val: Sequence[SegSample],
        config: TrainConfig | None = None,
    ):
        if not train:
            raise SegDataError("There are no training images.")
        self.model = model
        self.train_samples = list(train)
        self.val_samples = list(val)
        self.config = config or TrainConfig()
        if not model.config.pretrained_encoder:
            # A random encoder has nothing worth freezing: all layers learn at the full rate.
            self.config = TrainConfig(**{**asdict(self.config), "frozen_epochs": 0, "encoder_lr_factor": 1.0,
                                         "finetune_epochs": self.config.epochs})
        self.label = ""  # what it trains on, for people
        self.history: list[EpochRecord] = []
        self.progress = 0.0  # fraction of all batches done
        self.status = "ready"  # ready | running | done | stopped | failed
        self.error: str | None = None
        self.metrics: SegMetrics | None = None  # final held-out metrics
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._epoch_done = 0
        self._optimizer = None
        self._scheduler = None
        self._loss = None
        import torch

        self._generator = torch.Generator().manual_seed(self.config.seed)
        torch.manual_seed(self.config.seed)
        self._images, self._masks = _as_tensors(self.train_samples, model.config.img_size)
        self._augment = augmentation(model.config.img_size, self.config.augment)

    # -- control ------------------------------------------------------------------------------

    @property
    def total_epochs(self) -> int:
        return self.config.epochs

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Ask training to stop after the current batch."""
        self._stop.set()

    def start(self) -> threading.Thread:
        """Train in a background thread (daemon: it never blocks the server from exiting)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_safely, name="cvdemo-seg-train", daemon=True)
            self.status = "running"
            self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run_safely(self) -> None:
        try:
            self.run()
        except Exception as exc:  # reported on the page, not a dead thread with a traceback
            self.status = "failed"
            self.error = f"{type(exc).__name__}: {exc}"

    # -- training -----------------------------------------------------------------------------

    def _stage(self, epoch: int) -> str:
        if not self.model.config.pretrained_encoder:
            return "all layers"
        return "frozen encoder" if epoch < self.config.frozen_epochs else "fine-tune"

    def _set_stage(self, stage: str) -> None:
        """Freeze or unfreeze the encoder and make the optimizer for this stage."""
        import torch
        from segmentation_models_pytorch.losses import DiceLoss

        net = self.model.network
        frozen = stage == "frozen encoder"
        # smp's own switch: no gradients for the encoder and its BatchNorm statistics stay ImageNet's.
        if frozen:
            net.freeze_encoder()
        else:
            net.unfreeze_encoder()
        head = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
        groups = [{"params": head, "lr": self.config.lr}]
        if not frozen:
            groups.append({"params": list(net.encoder.parameters()), "lr": self.config.lr * self.config.encoder_lr_factor})
        self._optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
        stage_epochs = self.config.frozen_epochs if frozen else self.config.epochs - self.config.frozen_epochs
        steps = max(1, stage_epochs * math.ceil(len(self.train_samples) / self.config.batch_size))
        # Cosine decay within each stage: the fine-tune starts gently on the encoder and settles.
        self._scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self._optimizer, T_max=steps, eta_min=0.0)
        ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        dice = DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
        self._loss = lambda out, y: ce(out, y) + dice(out, y)

    def _batches(self) -> list["torch.Tensor"]:
        import torch

        order = torch.randperm(len(self.train_samples), generator=self._generator)
        batches = list(order.split(self.config.batch_size))
        # BatchNorm after global pooling (DeepLabV3+'s ASPP) cannot train on one sample: pair it with itself
        # (augmentation makes the two copies differ).
        return [b.repeat(2) if len(b) == 1 else b for b in batches]

    def run_epoch(self, on_batch: Callable[[float], None] | None = None) -> EpochRecord | None:
        """Train one epoch, then evaluate on the held-out images. None when stopped before the end."""
        import torch
        from torchvision import tv_tensors

        epoch = self._epoch_done
        if epoch >= self.total_epochs:
            return None
        stage = self._stage(epoch)
        if epoch == 0 or stage != self._stage(epoch - 1):
            self._set_stage(stage)
        net = self.model.network
        net.train()  # smp's train() leaves a frozen encoder's BatchNorm in eval mode
        started = time.perf_counter()
        losses: list[float] = []
        batches = self._batches()
        per_epoch = len(batches)
        for b, idx in enumerate(batches):
            if self._stop.is_set():
                return None
            images, masks = self._images[idx], self._masks[idx]
            if self._augment is not None:
                pairs = [self._augment(tv_tensors.Image(i), tv_tensors.Mask(m)) for i, m in zip(images, masks)]
                images = torch.stack([p[0] for p in pairs])
                masks = torch.stack([p[1] for p in pairs])
            out = net(self.model.normalize(images))
            loss = self._loss(out, masks)
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            self._scheduler.step()
            losses.append(loss.detach().item())
            self.progress = (epoch * per_epoch + b + 1) / (self.total_epochs * per_epoch)
            if on_batch is not None:
                on_batch(self.progress)
        net.eval()
        metrics = evaluate(self.model, self.val_samples) if self.val_samples else None
        self.metrics = metrics
        record = EpochRecord(
            epoch=epoch + 1,
            stage=stage,
            train_loss=float(np.mean(losses)),
            val_miou=metrics.miou if metrics else float("nan"),
            val_foreground_iou=metrics.foreground_iou if metrics else float("nan"),
            seconds=time.perf_counter() - started,
        )
        self.seconds += record.seconds
        self.history.append(record)
        self._epoch_done += 1
        return record

    def run(
        self,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_batch: Callable[[float], None] | None = None,
    ) -> list[EpochRecord]:
        """Train every remaining epoch (or until :meth:`stop`); returns the history."""
        self.status = "running"
        while self._epoch_done < self.total_epochs and not self._stop.is_set():
            record = self.run_epoch(on_batch)
            if record is not None and on_epoch is not None:
                on_epoch(record)
        self.model.network.eval()
        if self.metrics is not None:
            self.model.config.metrics = {
                "val_miou": round(self.metrics.miou, 4),
                "val_foreground_iou": round(self.metrics.foreground_iou, 4),
                "epochs": float(self._epoch_done),
            }
        self.status = "stopped" if self._epoch_done < self.total_epochs else "done"
        return self.history


def train_model(
    dataset: SegDataset,
    n_val: int = 6,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> tuple[SegModel, Trainer]:
    """Split, build and train in one call (used by the tests, the Gradio demo and the bench)."""
    train_config = train_config or TrainConfig()
    model_config = replace(model_config or ModelConfig(), class_names=list(dataset.class_names))
    train, val = split(dataset.samples, n_val, seed=train_config.seed)
    import torch

    torch.manual_seed(train_config.seed)  # same decoder initialisation for every run with this seed
    model = SegModel(model_config)
    trainer = Trainer(model, train, val, train_config)
    trainer.run(on_epoch=on_epoch)
    return model, trainer


def sample_model(dataset_name: str = SAMPLE_DATASET, architecture: str = "Unet") -> SegModel:
    """The U-Net that the demos use when nobody trained one: fine-tuned on the sample pets, once per process.

    Use it through ``cvdemo.cache.shared(sample_model)`` / ``ui.shared(sample_model)``.
    """
    model, _ = train_model(load_sample(dataset_name), model_config=ModelConfig(architecture=architecture))
    model.title = f"{architecture} fine-tuned on {dataset_name} (this server)"
    return model


# --------------------------------------------------------------------------------------------
# pretrained semantic segmentation models (when their weights are on this machine)
# --------------------------------------------------------------------------------------------

PRETRAINED: dict[str, str] = {
    "segformer_b0_ade": "SegFormer-B0, ADE20K (150 classes: scenes and things)",
    "lraspp_mobilenet_v3": "LR-ASPP MobileNetV3-Large, PASCAL VOC (20 classes + background)",
}


class PretrainedSegmenter(Segmenter):
    """A published semantic-segmentation model, weights resolved through :mod:`cvdemo.weights`.

    Raises :class:`cvdemo.weights.WeightsUnavailable` (naming the missing file) when absent.
    """

    def __init__(self, name: str):
        if name not in PRETRAINED:
            raise KeyError(f"Unknown pretrained segmenter '{name}' (known: {', '.join(PRETRAINED)}).")
        self.name = name
        self.title = PRETRAINED[name]
        path = weights.resolve(name)
        state = weights.load_state_dict(path)
        if name == "segformer_b0_ade":
            import segmentation_models_pytorch as smp

            # smp-hub/segformer-b0-512x512-ade-160k config: mit_b0 encoder, 150 classes, 512 px input.
            self.network = smp.Segformer(encoder_name="mit_b0", encoder_weights=None, classes=150)
            self.class_names = list(ADE20K_CLASSES)
            self.background = None
            self.size: tuple[int, int] | int = (512, 512)
        else:
            from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large

            self.network = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
            meta = LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.meta["categories"]
            self.class_names = ["background" if c == "__background__" else c for c in meta]
            self.background = 0
            self.size = 520  # torchvision's preset: shorter side to 520
        try:
            self.network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"{path.name} does not fit {self.title}: {str(exc)[:200]}") from None
        self.network.eval()

    def predict(self, image: Image.Image) -> np.ndarray:
        import torch

        if isinstance(self.size, tuple):
            resized = image.resize(self.size, Image.BILINEAR)
        else:
            scale = self.size / min(image.size)
            resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                   Image.BILINEAR)
        x = torch.from_numpy(np.asarray(resized.convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet statistics, both models
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.inference_mode():
            out = self.network((x - mean) / std)
            out = out["out"] if isinstance(out, dict) else out
            return labels_at_size(out, image.width, image.height)


# --------------------------------------------------------------------------------------------
# instance segmentation (YOLO-seg) for the "instance vs semantic" comparison
# --------------------------------------------------------------------------------------------


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
