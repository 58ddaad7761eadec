"""Evaluation images: an :class:`EvalSet` from a folder, a list of files, a user's zip or a shipped set,
with folder names matched to ImageNet classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from cvdemo.compression.errors import CompressionError
from cvdemo.compression.pretrained import transform_for


@dataclass
class EvalSet:
    """Preprocessed images, their labels in the model's class space (-1 = unknown) and names."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    description: str
    class_names: dict[int, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.images) == 0:
            raise CompressionError(f"The evaluation set ({self.description}) is empty: it needs at least one readable image.")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labeled(self) -> int:
        return int((self.labels >= 0).sum())

    @cached_property
    def content_digest(self) -> str:
        """A hash of the preprocessed pixels, labels, names and description: once per set object
        (the key of a stored comparison on it; the set is only read once built)."""
        from cvdemo import run_store

        return run_store.digest(self.images.numpy(), self.labels.numpy(), list(self.names), self.description)


def imagenet_label_map(folder_names: Iterable[str], class_names: Sequence[str] | None = None) -> dict[str, int]:
    """Folder names matched to ImageNet classes by their synonyms ("ants" -> 310 "ant, emmet, pismire").

    Folders that match no class are left out (their images count for agreement only).
    """
    if class_names is None:
        from cvdemo.backbones import imagenet_class_names

        class_names = imagenet_class_names()
    synonyms: dict[str, int] = {}
    for index, description in enumerate(class_names):
        for word in description.lower().split(","):
            synonyms.setdefault(word.strip(), index)
    out = {}
    for folder in folder_names:
        key = folder.lower().replace("_", " ").replace("-", " ").strip()
        for candidate in (key, key[:-1] if key.endswith("s") else key, key[:-2] if key.endswith("es") else key):
            if candidate in synonyms:
                out[folder] = synonyms[candidate]
                break
    return out


def _stack(items: list[tuple[str, Any, int]], transform, description: str, skipped: list[str],
           class_names: dict[int, str]) -> EvalSet:
    from cvdemo.images import ImageInputError, load_image

    tensors, labels, names = [], [], []
    for name, src, label in items:
        try:
            tensors.append(transform(load_image(src)))
        except ImageInputError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        labels.append(label)
        names.append(name)
    images = torch.stack(tensors) if tensors else torch.empty(0, 3, 1, 1)
    return EvalSet(images, torch.tensor(labels, dtype=torch.long), names, description, class_names, skipped)


def _interleave(pairs: list[tuple[Path, str]], limit: int | None) -> list[tuple[Path, str]]:
    """At most ``limit`` items taking classes in turn, so a small subset stays balanced."""
    by_class: dict[str, list] = {}
    for pair in pairs:
        by_class.setdefault(pair[1], []).append(pair)
    out: list = []
    queues = [list(v) for v in by_class.values()]
    while any(queues) and (limit is None or len(out) < limit):
        for q in queues:
            if q and (limit is None or len(out) < limit):
                out.append(q.pop(0))
    return out


def eval_set_from_folder(
    root: str | Path, transform, label_map: dict[str, int] | None = None, limit: int | None = None,
    description: str | None = None,
) -> EvalSet:
    """An ImageFolder (``root/<class>/<image>``) as an EvalSet; classes mapped through ``label_map``."""
    from cvdemo.datasets import image_folder

    pairs = _interleave(image_folder(root), limit)
    label_map = label_map or {}
    items = [(f"{label}/{path.name}", path, label_map.get(label, -1)) for path, label in pairs]
    names = {v: k for k, v in label_map.items()}
    return _stack(items, transform, description or f"{Path(root).name} ({len(items)} images)", [], names)


def eval_set_from_paths(paths: Sequence[Path], transform, description: str) -> EvalSet:
    """Unlabeled images: only agreement with the original can be measured."""
    return _stack([(Path(p).name, p, -1) for p in paths], transform, description, [], {})


def eval_set_from_zip(data: bytes, transform, label_map_for: Callable[[list[str]], dict[str, int]],
                      limit: int | None = None) -> EvalSet:
    """A user's zip of ``<class>/<image>`` folders; unreadable files are listed in ``skipped``."""
    from cvdemo.archives import class_folders, read_zip

    contents = read_zip(data)
    groups = class_folders(contents)
    label_map = label_map_for(sorted(groups))
    pairs = [((name, blob), cls) for cls, files in sorted(groups.items()) for name, blob in sorted(files.items())]
    pairs = _interleave(pairs, limit)
    items = [(f"{cls}/{name}", blob, label_map.get(cls, -1)) for (name, blob), cls in pairs]
    names = {v: k for k, v in label_map.items()}
    return _stack(items, transform, f"uploaded zip ({len(items)} images)", list(contents.skipped), names)


EVAL_SETS: dict[str, str] = {
    "hymenoptera": "Ants & bees (hymenoptera val, ImageNet classes 310/309)",
    "coco128": "COCO128 photos (no labels: agreement only)",
}


def standard_eval_set(name: str, which: str = "hymenoptera", limit: int | None = 64) -> EvalSet:
    """A shipped evaluation set preprocessed for model ``name`` (raises DataUnavailable)."""
    from cvdemo.datasets import dataset_path
    from cvdemo.images import is_image_name

    if which == "hymenoptera":
        root = dataset_path("hymenoptera_data") / "val"
        return eval_set_from_folder(
            root, transform_for(name), imagenet_label_map(["ants", "bees"]), limit, description="ants & bees (hymenoptera val)"
        )
    if which == "coco128":
        folder = dataset_path("coco128") / "images"
        paths = sorted(p for p in folder.rglob("*") if is_image_name(p.name))[:limit]
        return eval_set_from_paths(paths, transform_for(name), "COCO128 photos (unlabeled)")
    raise CompressionError(f"Unknown evaluation set {which!r}: choose one of {', '.join(EVAL_SETS)}.")


def train_images(name: str, count: int = 16) -> torch.Tensor:
    """Images that are not in the evaluation set, for calibration and fine-tuning (hymenoptera train)."""
    from cvdemo.datasets import dataset_path

    root = dataset_path("hymenoptera_data") / "train"
    return eval_set_from_folder(root, transform_for(name), {}, count, description="hymenoptera train").images
