"""Measuring indexes against brute force: recall@k, query latency, build time, memory; synthetic galleries.

Every method answers the same queries one at a time (what a student's search costs); recall@k is the
share of brute force's top k that the method also returned.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from cvdemo.search._common import SearchInputError, as_vectors, check_k
from cvdemo.search.ann import FaissIVFIndex, faiss_module
from cvdemo.search.exact import BruteForceIndex
from cvdemo.search.lsh import LSHIndex
from cvdemo.timing import time_interleaved

COLUMNS = ["method", "recall_at_k", "query_ms", "build_s", "memory_mb"]
CLIP_DIM = 512  # ViT-B/32's embedding width


def synthetic_gallery(n: int, dim: int = CLIP_DIM, seed: int = 0, latent: int = 48, clusters: int | None = None) -> np.ndarray:
    """(n, dim) unit vectors shaped like image embeddings rather than like noise.

    Real embeddings are clustered (classes, scenes) and use few directions of their space; independent
    Gaussian vectors would be almost equally far from each other, so "the 10 nearest" would be a coin
    toss for any index. So: cluster centres in a ``latent``-dimensional space, points scattered around them,
    mapped into ``dim`` dimensions by a fixed random basis, plus a little noise in every direction.
    The basis and centres depend only on ``dim``/``latent``/``clusters``: another ``seed`` draws new
    points (queries) from the same distribution.
    """
    n, dim = int(n), int(dim)
    if n < 1 or dim < 2:
        raise SearchInputError("A synthetic gallery needs at least 1 vector of at least 2 numbers.")
    latent = min(latent, dim)
    clusters = int(clusters or max(10, min(n // 1000, 1000)))
    basis = np.linalg.qr(np.random.default_rng(123).standard_normal((dim, latent)).astype(np.float32))[0]
    centres = np.random.default_rng(7).standard_normal((clusters, latent)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # in chunks: 1M x 512 floats of noise at once would be 2 GB more
        m = min(100_000, n - start)
        z = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, latent), dtype=np.float32)
        x = z @ basis.T + 0.03 * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k (ids -1 are misses)."""
    found, truth = np.atleast_2d(found), np.atleast_2d(truth)
    k = truth.shape[1]
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k) if len(hits) else 0.0


def _timed_queries(index: Any, queries: np.ndarray, k: int, repeats: int) -> tuple[np.ndarray, float]:
    """Ids for every query, asked one at a time; the mean milliseconds per query of the best pass."""
    rows: list[np.ndarray] = []

    def answer_all() -> None:
        rows[:] = [index.search(q[None], k)[0][0] for q in queries]

    seconds = time_interleaved({"queries": answer_all}, repeats=max(1, repeats), warmup=0, pause=0.0)["queries"]
    return np.stack(rows), 1e3 * min(seconds) / len(queries)


def measure(
    name: str, factory: Callable[[], Any], vectors: np.ndarray, queries: np.ndarray, k: int,
    truth: np.ndarray, repeats: int = 2,
) -> dict[str, Any]:
    """One row: build ``factory()`` on ``vectors``, answer ``queries``, compare with ``truth``."""
    start = time.perf_counter()
    index = factory()
    index.add(vectors)
    build_s = time.perf_counter() - start
    ids, query_ms = _timed_queries(index, queries, k, repeats)
    row = {"method": name, "recall_at_k": recall_at_k(ids, truth), "query_ms": query_ms, "build_s": build_s,
           "memory_mb": index.memory_bytes / 2**20}
    if isinstance(index, LSHIndex):
        row["candidates_per_query"] = index.last_candidates
    return row


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute force's top-k ids for all queries (batched: the reference, not a timing)."""
    index = BruteForceIndex(vectors.shape[1])
    index.vectors = vectors
    out = []
    for start in range(0, len(queries), 256):
        out.append(index.search(queries[start : start + 256], k)[0])
    return np.concatenate(out)


