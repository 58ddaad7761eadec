"""Fast search over precomputed vectors: exact, locality-sensitive hashing, and a production index.

Precompute every image's vector once; at query time, compare the query with a few candidates instead of
with every image. This package is the door (``from cvdemo import search; search.LSHIndex``):

- ``exact.py`` — :class:`BruteForceIndex` (the reference: one matrix product) and :func:`top_k`
- ``lsh.py`` — :class:`LSHIndex`, random-hyperplane LSH for cosine (bits per table, tables, multi-probe)
- ``ann.py`` — :class:`FaissIVFIndex`, FAISS's inverted file (the production index), :func:`faiss_module`
- ``benchmark.py`` — :func:`compare_indexes` (recall@k, query ms, build s, memory MB), :func:`lsh_sweep`,
  :func:`merge_points`, :func:`sample_queries`,
  :func:`synthetic_gallery`, :func:`recall_at_k`
- ``figures.py`` — :func:`recall_latency_figure`
- ``_common.py`` — :class:`SearchInputError` (student-worded), input checks

Every index takes unit vectors (cosine = inner product; others are normalised), has ``add(vectors)`` and
``search(queries, k) -> (ids, scores)``, both ``(len(queries), k)``, with id -1 / score -inf where fewer
than k were found, and ``memory_bytes``. numpy only at import; FAISS, pandas and plotly load when used.
"""

from __future__ import annotations

from cvdemo.search._common import MAX_BITS, MAX_TABLES, SearchInputError
from cvdemo.search.ann import FaissIVFIndex, default_nlist, faiss_module
from cvdemo.search.benchmark import (
    CLIP_DIM,
    COLUMNS,
    compare_indexes,
    exact_neighbours,
    lsh_sweep,
    measure,
    merge_points,
    recall_at_k,
    sample_queries,
    synthetic_gallery,
)
from cvdemo.search.exact import BruteForceIndex, top_k
from cvdemo.search.figures import recall_latency_figure
from cvdemo.search.lsh import LSHIndex

__all__ = [
    "SearchInputError", "MAX_BITS", "MAX_TABLES",
    "BruteForceIndex", "top_k", "LSHIndex", "FaissIVFIndex", "default_nlist", "faiss_module",
    "CLIP_DIM", "COLUMNS", "compare_indexes", "lsh_sweep", "measure", "exact_neighbours", "recall_at_k", "sample_queries", "merge_points",
    "synthetic_gallery", "recall_latency_figure",
]
