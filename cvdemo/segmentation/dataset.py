"""Image/mask pairs: read them from the data folder or a user's zip, validate each pair, hold some out.

A mask holds one class index per pixel (0 = background, 1, 2, …; 255 = ignore), the PASCAL VOC
convention; a bad pair is skipped with a sentence naming its file, never a traceback.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cvdemo.errors import CvdemoError
from cvdemo import datasets
from cvdemo.archives import ArchiveError, read_zip
from cvdemo.images import ImageInputError, is_image_name, load_image

IGNORE_INDEX = 255
MAX_CLASSES = 32  # mask values above this (other than 255) are taken as a mistake, not a class
MAX_PAIRS = 300  # more image/mask pairs than a CPU lesson can train on
SAMPLE_DATASET = "oxford_pets_seg26"
SAMPLE_CLASSES: dict[str, tuple[str, ...]] = {SAMPLE_DATASET: ("background", "cat", "dog")}
IMAGE_DIRS = {"images", "image", "imgs", "jpegimages"}
MASK_DIRS = {"masks", "mask", "labels", "annotations", "segmentationclass"}
CLASSES_FILE = "classes.txt"


class SegDataError(CvdemoError, ValueError):
    """A segmentation data set cannot be used; the message says why (and names the file)."""


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

    @cached_property
    def content_digest(self) -> str:
        """A hash of the class names, every image's pixels and every mask: once per dataset object
        (the key of a stored training run on it; the object is only read once loaded)."""
        from cvdemo import run_store

        return run_store.digest(list(self.class_names), [[s.name, s.image, s.mask] for s in self.samples])

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
