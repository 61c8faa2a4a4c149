"""Density clustering: DBSCAN (with an estimated radius) and HDBSCAN; sparse images get -1 (noise).

Neither takes K: the number of clusters is what the density gives.

Importing this module registers: dbscan, hdbscan.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..graph import nearest_neighbors
from ..progress import ProgressCallback, ensure
from .base import (
    AUTO,
    DISTANCE_METRICS,
    ProgressClusterer,
    check_auto_number,
    check_choice,
    check_features,
    check_positive_int,
    seed_from,
)
from .registry import AlgorithmSpec, ParamSpec, register

HDBSCAN_SELECTION_METHODS = ("eom", "leaf")


def estimate_eps(
    X: np.ndarray,
    min_samples: int,
    sample_size: int = 2000,
    random_state: Optional[int] = 0,
    progress: Optional[ProgressCallback] = None,
) -> float:
    """DBSCAN's radius from the knee of the sorted k-distance graph (Ester et al. 1996).

    Each (sampled) point's distance to its ``min_samples - 1``-th neighbour is the radius that
    makes it a core point; sorted, these rise slowly inside clusters and steeply for outliers.
    The knee is the point farthest below the chord from the smallest to the largest value
    (Kneedle, Satopaa et al. 2011).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    min_samples : int
        DBSCAN's ``min_samples`` (the point itself included), at least 2.
    sample_size : int
        Points whose k-distance is computed (against all points).

    Returns
    -------
    float
        A positive radius.
    """
    n_samples = X.shape[0]
    neighbour_rank = min(max(min_samples - 1, 1), n_samples - 1)
    rng = np.random.default_rng(random_state)
    queries = np.sort(rng.choice(n_samples, size=sample_size, replace=False)) if n_samples > sample_size else None
    squared, _ = nearest_neighbors(X, neighbour_rank, queries=queries, progress=progress)
    k_distances = np.sort(np.sqrt(squared[:, -1].astype(np.float64)))
    low, high = k_distances[0], k_distances[-1]
    if high - low <= 1e-12 * max(high, 1.0):
        return float(high) if high > 0 else 1e-6
    position = np.linspace(0.0, 1.0, len(k_distances))
    height = (k_distances - low) / (high - low)
    knee = int(np.argmax(position - height))
    eps = float(k_distances[knee])
    return eps if eps > 0 else float(k_distances[k_distances > 0][0])


class DBSCANClusterer(ProgressClusterer):
    """DBSCAN (scikit-learn) with the radius estimated from the k-distance graph by default.

    Parameters
    ----------
    eps : float or 'auto'
        Neighbourhood radius; ``'auto'`` (:data:`~imgcluster_gui.core.choices.AUTO`) estimates it
        with :func:`estimate_eps`.
    min_samples : int
        Points (itself included) within ``eps`` that make a core point.
    metric : {'euclidean', 'cosine', 'manhattan'}
        Distance; the auto radius is estimated in Euclidean distance, so use it with 'euclidean'
        (for L2-normalised features Euclidean and cosine order neighbours alike).
    random_state : int or None
        Seed of the auto-eps sample.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,), int64, -1 = noise
    eps_ : float
        The radius used.
    core_sample_indices_ : ndarray of int
    """

    param_specs = (
        ParamSpec(
            "eps",
            "float",
            minimum=1e-4,
            maximum=1e6,
            help="Neighbourhood radius; auto = estimate it from the k-distance graph.",
        ),
        ParamSpec(
            "min_samples",
            "int",
            minimum=2,
            maximum=10000,
            help="Images within the radius (itself included) that make a dense core.",
        ),
        ParamSpec(
            "metric", "choice", choices=DISTANCE_METRICS, help="Distance (the automatic radius needs euclidean)."
        ),
    )

    def __init__(
        self, eps: Any = AUTO, min_samples: int = 5, metric: str = "euclidean", random_state: Any = None
    ) -> None:
        self.eps = eps
        self.min_samples = min_samples
        self.metric = metric
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "DBSCANClusterer":
        from sklearn.cluster import DBSCAN

        report = ensure(progress)
        data = check_features(X, min_samples=2, dtype=np.float32)
        min_samples = check_positive_int(self.min_samples, "min_samples", minimum=2)
        metric = check_choice(self.metric, "metric", DISTANCE_METRICS)
        eps = check_auto_number(self.eps, "eps", minimum=0, inclusive=False)
        report(0.0, "DBSCAN: radius")
        if eps == AUTO:
            if metric != "euclidean":
                raise ValueError(
                    f"eps='auto' is estimated in Euclidean distance: give eps explicitly for metric={metric!r}"
                )
            eps = estimate_eps(data, min_samples, random_state=seed_from(self.random_state), progress=progress)
        report(0.3, "DBSCAN clustering")
        model = DBSCAN(eps=eps, min_samples=min_samples, metric=metric).fit(data)
        self.eps_ = eps
        self.labels_ = model.labels_.astype(np.int64)
        self.core_sample_indices_ = model.core_sample_indices_
        report(1.0, "DBSCAN done")
        return self


class HDBSCANClusterer(ProgressClusterer):
    """HDBSCAN (scikit-learn's implementation): density clusters of varying density, noise as -1.

    Parameters
    ----------
    min_cluster_size : int
        Smallest group that counts as a cluster.
    min_samples : int or 'auto'
        Density smoothing; ``'auto'`` means the same as ``min_cluster_size``.
    cluster_selection_method : {'eom', 'leaf'}
        'eom' keeps the most persistent clusters; 'leaf' gives more, smaller, homogeneous ones.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,), int64, -1 = noise (unassigned)
    confidence_ : ndarray of shape (n_samples,), float32
        HDBSCAN's membership strength (0 for noise).
    """

    param_specs = (
        ParamSpec(
            "min_cluster_size", "int", minimum=2, maximum=100000, help="Smallest group that counts as a cluster."
        ),
        ParamSpec(
            "min_samples",
            "int",
            minimum=1,
            maximum=100000,
            help="Density smoothing (larger: more images unassigned); auto = min_cluster_size.",
        ),
        ParamSpec(
            "cluster_selection_method",
            "choice",
            choices=HDBSCAN_SELECTION_METHODS,
            help="eom: the most persistent clusters; leaf: more, smaller clusters.",
        ),
    )

    def __init__(
        self, min_cluster_size: int = 5, min_samples: Any = AUTO, cluster_selection_method: str = "eom"
    ) -> None:
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "HDBSCANClusterer":
        from sklearn.cluster import HDBSCAN

        report = ensure(progress)
        data = check_features(X, min_samples=2, dtype=np.float64)
        min_cluster_size = check_positive_int(self.min_cluster_size, "min_cluster_size", minimum=2)
        min_samples = check_auto_number(self.min_samples, "min_samples", minimum=1, integer=True)
        method = check_choice(self.cluster_selection_method, "cluster_selection_method", HDBSCAN_SELECTION_METHODS)
        report(0.0, "HDBSCAN clustering")
        model = HDBSCAN(
            min_cluster_size=min(min_cluster_size, data.shape[0]),
            min_samples=None if min_samples == AUTO else min(min_samples, data.shape[0] - 1),
            cluster_selection_method=method,
            copy=True,
        ).fit(data)
        labels = model.labels_.astype(np.int64)
        labels[labels < 0] = -1  # scikit-learn also uses -2/-3 for infinite/missing entries
        self.labels_ = labels
        self.confidence_ = np.clip(model.probabilities_, 0.0, 1.0).astype(np.float32)
        report(1.0, "HDBSCAN done")
        return self


register(
    AlgorithmSpec(
        "dbscan",
        "DBSCAN (density)",
        "Finds dense groups and leaves sparse images unassigned; chooses the number of clusters itself.",
        DBSCANClusterer,
        uses_k=False,
        supports_auto_k=False,
        order=40,
    )
)
register(
    AlgorithmSpec(
        "hdbscan",
        "HDBSCAN (density, varying)",
        "Density clusters of varying density; images in no "
        "cluster stay unassigned. Chooses the number of clusters itself.",
        HDBSCANClusterer,
        uses_k=False,
        supports_auto_k=False,
        order=50,
    )
)
