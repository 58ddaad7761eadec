"""Labeled sets for evaluation in a private temp folder: a sample set's copy, or a user's YOLO zip checked line by line.

Nothing is ever written next to the read-only data, and a user's own data.yaml never reaches ultralytics.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Sequence

from cvdemo import datasets
from cvdemo.archives import ArchiveError, read_zip
from cvdemo.errors import CvdemoError
from cvdemo.images import ImageInputError, is_image_name, load_image

MAX_EVAL_IMAGES = 500  # a user zip larger than this is cut: CPU evaluation must stay interactive


class LabeledSetError(CvdemoError, ValueError):
    """A labeled data set that cannot be evaluated; the message says what to fix."""


@dataclass
class LabeledSet:
    """A YOLO-format data set in a private temp folder, with a data.yaml written by cvdemo."""

    root: Path
    yaml_path: Path
    names: dict[int, str]
    n_images: int
    n_boxes: int
    description: str
    problems: list[str] = field(default_factory=list)  # what was left out, and why
    notes: list[str] = field(default_factory=list)
    _owned_dir: Path | None = field(default=None, repr=False)

    def cleanup(self) -> None:
        if self._owned_dir is not None and self._owned_dir.exists():
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> "LabeledSet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _write_yaml(root: Path, val: list[str], names: dict[int, str]) -> Path:
    """Our own data.yaml: a user's yaml is never handed to ultralytics (its ``download:`` key runs code)."""
    import yaml

    path = root / "cvdemo_data.yaml"
    path.write_text(
        yaml.safe_dump({"path": str(root), "train": val, "val": val, "names": {int(k): str(v) for k, v in names.items()}})
    )
    return path


def _names_from_yaml(text: str) -> dict[int, str]:
    import yaml

    return _names_in(yaml.safe_load(text))


def _names_in(data: object) -> dict[int, str]:
    """The class names of a parsed data.yaml."""
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    raise ValueError("it has no 'names:' list or mapping")


