"""Automatic choice of K by the silhouette sweep."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from imgcluster_gui.core.clustering.autok import AutoKResult, choose_k, k_range
from imgcluster_gui.core.progress import Cancelled
from tests.helpers import CancelAt, gaussian_blobs


def five_blobs(n=500, seed=0):
    """Five unit-spread blobs in 10-D, centres in make_blobs' box [-10, 10]."""
    return gaussian_blobs(n, 5, 10, centre_scale=10.0, centres="box", seed=seed)


def test_picks_five_on_five_blobs_and_reports_every_score():
    X, y = five_blobs()
    result = choose_k(X, k_min=2, k_max=10, random_state=0)
    assert isinstance(result, AutoKResult)
    assert result.best_k == 5
    assert result.ks == list(range(2, 11))
    assert len(result.silhouette) == len(result.calinski_harabasz) == len(result.davies_bouldin) == 9
    best = result.ks.index(5)
    # the other indices agree on these blobs: CH highest, DB lowest at the true K
    assert result.calinski_harabasz[best] == max(result.calinski_harabasz)
    assert result.davies_bouldin[best] == min(result.davies_bouldin)
    assert result.labels.shape == (500,) and adjusted_rand_score(y, result.labels) > 0.99
    assert result.sample_size == 500 and result.n_clusters_found == result.ks


def test_silhouette_is_sampled_on_large_inputs_and_still_finds_k():
    X, _ = five_blobs(n=1500, seed=1)
    result = choose_k(X, k_min=3, k_max=7, sample_size=400, random_state=0)
    assert result.sample_size == 400 and result.best_k == 5


def test_k_range_is_clipped_to_two_and_n_minus_one():
    assert k_range(1, 30, 6) == [2, 3, 4, 5]
    X = np.array([[0, 0], [0, 1], [10, 10], [10, 11], [20, 0], [20, 1]], dtype=np.float32)
    result = choose_k(X, k_min=1, k_max=30)
    assert result.ks == [2, 3, 4, 5] and result.best_k == 3
    with pytest.raises(ValueError, match="at least 3 samples"):
        choose_k(X[:2])
    with pytest.raises(ValueError, match="is empty"):
        k_range(8, 9, 6)


def test_other_algorithms_sweep_and_k_free_ones_are_refused():
    X, _ = five_blobs(n=300)
    assert choose_k(X, algorithm="gmm", k_min=3, k_max=7, random_state=0).best_k == 5
    with pytest.raises(ValueError, match="chooses its own number of clusters"):
        choose_k(X, algorithm="hdbscan")


def test_identical_points_give_a_clear_error():
    with pytest.raises(ValueError, match="no K gave"):
        choose_k(np.ones((20, 3), dtype=np.float32), k_max=4)


def test_progress_and_cancel():
    X, _ = five_blobs(n=200)
    stages = []
    choose_k(X, k_min=2, k_max=4, progress=lambda e: stages.append((e.fraction, e.stage)))
    assert stages[-1][0] == pytest.approx(1.0) and any(stage.startswith("K=3") for _, stage in stages)

    cancel = CancelAt(stage="K=3")
    with pytest.raises(Cancelled):
        choose_k(X, k_min=2, k_max=6, progress=cancel)
    assert cancel.calls_after_cancel == 0  # the sweep stopped at K=3's first progress call: no later K was tried


def test_the_sweep_can_score_in_a_umap_space():
    pytest.importorskip("umap")
    X, y = five_blobs(n=300)
    result = choose_k(X, k_min=2, k_max=8, space="umap")
    assert result.best_k == 5 and result.ks == list(range(2, 9))
    assert adjusted_rand_score(y, result.labels) > 0.95
    with pytest.raises(ValueError, match="space"):
        choose_k(X, space="pixels")


def test_the_umap_sweep_explains_a_missing_umap(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap raises ImportError
    X, _ = five_blobs(n=100)
    with pytest.raises(ValueError, match="umap-learn"):
        choose_k(X, k_min=2, k_max=4, space="umap")
