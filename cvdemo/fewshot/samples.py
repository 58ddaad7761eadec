"""The ants/bees sample set (train split for examples, validation images as queries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cvdemo.fewshot.examples import ExampleSet

SAMPLE_SET = "hymenoptera_data"


def sample_examples(per_class: int = 10, split: str = "train") -> list[tuple[str, Path]]:
    """``(class, path)`` pairs from the ants/bees set, spread evenly over each sorted class folder.

    Raises :class:`cvdemo.datasets.DataUnavailable` when the data set is not on this machine.
    """
    from cvdemo.datasets import dataset_path, image_folder

    pairs = image_folder(dataset_path(SAMPLE_SET) / split)
    out = []
    for label in dict.fromkeys(label for _, label in pairs):
        paths = [p for p, lab in pairs if lab == label]
        take = np.unique(np.linspace(0, len(paths) - 1, min(per_class, len(paths))).round().astype(int))
        out.extend((label, paths[i]) for i in take)
    return out


def query_samples(per_class: int = 3) -> dict[str, Path]:
    """Images to try as queries: validation ants/bees (never in the sample training set) and
    the photos installed packages ship."""
    from cvdemo.datasets import DataUnavailable, packaged_images

    out: dict[str, Path] = {}
    try:
        for label, path in sample_examples(per_class, "val"):
            out[f"{label} (val): {path.name}"] = path
    except DataUnavailable:
        pass
    return out | packaged_images()


def load_sample_set(per_class: int = 10, split: str = "train") -> ExampleSet:
    examples = ExampleSet()
    for label, path in sample_examples(per_class, split):
        examples.add_images(label, [(path.name, path)])
    return examples


def validation_images() -> list[tuple[Image.Image, str, str]]:
    """Every ants/bees validation image as ``(image, label, digest)``: held-out images no sample example
    comes from. Raises :class:`cvdemo.datasets.DataUnavailable` when the data set is missing."""
    from cvdemo.images import fingerprint
    from cvdemo.images import load_image

    out = []
    for label, path in sample_examples(10_000, "val"):
        image = load_image(path)
        out.append((image, label, fingerprint(image)))
    return out


def is_sample_classes(class_names: list[str]) -> bool:
    """Whether the classes are exactly the sample's (ants and bees, any case)."""
    return sorted(c.casefold() for c in class_names) == ["ants", "bees"]
