"""Locality-sensitive hashing for cosine similarity: random hyperplanes (Charikar 2002), written plainly.

Each table has ``bits`` random hyperplanes through the origin; a vector's code is which side of each plane
it lies on (one bit per plane). Two vectors at angle θ agree on a plane with probability 1 − θ/π, so
similar vectors tend to share a code (a bucket). A query is compared exactly only with the vectors in its
buckets (the candidates) — over ``tables`` independent tables, and optionally the ``probes`` neighbouring
buckets whose code differs in the bit the query was least sure about (multi-probe LSH, Lv et al. 2007).

More bits: smaller buckets, fewer candidates, faster, more true neighbours missed. More tables: more
chances to meet each neighbour, higher recall, more work and memory.
"""

from __future__ import annotations

import numpy as np

from cvdemo.search._common import MAX_BITS, MAX_TABLES, SearchInputError, as_vectors, check_k, padded
from cvdemo.search.exact import top_k


def _hyperplanes(dim: int, bits: int, tables: int, seed: int) -> np.ndarray:
    """(dim, tables * bits) normal vectors. Table t's planes come from their own stream, drawn plane by
    plane, so the first b planes of a table do not depend on ``bits`` or ``tables``: an index with more
    bits splits the same buckets further, and one with more tables adds tables to the same ones."""
    blocks = [np.random.default_rng([seed, t]).standard_normal((bits, dim), dtype=np.float32) for t in range(tables)]
    return np.ascontiguousarray(np.concatenate(blocks).T)


class LSHIndex:
    """Random-hyperplane LSH for cosine: ``LSHIndex(dim, bits, tables, seed=0)``, ``.add``, ``.search``.

    ``probes``: per table, also look in the buckets one bit-flip away, for the ``probes`` bits whose plane
    passed closest to the query (0 = plain LSH). Candidates are re-ranked by their exact cosine, so every
    returned score is exact; what LSH can lose is a true neighbour that never became a candidate.
    """

    method = "LSH (random hyperplanes)"

    def __init__(self, dim: int, bits: int, tables: int, seed: int = 0, probes: int = 0) -> None:
        dim, bits, tables, probes = int(dim), int(bits), int(tables), int(probes)
        if dim < 1:
            raise SearchInputError("Vectors need at least one number (dim ≥ 1).")
        if not 1 <= bits <= MAX_BITS:
            raise SearchInputError(
                f"Use 1 to {MAX_BITS} bits per table ({bits} given): with 0 bits every vector lands in the "
                "same bucket, and the index is brute force with extra steps."
            )
        if not 1 <= tables <= MAX_TABLES:
            raise SearchInputError(f"Use 1 to {MAX_TABLES} hash tables ({tables} given): with 0 tables nothing is found.")
        if not 0 <= probes <= bits:
            raise SearchInputError(f"Probes must be between 0 and the bits per table ({bits}); {probes} given.")
        self.dim, self.bits, self.tables, self.seed, self.probes = dim, bits, tables, int(seed), probes
        self.planes = _hyperplanes(dim, bits, tables, self.seed)
        self._weights = (np.uint64(1) << np.arange(bits, dtype=np.uint64)).astype(np.uint64)
        self._table_ids = (np.arange(tables, dtype=np.uint64) << np.uint64(MAX_BITS)).astype(np.uint64)
        self.vectors = np.zeros((0, dim), np.float32)
        self._keys = np.zeros(0, np.uint64)  # every (table, code) key of every vector, sorted
        self._rows = np.zeros(0, np.int64)  # the vector each sorted key belongs to
        self.last_candidates = 0.0  # mean candidates per query in the last search (what was compared exactly)

    def __len__(self) -> int:
        return len(self.vectors)

    def _project(self, x: np.ndarray) -> np.ndarray:
        return (x @ self.planes).reshape(len(x), self.tables, self.bits)

    def _pack(self, signs: np.ndarray) -> np.ndarray:
        """(n, tables, bits) booleans -> (n, tables) integer codes."""
        return (signs.astype(np.uint64) * self._weights).sum(axis=-1, dtype=np.uint64)

    def add(self, vectors: np.ndarray) -> None:
        vectors = as_vectors(vectors, self.dim)
        chunks = [self._pack(self._project(vectors[s : s + 50_000]) > 0) for s in range(0, len(vectors), 50_000)]
        if not chunks:
            return
        keys = (np.concatenate(chunks) | self._table_ids).ravel()  # row-major: vector i's keys, table by table
        rows = len(self.vectors) + np.arange(len(keys), dtype=np.int64) // self.tables
        self.vectors = np.concatenate([self.vectors, vectors])
        keys, rows = np.concatenate([self._keys, keys]), np.concatenate([self._rows, rows])
        order = np.argsort(keys, kind="stable")
        self._keys, self._rows = keys[order], rows[order]

    def _query_keys(self, query: np.ndarray) -> np.ndarray:
        projection = self._project(query[None])[0]  # (tables, bits)
        codes = self._pack(projection[None] > 0)[0]
        if not self.probes:
            return codes | self._table_ids
        # per table, flip the bits whose plane passed closest to the query (smallest |projection|)
        unsure = np.argsort(np.abs(projection), axis=1)[:, : self.probes]
        flipped = (codes[:, None] ^ self._weights[unsure]).ravel()
        table_of = np.concatenate([np.arange(self.tables), np.repeat(np.arange(self.tables), self.probes)])
        return np.concatenate([codes, flipped]) | self._table_ids[table_of]

    def candidates(self, query: np.ndarray) -> np.ndarray:
        """Rows sharing a bucket with ``query`` (a unit vector) in any table (and probed bucket)."""
        keys = self._query_keys(query)
        lo = np.searchsorted(self._keys, keys, side="left")
        hi = np.searchsorted(self._keys, keys, side="right")
        lengths = hi - lo
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, np.int64)
        # all ranges [lo, hi) at once: position = running index + (this range's lo - its start in the output)
        starts = np.cumsum(lengths) - lengths
        positions = np.arange(total) + np.repeat(lo - starts, lengths)
        return np.unique(self._rows[positions])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores), each (len(queries), k), best first; fewer candidates than k: id -1, score -inf."""
        queries, k = as_vectors(queries, self.dim, "queries"), check_k(k)
        ids, scores, seen = [], [], 0
        for query in queries:
            rows = self.candidates(query)
            seen += len(rows)
            order, best = top_k(self.vectors[rows] @ query, k)
            ids.append(rows[order])
            scores.append(best)
        self.last_candidates = seen / max(len(queries), 1)
        return padded(ids, scores, k)

    @property
    def memory_bytes(self) -> int:
        """Planes, sorted keys and their rows, plus the vectors kept for exact re-ranking."""
        return int(self.planes.nbytes + self._keys.nbytes + self._rows.nbytes + self.vectors.nbytes)
