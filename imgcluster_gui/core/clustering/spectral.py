"""Graph clustering on the nearest-neighbour graph with K: spectral clustering and PIC.

Both read their neighbours from :mod:`imgcluster_gui.core.graph`. PIC (power iteration
clustering, DeepCluster's) finds its own number of groups and merges them down to K when given.

Importing this module registers: spectral, pic.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import numpy as np

from ..graph import build_knn_graph, nearest_neighbors
from ..progress import ProgressCallback, check, ensure
from .base import (
    AUTO,
    ProgressClusterer,
    check_auto_number,
    check_choice,
    check_features,
    check_n_clusters,
    check_positive_int,
    cluster_means,
    merge_clusters_to_k,
    seed_from,
)
from .registry import AlgorithmSpec, ParamSpec, register

SPECTRAL_ASSIGN_LABELS = ("kmeans", "discretize", "cluster_qr")


class SpectralClusterer(ProgressClusterer):
    """Spectral clustering on a k-nearest-neighbour affinity graph (scikit-learn).

    Parameters
    ----------
    n_clusters : int
    n_neighbors : int
        Neighbours in the affinity graph (capped at ``n_samples - 1``).
    assign_labels : {'kmeans', 'discretize', 'cluster_qr'}
        How labels are read from the spectral embedding.
    random_state : int, RandomState or None

    Attributes
    ----------
    labels_, cluster_centers_ (means in feature space)
    """

    param_specs = (
        ParamSpec("n_neighbors", "int", minimum=2, maximum=1000, help="Neighbours per image in the graph."),
        ParamSpec(
            "assign_labels",
            "choice",
            choices=SPECTRAL_ASSIGN_LABELS,
            help="How labels are read from the spectral embedding.",
        ),
    )

    def __init__(
        self, n_clusters: int = 8, n_neighbors: int = 10, assign_labels: str = "kmeans", random_state: Any = None
    ) -> None:
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.assign_labels = assign_labels
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "SpectralClusterer":
        from scipy import sparse
        from sklearn.cluster import SpectralClustering

        report = ensure(progress)
        data = check_features(X, min_samples=3, dtype=np.float64)
        n_samples = data.shape[0]
        n_clusters = check_n_clusters(self.n_clusters, n_samples)
        n_neighbors = min(check_positive_int(self.n_neighbors, "n_neighbors"), n_samples - 1)
        assign_labels = check_choice(self.assign_labels, "assign_labels", SPECTRAL_ASSIGN_LABELS)
        report(0.0, "spectral clustering: neighbour graph")
        # The project's (cached, faiss) neighbour graph instead of scikit-learn's own search; the
        # affinity is scikit-learn's 'nearest_neighbors' one: each image and its k - 1 nearest
        # (itself included in the k), symmetrised as (A + A^T) / 2.
        knn = build_knn_graph(data, max(n_neighbors - 1, 1), metric="euclidean", progress=progress)
        connectivity = knn.directed()
        affinity = 0.5 * (connectivity + connectivity.T) + sparse.identity(n_samples, format="csr")
        report(0.3, "spectral clustering")
        model = SpectralClustering(
            n_clusters=n_clusters,
            affinity="precomputed",
            assign_labels=assign_labels,
            random_state=seed_from(self.random_state),
        )
        with warnings.catch_warnings():
            # A disconnected graph is common with small n_neighbors; the result is still usable.
            warnings.filterwarnings("ignore", message="Graph is not fully connected")
            labels = model.fit_predict(affinity.tocsr()).astype(np.int64)
        self.labels_ = labels
        self.cluster_centers_ = cluster_means(data, labels, n_clusters)
        report(1.0, "spectral clustering done")
        return self


# ========================================================================================== PIC
class PowerIterationClusterer(ProgressClusterer):
    """Power iteration clustering as DeepCluster runs it (Caron et al. 2018, after Lin & Cohen 2010).

    1. A symmetric k-nearest-neighbour graph with Gaussian weights ``exp(-d^2 / sigma^2)``.
    2. A power iteration of a random walk with uniform teleport:
       ``v <- alpha * W v + (1 - alpha) / n``, normalised to sum 1. With DeepCluster's tiny
       ``alpha`` the converged ``v`` is a smoothed local density of the graph.
    3. Each node points to the neighbour that increases ``v`` most (weighted by the edge); nodes
       with no higher neighbour are roots (local maxima); following the pointers gives each node
       its root, and each root's tree is a cluster.
    4. Optionally singletons join the cluster of their nearest non-singleton neighbour.

    **How K relates.** PIC finds its own number of clusters, one per local maximum of ``v``:
    more neighbours (``n_neighbors``) or a wider kernel (``sigma``) smooth ``v`` and give fewer,
    larger clusters. With ``n_clusters`` set and ``merge_to_k`` on, clusters beyond K are merged
    greedily by average graph affinity (total edge weight between two clusters over the product
    of their sizes); groups with no edge between them are merged by Ward's criterion on their
    means. When PIC finds fewer than K clusters they are kept (with a warning): PIC does not split.

    Parameters
    ----------
    n_clusters : int or None
        Target K for merging; None keeps PIC's own clusters.
    n_neighbors : int
        Neighbours per node in the graph (DeepCluster: 5).
    sigma : float or 'auto'
        Kernel width in feature distance units; ``'auto'`` uses the root of the median
        squared neighbour distance (DeepCluster used 0.2 on its whitened, L2-normalised features).
    alpha : float
        Weight of the walk step against the uniform teleport (DeepCluster: 0.001).
    n_iter : int
        Power iterations (DeepCluster: 200).
    distribute_singletons : bool
        Give one-image clusters to their nearest non-singleton neighbour's cluster.
    merge_to_k : bool
        Merge down to ``n_clusters`` (when given).

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,), int64
    n_found_clusters_ : int
        Clusters PIC found before merging.
    cluster_centers_ : ndarray of shape (n_clusters_, n_features), float32
    sigma_ : float
        The kernel width used.
    """

    param_specs = (
        ParamSpec(
            "n_neighbors",
            "int",
            minimum=1,
            maximum=1000,
            help="Neighbours per image: more gives fewer, larger clusters before merging.",
        ),
        ParamSpec(
            "sigma", "float", minimum=1e-4, maximum=1e6, help="Kernel width; auto = the median neighbour distance."
        ),
        ParamSpec(
            "alpha",
            "float",
            minimum=1e-6,
            maximum=1.0,
            help="Weight of the walk against the uniform teleport (DeepCluster: 0.001).",
        ),
        ParamSpec(
            "distribute_singletons", "bool", help="Give one-image clusters to their nearest neighbour's cluster."
        ),
        ParamSpec("merge_to_k", "bool", help="Merge PIC's clusters down to K; off keeps the number PIC finds."),
    )

    def __init__(
        self,
        n_clusters: Optional[int] = None,
        n_neighbors: int = 5,
        sigma: Any = AUTO,
        alpha: float = 0.001,
        n_iter: int = 200,
        distribute_singletons: bool = True,
        merge_to_k: bool = True,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.sigma = sigma
        self.alpha = alpha
        self.n_iter = n_iter
        self.distribute_singletons = distribute_singletons
        self.merge_to_k = merge_to_k

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "PowerIterationClusterer":
        from scipy import sparse

        report = ensure(progress)
        data = check_features(X, min_samples=2, dtype=np.float32)
        n_samples = data.shape[0]
        n_clusters = None if self.n_clusters is None else check_n_clusters(self.n_clusters, n_samples)
        n_neighbors = min(check_positive_int(self.n_neighbors, "n_neighbors"), n_samples - 1)
        n_iter = check_positive_int(self.n_iter, "n_iter")
        alpha = float(self.alpha)
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha!r}")
        sigma = check_auto_number(self.sigma, "sigma", minimum=0, inclusive=False)

        report(0.0, "PIC: nearest-neighbour graph")
        neighbour_sq, neighbours = nearest_neighbors(data, n_neighbors, progress=progress)
        if sigma == AUTO:
            median_sq = float(np.median(neighbour_sq))
            positive = neighbour_sq[neighbour_sq > 0]
            sigma_sq = median_sq if median_sq > 0 else (float(np.median(positive)) if positive.size else 1.0)
        else:
            sigma_sq = sigma**2
        self.sigma_ = math.sqrt(sigma_sq)
        rows = np.repeat(np.arange(n_samples), n_neighbors)
        weights = np.exp(-neighbour_sq.ravel().astype(np.float64) / sigma_sq)
        directed = sparse.csr_matrix((weights, (rows, neighbours.ravel())), shape=(n_samples, n_samples))
        graph = (directed + directed.T).tocsr()  # symmetric: an edge when either is the other's neighbour
        graph.sum_duplicates()

        report(0.3, "PIC: power iteration")
        density = np.full(n_samples, 1.0 / n_samples)
        for iteration in range(n_iter):
            updated = alpha * (graph @ density) + (1.0 - alpha) / n_samples
            updated /= updated.sum()
            converged = np.abs(updated - density).max() <= 1e-15
            density = updated
            if converged:
                break
            if iteration % 20 == 19:
                report(0.3 + 0.5 * (iteration + 1) / n_iter, "PIC: power iteration")

        report(0.8, "PIC: reading clusters")
        labels = _clusters_from_maxima(graph, density)
        if self.distribute_singletons:
            labels = _distribute_singletons(labels, neighbours)
        labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
        self.n_found_clusters_ = int(labels.max()) + 1
        if n_clusters is not None and self.merge_to_k:
            if self.n_found_clusters_ > n_clusters:
                check(progress, "PIC: merging clusters")
                labels = merge_clusters_to_k(labels, graph, data, n_clusters)
            elif self.n_found_clusters_ < n_clusters:
                warnings.warn(
                    f"PIC found {self.n_found_clusters_} clusters, fewer than the {n_clusters} asked "
                    "for (it cannot split): lower n_neighbors or sigma for finer clusters",
                    UserWarning,
                    stacklevel=2,
                )
        self.labels_ = labels
        self.cluster_centers_ = cluster_means(data, labels, int(labels.max()) + 1)
        report(1.0, "PIC done")
        return self


def _clusters_from_maxima(graph: Any, density: np.ndarray) -> np.ndarray:
    """Root (local maximum of ``density``) reached by following each node's steepest ascent edge."""
    n_samples = graph.shape[0]
    row_of_entry = np.repeat(np.arange(n_samples), np.diff(graph.indptr))
    gain = graph.data * (density[graph.indices] - density[row_of_entry])
    pointer = np.arange(n_samples)
    ascending = gain > 0
    if ascending.any():
        # Per row, the entry of largest gain: sort by (row, gain) and keep each row's last entry.
        entries = np.flatnonzero(ascending)
        order = entries[np.lexsort((gain[entries], row_of_entry[entries]))]
        last_of_row = np.r_[row_of_entry[order][1:] != row_of_entry[order][:-1], True]
        best = order[last_of_row]
        pointer[row_of_entry[best]] = graph.indices[best]
    # Pointers strictly increase density, so they form a forest: jump until every node holds its root.
    while True:
        jumped = pointer[pointer]
        if np.array_equal(jumped, pointer):
            return pointer
        pointer = jumped


