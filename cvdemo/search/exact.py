"""Exact search: the cosine of the query with every vector (one matrix product), then the top k."""

from __future__ import annotations

import numpy as np

from cvdemo.search._common import SearchInputError, as_vectors, check_k, padded


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values of the ``k`` largest ``scores`` (1-D), best first; ties keep the lower position."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.argsort(-scores[part], kind="stable")]
    else:
        order = np.argsort(-scores, kind="stable")
    return order.astype(np.int64), scores[order]


class BruteForceIndex:
    """Compares a query with every stored vector: always right, and slower the bigger the gallery."""

    method = "brute force (exact)"

    def __init__(self, dim: int) -> None:
        if int(dim) < 1:
            raise SearchInputError("Vectors need at least one number (dim ≥ 1).")
        self.dim = int(dim)
        self.vectors = np.zeros((0, self.dim), np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def add(self, vectors: np.ndarray) -> None:
        self.vectors = np.concatenate([self.vectors, as_vectors(vectors, self.dim)])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores), each (len(queries), k); past the gallery's size: id -1, score -inf."""
        queries, k = as_vectors(queries, self.dim, "queries"), check_k(k)
        ids, scores = [], []
        # (Q, N) with contiguous rows: each row goes to argpartition as it is (no strided copy per row)
        for scores_row in queries @ self.vectors.T if len(queries) > 1 else [self.vectors @ queries[0]]:
            i, s = top_k(scores_row, k)
            ids.append(i)
            scores.append(s)
        return padded(ids, scores, k)

    @property
    def memory_bytes(self) -> int:
        return int(self.vectors.nbytes)
