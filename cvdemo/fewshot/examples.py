"""The user's example set: named classes of decoded images, each keyed by its pixel digest."""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from PIL import Image

from cvdemo.errors import CvdemoError
from cvdemo.images import ImageInputError, fingerprint, load_image

STORE_MAX_SIDE = 1024  # larger photos are stored downscaled: every backbone resizes to <= ~300 px
MAX_CLASS_NAME = 40
_uid = itertools.count(1)


class ExampleSetError(CvdemoError, ValueError):
    """A request on the example set that cannot be done; the message is shown as is."""


class DuplicateNote(str):
    """The sentence for an image that was already in its class (and skipped); :func:`summarise_notes` groups them."""

    def __new__(cls, name: str, class_name: str) -> "DuplicateNote":
        note = super().__new__(cls, f"{name} is already in '{class_name}', skipped.")
        note.name, note.class_name = name, class_name
        return note


def summarise_notes(messages: list[str]) -> list[str]:
    """The messages with every "already in …, skipped" note folded into one sentence (reloading the
    sample gives 20 of them, not 20 banners)."""
    duplicates = [m for m in messages if isinstance(m, DuplicateNote)]
    if len(duplicates) < 2:
        return list(messages)
    per_class: dict[str, int] = {}
    for note in duplicates:
        per_class[note.class_name] = per_class.get(note.class_name, 0) + 1
    where = ", ".join(f"{count} in '{name}'" for name, count in per_class.items())
    summary = f"{len(duplicates)} images were already in the set and were skipped ({where})."
    return [summary] + [m for m in messages if not isinstance(m, DuplicateNote)]


@dataclass
class Example:
    """One training image: its file bytes (for export), decoded RGB image and pixel digest."""

    name: str
    data: bytes
    image: Image.Image
    digest: str
    uid: int = field(default_factory=lambda: next(_uid))
    _thumb: Image.Image | None = field(default=None, repr=False)

    @classmethod
    def from_source(cls, name: str, src: Any) -> "Example":
        """Decode ``src`` (bytes, path, file, PIL, array); raises ImageInputError with a clear message."""
        raw: bytes | None = None
        if isinstance(src, (str, Path)):
            img = load_image(src)
            raw = Path(src).read_bytes()
        elif isinstance(src, (bytes, bytearray, memoryview)) or hasattr(src, "read"):
            if hasattr(src, "read"):
                if hasattr(src, "seek"):
                    src.seek(0)
                src = src.read()
            raw = bytes(src)
            buffer = io.BytesIO(raw)
            buffer.name = name  # so load_image's messages name the file
            img = load_image(buffer)
        else:
            img = load_image(src)
        if max(img.size) > STORE_MAX_SIDE:
            img = img.copy()
            img.thumbnail((STORE_MAX_SIDE, STORE_MAX_SIDE), Image.Resampling.LANCZOS)
            raw = None
        if raw is None:  # keep the invariant: decoding ``data`` gives exactly ``image``
            raw = _encode_png(img)
            img = load_image(raw)
        return cls(name=name, data=raw, image=img, digest=fingerprint(img))

    @property
    def thumb(self) -> Image.Image:
        """A 160 px square (centre crop) so class grids line up."""
        if self._thumb is None:
            from PIL import ImageOps

            self._thumb = ImageOps.fit(self.image, (160, 160), Image.Resampling.BICUBIC)
        return self._thumb


def _encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def clean_class_name(name: str) -> str:
    """A class name as stored, or ExampleSetError saying what is wrong with it."""
    name = " ".join(str(name).split())
    if not name:
        raise ExampleSetError("Give the class a name.")
    if len(name) > MAX_CLASS_NAME:
        raise ExampleSetError(f"Class names can be at most {MAX_CLASS_NAME} characters.")
    if re.search(r"[/\\:]", name) or name in (".", ".."):
        raise ExampleSetError(f"'{name}': class names cannot contain / \\ or : (they become folder names in exports).")
    return name


class ExampleSet:
    """Named classes of example images, in the order the user created them."""

    def __init__(self) -> None:
        self.classes: dict[str, list[Example]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.classes.values())

    def find_class(self, name: str) -> str | None:
        folded = " ".join(str(name).split()).casefold()
        return next((c for c in self.classes if c.casefold() == folded), None)

    def add_class(self, name: str) -> str:
        name = clean_class_name(name)
        existing = self.find_class(name)
        if existing is not None:
            raise ExampleSetError(f"There is already a class called '{existing}'; class names must be unique.")
        self.classes[name] = []
        return name

    def ensure_class(self, name: str) -> str:
        existing = self.find_class(name)
        return existing if existing is not None else self.add_class(name)

    def rename_class(self, old: str, new: str) -> str:
        if old not in self.classes:
            raise ExampleSetError(f"There is no class '{old}'.")
        new = clean_class_name(new)
        clash = self.find_class(new)
        if clash is not None and clash != old:
            raise ExampleSetError(f"There is already a class called '{clash}'; class names must be unique.")
        self.classes = {(new if c == old else c): v for c, v in self.classes.items()}
        return new

    def remove_class(self, name: str) -> None:
        self.classes.pop(name, None)

    def clear(self) -> None:
        self.classes.clear()

    def add_example(self, class_name: str, example: Example) -> str | None:
        """Add one decoded example; returns a note when it was a duplicate (and skipped)."""
        items = self.classes[class_name]
        if any(e.digest == example.digest for e in items):
            return DuplicateNote(example.name, class_name)
        items.append(example)
        return None

    def add_images(self, class_name: str, sources: Iterable[tuple[str, Any]]) -> tuple[int, list[str]]:
        """Add ``(name, source)`` images to a class; bad ones are skipped with a sentence each.

        Returns (number added, messages). The class is created if needed.
        """
        class_name = self.ensure_class(class_name)
        added, messages = 0, []
        for name, src in sources:
            try:
                example = Example.from_source(name, src)
            except ImageInputError as exc:
                messages.append(f"'{class_name}': {exc}")
                continue
            note = self.add_example(class_name, example)
            if note:
                messages.append(note)
            else:
                added += 1
        return added, messages

    def remove_image(self, class_name: str, uid: int) -> None:
        if class_name in self.classes:
            self.classes[class_name] = [e for e in self.classes[class_name] if e.uid != uid]

    def problems(self) -> list[str]:
        """Why this set cannot train a classifier yet (empty list: ready)."""
        filled = [c for c, items in self.classes.items() if items]
        if len(filled) >= 2:
            return []
        if not self.classes:
            return ["Add at least 2 classes with at least 1 image each (or load the sample set)."]
        if len(filled) == 1:
            others = [c for c in self.classes if not self.classes[c]]
            hint = f" ('{others[0]}' is still empty)" if others else ""
            return [
                f"Only one class ('{filled[0]}') has images{hint}: a classifier needs at least 2 classes with images."
            ]
        return ["No class has images yet: add at least 1 image to each of at least 2 classes."]

    def empty_classes(self) -> list[str]:
        return [c for c, items in self.classes.items() if not items]

    def labelled(self) -> tuple[list[Example], list[str]]:
        """Examples and their labels, classes with images only, in class order."""
        examples, labels = [], []
        for c, items in self.classes.items():
            examples.extend(items)
            labels.extend([c] * len(items))
        return examples, labels

    def merge(self, other: "ExampleSet") -> tuple[int, list[str]]:
        added, messages = 0, []
        for c, items in other.classes.items():
            target = self.ensure_class(c)
            for example in items:
                note = self.add_example(target, example)
                if note:
                    messages.append(note)
                else:
                    added += 1
        return added, messages
