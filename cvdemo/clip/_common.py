"""Small pieces every part of the CLIP package uses: its student-worded error, progress callbacks, L2 norm."""

from __future__ import annotations

from typing import Callable

import numpy as np

from cvdemo.errors import CvdemoError

Progress = Callable[[int, int], None]


class ClipInputError(CvdemoError, ValueError):
    """Input the CLIP page cannot use (no labels, empty gallery, ...); the message is for students."""


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
