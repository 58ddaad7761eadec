"""What every index of the search lesson shares: the student-worded error and input checks."""

from __future__ import annotations

import numpy as np

from cvdemo.errors import CvdemoError
from cvdemo.vectors import l2_normalize

MAX_BITS = 56  # bits per table: a table's id (8 bits) and its code share one 64-bit bucket key
MAX_TABLES = 255


class SearchInputError(CvdemoError, ValueError):
    """Input an index cannot use (0 bits, a vector of the wrong length, ...); the message is for students."""


def as_vectors(vectors: np.ndarray, dim: int | None = None, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 (N, dim) array of unit rows (cosine = inner product)."""

    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise SearchInputError(f"The {what} must form a table (rows of numbers), not an array of shape {array.shape}.")
    if dim is not None and array.shape[1] != dim:
        raise SearchInputError(f"The {what} have {array.shape[1]} numbers each; this index holds {dim}-number vectors.")
    if not np.isfinite(array).all():
        raise SearchInputError(f"The {what} contain NaN or infinite numbers.")
    return np.ascontiguousarray(l2_normalize(array))


def check_k(k: int) -> int:
    k = int(k)
    if k < 1:
        raise SearchInputError("Ask for at least 1 neighbour (k ≥ 1).")
    return k


def padded(ids: list[np.ndarray], scores: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of up to ``k`` results as (Q, k) arrays; missing places are id -1, score -inf (FAISS's convention)."""
    out_ids = np.full((len(ids), k), -1, dtype=np.int64)
    out_scores = np.full((len(ids), k), -np.inf, dtype=np.float32)
    for row, (i, s) in enumerate(zip(ids, scores)):
        out_ids[row, : len(i)] = i[:k]
        out_scores[row, : len(s)] = s[:k]
    return out_ids, out_scores
