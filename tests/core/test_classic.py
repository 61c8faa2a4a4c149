"""Behaviour of the classic estimators beyond the common checks: quality, edge cases, refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from imgcluster_gui.core.clustering.agglomerative import AgglomerativeClusterer
from imgcluster_gui.core.clustering.density import DBSCANClusterer, HDBSCANClusterer, estimate_eps
from imgcluster_gui.core.clustering.fast_kmeans import kmeans_plusplus
from imgcluster_gui.core.clustering.kmeans import FastKMeans, MiniBatchKMeansClusterer
from imgcluster_gui.core.clustering.mixture import GaussianMixtureClusterer
from imgcluster_gui.core.clustering.spectral import PowerIterationClusterer
from imgcluster_gui.core.graph import nearest_neighbors
from imgcluster_gui.core.progress import Cancelled
from tests.helpers import CancelAt, gaussian_blobs


def blobs(n=400, d=8, k=5, std=1.0, seed=0):
    """Blobs with centres in make_blobs' box [-10, 10] and standard deviation ``std``."""
    return gaussian_blobs(n, k, d, spread=std, centre_scale=10.0, centres="box", seed=seed)


# ------------------------------------------------------------------------------------- k-means
def test_fast_kmeans_inertia_matches_scikit_learn_on_a_mixture():
    # Overlapping mixture, more points than the training subsample (256 per centre) so the
    # subsample Lloyd + full-data polish path is the one measured.
    X, _ = blobs(n=6000, d=32, k=20, std=3.0, seed=3)
    ours = FastKMeans(n_clusters=20, n_init=3, random_state=0).fit(X)
    reference = KMeans(n_clusters=20, n_init=3, random_state=0).fit(X)
    assert ours.inertia_ <= reference.inertia_ * 1.01
    # inertia_ is the real sum of squared distances of the returned labels and centres
    recomputed = ((X - ours.cluster_centers_[ours.labels_]) ** 2).sum()
    assert ours.inertia_ == pytest.approx(recomputed, rel=1e-3)


def test_fast_kmeans_float64_input_and_predict():
    X, y = blobs()
    model = FastKMeans(n_clusters=5, random_state=1).fit(X.astype(np.float64))
    assert model.cluster_centers_.dtype == np.float32 and model.cluster_centers_.shape == (5, 8)
    np.testing.assert_array_equal(model.labels_, FastKMeans(n_clusters=5, random_state=1).fit(X).labels_)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    assert adjusted_rand_score(y, model.labels_) > 0.99
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :3])


def test_fast_kmeans_confidence_is_high_at_centres_and_low_between():
    X, _ = blobs(std=0.5)
    model = FastKMeans(n_clusters=5, random_state=0).fit(X)
    between = (model.cluster_centers_[0] + model.cluster_centers_[1]) / 2
    probe = np.vstack([model.cluster_centers_[0], between])
    refit = FastKMeans(n_clusters=5, random_state=0).fit(np.vstack([X, probe]))
    assert refit.confidence_[-2] > 0.9 and refit.confidence_[-1] < 0.2


def test_k_larger_than_n_and_bad_k_are_clear_errors():
    X, _ = blobs(n=10)
    with pytest.raises(ValueError, match="n_clusters=11 is more than the 10 samples"):
        FastKMeans(n_clusters=11).fit(X)
    with pytest.raises(ValueError, match="at least 1"):
        FastKMeans(n_clusters=0).fit(X)
    with pytest.raises(ValueError, match="whole number"):
        FastKMeans(n_clusters=2.5).fit(X)
    with pytest.raises(ValueError, match="n_init"):
        FastKMeans(n_clusters=2, n_init=0).fit(X)