def compare_indexes(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    bits: int = 16,
    tables: int = 8,
    probes: int = 0,
    nprobe: int = 16,
    repeats: int = 2,
    seed: int = 0,
) -> "Any":
    """Brute force, LSH (``bits``, ``tables``, ``probes``) and FAISS IVF on the same vectors and queries.

    Returns a pandas DataFrame with the columns ``method``, ``recall_at_k`` (against brute force),
    ``query_ms`` (one query at a time), ``build_s``, ``memory_mb`` (what each index keeps, incl. vectors).
    """
    import pandas as pd

    vectors = as_vectors(vectors, what="gallery vectors")
    queries = as_vectors(queries, vectors.shape[1], "queries")
    k = check_k(k)
    if len(vectors) < k:
        raise SearchInputError(
            f"The gallery has {len(vectors)} vector{'s' if len(vectors) != 1 else ''}: ask for at most "
            f"{len(vectors)} neighbours (k = {k} given)."
        )
    if not len(queries):
        raise SearchInputError("Give at least one query vector.")
    dim = vectors.shape[1]
    truth = exact_neighbours(vectors, queries, k)
    rows = [
        measure(BruteForceIndex.method, lambda: BruteForceIndex(dim), vectors, queries, k, truth, repeats),
        measure(f"{LSHIndex.method}: {bits} bits × {tables} tables" + (f", {probes} probes" if probes else ""),
                lambda: LSHIndex(dim, bits, tables, seed=seed, probes=probes), vectors, queries, k, truth, repeats),
    ]
    if faiss_module() is not None:
        rows.append(measure(f"{FaissIVFIndex.method} (nprobe {nprobe})",
                            lambda: FaissIVFIndex(dim, nprobe=nprobe, seed=seed), vectors, queries, k, truth, repeats))
    frame = pd.DataFrame(rows)
    return frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]


def lsh_sweep(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    bits: Sequence[int] = (8, 12, 16, 20),
    tables: Sequence[int] = (1, 2, 4, 8, 16, 32),
    probes: int = 0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    grid: Sequence[tuple[int, int]] | None = None,
) -> "Any":
    """The recall/latency grid of LSH: one row per (bits, tables) — every pair of ``bits`` x ``tables``, or
    the (bits, tables) pairs of ``grid`` — with brute force's truth computed once. Columns: ``bits``,
    ``tables``, ``probes``, then those of :func:`compare_indexes` and ``candidates_per_query``."""
    import pandas as pd

    vectors = as_vectors(vectors, what="gallery vectors")
    queries = as_vectors(queries, vectors.shape[1], "queries")
    k = min(check_k(k), len(vectors))
    truth = exact_neighbours(vectors, queries, k)
    settings = list(grid) if grid is not None else [(b, t) for b in bits for t in tables]
    rows = []
    for b, t in settings:
        row = measure("LSH", lambda: LSHIndex(vectors.shape[1], b, t, seed=seed, probes=min(probes, b)),
                      vectors, queries, k, truth, repeats=1)
        rows.append({"bits": b, "tables": t, "probes": min(probes, b), **row})
        if progress is not None:
            progress(len(rows), len(settings))
    return pd.DataFrame(rows)


def sample_queries(vectors: np.ndarray, n: int = 100, seed: int = 0) -> np.ndarray:
    """``n`` of the gallery's own vectors as queries (each finds itself first, in every method alike)."""
    rng = np.random.default_rng(seed)
    return vectors[rng.choice(len(vectors), min(int(n), len(vectors)), replace=False)]


def merge_points(old: "Any | None", new: "Any") -> "Any":
    """LSH points measured so far plus new ones; a setting measured again keeps its newest numbers."""
    import pandas as pd

    if old is None:
        return new.reset_index(drop=True)
    merged = pd.concat([old, new], ignore_index=True)
    return merged.drop_duplicates(["bits", "tables", "probes"], keep="last").reset_index(drop=True)
