"""k-means: the project's fast k-means (:mod:`.fast_kmeans`) and scikit-learn's mini-batch k-means.

``labels_`` are int64; both set ``cluster_centers_`` and ``confidence_`` (``1 - d1/d2`` from the
distances to the nearest and second-nearest centre).

Importing this module registers: kmeans, minibatch_kmeans.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..progress import ProgressCallback, check, ensure
from .base import (
    RESTARTS_HELP,
    ProgressClusterer,
    check_features,
    check_n_clusters,
    check_positive_int,
    seed_from,
    warn_if_fewer_clusters,
)
from .fast_kmeans import assign, centroid_confidence, fast_kmeans
from .registry import AlgorithmSpec, ParamSpec, register


class FastKMeans(ProgressClusterer):
    """k-means with k-means++-quality seeding on a subsample and Lloyd iterations by BLAS.

    See :mod:`.fast_kmeans` for the method. Equal in inertia to scikit-learn's k-means++ on
    well-separated data, at a fraction of its time on large sets.

    Parameters
    ----------
    n_clusters : int
        Number of clusters K (``1 <= K <= n_samples``).
    n_init : int
        Restarts; the lowest inertia is kept.
    max_iter : int
        Upper bound on Lloyd iterations (per phase).
    tol : float
        Stop when an iteration lowers the inertia by less than this fraction.
    random_state : int, RandomState or None
        Seed; an int makes the result reproducible.
    train_points_per_centroid, seed_points_per_centroid : int
        Subsample sizes per cluster for the Lloyd and the seeding phases.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,), int64
    cluster_centers_ : ndarray of shape (n_clusters, n_features), float32
    confidence_ : ndarray of shape (n_samples,), float32
        ``1 - d1/d2`` from the distances to the nearest and second-nearest centre.
    inertia_ : float
    n_iter_ : int
    """

    param_specs = (
        ParamSpec("n_init", "int", minimum=1, maximum=100, help=RESTARTS_HELP),
        ParamSpec("max_iter", "int", minimum=1, maximum=10000, help="Upper bound on Lloyd iterations."),
    )

    def __init__(
        self,
        n_clusters: int = 8,
        n_init: int = 3,
        max_iter: int = 100,
        tol: float = 1e-4,
        random_state: Any = None,
        train_points_per_centroid: int = 256,
        seed_points_per_centroid: int = 32,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.train_points_per_centroid = train_points_per_centroid
        self.seed_points_per_centroid = seed_points_per_centroid

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "FastKMeans":
        """Cluster ``X`` of shape (n_samples, n_features); float64 input is converted to float32."""
        data = check_features(X, min_samples=1, dtype=np.float32)
        n_clusters = check_n_clusters(self.n_clusters, data.shape[0])
        fit = fast_kmeans(
            data,
            n_clusters,
            n_init=check_positive_int(self.n_init, "n_init"),
            max_iter=check_positive_int(self.max_iter, "max_iter"),
            tol=float(self.tol),
            random_state=seed_from(self.random_state),
            train_points_per_centroid=check_positive_int(self.train_points_per_centroid, "train_points_per_centroid"),
            seed_points_per_centroid=check_positive_int(self.seed_points_per_centroid, "seed_points_per_centroid"),
            progress=progress,
        )
        self.labels_ = fit.labels
        self.cluster_centers_ = fit.centers
        self.inertia_ = fit.inertia
        self.n_iter_ = fit.n_iter
        self.confidence_ = centroid_confidence(fit.nearest_sq, fit.second_sq)
        warn_if_fewer_clusters(self.labels_, n_clusters, "k-means")
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest learned centre for each row of ``X``, shape (n_samples,)."""
        data = check_features(X, min_samples=1, dtype=np.float32)
        if data.shape[1] != self.cluster_centers_.shape[1]:
            raise ValueError(
                f"X has {data.shape[1]} features, the model was fitted on {self.cluster_centers_.shape[1]}"
            )
        return assign(data, self.cluster_centers_)[0]


class MiniBatchKMeansClusterer(ProgressClusterer):
    """scikit-learn's MiniBatchKMeans with restarts run here (progress and cancel between them).

    Parameters
    ----------
    n_clusters : int
    batch_size : int
        Samples per mini-batch.
    n_init : int
        Restarts; the lowest inertia on all samples is kept.
    max_iter : int
        Passes over the data.
    random_state : int, RandomState or None

    Attributes
    ----------
    labels_, cluster_centers_, confidence_ (``1 - d1/d2``), inertia_
    """

    param_specs = (
        ParamSpec("batch_size", "int", minimum=16, maximum=1_000_000, help="Samples per mini-batch."),
        ParamSpec("n_init", "int", minimum=1, maximum=100, help=RESTARTS_HELP),
        ParamSpec("max_iter", "int", minimum=1, maximum=10000, help="Passes over the data."),
    )

    def __init__(
        self,
        n_clusters: int = 8,
        batch_size: int = 1024,
        n_init: int = 3,
        max_iter: int = 100,
        random_state: Any = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.batch_size = batch_size
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "MiniBatchKMeansClusterer":
        from sklearn.cluster import MiniBatchKMeans

        report = ensure(progress)
        data = check_features(X, min_samples=1, dtype=np.float32)
        n_clusters = check_n_clusters(self.n_clusters, data.shape[0])
        n_init = check_positive_int(self.n_init, "n_init")
        rng = np.random.default_rng(seed_from(self.random_state))
        best = None
        for restart in range(n_init):
            report(restart / n_init, f"mini-batch k-means restart {restart + 1}/{n_init}")
            model = MiniBatchKMeans(
                n_clusters=n_clusters,
                batch_size=check_positive_int(self.batch_size, "batch_size"),
                max_iter=check_positive_int(self.max_iter, "max_iter"),
                n_init=1,
                random_state=int(rng.integers(np.iinfo(np.int32).max)),
            ).fit(data)
            if best is None or model.inertia_ < best.inertia_:
                best = model
        check(progress, "assigning points")
        assert best is not None, "n_init >= 1 (checked above): at least one restart ran"
        centers = np.ascontiguousarray(best.cluster_centers_, dtype=np.float32)
        labels, nearest_sq, second_sq = assign(data, centers, second=True)
        self.labels_ = labels
        self.cluster_centers_ = centers
        self.inertia_ = float(nearest_sq.sum(dtype=np.float64))
        self.confidence_ = centroid_confidence(nearest_sq, second_sq)
        report(1.0, "mini-batch k-means done")
        return self


register(
    AlgorithmSpec(
        "kmeans",
        "k-means",
        "Groups images around K centres (k-means++ seeding, several restarts). "
        "Fast on large sets; the usual first choice.",
        FastKMeans,
        uses_k=True,
        supports_auto_k=True,
        order=10,
    )
)
register(
    AlgorithmSpec(
        "minibatch_kmeans",
        "Mini-batch k-means",
        "k-means on small random batches: less memory and time on very large sets, slightly worse clusters.",
        MiniBatchKMeansClusterer,
        uses_k=True,
        supports_auto_k=True,
        order=20,
    )
)