def test_duplicate_points_warn_and_still_give_valid_labels():
    distinct = np.arange(15, dtype=np.float32).reshape(5, 3) * 10
    X = np.repeat(distinct, 20, axis=0)
    exact = FastKMeans(n_clusters=5, random_state=0).fit(X)
    assert adjusted_rand_score(np.repeat(np.arange(5), 20), exact.labels_) == 1.0
    with pytest.warns(UserWarning, match="5 distinct clusters instead of the 8"):
        too_many = FastKMeans(n_clusters=8, random_state=0).fit(X)
    assert too_many.labels_.shape == (100,) and too_many.labels_.max() < 8
    assert np.isfinite(too_many.cluster_centers_).all()


def test_kmeans_plusplus_picks_distinct_rows_even_on_duplicates():
    X = np.zeros((6, 2), dtype=np.float32)
    chosen = kmeans_plusplus(X, 4, np.random.default_rng(0))
    assert len(set(chosen.tolist())) == 4


def test_kmeans_cancel_between_restarts():
    X, _ = blobs()
    cancel = CancelAt(stage="k-means restart 2")
    with pytest.raises(Cancelled):
        FastKMeans(n_clusters=5, n_init=3, random_state=0).fit(X, progress=cancel)
    assert any("restart 1" in stage for stage in cancel.stages)
    assert cancel.calls_after_cancel == 0  # stopped there: restart 3 never started


def test_minibatch_kmeans_recovers_blobs():
    X, y = blobs(n=1000)
    model = MiniBatchKMeansClusterer(n_clusters=5, batch_size=256, random_state=0).fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.99 and model.cluster_centers_.shape == (5, 8)


# ------------------------------------------------------------------------------- agglomerative
def test_agglomerative_refuses_when_memory_would_explode():
    X, _ = blobs(n=300)
    with pytest.raises(ValueError, match=r"needs about .* GB .* use k-means"):
        AgglomerativeClusterer(n_clusters=3, memory_limit_gb=0.0001).fit(X)


def test_agglomerative_metric_rules():
    X, y = blobs()
    with pytest.raises(ValueError, match="ward linkage works only with the euclidean"):
        AgglomerativeClusterer(n_clusters=5, linkage="ward", metric="cosine").fit(X)
    model = AgglomerativeClusterer(n_clusters=5, linkage="average", metric="manhattan").fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.95
    assert not hasattr(model, "confidence_")  # centroid confidence is only meaningful for ward


# ---------------------------------------------------------------------------------- density
def _blobs_with_uniform_noise(seed=0):
    X, y = blobs(n=600, d=4, k=4, std=0.6, seed=seed)
    rng = np.random.default_rng(seed)
    low, high = X.min(axis=0) - 5, X.max(axis=0) + 5
    noise = rng.uniform(low, high, (30, X.shape[1])).astype(np.float32)
    return np.vstack([X, noise]), np.r_[y, np.full(30, -1)]


def test_dbscan_auto_eps_recovers_blobs_and_flags_noise():
    X, y = _blobs_with_uniform_noise()
    model = DBSCANClusterer(min_samples=5, random_state=0).fit(X)
    assert model.eps_ > 0
    blob = y >= 0
    found = model.labels_[blob] >= 0
    assert found.mean() > 0.95
    assert adjusted_rand_score(y[blob][found], model.labels_[blob][found]) > 0.99
    assert (model.labels_[~blob] == -1).mean() > 0.8
    explicit = DBSCANClusterer(eps=model.eps_, min_samples=5).fit(X)
    np.testing.assert_array_equal(explicit.labels_, model.labels_)


def test_estimate_eps_lies_between_within_and_between_cluster_distances():
    X, _ = blobs(n=400, d=4, k=4, std=0.5)
    eps = estimate_eps(X, min_samples=5)
    within = np.sqrt(nearest_neighbors(X, 4)[0][:, -1])
    assert np.median(within) <= eps < 5.0  # blob centres lie ~10+ apart in the [-10, 10] box


def test_dbscan_bad_eps_and_auto_with_other_metric():
    X, _ = blobs(n=50)
    with pytest.raises(ValueError, match="eps must be a positive number or 'auto'"):
        DBSCANClusterer(eps=-1.0).fit(X)
    with pytest.raises(ValueError, match="give eps explicitly"):
        DBSCANClusterer(metric="cosine").fit(X)


