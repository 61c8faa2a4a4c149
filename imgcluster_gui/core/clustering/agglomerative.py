"""Hierarchical agglomerative clustering (scikit-learn), refused above a memory limit.

Importing this module registers: agglomerative.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..progress import ProgressCallback, ensure
from .base import (
    DEFAULT_MEMORY_LIMIT_GB,
    DISTANCE_METRICS,
    MEMORY_PARAM,
    ProgressClusterer,
    check_choice,
    check_features,
    check_n_clusters,
    cluster_means,
    memory_needed_gb,
)
from .fast_kmeans import as_float32_rows, centroid_confidence
from .registry import AlgorithmSpec, ParamSpec, register

AGGLOMERATIVE_LINKAGES = ("ward", "average", "complete", "single")
AGGLOMERATIVE_METRICS = DISTANCE_METRICS


class AgglomerativeClusterer(ProgressClusterer):
    """Hierarchical agglomerative clustering (scikit-learn), refused when it would need too much memory.

    Without a connectivity graph it stores all pairwise distances: about ``4 * n**2`` bytes
    (20,000 images: 1.6 GB; 50,000: 10 GB), and its time grows as ``n**2``.

    Parameters
    ----------
    n_clusters : int
    linkage : {'ward', 'average', 'complete', 'single'}
        Ward minimises within-cluster variance (Euclidean only); the others merge by the
        average / largest / smallest distance between clusters.
    metric : {'euclidean', 'cosine', 'manhattan'}
        Distance for non-ward linkages.
    memory_limit_gb : float
        Refuse (ValueError) when the pairwise distances would exceed this.

    Attributes
    ----------
    labels_, cluster_centers_ (cluster means), confidence_ (ward only: ``1 - d1/d2`` to the means)
    """

    param_specs = (
        ParamSpec(
            "linkage",
            "choice",
            choices=AGGLOMERATIVE_LINKAGES,
            help="ward: compact clusters (Euclidean only); average/complete/single: by distances.",
        ),
        ParamSpec(
            "metric", "choice", choices=AGGLOMERATIVE_METRICS, help="Distance for average/complete/single linkage."
        ),
        MEMORY_PARAM,
    )

    def __init__(
        self,
        n_clusters: int = 8,
        linkage: str = "ward",
        metric: str = "euclidean",
        memory_limit_gb: float = DEFAULT_MEMORY_LIMIT_GB,
    ) -> None:
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.metric = metric
        self.memory_limit_gb = memory_limit_gb

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "AgglomerativeClusterer":
        from sklearn.cluster import AgglomerativeClustering

        report = ensure(progress)
        data = check_features(X, min_samples=1, dtype=np.float64)
        n_samples = data.shape[0]
        n_clusters = check_n_clusters(self.n_clusters, n_samples)
        linkage = check_choice(self.linkage, "linkage", AGGLOMERATIVE_LINKAGES)
        metric = check_choice(self.metric, "metric", AGGLOMERATIVE_METRICS)
        if linkage == "ward" and metric != "euclidean":
            raise ValueError(
                f"ward linkage works only with the euclidean metric, not {metric!r}: "
                "choose average, complete or single linkage for other metrics"
            )
        needed = memory_needed_gb(4.0 * n_samples * n_samples)
        if needed > float(self.memory_limit_gb):
            raise ValueError(
                f"agglomerative clustering of {n_samples:,} samples needs about {needed:.1f} GB "
                f"for its pairwise distances (limit {float(self.memory_limit_gb):.1f} GB): "
                "use k-means or mini-batch k-means, or cluster a subset"
            )
        report(0.0, f"agglomerative ({linkage}) clustering")
        if n_samples == 1:
            labels = np.zeros(1, dtype=np.int64)
        else:
            model = AgglomerativeClustering(n_clusters=n_clusters, linkage=linkage, metric=metric)
            labels = model.fit_predict(data).astype(np.int64)
        self.labels_ = labels
        self.cluster_centers_ = cluster_means(data, labels, n_clusters)
        if linkage == "ward":
            _, nearest_sq, second_sq = _distances_to_own_and_next(data, labels, self.cluster_centers_)
            self.confidence_ = centroid_confidence(nearest_sq, second_sq)
        report(1.0, "agglomerative clustering done")
        return self


def _distances_to_own_and_next(
    X: np.ndarray, labels: np.ndarray, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared distances to each sample's *own* centre and to the nearest other one."""
    data = as_float32_rows(X)
    centers = as_float32_rows(centers)
    squared = (
        np.einsum("ij,ij->i", data, data)[:, None]
        - 2.0 * data @ centers.T
        + np.einsum("ij,ij->i", centers, centers)[None, :]
    )
    np.maximum(squared, 0.0, out=squared)
    rows = np.arange(len(labels))
    own = squared[rows, labels].copy()
    squared[rows, labels] = np.inf
    other = squared.min(axis=1) if centers.shape[0] > 1 else np.full(len(labels), np.inf, np.float32)
    return labels, own, other


register(
    AlgorithmSpec(
        "agglomerative",
        "Agglomerative (hierarchical)",
        "Merges the closest groups until K remain. Needs "
        "memory growing with the square of the number of images (refused above a limit).",
        AgglomerativeClusterer,
        uses_k=True,
        supports_auto_k=False,
        order=30,
    )
)