def _distribute_singletons(labels: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Give every one-member cluster to its nearest neighbour whose cluster has several members."""
    labels = labels.copy()
    while True:
        sizes = np.bincount(labels, minlength=labels.max() + 1)
        singletons = np.flatnonzero(sizes[labels] == 1)
        if singletons.size == 0:
            return labels
        neighbour_labels = labels[neighbours[singletons]]
        joinable = sizes[neighbour_labels] > 1
        has_target = joinable.any(axis=1)
        if not has_target.any():
            return labels  # isolated singletons (every neighbour is one too): leave them
        first = np.argmax(joinable, axis=1)  # nearest neighbour in a real cluster
        movers = singletons[has_target]
        labels[movers] = neighbour_labels[has_target, first[has_target]]


register(
    AlgorithmSpec(
        "spectral",
        "Spectral (nearest-neighbour graph)",
        "Clusters the graph of nearest neighbours; finds non-convex groups. Slower on large sets.",
        SpectralClusterer,
        uses_k=True,
        supports_auto_k=False,
        order=70,
    )
)
register(
    AlgorithmSpec(
        "pic",
        "PIC (power iteration clustering)",
        "DeepCluster's graph clustering: a random walk on the "
        "nearest-neighbour graph finds density peaks; each peak's basin is a cluster, merged down to K.",
        PowerIterationClusterer,
        uses_k=True,
        supports_auto_k=False,
        k_optional=True,
        order=80,
    )
)
