"""Deep clustering estimators (issue 4) on synthetic data: run, repeat under a seed, cancel, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score as nmi

from imgcluster_gui.core.clustering.deep import DEC, DMVC, IDEC, UCNN, ConcatKMeans, DeepCluster, MultiViewEnsemble
from imgcluster_gui.core.clustering.deep.multiview import parse_view_slices
from imgcluster_gui.core.progress import Cancelled
from tests.helpers import CancelAt, TinyCNN, gaussian_blobs

torch.set_num_threads(1)  # 1 thread: fast here, and no OpenMP spin-waits when the CPU is shared
FAST = dict(hidden=(64, 32), latent_dim=8, pretrain_steps=60, max_epochs=15, batch_size=64, device="cpu")


def blobs(n=240, d=24, k=4, seed=0, spread=1.0):
    """``k`` blobs, centres ~N(0, 3^2) per axis, standard deviation ``spread``."""
    return gaussian_blobs(n, k, d, spread=spread, centre_scale=3.0, seed=seed)


def two_views(n=240, k=4, seed=0):
    """View A separates clusters {0,1} from {2,3}; view B the other pairing: only both views together tell all 4."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    a = np.where(y[:, None] < 2, 2.0, -2.0) * np.ones((n, 10)) + rng.normal(0, 1.0, (n, 10))
    b = np.where(y[:, None] % 2 == 0, 2.0, -2.0) * np.ones((n, 12)) + rng.normal(0, 1.0, (n, 12))
    return np.hstack([a, b]).astype(np.float32), y, [(0, 10), (10, 22)]


@pytest.mark.parametrize("cls", [IDEC, DEC])
def test_autoencoder_methods_match_kmeans_and_report_history(cls):
    X, y = blobs()
    model = cls(n_clusters=4, **FAST).fit(X, y)
    kmeans_nmi = nmi(y, KMeans(4, n_init=10, random_state=0).fit_predict(X))
    assert model.labels_.shape == (240,) and model.partial_ is False
    assert nmi(y, model.labels_) >= kmeans_nmi - 0.02
    assert model.embedding_.shape == (240, 8) and model.cluster_centers_.shape == (4, 8)
    assert ((model.confidence_ > 0) & (model.confidence_ <= 1)).all()
    cluster_rows = [r for r in model.history_ if r["phase"] == "cluster"]
    assert cluster_rows[0]["nmi_true"] is not None and "delta_label" in cluster_rows[-1]
    assert any(r["phase"] == "pretrain" for r in model.history_)


def wide_and_tight(n=240, seed=0, d=10, gap=1.5):
    """One wide cluster far away and three tight, close ones: k-means (equal-variance) splits the wide
    cluster and merges tight ones; the learned embedding + self-training must undo part of that."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    centres = np.zeros((4, d))
    centres[1, 0], centres[2, 1], centres[3, 0] = gap, gap, -8.0
    spread = np.where(y[:, None] == 3, 2.5, 0.5)
    return (centres[y] + rng.normal(0, 1, (n, d)) * spread).astype(np.float32), y


@pytest.mark.parametrize("cls", [IDEC, DEC])
def test_beats_kmeans_on_the_same_features_where_kmeans_splits_a_wide_cluster(cls):
    X, y = wide_and_tight()
    kmeans_nmi = nmi(y, KMeans(4, n_init=10, random_state=0).fit_predict(X))
    model = cls(n_clusters=4, **FAST).fit(X, y)
    assert nmi(y, model.labels_) > kmeans_nmi + 0.03


def rings(n=240, d=10, k=4, seed=0, radius=3.0, spread=0.5, noise=0.05):
    """k circles of radius 3 in random planes, centres only ~0.5 apart (like COIL-20's turntable
    poses): k-means on these features cuts across the rings, while each ring is one chain of
    nearest neighbours that the neighbourhood term keeps together."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(0, spread, (k, d))
    X = np.zeros((n, d))
    for c in range(k):
        plane, _ = np.linalg.qr(rng.normal(size=(d, 2)))
        angle = rng.uniform(0, 2 * np.pi, (y == c).sum())
        X[y == c] = centres[c] + radius * (np.cos(angle)[:, None] * plane[:, 0] + np.sin(angle)[:, None] * plane[:, 1])
    return (X + rng.normal(0, noise, X.shape)).astype(np.float32), y


