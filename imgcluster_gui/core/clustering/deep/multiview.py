"""Clustering features from several backbones at once (multi-view).

* :class:`ConcatKMeans` (CC): each view L2-normalised, concatenated, k-means++ with restarts.
* :class:`MultiViewEnsemble` (MVEC): several k-means per view, then a consensus of all of them.
* :class:`DMVC` (Guerin & Boots 2018): one autoencoder branch per view joined in a shared code,
  trained with the IDEC objective; its embedding can be clustered again (``embedding_``).

The views are given by ``view_slices`` (the column ranges each backbone occupies in ``X``; the
feature extraction returns them with the multi-view features), as a fit argument or a parameter.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ...choices import AUTO
from ..base import check_features, check_n_clusters
from ..registry import AlgorithmSpec, ParamSpec, register
from .common import (
    DeepClusterEstimator,
    EpochReporter,
    check_y,
    kmeans,
)
from .dec import IDEC


def parse_view_slices(view_slices: Any, n_features: int) -> list[slice]:
    """Normalise ``view_slices`` to a list of ``slice`` covering ``range(n_features)`` in order.

    Accepts slices, ``(start, stop)`` pairs or a dict ``{name: slice | (start, stop)}``.
    ``None`` means one view (the whole matrix).
    """
    if view_slices is None:
        return [slice(0, n_features)]
    if isinstance(view_slices, dict):
        view_slices = list(view_slices.values())
    result = []
    for item in view_slices:
        if isinstance(item, slice):
            start, stop = item.start or 0, n_features if item.stop is None else item.stop
        else:
            start, stop = (int(v) for v in item)
        result.append(slice(int(start), int(stop)))
    expected = 0
    for view in result:
        if view.start != expected or view.stop <= view.start:
            raise ValueError(f"view_slices must cover the feature columns in order without gaps; got {result}")
        expected = view.stop
    if expected != n_features:
        raise ValueError(f"view_slices end at column {expected} but X has {n_features} columns")
    return result


def _l2_views(X: np.ndarray, views: Sequence[slice]) -> np.ndarray:
    """Each view scaled to unit L2 norm per row, so every backbone weighs the same."""
    out = np.empty_like(X)
    for view in views:
        block = X[:, view]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[:, view] = block / np.maximum(norms, 1e-12)
    return out


def _gaussian_confidence(X: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Max of a soft assignment exp(-d^2 / 2 s^2), s^2 = mean squared distance to the own centre."""
    squared = (
        ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        if X.shape[0] * centers.shape[0] < 5e6
        else _chunked_squared_distances(X, centers)
    )
    own = squared[np.arange(X.shape[0]), labels]
    scale = 2.0 * max(float(own.mean()), 1e-12)
    logits = -(squared - squared.min(axis=1, keepdims=True)) / scale
    soft = np.exp(logits)
    soft /= soft.sum(axis=1, keepdims=True)
    return soft.max(axis=1).astype(np.float32)


def _chunked_squared_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    out = np.empty((X.shape[0], centers.shape[0]), np.float32)
    center_norms = (centers**2).sum(axis=1)
    for start in range(0, X.shape[0], 8192):
        block = X[start : start + 8192]
        out[start : start + 8192] = (block**2).sum(axis=1)[:, None] - 2 * block @ centers.T + center_norms[None, :]
    return np.maximum(out, 0.0)


class ConcatKMeans(DeepClusterEstimator):
    """CC: k-means++ (with restarts) on the concatenation of the L2-normalised views.

    Parameters
    ----------
    n_clusters : int
    n_init : int
        k-means restarts (the best inertia is kept).
    view_slices : optional
        Column ranges of the views (also accepted by ``fit``); ``None`` = one view.
    random_state : int or None
    """

    param_specs = (ParamSpec("n_init", "int", minimum=1, maximum=100, help="k-means restarts."),)

    def __init__(
        self, n_clusters: int = 8, n_init: int = 10, view_slices: Any = None, random_state: Optional[int] = 0
    ) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.view_slices = view_slices
        self.random_state = random_state

    def fit(self, X, y=None, progress=None, **fit_params) -> "ConcatKMeans":
        """Cluster ``X`` (n_samples, n_features); ``y`` is only reported (``history_``)."""
        views = parse_view_slices(fit_params.pop("view_slices", self.view_slices), np.asarray(X).shape[1])
        X = check_features(X, dtype=np.float32)
        check_n_clusters(self.n_clusters, X.shape[0], minimum=2)
        y = check_y(y, X.shape[0])
        self._start()
        reporter = EpochReporter(progress, 1)

        def body() -> None:
            reporter.heartbeat("k-means on the concatenated views")
            data = _l2_views(X, views)
            labels, centers = kmeans(data, self.n_clusters, self.random_state or 0, n_init=self.n_init)
            self._keep_result(labels, _gaussian_confidence(data, centers, labels), centers)
            self._record_epoch(0, None, labels, y)
            reporter.finish()

        return self._run(body)


