"""The review order: images whose neighbours lie in other clusters come first."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.core.graph import build_knn_graph
from imgcluster_gui.core.review import misplacement_scores, review_order


def _two_blobs_with_a_stray(seed: int = 0):
    """Blobs 0 and 1; image 0 lies in blob 1 but is labelled 0, image 1 is an outlier of blob 0 (right cluster)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    truth = np.repeat([0, 1], 30)
    X = centres[truth] + rng.normal(scale=0.3, size=(60, 3))
    X[0] = centres[1] + rng.normal(scale=0.3, size=3)  # a blob-1 image ...
    labels = truth.copy()  # ... labelled 0: misplaced
    X[1] = centres[0] * 1.6 + np.array([0.0, 0.0, 2.5])  # far from blob 0's centre, nearest to blob 0
    return X, labels


def test_a_misplaced_image_scores_high_and_a_core_image_zero():
    X, labels = _two_blobs_with_a_stray()
    graph = build_knn_graph(X, n_neighbors=8, metric="euclidean", cache=False)
    scores = misplacement_scores(graph, labels)
    assert scores.shape == (60,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores[0] > 0.8  # its neighbours are blob 1's
    assert np.median(scores[2:30]) == pytest.approx(0.0, abs=1e-9)
    assert scores[1] < 0.5  # an outlier, but of its own cluster


def test_review_order_puts_the_misplaced_before_the_outlier_and_outliers_break_ties():
    X, labels = _two_blobs_with_a_stray()
    graph = build_knn_graph(X, n_neighbors=8, metric="euclidean", cache=False)
    scores = misplacement_scores(graph, labels)
    cluster = np.flatnonzero(labels == 0)[::-1]  # any order in
    order = review_order(cluster, scores, X)
    assert sorted(order.tolist()) == sorted(cluster.tolist())
    assert order[0] == 0
    # Among the images with every neighbour inside, the farthest from the centre comes first.
    tied = [i for i in order if scores[i] == 0.0]
    centre = X[cluster].mean(axis=0)
    distances = [np.linalg.norm(X[i] - centre) for i in tied]
    assert distances == sorted(distances, reverse=True)
    # Without features the ties keep the index order.
    plain = review_order(cluster, np.zeros(60))
    assert plain.tolist() == sorted(cluster.tolist())


def test_scores_follow_the_labels_and_reject_a_graph_of_other_images():
    X, labels = _two_blobs_with_a_stray()
    graph = build_knn_graph(X, n_neighbors=8, metric="euclidean", cache=False)
    fixed = labels.copy()
    fixed[0] = 1  # the person moved it where it belongs
    assert misplacement_scores(graph, fixed)[0] < 0.2
    with pytest.raises(ValueError, match="60 images for 59 labels"):
        misplacement_scores(graph, labels[:59])
