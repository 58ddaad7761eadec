"""Sample inputs on this machine: the data sets offered as galleries, and photos for the zero-shot picker."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cvdemo.clip._common import ClipInputError
from cvdemo.clip.gallery import Gallery, _has_class_folders, gallery_from_folder
from cvdemo.images import is_image_name


@dataclass(frozen=True)
class SampleGallery:
    dataset: str
    subdir: str
    description: str


SAMPLE_GALLERIES: dict[str, SampleGallery] = {
    "CIFAR-10 subset (500 tiny photos, 10 classes)": SampleGallery("cifar10_test_50pc", "", "CIFAR-10 test, 50/class"),
    "COCO128 (128 everyday photos)": SampleGallery("coco128", "images/train", "COCO train2017, first 128"),
    "Ants and bees (153 photos)": SampleGallery("hymenoptera_data", "val", "hymenoptera val"),
    "Oxford pets (26 cats and dogs)": SampleGallery("oxford_pets_seg26", "images", "Oxford-IIIT Pet subset"),
}


def available_sample_galleries(labeled_only: bool = False) -> list[str]:
    """Sample galleries whose data set is on this machine (``labeled_only``: with class folders)."""
    from cvdemo import datasets

    keys = [key for key, s in SAMPLE_GALLERIES.items() if datasets.available(s.dataset)]
    if labeled_only:
        keys = [key for key in keys if _has_class_folders(_sample_root(key))]
    return keys


def _sample_root(key: str) -> Path:
    from cvdemo import datasets

    spec = SAMPLE_GALLERIES[key]
    root = datasets.dataset_path(spec.dataset)
    return root / spec.subdir if spec.subdir else root


def sample_gallery(key: str, per_class: int | None = None) -> Gallery:
    """One of :data:`SAMPLE_GALLERIES` (raises :class:`cvdemo.datasets.DataUnavailable` if missing)."""
    if key not in SAMPLE_GALLERIES:
        raise ClipInputError(f"Unknown sample gallery '{key}'. Choose one of: {', '.join(SAMPLE_GALLERIES)}.")
    return gallery_from_folder(_sample_root(key), per_class=per_class)


def zero_shot_samples() -> dict[str, Path]:
    """Sample photos for the zero-shot picker: packaged photos, pets, and one CIFAR-10 image per class."""
    from cvdemo import datasets

    return dict(_zero_shot_samples(tuple(datasets.data_dirs())))  # the folders are listed once per process


@lru_cache(maxsize=4)
def _zero_shot_samples(data_dirs: tuple[Path, ...]) -> dict[str, Path]:
    from cvdemo import datasets

    samples = dict(datasets.sample_images())
    if datasets.available("cifar10_test_50pc"):
        root = datasets.dataset_path("cifar10_test_50pc")
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            first = next(iter(sorted(p for p in class_dir.iterdir() if is_image_name(p.name))), None)
            if first is not None:
                samples[f"cifar10/{class_dir.name}/{first.name}"] = first
    return samples