RING_FIT = {**FAST, "pretrain_steps": 1000}


@pytest.mark.parametrize("cls", [IDEC, DMVC])
def test_neighbourhood_term_beats_kmeans_where_clusters_are_rings(cls):
    X, y = rings()
    kmeans_nmi = nmi(y, KMeans(4, n_init=10, random_state=0).fit_predict(X))
    model = cls(n_clusters=4, **RING_FIT).fit(X, y)
    assert kmeans_nmi < 0.3  # the case is built so that k-means alone cannot solve it
    assert nmi(y, model.labels_) > kmeans_nmi + 0.25
    assert model.n_neighbors_ == 10


def test_without_the_neighbourhood_term_idec_is_the_papers_objective_and_loses_the_rings():
    X, y = rings()
    plain = IDEC(n_clusters=4, n_neighbors=0, **RING_FIT).fit(X, y)
    with_graph = IDEC(n_clusters=4, **RING_FIT).fit(X, y)
    assert plain.n_neighbors_ == 0
    assert nmi(y, with_graph.labels_) > nmi(y, plain.labels_) + 0.2


def test_neighbour_embedding_loss_prefers_neighbours_close_and_strangers_apart():
    from imgcluster_gui.core.clustering.deep.dec import neighbour_embedding_loss

    z = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    close = neighbour_embedding_loss(z, z + 0.1, negatives=2)
    far = neighbour_embedding_loss(z, z + 3.0, negatives=2)
    crowded = neighbour_embedding_loss(z * 0.01, z * 0.01, negatives=2)
    assert close < far and close < crowded


@pytest.mark.parametrize("cls", [IDEC, DEC, DMVC])
def test_autoencoder_methods_are_reproducible_under_a_seed(cls):
    X, _, views = two_views()
    first = cls(n_clusters=4, random_state=3, **FAST).fit(X, view_slices=views)
    second = cls(n_clusters=4, random_state=3, **FAST).fit(X, view_slices=views)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_allclose(first.embedding_, second.embedding_, rtol=1e-5, atol=1e-6)


def test_ground_truth_is_only_reported_never_used():
    X, y = blobs(spread=2.0)
    with_y = IDEC(n_clusters=4, **FAST).fit(X, y)
    without = IDEC(n_clusters=4, **FAST).fit(X)
    np.testing.assert_array_equal(with_y.labels_, without.labels_)
    assert "nmi_true" not in without.history_[-1]


@pytest.mark.parametrize("cls", [IDEC, DEC, DMVC])
def test_cancel_keeps_last_complete_epoch_and_reraises(cls):
    X, _, views = two_views()
    fit = {**FAST, "tol": 0.0}  # tol 0: never converges, so only the cancel ends the training
    model = cls(n_clusters=4, **fit)
    # 240 samples in batches of 64: 4 clustering batches an epoch; the 9th is the first of epoch 3.
    cancel = CancelAt(after=8, stage="Clustering")
    with pytest.raises(Cancelled):
        model.fit(X, progress=cancel, view_slices=views)
    assert cancel.cancelled_stage == f"Clustering, epoch 3/{FAST['max_epochs']}"
    assert cancel.calls_after_cancel == 0  # stopped at the progress call that raised, not later
    assert model.partial_ is True
    completed = [r["epoch"] for r in model.history_ if r.get("phase") == "cluster"]
    assert completed == [0, 1, 2]  # the initial assignment and the two complete epochs, nothing after
    # ...and the labels kept are epoch 2's: those of the same fit stopped there on its own.
    two_epochs = cls(n_clusters=4, **{**fit, "max_epochs": 2}).fit(X, view_slices=views)
    np.testing.assert_array_equal(model.labels_, two_epochs.labels_)


@pytest.mark.parametrize("cls", [ConcatKMeans, MultiViewEnsemble])
def test_multiview_kmeans_methods_cancel_cleanly(cls):
    X, _, views = two_views()
    model = cls(n_clusters=4)
    cancel = CancelAt(after=0)
    with pytest.raises(Cancelled):
        model.fit(X, view_slices=views, progress=cancel)
    assert cancel.calls == 1 and cancel.calls_after_cancel == 0  # stopped at the very first progress call
    assert model.partial_ is True and not hasattr(model, "labels_")
    model.fit(X, view_slices=views)  # the same instance fits normally afterwards
    assert model.partial_ is False and model.labels_.shape == (240,)


