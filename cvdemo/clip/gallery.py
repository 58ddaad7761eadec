"""Galleries: images from files, a zip or a folder (labels from class folders), unreadable files listed, thumbnails."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from PIL import Image

from cvdemo.clip._common import ClipInputError
from cvdemo.images import ImageInputError, is_image_name, load_image, per_image

THUMB_SIZE = 128


@dataclass
class GalleryImage:
    id: str  # unique display name, e.g. "ship/0003.jpg"
    image: Image.Image
    digest: str  # sha256 of the file bytes (the key of the on-disk embedding cache); pictures without a file: images.fingerprint
    label: str | None = None


@dataclass
class Gallery:
    images: list[GalleryImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one sentence per file left out


def gallery_from_files(files: Iterable[tuple[str, Any]], labels: dict[str, str] | None = None) -> Gallery:
    """Load ``(name, bytes | path | file-like)`` pairs; files that are not images are skipped and listed."""
    gallery = Gallery()
    seen_ids: set[str] = set()
    for name, src in files:
        try:
            if isinstance(src, (str, os.PathLike)):
                data = Path(src).read_bytes()
            elif isinstance(src, (bytes, bytearray, memoryview)):
                data = bytes(src)
            else:
                if hasattr(src, "seek"):
                    src.seek(0)
                data = src.read()
            named = io.BytesIO(data)
            named.name = name  # so load_image's message names the file
            image = load_image(named)
        except ImageInputError as exc:
            gallery.skipped.append(str(exc))
            continue
        except OSError as exc:
            gallery.skipped.append(f"{name}: cannot be read ({exc.strerror or exc}).")
            continue
        unique = name
        n = 2
        while unique in seen_ids:
            unique = f"{name} ({n})"
            n += 1
        seen_ids.add(unique)
        label = (labels or {}).get(name)
        gallery.images.append(GalleryImage(unique, image, hashlib.sha256(data).hexdigest(), label))
    return gallery


def gallery_from_zip(src: bytes | Any) -> Gallery:
    """A gallery from a zip (labels from ``<class>/<file>`` folders); unsafe members are skipped."""
    from cvdemo.archives import ArchiveError, read_zip

    try:
        contents = read_zip(src)
    except ArchiveError as exc:
        raise ClipInputError(str(exc)) from None
    labels = {name: Path(name).parent.name for name in contents.files if "/" in name}
    gallery = gallery_from_files(sorted(contents.files.items()), labels)
    gallery.skipped = contents.skipped + gallery.skipped
    return gallery


def gallery_from_folder(root: str | Path, per_class: int | None = None, limit: int | None = None) -> Gallery:
    """Images under ``root``; a ``<class>/<image>`` layout gives labels. ``per_class``/``limit`` cap it."""
    from cvdemo.datasets import image_folder

    root = Path(root)
    if not root.is_dir():
        raise ClipInputError(f"Folder {root} does not exist.")
    pairs = image_folder(root) if _has_class_folders(root) else []
    if not pairs:
        pairs = [(p, None) for p in sorted(root.rglob("*")) if p.is_file() and is_image_name(p.name)]
    if per_class is not None:
        counts: dict[Any, int] = {}
        kept = []
        for path, label in pairs:
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                kept.append((path, label))
        pairs = kept
    pairs = pairs[:limit] if limit else pairs
    files = [(str(p.relative_to(root)), p) for p, _ in pairs]
    labels = {str(p.relative_to(root)): lab for p, lab in pairs if lab is not None}
    return gallery_from_files(files, labels)


def _has_class_folders(root: Path) -> bool:
    return root.is_dir() and sum(p.is_dir() for p in root.iterdir()) >= 2


def display_thumbnail(image: Image.Image, size: int = THUMB_SIZE) -> Image.Image:
    """A thumbnail at most ``size`` px; tiny images (CIFAR's 32 px) are enlarged so they can be seen.
    Made once per image object and size (read-only: a shared sample's thumbnail is shared)."""
    return per_image(image, f"thumbnail-{size}", lambda: _thumbnail(image, size))


def _thumbnail(image: Image.Image, size: int) -> Image.Image:
    img = image.convert("RGB")
    if max(img.size) < size:
        scale = size / max(img.size)
        size_up = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        return img.resize(size_up, Image.Resampling.BICUBIC)
    thumb = img.copy()
    thumb.thumbnail((size, size))
    return thumb