def test_hdbscan_marks_outliers_as_unassigned():
    X, y = blobs(n=300, d=4, k=3, std=0.5)
    outliers = np.array([[80, 80, 80, 80], [-80, 80, -80, 80], [80, -80, 80, -80]], dtype=np.float32)
    model = HDBSCANClusterer(min_cluster_size=10).fit(np.vstack([X, outliers]))
    assert (model.labels_[-3:] == -1).all()
    assert (model.confidence_[-3:] == 0).all()
    assert adjusted_rand_score(y, model.labels_[:-3]) > 0.95


# ---------------------------------------------------------------------------------------- GMM
def test_gmm_confidence_is_the_posterior_and_full_covariance_is_bounded():
    X, y = blobs()
    model = GaussianMixtureClusterer(n_clusters=5, random_state=0).fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.99
    assert ((model.confidence_ >= 1 / 5) & (model.confidence_ <= 1)).all()
    with pytest.raises(ValueError, match="covariance_type='diag'"):
        GaussianMixtureClusterer(n_clusters=100, covariance_type="full", memory_limit_gb=0.001).fit(
            np.random.default_rng(0).normal(size=(200, 300))
        )


# ---------------------------------------------------------------------------------------- PIC
def test_pic_separates_blobs_and_reports_its_own_cluster_count():
    X, y = blobs(n=400, d=8, k=4, std=0.8)
    natural = PowerIterationClusterer(n_clusters=None).fit(X)
    assert natural.n_found_clusters_ >= 4
    # PIC's clusters never straddle two blobs: each is pure
    for cluster in np.unique(natural.labels_):
        assert len(np.unique(y[natural.labels_ == cluster])) == 1
    merged = PowerIterationClusterer(n_clusters=4).fit(X)
    assert len(np.unique(merged.labels_)) == 4
    assert adjusted_rand_score(y, merged.labels_) > 0.99


def test_pic_granularity_and_merging_disconnected_groups():
    X, y = blobs(n=300, d=6, k=3, std=0.5)
    coarse = PowerIterationClusterer(n_neighbors=30).fit(X)
    fine = PowerIterationClusterer(n_neighbors=3, distribute_singletons=False).fit(X)
    assert coarse.n_found_clusters_ <= fine.n_found_clusters_
    # K below the number of graph components: the remaining groups merge by Ward on their means
    two = PowerIterationClusterer(n_clusters=2).fit(X)
    assert len(np.unique(two.labels_)) == 2
    with pytest.warns(UserWarning, match="fewer than the"):
        PowerIterationClusterer(n_clusters=250, n_neighbors=50).fit(X)


def test_nearest_neighbors_matches_brute_force():
    X, _ = blobs(n=120, d=5)
    full = ((X[:, None, :].astype(np.float64) - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(full, np.inf)
    expected = np.sort(full, axis=1)[:, :4]
    squared, indices = nearest_neighbors(X, 4, cache=False)  # the whole graph
    np.testing.assert_allclose(squared, expected, rtol=1e-3, atol=1e-3)
    assert (indices != np.arange(120)[:, None]).all()
    rows = np.array([3, 50, 119])
    squared_some, indices_some = nearest_neighbors(X, 4, queries=rows)  # a sample against all
    np.testing.assert_allclose(squared_some, expected[rows], rtol=1e-3, atol=1e-3)
    assert (indices_some != rows[:, None]).all()


def test_classic_estimators_refuse_tiny_inputs_clearly():
    with pytest.raises(ValueError, match="at least 2 samples"):
        DBSCANClusterer().fit(np.zeros((1, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single = FastKMeans(n_clusters=1).fit(np.ones((1, 3)))
    assert single.labels_.tolist() == [0] and single.confidence_.tolist() == [1.0]
