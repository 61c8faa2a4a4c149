"""Automatic grouping without K: Leiden and FINCH on the neighbour graph, exact K, the ladder, odd folders."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score as nmi

from imgcluster_gui.core.clustering.community import (
    FINCHClusterer,
    LeidenClusterer,
    align_labels,
    collect_small,
    count_groups,
)
from imgcluster_gui.core.clustering.registry import get_algorithm, make_estimator
from tests.helpers import gaussian_blobs


def blobs(n_per: int = 60, n_groups: int = 6, d: int = 16, centre_scale: float = 6.0, seed: int = 0):
    """``n_groups`` unit-spread blobs of ``n_per`` points, centres ~N(0, centre_scale^2) per axis."""
    return gaussian_blobs(n_per * n_groups, n_groups, d, centre_scale=centre_scale, seed=seed)


def rings(n_per: int = 300, radii=(1.0, 4.0, 8.0), seed: int = 0):
    """Concentric rings in 2-D (k-means cuts them into wedges), lifted to 3-D with a little noise."""
    rng = np.random.default_rng(seed)
    parts, y = [], []
    for label, radius in enumerate(radii):
        angle = rng.uniform(0, 2 * np.pi, n_per)
        ring = np.column_stack([radius * np.cos(angle), radius * np.sin(angle), rng.normal(0, 0.05, n_per)])
        parts.append(ring + rng.normal(0, 0.05, ring.shape))
        y += [label] * n_per
    return np.vstack(parts).astype(np.float32), np.array(y)


def test_registry_lists_leiden_and_finch_as_automatic():
    for algorithm_id in ("leiden", "finch"):
        spec = get_algorithm(algorithm_id)
        assert spec.uses_k and spec.k_optional and spec.category == "classic"
        # every form parameter is an estimator parameter with the same default
        estimator = spec.factory()
        for param in spec.params:
            assert getattr(estimator, param.name) == param.default, param.name


def test_well_separated_blobs_are_found_without_k():
    X, y = blobs()
    estimator = make_estimator("leiden").fit(X)
    assert estimator.n_clusters_ == 6
    assert nmi(y, estimator.labels_) > 0.99
    assert estimator.labels_.dtype == np.int64
    assert estimator.cluster_centers_.shape == (6, X.shape[1])


def test_finch_picks_the_best_level_of_its_hierarchy_without_k():
    X, y = blobs()
    finch = make_estimator("finch").fit(X)
    # FINCH's levels on these blobs hold about 60, 6-10 and 2-3 groups (by the seed): the middle level
    # may split a few blobs but mixes none, and has the highest modularity.
    assert finch.level_sizes_ == sorted(finch.level_sizes_, reverse=True) and len(finch.level_sizes_) >= 2
    assert 6 <= finch.n_clusters_ <= 12
    assert nmi(y, finch.labels_) > 0.9


def test_rings_are_recovered_without_k_where_kmeans_fails():
    X, y = rings()
    leiden = LeidenClusterer(metric="euclidean", n_neighbors=10).fit(X)
    kmeans = make_estimator("kmeans", n_clusters=3).fit(X)
    assert nmi(y, kmeans.labels_) < 0.3
    # Leiden may cut a long ring into arcs, but never mixes two rings; its coarse levels join the arcs.
    assert all(len(set(y[leiden.labels_ == c])) == 1 for c in range(leiden.n_clusters_))
    coarsest = min((level for level in leiden.ladder(X) if level.n_clusters >= 3), key=lambda level: level.n_clusters)
    assert coarsest.n_clusters == 3 and nmi(y, coarsest.labels) > 0.99


@pytest.mark.parametrize("k", [2, 4, 6, 9, 15])
def test_leiden_with_k_gives_exactly_k_groups(k):
    X, y = blobs()
    estimator = LeidenClusterer(n_clusters=k).fit(X)
    assert count_groups(estimator.labels_) == k and estimator.n_unsorted_ == 0
    assert set(estimator.labels_.tolist()) == set(range(k))
    if k == 6:
        assert nmi(y, estimator.labels_) > 0.99


def test_finch_with_k_gives_exactly_k_groups():
    X, _ = blobs()
    assert count_groups(FINCHClusterer(n_clusters=4).fit(X).labels_) == 4


def test_outliers_go_to_the_unsorted_group_not_away():
    X, y = blobs(n_groups=4)
    rng = np.random.default_rng(1)
    outliers = rng.normal(size=(1, X.shape[1])).astype(np.float32) * 200
    data = np.vstack([X, outliers])
    estimator = LeidenClusterer(min_cluster_size=3).fit(data)
    assert estimator.labels_.shape == (len(data),)
    assert estimator.labels_[-1] == -1 and estimator.n_unsorted_ >= 1
    assert estimator.n_clusters_ == 4
    keep_all = LeidenClusterer(min_cluster_size=1, outliers=False).fit(data)
    assert keep_all.n_unsorted_ == 0


def test_resolution_is_the_granularity():
    X, _ = blobs(n_per=80, n_groups=8, centre_scale=2.5)
    coarse = LeidenClusterer(resolution=0.1).fit(X)
    fine = LeidenClusterer(resolution=5.0).fit(X)
    assert coarse.n_clusters_ < fine.n_clusters_


def test_cpm_objective_and_other_weightings_work():
    X, y = blobs()
    for params in (
        {"objective": "cpm"},
        {"weighting": "binary"},
        {"weighting": "snn"},
        # Mutual edges need a wider list: at the default 10 neighbours a few blob edges lose every mutual neighbour.
        {"weighting": "similarity", "symmetrize": "mutual", "n_neighbors": 15},
    ):
        estimator = LeidenClusterer(**params).fit(X)
        assert nmi(y, estimator.labels_) > 0.95, params


def test_ladder_is_sorted_holds_the_fitted_level_and_keeps_ids_stable():
    X, _ = blobs(n_per=50, n_groups=8, centre_scale=2.5)
    estimator = LeidenClusterer().fit(X)
    levels = estimator.ladder(X)
    sizes = [level.n_clusters for level in levels]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes) and len(levels) >= 3
    selected = [level for level in levels if level.extra.get("selected")]
    assert len(selected) == 1 and selected[0].n_clusters == estimator.n_clusters_
    np.testing.assert_array_equal(selected[0].labels, estimator.labels_)
    finer = levels[-1]
    # each fitted group keeps its id in the finer level for its largest piece
    for cluster in range(estimator.n_clusters_):
        pieces, counts = np.unique(finer.labels[estimator.labels_ == cluster], return_counts=True)
        assert cluster in pieces.tolist() or len(pieces) > 1


def test_finch_ladder_is_its_hierarchy():
    X, _ = blobs(n_per=40, n_groups=8, centre_scale=2.0)
    finch = FINCHClusterer().fit(X)
    levels = finch.ladder(X)
    assert len(levels) >= 2
    assert sorted(level.n_clusters for level in levels) == [level.n_clusters for level in levels]
    assert finch.levels_.shape[0] == len(X)


@pytest.mark.parametrize("algorithm_id", ["leiden", "finch"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_folders_give_one_group(algorithm_id, n):
    X = np.random.default_rng(0).normal(size=(n, 5)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimator = make_estimator(algorithm_id).fit(X)
    assert estimator.labels_.shape == (n,)
    assert (estimator.labels_ >= -1).all() and estimator.n_clusters_ >= 1


def test_all_identical_images_are_one_group():
    X = np.ones((12, 8), dtype=np.float32)
    for algorithm_id in ("leiden", "finch"):
        estimator = make_estimator(algorithm_id).fit(X)
        assert estimator.n_clusters_ == 1 and estimator.n_unsorted_ == 0, algorithm_id


def test_two_images_per_group_are_kept_in_pairs_not_dropped():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 12)) * 10
    X = np.repeat(centres, 2, axis=0) + rng.normal(scale=0.01, size=(20, 12))
    estimator = LeidenClusterer(n_neighbors=1, weighting="binary").fit(X)
    assert estimator.n_unsorted_ == 0
    assert estimator.n_clusters_ == 10
    assert all(np.unique(estimator.labels_[2 * i : 2 * i + 2]).size == 1 for i in range(10))


def test_one_huge_group_plus_singletons():
    rng = np.random.default_rng(0)
    big = rng.normal(size=(200, 10)).astype(np.float32)
    singles = (rng.normal(size=(3, 10)) * 100).astype(np.float32)
    estimator = LeidenClusterer(min_cluster_size=3).fit(np.vstack([big, singles]))
    assert estimator.labels_.shape == (203,)
    assert (estimator.labels_[-3:] == -1).all() or estimator.n_clusters_ >= 1
    assert estimator.n_unsorted_ <= 10


def test_collect_small_and_align_labels():
    labels = np.array([5, 5, 5, 2, 2, 9, 7, 7, 7, 7])
    collected = collect_small(labels, 2)
    assert collected.tolist() == [1, 1, 1, 2, 2, -1, 0, 0, 0, 0]  # largest first, singleton unsorted
    reference = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    finer = np.array([4, 4, 3, 8, 8, 8, 6, 6, 1, 1])
    aligned = align_labels(reference, finer)
    assert aligned[0] == 0 and aligned[3] == 1 and aligned[6] in (2,) or aligned[8] == 2
    assert len(set(aligned.tolist())) == 5
    assert (align_labels(reference, np.full(10, -1)) == -1).all()


def test_bad_parameters_are_refused_clearly():
    X, _ = blobs(n_per=10, n_groups=3)
    with pytest.raises(ValueError, match="resolution"):
        LeidenClusterer(resolution=0).fit(X)
    with pytest.raises(ValueError, match="objective"):
        LeidenClusterer(objective="nope").fit(X)
    with pytest.raises(ValueError, match="n_clusters"):
        LeidenClusterer(n_clusters=31).fit(X)
    with pytest.raises(ValueError, match="level"):
        FINCHClusterer(level=50).fit(X)
