"""The same photo picked twice is detected once: repeats (same pixels) are dropped and named in one sentence."""

from __future__ import annotations

from typing import Sequence

from PIL import Image

from cvdemo.images import fingerprint


def drop_duplicate_images(
    images: Sequence[tuple[str, Image.Image]],
) -> tuple[list[tuple[str, Image.Image]], list[tuple[str, str]]]:
    """The images without repeats (same pixels as an earlier one), and ``(skipped name, name it repeats)`` pairs."""
    kept: list[tuple[str, Image.Image]] = []
    first_name: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    for name, image in images:
        key = fingerprint(image)
        if key in first_name:
            skipped.append((name, first_name[key]))
        else:
            first_name[key] = name
            kept.append((name, image))
    return kept, skipped


def duplicates_note(skipped: Sequence[tuple[str, str]]) -> str:
    """One sentence for all skipped repeats, file names quoted as given (the page escapes them for markdown)."""
    parts = [
        f"“{name}” (the same pixels as “{original}”)" if name != original else f"a second “{name}”"
        for name, original in skipped
    ]
    if len(parts) == 1:
        return f"Skipped {parts[0]}: each photo is detected once."
    return f"Skipped {len(parts)} duplicates: {', '.join(parts)}. Each photo is detected once."
