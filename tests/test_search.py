"""cvdemo.search: LSH written plainly, brute force, FAISS IVF, and their comparison (no timing asserted)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvdemo import search


@pytest.fixture(scope="module")
def gallery() -> tuple[np.ndarray, np.ndarray]:
    """20,000 CLIP-sized vectors and 50 queries from the same (clustered) distribution."""
    return search.synthetic_gallery(20_000, seed=0), search.synthetic_gallery(50, seed=1)


@pytest.fixture(scope="module")
def truth(gallery) -> np.ndarray:
    vectors, queries = gallery
    return search.exact_neighbours(vectors, queries, 10)


def _recall(index, gallery, truth) -> float:
    vectors, queries = gallery
    index.add(vectors)
    ids, scores = index.search(queries, 10)
    assert ids.shape == scores.shape == (len(queries), 10)
    return search.recall_at_k(ids, truth)


def test_brute_force_is_exact_and_matches_a_full_sort(gallery, truth):
    vectors, queries = gallery
    index = search.BruteForceIndex(vectors.shape[1])
    index.add(vectors)
    ids, scores = index.search(queries, 10)
    full = vectors @ queries.T
    np.testing.assert_array_equal(ids, np.argsort(-full, axis=0, kind="stable")[:10].T)
    np.testing.assert_allclose(scores, -np.sort(-full, axis=0)[:10].T, atol=1e-5)
    assert search.recall_at_k(ids, truth) == 1.0


def test_lsh_interface_and_exact_scores_of_what_it_finds(gallery, truth):
    vectors, queries = gallery
    index = search.LSHIndex(vectors.shape[1], bits=10, tables=8, seed=0)
    index.add(vectors[:10_000])
    index.add(vectors[10_000:])  # two adds = one add
    ids, scores = index.search(queries, 10)
    assert ids.shape == (50, 10) and scores.shape == (50, 10) and ids.dtype == np.int64
    found = ids >= 0
    np.testing.assert_allclose(scores[found], np.einsum("qd,qkd->qk", queries, vectors[np.where(found, ids, 0)])[found], atol=1e-5)
    assert (np.diff(np.where(found, scores, -2), axis=1) <= 1e-6).all()  # best first
    assert 0 < index.last_candidates < len(vectors)  # compared with a few candidates, not all
    one = search.LSHIndex(vectors.shape[1], bits=10, tables=8, seed=0)
    one.add(vectors)
    np.testing.assert_array_equal(one.search(queries, 10)[0], ids)
    # the same seed gives the same index; a single 1-D query works too
    np.testing.assert_array_equal(one.search(queries[3], 10)[0][0], ids[3])


def test_lsh_recall_rises_with_tables_and_falls_with_bits(gallery, truth):
    dim = gallery[0].shape[1]
    by_tables = [_recall(search.LSHIndex(dim, 12, t, seed=0), gallery, truth) for t in (1, 4, 16)]
    by_bits = [_recall(search.LSHIndex(dim, b, 8, seed=0), gallery, truth) for b in (6, 12, 20)]
    print(f"\nLSH recall@10, 12 bits x 1/4/16 tables: {by_tables}; 6/12/20 bits x 8 tables: {by_bits}")
    assert by_tables[0] < by_tables[1] < by_tables[2]
    assert by_bits[0] > by_bits[1] > by_bits[2]
    assert by_tables[2] > 0.5 and by_bits[0] > 0.8  # many short codes find most neighbours
    probed = _recall(search.LSHIndex(dim, 12, 4, seed=0, probes=2), gallery, truth)
    assert probed > by_tables[1]  # multi-probe: neighbouring buckets give more recall from the same tables


def test_faiss_ivf_finds_nearly_all_neighbours(gallery, truth):
    index = search.FaissIVFIndex(gallery[0].shape[1], nprobe=16)
    assert _recall(index, gallery, truth) >= 0.95
    assert index.index.nlist == search.default_nlist(20_000) == 141


def test_compare_indexes_columns_and_values(gallery):
    vectors, queries = gallery
    table = search.compare_indexes(vectors, queries[:20], k=10, bits=12, tables=8, repeats=1)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns[:5]) == ["method", "recall_at_k", "query_ms", "build_s", "memory_mb"]
    assert len(table) == 3 and table["method"].str.contains("FAISS").any()
    assert table.iloc[0]["recall_at_k"] == 1.0  # brute force against itself
    assert table["recall_at_k"].between(0, 1).all() and (table["query_ms"] > 0).all()
    assert (table["build_s"] >= 0).all()
    vectors_mb = vectors.nbytes / 2**20
    assert table.iloc[0]["memory_mb"] == pytest.approx(vectors_mb)
    assert (table["memory_mb"] >= vectors_mb * 0.99).all()  # LSH and IVF also keep the vectors


def test_lsh_sweep_grid_and_figure(gallery):
    vectors, queries = gallery
    sweep = search.lsh_sweep(vectors[:5000], queries[:10], 10, bits=(8, 16), tables=(1, 4))
    assert sorted(zip(sweep["bits"], sweep["tables"])) == [(8, 1), (8, 4), (16, 1), (16, 4)]
    compared = search.compare_indexes(vectors[:5000], queries[:10], 10, repeats=1)
    figure = search.recall_latency_figure(sweep, compared, current=(8, 4))
    names = [t.name for t in figure.data]
    assert "LSH 8 bits" in names and "your sliders" in names and any("FAISS" in n for n in names)
    assert figure.layout.xaxis.type == "log"
    more = search.lsh_sweep(vectors[:5000], queries[:10], 10, grid=[(8, 4), (12, 2)], probes=1)
    assert list(zip(more["bits"], more["tables"], more["probes"])) == [(8, 4, 1), (12, 2, 1)]
    merged = search.merge_points(sweep, more)
    assert len(merged) == 6  # probes are part of the setting: (8, 4, 0) and (8, 4, 1) are two points
    assert len(search.merge_points(merged, more)) == 6  # measured again: replaced, not added
    own = search.sample_queries(vectors, 7)
    assert own.shape == (7, vectors.shape[1]) and all((vectors == q).all(axis=1).any() for q in own)


# --- bad input --------------------------------------------------------------------------------------


def test_zero_bits_zero_tables_and_wrong_shapes_are_explained():
    with pytest.raises(search.SearchInputError, match="with 0 bits every vector lands in the same bucket"):
        search.LSHIndex(512, 0, 4)
    with pytest.raises(search.SearchInputError, match="with 0 tables nothing is found"):
        search.LSHIndex(512, 8, 0)
    with pytest.raises(search.SearchInputError, match="1 to 56 bits"):
        search.LSHIndex(512, 64, 1)
    with pytest.raises(search.SearchInputError, match="Probes"):
        search.LSHIndex(512, 4, 1, probes=5)
    index = search.LSHIndex(8, 4, 2)
    with pytest.raises(search.SearchInputError, match="this index holds 8-number vectors"):
        index.add(np.ones((3, 5)))
    with pytest.raises(search.SearchInputError, match="NaN"):
        index.add(np.full((2, 8), np.nan))
    with pytest.raises(search.SearchInputError, match="at least 1 neighbour"):
        index.search(np.ones(8), 0)


def test_a_gallery_smaller_than_k(gallery):
    vectors, queries = gallery
    small = vectors[:3]
    for index in (search.BruteForceIndex(512), search.LSHIndex(512, 1, 1), search.FaissIVFIndex(512)):
        index.add(small)
        ids, scores = index.search(queries[:2], 5)
        assert ids.shape == (2, 5)
        assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()  # FAISS's convention: -1 = nothing
        found = ids[0][ids[0] >= 0].tolist()
        assert set(found) <= {0, 1, 2}
        if not isinstance(index, search.LSHIndex):  # LSH may miss vectors in other buckets; the others may not
            assert sorted(found) == [0, 1, 2]
    empty = search.LSHIndex(512, 8, 2)
    assert (empty.search(queries[:1], 3)[0] == -1).all()  # an empty index finds nothing, without an error
    with pytest.raises(search.SearchInputError, match="The gallery has 3 vectors: ask for at most 3 neighbours"):
        search.compare_indexes(small, queries[:2], k=10)
