"""Pairs for verification ("same or different?") built from sample photos.

Photo level: a positive pair is a photo and a changed copy of it (crop, resize, JPEG, colour shift, flip,
small rotation: what happens to a picture on its way through phones and websites); a negative pair is a
photo and a changed copy of *another* photo, so both sides of every pair went through the same changes and
only the identity differs. Class level: a positive pair is two different photos of the same class.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from cvdemo.clip._common import ClipInputError
from cvdemo.clip.gallery import GalleryImage
from cvdemo.images import fingerprint, per_image

PHOTO, CLASS = "photo", "class"
LEVELS = {PHOTO: "same photo (after changes)", CLASS: "same class (two different photos)"}
ORIGINAL = "original"


def _crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    keep = rng.uniform(0.6, 0.8)  # keep 60-80 % of each side, somewhere in the picture
    w, h = img.size
    cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def _resize(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    scale = rng.uniform(0.25, 0.4)  # a thumbnail, then back up: the detail is gone
    w, h = img.size
    small = img.resize((max(8, round(w * scale)), max(8, round(h * scale))), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.BILINEAR)


def _jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(8, 16)))  # a heavily compressed re-upload
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _colour(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.3, 1.7))
    shift = rng.integers(-25, 26, size=3)  # a colour cast (white balance)
    arr = np.clip(np.asarray(out, dtype=np.int16) + shift, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _flip(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(img)


def _rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = rng.uniform(8, 15) * rng.choice([-1, 1])
    return img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=(0, 0, 0))


CHANGES: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "crop": _crop, "resize": _resize, "JPEG": _jpeg, "colour shift": _colour, "flip": _flip, "rotation": _rotate,
}
CHANGE_HELP = {
    "crop": "keep 60–80 % of each side", "resize": "down to 25–40 %, then back up",
    "JPEG": "re-saved at JPEG quality 8–15", "colour shift": "brightness, saturation and a colour cast",
    "flip": "mirrored left-right", "rotation": "turned 8–15° (black corners)",
}


def apply_change(image: Image.Image, change: str, seed: int = 0) -> Image.Image:
    """``image`` after one of :data:`CHANGES` (random strength from ``seed``)."""
    if change not in CHANGES:
        raise ClipInputError(f"Unknown change “{change}”. Known: {', '.join(CHANGES)}.")
    # Once per image object, change and seed: the same shared sample gives every session the same
    # (read-only) changed picture, so its embedding is shared too.
    return per_image(image, f"change-{change}-{seed}", lambda: CHANGES[change](image.convert("RGB"), np.random.default_rng(seed)))


@dataclass
class PairSet:
    """Images once, pairs as rows into them: ``a[i]``, ``b[i]``, ``same[i]``, ``kind[i]`` (change or class)."""

    level: str
    images: list[Image.Image]
    ids: list[str]
    digests: list[str]  # originals: the gallery's file digest (shares the search index's disk cache); changed: images.fingerprint
    sources: np.ndarray  # (N,) which source photo each image came from
    labels: list[str | None]
    a: np.ndarray  # (P,) image positions
    b: np.ndarray
    same: np.ndarray  # (P,) bool
    kind: list[str]  # per pair: the change (photo level) or the class of the first image (class level)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, rows: np.ndarray) -> "PairSet":
        """The same images, only the pairs at ``rows`` (integer positions)."""
        rows = np.asarray(rows, dtype=np.int64)
        return PairSet(self.level, self.images, self.ids, self.digests, self.sources, self.labels, self.a[rows], self.b[rows],
                       self.same[rows], [self.kind[i] for i in rows], self.notes)


def build_pairs(
    photos: Sequence[GalleryImage],
    level: str = PHOTO,
    sources: int = 48,
    changes: Sequence[str] | None = None,
    seed: int = 0,
) -> PairSet:
    """Verification pairs from up to ``sources`` photos (picked evenly across classes when labelled).

    Photo level: per photo and change, one positive (photo, changed photo) and one negative (photo,
    the same change applied to another photo). Class level: per photo, one positive (another photo of its
    class) and one negative (a photo of another class). Raises :class:`ClipInputError` when the photos
    cannot make both kinds of pair (fewer than 2 photos; fewer than 2 classes for class level).
    """
    if level not in LEVELS:
        raise ClipInputError(f"Unknown verification level “{level}”: use {' or '.join(LEVELS)}.")
    changes = list(CHANGES if changes is None else changes)
    for change in changes:
        if change not in CHANGES:
            raise ClipInputError(f"Unknown change “{change}”. Known: {', '.join(CHANGES)}.")
    rng = np.random.default_rng(seed)
    chosen = _spread(list(photos), int(sources), rng)
    if len(chosen) < 2:
        raise ClipInputError("Verification needs at least 2 different photos: one photo cannot make a negative pair.")
    if level == PHOTO:
        if not changes:
            raise ClipInputError("Choose at least one change to make positive pairs from.")
        return _photo_pairs(chosen, changes, seed)
    return _class_pairs(chosen, rng)


def _spread(photos: list[GalleryImage], n: int, rng: np.random.Generator) -> list[GalleryImage]:
    """Up to ``n`` photos, round-robin over labels (so every class is represented), distinct pixels only."""
    unique, seen = [], set()
    for p in photos:
        if p.digest not in seen:
            seen.add(p.digest)
            unique.append(p)
    by_label: dict[str | None, list[GalleryImage]] = {}
    for p in unique:
        by_label.setdefault(p.label, []).append(p)
    for group in by_label.values():
        rng.shuffle(group)
    out: list[GalleryImage] = []
    while len(out) < n and any(by_label.values()):
        for group in by_label.values():
            if group and len(out) < n:
                out.append(group.pop())
    return out


def _photo_pairs(chosen: list[GalleryImage], changes: list[str], seed: int) -> PairSet:
    images, ids, digests, srcs, labels = [], [], [], [], []
    position: dict[tuple[int, str], int] = {}
    for s, photo in enumerate(chosen):
        for c, change in enumerate([ORIGINAL, *changes]):
            if change == ORIGINAL:
                image, digest = photo.image.convert("RGB"), photo.digest
            else:
                image = apply_change(photo.image, change, seed * 1_000_003 + s * 101 + c)
                digest = fingerprint(image)
            position[(s, change)] = len(images)
            images.append(image)
            digests.append(digest)
            ids.append(photo.id if change == ORIGINAL else f"{photo.id} [{change}]")
            srcs.append(s)
            labels.append(photo.label)
    rng = np.random.default_rng(seed + 1)
    a, b, same, kind = [], [], [], []
    n = len(chosen)
    for s in range(n):
        for change in changes:
            other = (s + int(rng.integers(1, n))) % n  # any other photo
            a += [position[(s, ORIGINAL)], position[(s, ORIGINAL)]]
            b += [position[(s, change)], position[(other, change)]]
            same += [True, False]
            kind += [change, change]
    return PairSet(PHOTO, images, ids, digests, np.array(srcs), labels, np.array(a), np.array(b), np.array(same), kind)


def _class_pairs(chosen: list[GalleryImage], rng: np.random.Generator) -> PairSet:
    labels = [p.label for p in chosen]
    classes = sorted({lab for lab in labels if lab})
    if len(classes) < 2 or any(lab is None for lab in labels):
        raise ClipInputError(
            "Class-level verification needs labelled photos of at least 2 classes (a sample set with class "
            "folders, or a zip of class folders)."
        )
    members = {c: [i for i, lab in enumerate(labels) if lab == c] for c in classes}
    a, b, same, kind = [], [], [], []
    notes = []
    for i, lab in enumerate(labels):
        mates = [j for j in members[lab] if j != i]
        others = [j for j in range(len(chosen)) if labels[j] != lab]
        if not mates:
            notes.append(f"“{lab}” has one photo only: it makes negative pairs only.")
        else:
            a.append(i), b.append(int(rng.choice(mates))), same.append(True), kind.append(lab)
        a.append(i), b.append(int(rng.choice(others))), same.append(False), kind.append(lab)
    if not any(same):
        raise ClipInputError("No class has two photos: class-level verification needs at least one same-class pair.")
    images = [p.image.convert("RGB") for p in chosen]
    return PairSet(CLASS, images, [p.id for p in chosen], [p.digest for p in chosen], np.arange(len(chosen)), labels, np.array(a), np.array(b),
                   np.array(same), kind, notes)