def test_cancel_during_pretraining_leaves_no_labels():
    X, _ = blobs()
    model = IDEC(n_clusters=4, **FAST)
    cancel = CancelAt(after=1, stage="Pre-training")  # the second pre-training batch
    with pytest.raises(Cancelled):
        model.fit(X, progress=cancel)
    assert cancel.cancelled_stage.startswith("Pre-training autoencoder, epoch 1/")
    assert cancel.calls_after_cancel == 0
    assert model.partial_ is True and not hasattr(model, "labels_")
    assert model.history_ == []  # not even the first pre-training epoch completed


def test_idec_save_and_load_predicts_the_same(tmp_path):
    X, _ = blobs()
    model = IDEC(n_clusters=4, **FAST).fit(X)
    loaded = IDEC.load(model.save(tmp_path / "idec.pt"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.transform(X[:5]), model.embedding_[:5], rtol=1e-4, atol=1e-5)


def test_bad_input_gives_clear_messages():
    X, _ = blobs(n=20)
    with pytest.raises(ValueError, match="n_clusters"):
        IDEC(n_clusters=30, **FAST).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        IDEC(n_clusters=2, **FAST).fit(np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="init"):
        IDEC(n_clusters=2, init="nope", **FAST).fit(X)
    with pytest.raises(ValueError, match="n_neighbors"):
        IDEC(n_clusters=2, n_neighbors=-1, **FAST).fit(X)
    with pytest.raises(ValueError, match="cover"):
        parse_view_slices([(0, 5), (6, 24)], 24)
    with pytest.raises(ValueError, match="columns"):
        parse_view_slices([(0, 5)], 24)


@pytest.mark.parametrize("cls,kwargs", [(ConcatKMeans, {}), (MultiViewEnsemble, {}), (DMVC, FAST)])
def test_multiview_methods_use_both_views(cls, kwargs):
    X, y, views = two_views()
    model = cls(n_clusters=4, **kwargs).fit(X, y, view_slices=views)
    single_view = nmi(y, KMeans(4, n_init=10, random_state=0).fit_predict(X[:, :10]))
    assert nmi(y, model.labels_) > single_view + 0.2  # one view alone can only find 2 groups
    assert ((model.confidence_ >= 0) & (model.confidence_ <= 1)).all()
    again = cls(n_clusters=4, **kwargs).fit(X, view_slices=views)
    np.testing.assert_array_equal(again.labels_, model.labels_)


@pytest.mark.parametrize("cls,kwargs", [(ConcatKMeans, {}), (MultiViewEnsemble, {}), (DMVC, FAST)])
def test_multiview_methods_beat_kmeans_on_the_same_features_when_one_view_dominates(cls, kwargs):
    """View A has 50x the scale of view B: k-means on the concatenation sees only A's two groups."""
    X, y, views = two_views()
    X = X.copy()
    X[:, :10] *= 50.0
    kmeans_nmi = nmi(y, KMeans(4, n_init=10, random_state=0).fit_predict(X))
    model = cls(n_clusters=4, **kwargs).fit(X, y, view_slices=views)
    assert nmi(y, model.labels_) > kmeans_nmi + 0.2


def test_dmvc_takes_view_slices_as_a_parameter_too():
    X, y, views = two_views()
    model = DMVC(n_clusters=4, view_slices=views, **FAST).fit(X)
    assert model.view_dims_ == [10, 12] and model.embedding_.shape == (240, 8)


# ------------------------------------------------------------------------------------ image methods
# TinyCNN (tests.helpers): a 2-layer CNN giving (N, 16) features, standing in for a backbone so CPU tests stay fast.
def colour_images(folder, n_per_class=8):
    """Red-ish and blue-ish noisy squares: two obvious classes."""
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for label, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
        for i in range(n_per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            path = folder / f"c{label}_{i}.png"
            Image.fromarray(pixels).save(path)
            paths.append(path)
            labels.append(label)
    return paths, np.array(labels)


IMAGE_FAST = dict(input_size=32, batch_size=8, device="cpu")


@pytest.mark.parametrize("cls,kwargs", [(DeepCluster, dict(epochs=2, pca_dims=8)), (UCNN, dict(epochs=2))])
def test_image_methods_run_repeat_and_cancel(tmp_path, cls, kwargs):
    paths, y = colour_images(tmp_path)
    model = cls(n_clusters=2, **kwargs, **IMAGE_FAST).fit(None, y, paths=paths, backbone=TinyCNN())
    assert nmi(y, model.labels_) > 0.9
    assert model.history_[0]["nmi_true"] is not None and model.history_[1]["nmi_change"] is not None
    again = cls(n_clusters=2, **kwargs, **IMAGE_FAST).fit(None, paths=paths, backbone=TinyCNN())
    np.testing.assert_array_equal(again.labels_, model.labels_)
    saved = torch.load(model.save(tmp_path / "net.pt"), weights_only=False)
    assert saved["network"] and saved["method"] == cls.__name__

    # Cancelled on the first progress call of the second (last) epoch: epoch 2 never completes.
    cancelled = cls(n_clusters=2, **kwargs, **IMAGE_FAST)
    cancel = CancelAt(stage="Epoch 2/2")
    with pytest.raises(Cancelled):
        cancelled.fit(None, y, paths=paths, backbone=TinyCNN(), progress=cancel)
    assert cancel.calls_after_cancel == 0  # stopped at the progress call that raised, not later
    assert cancelled.partial_ is True and cancelled.labels_.shape == (16,)
    kept = [row["epoch"] for row in cancelled.history_]
    assert kept and kept[-1] == 1  # the last complete epoch is the result: the same clusters as the full fit's
    assert _clusters_of(cancelled.history_) == _clusters_of(model.history_)[: len(kept)]


def _clusters_of(history):
    """History rows without the loss (DeepCluster writes a row's loss after the training pass that follows it)."""
    return [{key: value for key, value in row.items() if key != "loss"} for row in history]


def test_image_methods_refuse_missing_or_misaligned_paths(tmp_path):
    paths, _ = colour_images(tmp_path, 2)
    with pytest.raises(ValueError, match="paths"):
        DeepCluster(n_clusters=2, **IMAGE_FAST).fit(None, backbone=TinyCNN())
    with pytest.raises(ValueError, match="aligned"):
        UCNN(n_clusters=2, **IMAGE_FAST).fit(np.zeros((3, 4)), paths=paths, backbone=TinyCNN())


def test_ucnn_memory_is_bounded_by_the_batch_not_the_number_of_images(tmp_path):
    sizes = {}
    for n_per_class in (6, 24):
        folder = tmp_path / str(n_per_class)
        folder.mkdir()
        paths, _ = colour_images(folder, n_per_class)
        model = UCNN(n_clusters=2, epochs=1, init_size=8, augment=False, **IMAGE_FAST)
        model.fit(None, paths=paths, backbone=TinyCNN())
        sizes[len(paths)] = model.kept_state_nbytes()
    small, large = sizes[12], sizes[48]
    assert small == large and set(small) == {"centroids", "counts"}
    assert small["centroids"] == 2 * 16 * 4


def test_ucnn_drift_compensation_switch_changes_the_centroid_updates(tmp_path):
    paths, _ = colour_images(tmp_path)
    on = UCNN(n_clusters=2, epochs=1, **IMAGE_FAST).fit(None, paths=paths, backbone=TinyCNN())
    off = UCNN(n_clusters=2, epochs=1, drift_compensation=False, **IMAGE_FAST).fit(
        None, paths=paths, backbone=TinyCNN()
    )
    assert not np.allclose(on.cluster_centers_, off.cluster_centers_)


@pytest.mark.parametrize("cls", [IDEC, DEC])
def test_a_collapsing_fit_stops_and_keeps_the_last_epoch_before_it(cls):
    """A learning rate 500x the default makes self-training merge clusters away (seen on COIL-20 at
    lr 1e-3, gamma 1: NMI 0.0). The fit stops there and keeps the epoch before the collapse."""
    X, _ = blobs(n=240, d=24, k=8, spread=2.5)
    model = cls(n_clusters=8, lr=0.05, gamma=1.0, n_neighbors=0, **FAST).fit(X)
    assert model.collapsed_ is True and model.partial_ is False
    assert len(np.unique(model.labels_)) >= 4  # what is kept still uses most clusters
    cluster_epochs = [r["epoch"] for r in model.history_ if r["phase"] == "cluster"]
    assert model.collapsed_epoch_ == cluster_epochs[-1] + 1
    steady = cls(n_clusters=8, n_neighbors=0, **FAST).fit(X)
    assert steady.collapsed_ is False