def sample_set(name: str = "coco8", splits: Sequence[str] | None = None) -> LabeledSet:
    """A temp copy of a sample detection set (coco8 / coco128); all its splits unless given."""
    import yaml

    src = datasets.dataset_path(name)  # DataUnavailable says where to put it
    shipped = yaml.safe_load((src / "data.yaml").read_text())
    names = _names_in(shipped)
    available = {k: shipped[k] for k in ("train", "val", "test") if isinstance(shipped.get(k), str)}
    chosen = list(splits) if splits else list(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise LabeledSetError(f"{name} has no split {', '.join(unknown)}; it has {', '.join(available)}.")
    folders = list(dict.fromkeys(available[s] for s in chosen))  # coco128: train == val
    root = datasets.temp_copy(name)
    n_images = sum(1 for f in folders for p in (root / f).rglob("*") if is_image_name(p.name))
    n_boxes = sum(
        sum(1 for line in p.read_text().splitlines() if line.strip())
        for f in folders
        for p in (root / f.replace("images", "labels", 1)).rglob("*.txt")
    )
    return LabeledSet(
        root=root,
        yaml_path=_write_yaml(root, folders, names),
        names=names,
        n_images=n_images,
        n_boxes=n_boxes,
        description=f"{name} ({', '.join(folders)}): {n_images} images",
        _owned_dir=root.parent,
    )


def _label_path_candidates(image_path: str) -> list[str]:
    """Where YOLO looks for an image's labels: the last ``images/`` folder becomes ``labels/``; or beside it."""
    stem_txt = str(PurePosixPath(image_path).with_suffix(".txt"))
    out = []
    rooted = "/" + stem_txt
    if "/images/" in rooted:
        head, _, tail = rooted.rpartition("/images/")
        out.append(f"{head}/labels/{tail}".lstrip("/"))
    out.append(stem_txt)
    return out


def check_label_text(text: str, file_name: str, n_classes: int) -> tuple[int, list[str]]:
    """Check one YOLO label file; returns (number of boxes, problems as sentences).

    Each line is ``class x_center y_center width height`` normalized to 0..1 (or a polygon
    ``class x1 y1 x2 y2 ...`` with at least three points, which ultralytics turns into a box).
    """
    problems: list[str] = []
    boxes = 0
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{file_name} line {number}"
        shown = line.strip()[:60]
        if len(tokens) != 5 and not (len(tokens) >= 7 and len(tokens) % 2 == 1):
            problems.append(
                f"{where}: expected 5 values 'class x_center y_center width height' (or a polygon "
                f"'class x1 y1 x2 y2 ...'), found {len(tokens)}: '{shown}'."
            )
            continue
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not _is_float(t))
            problems.append(f"{where}: '{bad}' is not a number: '{shown}'.")
            continue
        if not all(math.isfinite(v) for v in values):
            problems.append(f"{where}: values must be finite numbers: '{shown}'.")
            continue
        cls = values[0]
        if cls != int(cls) or cls < 0:
            problems.append(f"{where}: the class must be a whole number ≥ 0, found '{tokens[0]}'.")
            continue
        if cls >= n_classes:
            problems.append(f"{where}: class {int(cls)} does not exist (classes are 0–{n_classes - 1}).")
            continue
        coords = values[1:]
        if min(coords) < 0 or max(coords) > 1:
            problems.append(
                f"{where}: coordinates must be normalized to 0..1 (pixels divided by the image width/height): '{shown}'."
            )
            continue
        if len(tokens) == 5 and (coords[2] <= 0 or coords[3] <= 0):
            problems.append(f"{where}: width and height must be greater than 0: '{shown}'.")
            continue
        boxes += 1
    return boxes, problems


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def yolo_zip_set(src: bytes | IO[bytes], model_names: dict[int, str], max_images: int = MAX_EVAL_IMAGES) -> LabeledSet:
    """Check a user's YOLO-format zip and lay it out in a temp folder for evaluation.

    Expected: images (any folders) with a ``.txt`` label file each, in a parallel ``labels/``
    folder (``images/val/a.jpg`` → ``labels/val/a.txt``) or beside the image; class names in a
    ``data.yaml`` (``names:``) or ``classes.txt``, else the model's classes. Images whose label
    file has malformed lines, and images that do not decode, are left out and listed in
    :attr:`LabeledSet.problems`; everything else is kept. Raises :class:`LabeledSetError`.
    """
    try:
        contents = read_zip(src)
    except ArchiveError as exc:
        raise LabeledSetError(str(exc)) from None
    files = contents.files
    problems = list(contents.skipped)
    notes: list[str] = []

    names, names_source = dict(model_names), ""
    for path in sorted(files, key=lambda p: (p.count("/"), p)):
        base = PurePosixPath(path).name.lower()
        if base.endswith((".yaml", ".yml")):
            try:
                names, names_source = _names_from_yaml(files[path].decode("utf-8")), path
                break
            except Exception as exc:
                raise LabeledSetError(f"{path}: could not read the class names ({exc}).") from None
        if base == "classes.txt":
            lines = [ln.strip() for ln in files[path].decode("utf-8", "replace").splitlines() if ln.strip()]
            names, names_source = dict(enumerate(lines)), path
            break
    if names_source:
        mismatched = [
            f"{i}: yours '{n}', model '{model_names[i]}'"
            for i, n in sorted(names.items())
            if i in model_names and n.strip().lower() != model_names[i].lower()
        ]
        if mismatched:
            notes.append(
                "Class ids are compared, not names, and some differ from the model's ("
                + "; ".join(mismatched[:3])
                + ("; …" if len(mismatched) > 3 else "")
                + "): expect a low mAP for those classes."
            )
    else:
        notes.append(f"No data.yaml or classes.txt in the zip: class ids are read as the model's {len(names)} classes.")
    n_classes = min(len(names), len(model_names))

    label_files = {p for p in files if p.lower().endswith(".txt") and PurePosixPath(p).name.lower() != "classes.txt"}
    image_paths = sorted(p for p in files if is_image_name(p))
    if not image_paths:
        raise LabeledSetError(
            "The zip holds no images (.jpg, .png, ...). Expected YOLO layout: images/<split>/<name>.jpg "
            "with labels/<split>/<name>.txt."
        )
    if len(image_paths) > max_images:
        notes.append(f"The zip has {len(image_paths)} images; the first {max_images} are evaluated.")
        image_paths = image_paths[:max_images]

    owned = Path(tempfile.mkdtemp(prefix="cvdemo-yolozip-"))
    root = owned / "dataset"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    used_labels: set[str] = set()
    kept = boxes = background = 0
    taken: set[str] = set()
    for image_path in image_paths:
        label_path = next((c for c in _label_path_candidates(image_path) if c in label_files), None)
        if label_path is not None:
            used_labels.add(label_path)
        try:
            load_image(files[image_path])
        except ImageInputError as exc:
            problems.append(f"{image_path}: {exc} Left out.")
            continue
        text = ""
        if label_path is not None:
            try:
                text = files[label_path].decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{label_path}: not a text file. {image_path} left out.")
                continue
            n, line_problems = check_label_text(text, label_path, n_classes)
            if line_problems:
                problems.extend(line_problems)
                problems.append(f"{image_path} left out because its label file has malformed lines.")
                continue
            boxes += n
        else:
            background += 1
        stem, suffix = PurePosixPath(image_path).stem, PurePosixPath(image_path).suffix.lower()
        unique, k = stem, 1
        while unique in taken:  # same file name in two folders
            unique, k = f"{stem}_{k}", k + 1
        taken.add(unique)
        (root / "images" / "val" / f"{unique}{suffix}").write_bytes(files[image_path])
        (root / "labels" / "val" / f"{unique}.txt").write_text(text)
        kept += 1

    orphans = sorted(label_files - used_labels)
    if orphans:
        notes.append(f"{len(orphans)} label file(s) have no matching image and were ignored (e.g. {orphans[0]}).")
    if background:
        notes.append(f"{background} image(s) have no label file: they count as images with no objects.")
    if kept == 0 or boxes == 0:
        shutil.rmtree(owned, ignore_errors=True)
        reason = " ".join(problems[:3]) if problems else "No image has a label file with boxes."
        raise LabeledSetError(f"Nothing to evaluate in this zip. {reason}")
    return LabeledSet(
        root=root,
        yaml_path=_write_yaml(root, ["images/val"], names),
        names=names,
        n_images=kept,
        n_boxes=boxes,
        description=f"your zip: {kept} images",
        problems=problems,
        notes=notes,
        _owned_dir=owned,
    )
