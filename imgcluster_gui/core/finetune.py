"""Fine-tuning on a person's corrections: a small projection head over the existing features.

With enough corrected images (:meth:`Constraints.enough_to_train`: >= 2 anchored images in >= 2
clusters), :func:`train_projection_head` trains ``Linear(D -> 256)`` followed by a cosine classifier
over the clusters with cross-entropy (optionally plus the centre-distance loss: the squared distance
of each projected feature to its cluster's centre). The training set is every image of a corrected
cluster, the corrected (anchored) images weighted :data:`ANCHOR_WEIGHT` times an automatic one, so
the corrections move the boundaries. :func:`finetune_and_recluster` then re-clusters in the projected
space keeping the corrections (:func:`.constraints.recluster`).

Only the head is trained, on the features already extracted: no image is decoded again, and a few
hundred epochs over a few thousand 1280-d rows take seconds on a CPU, so the app stays usable. (The
issue's option of fine-tuning the backbone's last block needs a re-extraction and a GPU; it is not
built here.) Every epoch is a cancel point of the ``progress`` it is given (``core/progress.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .constraints import UNASSIGNED, Constraints, recluster
from .progress import ProgressLike, ensure

#: How much more a corrected image counts in the loss than an image the clustering placed.
ANCHOR_WEIGHT = 5.0
LOSSES = ("cross_entropy", "cross_entropy+centre")


@dataclass
class ProjectionHead:
    """A trained ``Linear(D -> dims)``: :meth:`transform` projects features (rows L2-normalised).

    Attributes
    ----------
    weight : ndarray of float32, shape (D, dims)
    bias : ndarray of float32, shape (dims,)
    losses : list of float
        The training loss of each epoch.
    """

    weight: np.ndarray
    bias: np.ndarray
    losses: list[float]

    def transform(self, features: np.ndarray) -> np.ndarray:
        """The projected, L2-normalised features, shape (N, dims) float32."""
        Z = np.asarray(features, dtype=np.float32) @ self.weight + self.bias
        return (Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def training_set(labels: np.ndarray, constraints: Constraints) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indices, targets, weights)``: every image of a cluster holding a correction, anchors weighted up."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    labels[constraints.anchors] = constraints.anchor_labels
    corrected = [c for c in constraints.counts()]
    indices = np.flatnonzero(np.isin(labels, corrected) & (labels != UNASSIGNED)).astype(np.int64)
    weights = np.ones(indices.size, dtype=np.float32)
    anchored = np.zeros(labels.size, dtype=bool)
    anchored[constraints.anchors] = True
    weights[anchored[indices]] = ANCHOR_WEIGHT
    return indices, labels[indices], weights


def train_projection_head(
    features: np.ndarray,
    targets: np.ndarray,
    sample_weight: Optional[np.ndarray] = None,
    dims: int = 256,
    epochs: int = 150,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    loss: str = "cross_entropy",
    centre_weight: float = 0.1,
    temperature: float = 0.1,
    device: str = "cpu",
    random_state: int = 0,
    progress: ProgressLike = None,
) -> ProjectionHead:
    """Train the projection head on ``features`` (N, D) with class ``targets`` (N,).

    Parameters
    ----------
    features : ndarray of shape (N, D)
    targets : array-like of int, shape (N,)
        Any ids (at least two distinct).
    sample_weight : ndarray of shape (N,), optional
    dims : int
        Width of the projection.
    epochs : int
        Full-batch Adam steps.
    learning_rate, weight_decay : float
    loss : {'cross_entropy', 'cross_entropy+centre'}
        The second adds ``centre_weight`` x the mean squared distance to the class centre.
    temperature : float
        Of the cosine classifier (logits = cos / temperature).
    device : str
        ``'cpu'`` (default: leaves a GPU alone) or any torch device.
    random_state : int
    progress : callable, optional
        Cancel point every epoch.
    """
    import torch

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    progress = ensure(progress)
    classes, codes = np.unique(np.asarray(targets), return_inverse=True)
    if classes.size < 2:
        raise ValueError("training a projection head needs images of at least two clusters")
    torch.manual_seed(int(random_state))
    X = torch.as_tensor(np.asarray(features, dtype=np.float32), device=device)
    y = torch.as_tensor(codes, dtype=torch.long, device=device)
    w = torch.as_tensor(
        np.ones(len(codes), dtype=np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32),
        device=device,
    )
    projection = torch.nn.Linear(X.shape[1], int(dims)).to(device)
    prototypes = torch.nn.Parameter(torch.randn(classes.size, int(dims), device=device) * 0.01)
    optimiser = torch.optim.Adam(
        [*projection.parameters(), prototypes], lr=float(learning_rate), weight_decay=float(weight_decay)
    )
    losses: list[float] = []
    for epoch in range(int(epochs)):
        optimiser.zero_grad()
        Z = torch.nn.functional.normalize(projection(X), dim=1)
        logits = Z @ torch.nn.functional.normalize(prototypes, dim=1).T / float(temperature)
        value = (torch.nn.functional.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum()
        if loss == "cross_entropy+centre":
            one_hot = torch.nn.functional.one_hot(y, classes.size).float() * w[:, None]
            centres = (one_hot.T @ Z) / one_hot.sum(0).clamp_min(1e-6)[:, None]
            value = value + float(centre_weight) * (((Z - centres[y]) ** 2).sum(1) * w).sum() / w.sum()
        value.backward()
        optimiser.step()
        losses.append(float(value.detach()))
        progress((epoch + 1) / epochs, "Training the projection head on the corrections")
    return ProjectionHead(
        projection.weight.detach().cpu().numpy().T.astype(np.float32).copy(),
        projection.bias.detach().cpu().numpy().astype(np.float32).copy(),
        losses,
    )


@dataclass
class FinetuneOutcome:
    """What :func:`finetune_and_recluster` returns: ``labels`` None when there were too few corrections."""

    labels: Optional[np.ndarray]
    head: Optional[ProjectionHead]
    reason: str = ""


def finetune_and_recluster(
    features: np.ndarray,
    labels: np.ndarray,
    constraints: Constraints,
    loss: str = "cross_entropy",
    method: str = "propagation",
    per_cluster: int = 2,
    min_clusters: int = 2,
    device: str = "cpu",
    random_state: int = 0,
    progress: ProgressLike = None,
) -> FinetuneOutcome:
    """Train the head on the corrected clusters, then re-cluster in its space keeping the corrections.

    Returns a :class:`FinetuneOutcome` whose ``labels`` are None (with a ``reason``) below
    ``per_cluster`` corrected images in ``min_clusters`` clusters.
    """
    progress = ensure(progress)
    if not constraints.enough_to_train(per_cluster, min_clusters):
        return FinetuneOutcome(
            None, None, f"fine-tuning needs at least {per_cluster} corrected images in {min_clusters} clusters"
        )
    X = np.asarray(features, dtype=np.float32)
    indices, targets, weights = training_set(labels, constraints)
    head = train_projection_head(
        X[indices], targets, weights, loss=loss, device=device, random_state=random_state, progress=progress.sub(0, 0.7)
    )
    new_labels = recluster(
        head.transform(X), labels, constraints, method=method, random_state=random_state, progress=progress.sub(0.7, 1)
    )
    return FinetuneOutcome(new_labels, head)
