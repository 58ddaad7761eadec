"""Feature vectors: the project's one L2 normalisation (cosine similarity = inner product of unit rows)."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 with every vector (last axis) of length 1; an all-zero vector stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