class MultiViewEnsemble(DeepClusterEstimator):
    """MVEC: an ensemble of k-means runs on every view, joined by a consensus clustering.

    Each view gets ``runs_per_view`` k-means with different seeds; the consensus is k-means on
    the concatenated one-hot memberships, whose squared distances count the base clusterings
    that separate two samples (the co-association distance), without the N x N matrix.

    Parameters
    ----------
    n_clusters : int
    runs_per_view : int
    view_slices : optional
        Column ranges of the views (also accepted by ``fit``).
    random_state : int or None

    Attributes
    ----------
    confidence_ : ndarray of shape (n_samples,)
        Fraction of the base clusterings that agree with the consensus for the sample.
    base_labels_ : ndarray of shape (n_base, n_samples)
    """

    param_specs = (
        ParamSpec("runs_per_view", "int", minimum=1, maximum=100, help="k-means runs per backbone in the ensemble."),
    )

    def __init__(
        self, n_clusters: int = 8, runs_per_view: int = 5, view_slices: Any = None, random_state: Optional[int] = 0
    ) -> None:
        self.n_clusters = n_clusters
        self.runs_per_view = runs_per_view
        self.view_slices = view_slices
        self.random_state = random_state

    def fit(self, X, y=None, progress=None, **fit_params) -> "MultiViewEnsemble":
        """Cluster ``X`` (n_samples, n_features); ``y`` is only reported (``history_``)."""
        views = parse_view_slices(fit_params.pop("view_slices", self.view_slices), np.asarray(X).shape[1])
        X = check_features(X, dtype=np.float32)
        check_n_clusters(self.n_clusters, X.shape[0], minimum=2)
        y = check_y(y, X.shape[0])
        if int(self.runs_per_view) < 1:
            raise ValueError(f"runs_per_view must be >= 1, got {self.runs_per_view}")
        self._start()
        runs = int(self.runs_per_view)
        reporter = EpochReporter(progress, len(views) * runs + 1)
        seed = 0 if self.random_state is None else int(self.random_state)

        def body() -> None:
            base = []
            for v, view in enumerate(views):
                data = _l2_views(X[:, view], [slice(0, view.stop - view.start)])
                for run in range(runs):
                    labels, _ = kmeans(data, self.n_clusters, seed + 1000 * v + run, n_init=1)
                    base.append(labels)
                    reporter.step(f"k-means on view {v + 1}/{len(views)}, run {run + 1}/{runs}")
            self.base_labels_ = np.stack(base)
            onehot = np.zeros((X.shape[0], len(base) * self.n_clusters), np.float32)
            for b, labels in enumerate(base):
                onehot[np.arange(X.shape[0]), b * self.n_clusters + labels] = 1.0
            consensus, centers = kmeans(onehot, self.n_clusters, seed, n_init=10)
            self._keep_result(consensus, self._agreement(consensus))
            self._record_epoch(0, None, consensus, y, n_base=len(base))
            reporter.finish()

        return self._run(body)

    def _agreement(self, consensus: np.ndarray) -> np.ndarray:
        """Per sample, the share of base clusterings whose cluster maps (by majority) to its label."""
        agree = np.zeros(consensus.shape[0], np.float32)
        for labels in self.base_labels_:
            table = np.zeros((self.n_clusters, self.n_clusters), np.int64)
            np.add.at(table, (labels, consensus), 1)
            mapped = table.argmax(axis=1)[labels]
            agree += mapped == consensus
        return agree / len(self.base_labels_)


class DMVC(IDEC):
    """DMVC: IDEC over a multi-input autoencoder with one branch per backbone.

    Parameters are those of :class:`IDEC` plus ``view_slices`` (column ranges of the views in
    ``X``; also accepted by ``fit``). With one view it is IDEC.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        gamma: float = 0.1,
        latent_dim: int = 10,
        hidden: tuple[int, ...] = (500, 500, 2000),
        pretrain_epochs: Optional[int] = None,
        pretrain_steps: int = 2000,
        max_epochs: int = 150,
        update_interval: Optional[int] = None,
        tol: float = 0.001,
        batch_size: int = 256,
        lr: float = 1e-4,
        alpha: float = 1.0,
        init: str = AUTO,
        n_neighbors: int = 10,
        graph_weight: float = 0.1,
        device: str = AUTO,
        n_threads: Optional[int] = None,
        random_state: Optional[int] = 0,
        view_slices: Any = None,
    ) -> None:
        super().__init__(
            n_clusters=n_clusters,
            gamma=gamma,
            latent_dim=latent_dim,
            hidden=hidden,
            pretrain_epochs=pretrain_epochs,
            pretrain_steps=pretrain_steps,
            max_epochs=max_epochs,
            update_interval=update_interval,
            tol=tol,
            batch_size=batch_size,
            lr=lr,
            alpha=alpha,
            init=init,
            n_neighbors=n_neighbors,
            graph_weight=graph_weight,
            device=device,
            n_threads=n_threads,
            random_state=random_state,
        )
        self.view_slices = view_slices

    def _view_dims(self, n_features: int, view_slices: Any) -> list[int]:
        views = parse_view_slices(view_slices if view_slices is not None else self.view_slices, n_features)
        return [view.stop - view.start for view in views]


register(
    AlgorithmSpec(
        "cc",
        "CC (multi-backbone concatenation + k-means)",
        "k-means on the concatenation of each backbone's L2-normalised features.",
        ConcatKMeans,
        uses_k=True,
        supports_auto_k=False,
        category="deep",
        uses_views=True,
        order=50,
    )
)
register(
    AlgorithmSpec(
        "mvec",
        "MVEC (multi-backbone ensemble consensus)",
        "k-means runs on every backbone's features, joined by a consensus clustering.",
        MultiViewEnsemble,
        uses_k=True,
        supports_auto_k=False,
        category="deep",
        uses_views=True,
        order=60,
    )
)
register(
    AlgorithmSpec(
        "dmvc",
        "DMVC (deep multi-backbone, IDEC objective)",
        "One autoencoder branch per backbone joined in a shared embedding, trained with IDEC (Guerin & Boots 2018).",
        DMVC,
        uses_k=True,
        supports_auto_k=False,
        category="deep",
        uses_views=True,
        order=70,
    )
)
