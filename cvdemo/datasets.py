"""Sample data for the demos: images shipped in installed packages and small labeled sets.

The labeled sets live in ``$CVDEMO_DATA_DIR`` (on classroom machines ``../shared/data``,
see its MANIFEST.md) or in cvdemo's cache after ``python -m cvdemo.datasets fetch NAME``.
They are read-only: anything that writes (ultralytics' label caches) works on a temp copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cvdemo import weights
from cvdemo.errors import CvdemoError
from cvdemo.images import is_image_name

DATA_ENV = "CVDEMO_DATA_DIR"


class DataUnavailable(CvdemoError, RuntimeError):
    """A sample data set is not on this machine; the message says where to put it."""


@dataclass(frozen=True)
class Dataset:
    name: str  # folder name inside the data folder
    description: str
    task: str  # classification | detection | segmentation
    url: str | None = None  # a zip whose top folder is ``name`` (or holds it)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "hymenoptera_data",
            "ants vs bees, 2 classes (train 244 / val 153), PyTorch transfer-learning tutorial",
            "classification",
            "https://download.pytorch.org/tutorial/hymenoptera_data.zip",
        ),
        Dataset(
            "cifar10_test_50pc",
            "CIFAR-10 test subset: 10 classes x 50 images (32x32)",
            "classification",
        ),
        Dataset(
            "coco8",
            "COCO8: 8 images with YOLO labels (4 train / 4 val)",
            "detection",
            "https://github.com/ultralytics/assets/releases/download/v0.0.0/coco8.zip",
        ),
        Dataset(
            "coco128",
            "COCO128: the first 128 COCO train2017 images with YOLO labels",
            "detection",
            "https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128.zip",
        ),
        Dataset(
            "oxford_pets_seg26",
            "Oxford-IIIT Pet subset: 26 images with masks (0 background, 1 cat, 2 dog, 255 ignore)",
            "segmentation",
        ),
    ]
}


def data_dirs() -> list[Path]:
    """Folders searched for data sets: $CVDEMO_DATA_DIR, then cvdemo's cache."""
    dirs = []
    value = os.environ.get(DATA_ENV, "").strip()
    if value:
        dirs.append(Path(value).expanduser())
    dirs.append(weights.cache_root() / "data")
    return dirs


def dataset_path(name: str) -> Path:
    """The folder of data set ``name`` or :class:`DataUnavailable` saying where to put it."""
    if name not in DATASETS:
        raise KeyError(f"Unknown data set '{name}'. Known: {', '.join(DATASETS)}")
    for folder in data_dirs():
        if (folder / name).is_dir():
            return folder / name
    where = data_dirs()[0]
    hint = f" or run `python -m cvdemo.datasets fetch {name}` when online" if DATASETS[name].url else ""
    raise DataUnavailable(
        f"Sample data set '{name}' ({DATASETS[name].description}) is not on this machine. "
        f"Put the folder '{name}' in {where} (set ${DATA_ENV}){hint}."
    )


def available(name: str) -> bool:
    try:
        dataset_path(name)
        return True
    except DataUnavailable:
        return False


def packaged_images() -> dict[str, Path]:
    """Sample photos that installed packages ship (ultralytics: bus.jpg, zidane.jpg)."""
    from importlib.util import find_spec

    spec = find_spec("ultralytics")  # locate without importing (that would load torch)
    if spec is None or not spec.submodule_search_locations:
        return {}
    assets = Path(list(spec.submodule_search_locations)[0]) / "assets"
    return {p.name: p for p in sorted(assets.glob("*.jpg"))}


def sample_images(include_sets: tuple[str, ...] = ("coco8", "oxford_pets_seg26")) -> dict[str, Path]:
    """Named sample photos for image pickers: packaged ones first, then a few from data sets."""
    out = dict(packaged_images())
    for name in include_sets:
        if not available(name):
            continue
        root = dataset_path(name)
        for path in sorted(p for p in (root / "images").rglob("*") if is_image_name(p.name))[:8]:
            out[f"{name}/{path.name}"] = path
    return out


def image_folder(root: str | Path) -> list[tuple[Path, str]]:
    """(path, label) pairs for an ImageFolder layout ``root/<label>/<image>``, sorted."""
    root = Path(root)
    pairs = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and is_image_name(path.name):
                pairs.append((path, class_dir.name))
    return pairs


def temp_copy(name: str) -> Path:
    """A writable copy of a data set in a new temp folder (for tools that write caches)."""
    src = dataset_path(name)
    dst = Path(tempfile.mkdtemp(prefix=f"cvdemo-{name}-")) / name
    shutil.copytree(src, dst)
    return dst


def fetch(name: str) -> Path:
    """Download data set ``name`` into cvdemo's cache (needs a network)."""
    ds = DATASETS[name]
    if available(name):
        return dataset_path(name)
    if not ds.url:
        raise DataUnavailable(f"'{name}' has no download address; copy it from a classroom machine.")
    from cvdemo.archives import read_zip  # the same path-trick and zip-bomb checks as user uploads

    target = data_dirs()[-1]
    with urllib.request.urlopen(ds.url, timeout=60) as response:
        contents = read_zip(response.read())
    for relpath, blob in contents.files.items():
        path = target / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    return dataset_path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvdemo.datasets")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status")
    f = sub.add_parser("fetch")
    f.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "status":
        for name, ds in DATASETS.items():
            try:
                where = str(dataset_path(name))
            except DataUnavailable:
                where = "missing"
            print(f"{name:<20} {ds.task:<15} {where}")
        return 0
    failures = 0
    for name in args.names or [n for n, d in DATASETS.items() if d.url]:
        try:
            print(f"{name}: {fetch(name)}")
        except Exception as exc:
            failures += 1
            print(f"{name}: FAILED - {exc}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
