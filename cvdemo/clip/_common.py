"""Small pieces every part of the CLIP package uses: its student-worded error, progress callbacks."""

from __future__ import annotations

from typing import Callable

from cvdemo.errors import CvdemoError

Progress = Callable[[int, int], None]


class ClipInputError(CvdemoError, ValueError):
    """Input the CLIP page cannot use (no labels, empty gallery, ...); the message is for students."""
