"""The projection head trained on the corrections (core/finetune.py, issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.core.finetune import (
    ANCHOR_WEIGHT,
    finetune_and_recluster,
    train_projection_head,
    training_set,
)
from imgcluster_gui.core.progress import Cancelled
from imgcluster_gui.core.session import ClusterSession
from tests.helpers import CancelAt, gaussian_blobs


def _corrected_session() -> tuple[np.ndarray, np.ndarray, ClusterSession]:
    X, truth = gaussian_blobs(160, 4, 24, spread=2.0, seed=3)
    labels = truth.copy()
    labels[truth == 3] = 2
    session = ClusterSession([f"{i}.png" for i in range(truth.size)], labels, features=X)
    session.new_cluster(np.flatnonzero(truth == 3)[:3])
    session.move(np.flatnonzero(truth == 1)[:2], 1)  # no change: already there
    session.confirm(0)
    return X, truth, session


@pytest.mark.parametrize("loss", ["cross_entropy", "cross_entropy+centre"])
def test_head_learns_the_corrected_clusters(loss):
    X, truth = gaussian_blobs(120, 3, 20, spread=3.0, seed=1)
    head = train_projection_head(X, truth, dims=8, epochs=80, learning_rate=1e-2, loss=loss)
    Z = head.transform(X)
    assert Z.shape == (120, 8) and np.allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    assert head.losses[-1] < head.losses[0] * 0.5
    centres = np.stack([Z[truth == c].mean(0) for c in range(3)])
    assert (np.argmax(Z @ centres.T, axis=1) == truth).mean() > 0.95


def test_training_set_is_the_corrected_clusters_with_the_corrections_weighted_up():
    _, truth, session = _corrected_session()
    constraints = session.constraints()
    indices, targets, weights = training_set(session.labels, constraints)
    assert set(np.unique(targets).tolist()) == set(constraints.counts())
    assert set(constraints.anchors.tolist()) <= set(indices.tolist())
    anchored = np.isin(indices, constraints.anchors)
    assert (weights[anchored] == ANCHOR_WEIGHT).all() and (weights[~anchored] == 1).all()


def test_finetune_keeps_every_correction_and_needs_enough_of_them():
    X, truth, session = _corrected_session()
    constraints = session.constraints()
    outcome = finetune_and_recluster(X, session.labels, constraints)
    assert outcome.labels is not None and outcome.head is not None
    assert np.array_equal(outcome.labels[constraints.anchors], constraints.anchor_labels)
    new = int(session.labels[np.flatnonzero(truth == 3)[0]])
    assert np.mean(outcome.labels[truth == 3] == new) >= 3 / 40  # the corrected images at least
    assert np.mean(outcome.labels[truth == 0] == 0) > 0.9 and np.mean(outcome.labels[truth == 1] == 1) > 0.9

    few = ClusterSession(session.paths, session.original_labels, features=X)
    few.move([int(np.flatnonzero(truth == 3)[0])], 0)
    outcome = finetune_and_recluster(X, few.labels, few.constraints())
    assert outcome.labels is None and "at least 2" in outcome.reason


def test_training_stops_at_a_cancel():
    X, truth = gaussian_blobs(60, 2, 8, seed=0)
    cancel = CancelAt(after=3)
    with pytest.raises(Cancelled):
        train_projection_head(X, truth, dims=4, epochs=50, progress=cancel)
    assert cancel.calls_after_cancel == 0


def test_one_cluster_is_not_enough_to_train():
    X, _ = gaussian_blobs(20, 1, 4, seed=0)
    with pytest.raises(ValueError, match="two clusters"):
        train_projection_head(X, np.zeros(20, dtype=int))
