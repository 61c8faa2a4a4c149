"""The neighbour-graph engine: exact and approximate search, weights, cache, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.core import graph as graph_module
from imgcluster_gui.core.graph import GraphCache, KnnGraph, build_knn_graph, choose_method, prepare
from imgcluster_gui.core.progress import Cancelled


def clustered(n_per: int = 150, n_groups: int = 8, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, d)) * 3
    y = np.repeat(np.arange(n_groups), n_per)
    return (centres[y] + rng.normal(size=(y.size, d))).astype(np.float32), y


def brute_cosine(X: np.ndarray, k: int) -> np.ndarray:
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, expected)]))


def test_exact_graph_equals_brute_force_and_never_lists_a_point_itself():
    X, _ = clustered(n_per=40, n_groups=5)
    graph = build_knn_graph(X, 7, cache=False)
    assert graph.method == "exact" and graph.metric == "cosine"
    assert graph.indices.shape == (200, 7) and graph.indices.dtype == np.int64
    assert recall(graph.indices, brute_cosine(X, 7)) == 1.0
    assert (graph.indices != np.arange(200)[:, None]).all()
    assert (np.diff(graph.distances, axis=1) >= -1e-6).all()  # nearest first
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    cosine = np.einsum(
        "ij,ij->i", unit[:, None, :].repeat(7, 1).reshape(-1, X.shape[1]), unit[graph.indices.ravel()]
    ).reshape(200, 7)
    np.testing.assert_allclose(graph.similarities(), cosine, atol=1e-4)


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_approximate_graphs_find_most_true_neighbours(method):
    X, _ = clustered(n_per=400, n_groups=10, d=48)
    graph = build_knn_graph(X, 10, method=method, cache=False)
    assert graph.method == method
    assert recall(graph.indices, brute_cosine(X, 10)) >= 0.9
    assert (graph.indices != np.arange(len(X))[:, None]).all()


def test_auto_method_is_exact_for_small_sets_and_approximate_for_large():
    assert choose_method(10_000, 1280) == "exact"
    assert choose_method(1_000_000, 256) != "exact"
    assert choose_method(100_000, 1280) != "exact"


def test_duplicates_are_each_others_nearest_at_distance_zero():
    X, _ = clustered(n_per=5, n_groups=3, d=8)
    doubled = np.vstack([X, X])
    graph = build_knn_graph(doubled, 3, cache=False)
    n = len(X)
    partners = np.r_[np.arange(n, 2 * n), np.arange(n)]
    assert (graph.indices[:, 0] == partners).all()
    np.testing.assert_allclose(graph.distances[:, 0], 0.0, atol=1e-5)


def test_all_identical_rows_and_zero_rows_do_not_break_the_graph():
    same = np.ones((6, 4), dtype=np.float32)
    graph = build_knn_graph(same, 10, cache=False)  # k capped at n - 1
    assert graph.n_neighbors == 5 and (graph.indices >= 0).all()
    zeros = np.zeros((4, 3), dtype=np.float32)
    assert build_knn_graph(zeros, 2, cache=False).indices.shape == (4, 2)
    with pytest.raises(ValueError, match="NaN"):
        build_knn_graph(np.array([[1.0, np.nan], [0.0, 1.0]]), 1, cache=False)
    with pytest.raises(ValueError, match="at least 2 rows"):
        build_knn_graph(np.ones((1, 3)), 1, cache=False)


@pytest.mark.parametrize("weighting", ["binary", "similarity", "snn", "fuzzy"])
def test_adjacency_is_symmetric_without_self_loops(weighting):
    X, _ = clustered(n_per=30, n_groups=4)
    graph = build_knn_graph(X, 6, cache=False)
    union = graph.adjacency(weighting, "union")
    mutual = graph.adjacency(weighting, "mutual")
    for matrix in (union, mutual):
        assert abs(matrix - matrix.T).max() < 1e-6
        assert matrix.diagonal().max() == 0
        assert matrix.data.min() > 0 and matrix.data.max() <= 1.0 + 1e-6
    # mutual keeps only the edges both ends list: a subset of the union
    assert mutual.nnz < union.nnz
    assert ((mutual > 0).astype(int) - (union > 0).astype(int)).max() <= 0


def test_shared_neighbour_weights_rank_in_group_edges_above_cross_group_ones():
    X, y = clustered(n_per=30, n_groups=3, d=6, seed=3)
    X[y == 1] = X[y == 1] * 0.2 + X[y == 0].mean(axis=0)  # two groups touching
    graph = build_knn_graph(X, 10, metric="euclidean", cache=False)
    snn = graph.adjacency("snn").tocoo()
    same = y[snn.row] == y[snn.col]
    assert snn.data[same].mean() > snn.data[~same].mean()


def test_cache_serves_the_same_graph_and_smaller_k_from_memory_and_disk(tmp_path):
    X, _ = clustered(n_per=30, n_groups=4)
    cache = GraphCache(tmp_path / "graphs")
    first = build_knn_graph(X, 8, cache=cache)
    assert first.seconds > 0 and list((tmp_path / "graphs").glob("*.npz"))
    again = build_knn_graph(X, 5, cache=cache)
    assert again.seconds == 0 and again.n_neighbors == 5
    np.testing.assert_array_equal(again.indices, first.indices[:, :5])
    fresh = GraphCache(tmp_path / "graphs")  # a new process: from disk
    from_disk = build_knn_graph(X, 8, cache=fresh)
    assert from_disk.seconds == 0
    np.testing.assert_array_equal(from_disk.indices, first.indices)
    # other data is not served from the cache
    other = build_knn_graph(X + 1.0, 8, cache=fresh)
    assert other.seconds > 0


def test_an_unreadable_cached_graph_is_rebuilt(tmp_path):
    X, _ = clustered(n_per=20, n_groups=3)
    cache = GraphCache(tmp_path)
    built = build_knn_graph(X, 4, cache=cache)
    for path in tmp_path.glob("*.npz"):
        path.write_bytes(b"not an npz")
    rebuilt = build_knn_graph(X, 4, cache=GraphCache(tmp_path))
    assert rebuilt.seconds > 0
    np.testing.assert_array_equal(rebuilt.indices, built.indices)


def test_an_approximate_request_is_served_by_an_exact_graph_but_not_the_reverse(tmp_path):
    X, _ = clustered(n_per=100, n_groups=4)
    cache = GraphCache(memory_only=True)
    approximate = build_knn_graph(X, 5, method="ivf", cache=cache)
    assert approximate.method == "ivf"
    exact = build_knn_graph(X, 5, method="exact", cache=cache)
    assert exact.method == "exact" and exact.seconds > 0
    served = build_knn_graph(X, 5, method="ivf", cache=cache)
    assert served.method == "exact" and served.seconds == 0


def test_cancel_stops_the_search(monkeypatch):
    monkeypatch.setattr(graph_module, "_BLOCK_ROWS", 50)
    X, _ = clustered(n_per=50, n_groups=4)
    calls = []

    def cancel_after_first_block(event):
        if event.fraction is None:
            return
        calls.append(event.fraction)
        if event.fraction > 0.2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        build_knn_graph(X, 5, cache=False, progress=cancel_after_first_block)
    assert calls and max(calls) < 1.0


def test_unit_rows_share_one_cache_entry_for_both_metrics():
    X, _ = clustered(n_per=10, n_groups=2)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    assert prepare(unit, "euclidean")[1] == "cosine"
    assert prepare(X, "euclidean")[1] == "euclidean"
    assert isinstance(build_knn_graph(unit, 3, metric="euclidean", cache=False), KnnGraph)


def test_faiss_is_imported_passively_and_the_environment_is_restored(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert graph_module.faiss_module() is not None
    import os

    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv(graph_module.THREADS_ENV_VAR, "1")
    assert graph_module.default_threads() == 1


def test_cached_knn_graph_answers_without_searching():
    from imgcluster_gui.core.graph import cached_knn_graph

    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    store = GraphCache(memory_only=True)
    assert cached_knn_graph(X, 5, cache=store) is None  # nothing built yet: None, and no search
    built = build_knn_graph(X, 5, cache=store)
    found = cached_knn_graph(X, 5, cache=store)
    assert found is not None and np.array_equal(found.indices, built.indices)
    assert cached_knn_graph(X, 3, cache=store) is not None  # fewer neighbours: served by the bigger graph
    assert cached_knn_graph(X, 9, cache=store) is None  # more than it holds: a search would be needed
