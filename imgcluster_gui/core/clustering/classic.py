"""Classic clustering estimators on feature matrices, and their registry entries.

Every estimator follows scikit-learn's contract (``__init__`` only stores parameters, validation in
``fit``, learned state ends with ``_``) and the project's progress protocol: ``fit(X, y=None,
progress=None)`` calls ``progress(fraction, stage)`` between restarts/iterations; a callback that
raises :class:`~imgcluster_gui.core.progress.Cancelled` stops the fit. Calls into scikit-learn
that run as one block can only be cancelled before or after.

``labels_`` are int64 with -1 meaning "unassigned" (noise for density methods). Where meaningful
an estimator also sets ``cluster_centers_`` and ``confidence_`` (per-sample membership in [0, 1]).

Importing this module registers: kmeans, minibatch_kmeans, agglomerative, dbscan, hdbscan, gmm,
spectral, pic.
"""

from __future__ import annotations

import heapq
import math
import numbers
import warnings
from typing import Any, Optional

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state

from ..progress import ProgressCallback, check, ensure
from .fast_kmeans import as_float32_rows, assign, centroid_confidence, fast_kmeans
from ..graph import build_knn_graph, nearest_neighbors
from .registry import AlgorithmSpec, ParamSpec, register

#: Memory an algorithm may plan to allocate before it refuses with an explanation (bytes).
DEFAULT_MEMORY_LIMIT_GB = 2.0


# ================================================================================== shared helpers
def check_features(X: Any, min_samples: int = 2, dtype: Any = np.float64) -> np.ndarray:
    """Validate a feature matrix and return it as a C-contiguous array of ``dtype``.

    Raises
    ------
    ValueError
        Not 2-D, too few samples, no feature, non-numeric, NaN or infinite values.
    """
    try:
        array = np.asarray(X)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"X must be a 2-D numeric feature matrix: {error}") from None
    if array.ndim != 2:
        raise ValueError(f"X must be a 2-D feature matrix (n_samples, n_features), got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"X must be numeric, got dtype {array.dtype}")
    if array.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} samples to cluster, got {array.shape[0]}")
    if array.shape[1] < 1:
        raise ValueError("X has no feature column")
    array = np.ascontiguousarray(array, dtype=dtype)
    if not np.isfinite(array).all():
        raise ValueError("X contains NaN or infinite values: check the feature extraction")
    return array


def check_n_clusters(n_clusters: Any, n_samples: int) -> int:
    """``n_clusters`` as an int in ``[1, n_samples]``, or a ValueError that says what to do."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise ValueError(f"n_clusters must be a whole number, got {n_clusters!r}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    if n_clusters > n_samples:
        raise ValueError(f"n_clusters={n_clusters} is more than the {n_samples} samples to cluster: "
                         f"choose K <= {n_samples}")
    return int(n_clusters)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def seed_from(random_state: Any) -> Optional[int]:
    """An int seed for numpy's Generator from scikit-learn's ``random_state`` (None stays random)."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def cluster_means(X: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean of each cluster ``(n_clusters, n_features)`` (zeros for an empty one); label -1 is ignored."""
    kept = labels >= 0
    counts = np.bincount(labels[kept], minlength=n_clusters).astype(np.float64)
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels[kept], X[kept])
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def memory_needed_gb(n_bytes: float) -> float:
    return n_bytes / 1024**3


def _warn_if_fewer_clusters(labels: np.ndarray, n_clusters: int, name: str) -> None:
    found = len(np.unique(labels[labels >= 0]))
    if found < n_clusters:
        warnings.warn(f"{name} found {found} distinct clusters instead of the {n_clusters} asked for "
                      "(X has fewer distinct points or groups than K)", UserWarning, stacklevel=3)


class ProgressClusterer(ClusterMixin, BaseEstimator):
    """Base of the project's estimators: ``fit_predict`` that forwards ``progress``."""

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None):  # pragma: no cover
        raise NotImplementedError

    def fit_predict(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None,
                    **fit_params: Any) -> np.ndarray:
        """Fit and return ``labels_`` of shape (n_samples,), int64, -1 = unassigned."""
        return self.fit(X, y, progress=progress, **fit_params).labels_


# ====================================================================================== k-means
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

    def __init__(self, n_clusters: int = 8, n_init: int = 3, max_iter: int = 100, tol: float = 1e-4,
                 random_state: Any = None, train_points_per_centroid: int = 256,
                 seed_points_per_centroid: int = 32) -> None:
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
        fit = fast_kmeans(data, n_clusters, n_init=check_positive_int(self.n_init, "n_init"),
                          max_iter=check_positive_int(self.max_iter, "max_iter"), tol=float(self.tol),
                          random_state=seed_from(self.random_state),
                          train_points_per_centroid=check_positive_int(self.train_points_per_centroid,
                                                                       "train_points_per_centroid"),
                          seed_points_per_centroid=check_positive_int(self.seed_points_per_centroid,
                                                                      "seed_points_per_centroid"),
                          progress=progress)
        self.labels_ = fit.labels
        self.cluster_centers_ = fit.centers
        self.inertia_ = fit.inertia
        self.n_iter_ = fit.n_iter
        self.confidence_ = centroid_confidence(fit.nearest_sq, fit.second_sq)
        _warn_if_fewer_clusters(self.labels_, n_clusters, "k-means")
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest learned centre for each row of ``X``, shape (n_samples,)."""
        data = check_features(X, min_samples=1, dtype=np.float32)
        if data.shape[1] != self.cluster_centers_.shape[1]:
            raise ValueError(f"X has {data.shape[1]} features, the model was fitted on "
                             f"{self.cluster_centers_.shape[1]}")
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

    def __init__(self, n_clusters: int = 8, batch_size: int = 1024, n_init: int = 3, max_iter: int = 100,
                 random_state: Any = None) -> None:
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
            model = MiniBatchKMeans(n_clusters=n_clusters, batch_size=check_positive_int(self.batch_size, "batch_size"),
                                    max_iter=check_positive_int(self.max_iter, "max_iter"), n_init=1,
                                    random_state=int(rng.integers(np.iinfo(np.int32).max))).fit(data)
            if best is None or model.inertia_ < best.inertia_:
                best = model
        check(progress, "assigning points")
        centers = np.ascontiguousarray(best.cluster_centers_, dtype=np.float32)
        labels, nearest_sq, second_sq = assign(data, centers, second=True)
        self.labels_ = labels
        self.cluster_centers_ = centers
        self.inertia_ = float(nearest_sq.sum(dtype=np.float64))
        self.confidence_ = centroid_confidence(nearest_sq, second_sq)
        report(1.0, "mini-batch k-means done")
        return self


# ================================================================================ agglomerative
AGGLOMERATIVE_LINKAGES = ("ward", "average", "complete", "single")
AGGLOMERATIVE_METRICS = ("euclidean", "cosine", "manhattan")


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

    def __init__(self, n_clusters: int = 8, linkage: str = "ward", metric: str = "euclidean",
                 memory_limit_gb: float = DEFAULT_MEMORY_LIMIT_GB) -> None:
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.metric = metric
        self.memory_limit_gb = memory_limit_gb

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "AgglomerativeClusterer":
        from sklearn.cluster import AgglomerativeClustering

        report = ensure(progress)
        data = check_features(X, min_samples=1)
        n_samples = data.shape[0]
        n_clusters = check_n_clusters(self.n_clusters, n_samples)
        linkage = check_choice(self.linkage, "linkage", AGGLOMERATIVE_LINKAGES)
        metric = check_choice(self.metric, "metric", AGGLOMERATIVE_METRICS)
        if linkage == "ward" and metric != "euclidean":
            raise ValueError(f"ward linkage works only with the euclidean metric, not {metric!r}: "
                             "choose average, complete or single linkage for other metrics")
        needed = memory_needed_gb(4.0 * n_samples * n_samples)
        if needed > float(self.memory_limit_gb):
            raise ValueError(f"agglomerative clustering of {n_samples:,} samples needs about {needed:.1f} GB "
                             f"for its pairwise distances (limit {float(self.memory_limit_gb):.1f} GB): "
                             "use k-means or mini-batch k-means, or cluster a subset")
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


def _distances_to_own_and_next(X: np.ndarray, labels: np.ndarray,
                               centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared distances to each sample's *own* centre and to the nearest other one."""
    data = as_float32_rows(X)
    centers = as_float32_rows(centers)
    squared = (np.einsum("ij,ij->i", data, data)[:, None] - 2.0 * data @ centers.T
               + np.einsum("ij,ij->i", centers, centers)[None, :])
    np.maximum(squared, 0.0, out=squared)
    rows = np.arange(len(labels))
    own = squared[rows, labels].copy()
    squared[rows, labels] = np.inf
    other = squared.min(axis=1) if centers.shape[0] > 1 else np.full(len(labels), np.inf, np.float32)
    return labels, own, other


# ======================================================================================= DBSCAN
def estimate_eps(X: np.ndarray, min_samples: int, sample_size: int = 2000,
                 random_state: Optional[int] = 0, progress: Optional[ProgressCallback] = None) -> float:
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
    queries = (np.sort(rng.choice(n_samples, size=sample_size, replace=False))
               if n_samples > sample_size else None)
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
        Neighbourhood radius; ``'auto'`` (or 0 / None) estimates it with :func:`estimate_eps`.
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

    def __init__(self, eps: Any = "auto", min_samples: int = 5, metric: str = "euclidean",
                 random_state: Any = None) -> None:
        self.eps = eps
        self.min_samples = min_samples
        self.metric = metric
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "DBSCANClusterer":
        from sklearn.cluster import DBSCAN

        report = ensure(progress)
        data = check_features(X, min_samples=2, dtype=np.float32)
        min_samples = check_positive_int(self.min_samples, "min_samples", minimum=2)
        metric = check_choice(self.metric, "metric", AGGLOMERATIVE_METRICS)
        report(0.0, "DBSCAN: radius")
        if self.eps in (None, "auto") or (isinstance(self.eps, numbers.Real) and self.eps == 0):
            if metric != "euclidean":
                raise ValueError("eps='auto' is estimated in Euclidean distance: give eps explicitly "
                                 f"for metric={metric!r}")
            eps = estimate_eps(data, min_samples, random_state=seed_from(self.random_state), progress=progress)
        elif isinstance(self.eps, numbers.Real) and self.eps > 0:
            eps = float(self.eps)
        else:
            raise ValueError(f"eps must be a positive number or 'auto', got {self.eps!r}")
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
    min_samples : int
        Density smoothing; 0 means the same as ``min_cluster_size``.
    cluster_selection_method : {'eom', 'leaf'}
        'eom' keeps the most persistent clusters; 'leaf' gives more, smaller, homogeneous ones.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,), int64, -1 = noise (unassigned)
    confidence_ : ndarray of shape (n_samples,), float32
        HDBSCAN's membership strength (0 for noise).
    """

    def __init__(self, min_cluster_size: int = 5, min_samples: int = 0,
                 cluster_selection_method: str = "eom") -> None:
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "HDBSCANClusterer":
        from sklearn.cluster import HDBSCAN

        report = ensure(progress)
        data = check_features(X, min_samples=2)
        min_cluster_size = check_positive_int(self.min_cluster_size, "min_cluster_size", minimum=2)
        min_samples = check_positive_int(self.min_samples, "min_samples", minimum=0)
        method = check_choice(self.cluster_selection_method, "cluster_selection_method", ("eom", "leaf"))
        report(0.0, "HDBSCAN clustering")
        model = HDBSCAN(min_cluster_size=min(min_cluster_size, data.shape[0]),
                        min_samples=min(min_samples, data.shape[0] - 1) or None,
                        cluster_selection_method=method, copy=True).fit(data)
        labels = model.labels_.astype(np.int64)
        labels[labels < 0] = -1  # scikit-learn also uses -2/-3 for infinite/missing entries
        self.labels_ = labels
        self.confidence_ = np.clip(model.probabilities_, 0.0, 1.0).astype(np.float32)
        report(1.0, "HDBSCAN done")
        return self


# ========================================================================================== GMM
GMM_COVARIANCE_TYPES = ("diag", "spherical", "tied", "full")


class GaussianMixtureClusterer(ProgressClusterer):
    """Gaussian mixture (scikit-learn, EM) with restarts run here; confidence is the posterior.

    Parameters
    ----------
    n_clusters : int
    covariance_type : {'diag', 'spherical', 'tied', 'full'}
        'full' stores ``K * d * d`` numbers: reduce the features with PCA first for wide features.
    n_init : int
        Restarts; the highest likelihood bound is kept.
    max_iter : int
        EM iterations per restart.
    reg_covar : float
        Added to the covariance diagonals (keeps them invertible).
    random_state : int, RandomState or None
    memory_limit_gb : float
        Refuse (ValueError) when the covariances would exceed this.

    Attributes
    ----------
    labels_, cluster_centers_ (the means), confidence_ (largest posterior probability), converged_
    """

    def __init__(self, n_clusters: int = 8, covariance_type: str = "diag", n_init: int = 1, max_iter: int = 100,
                 reg_covar: float = 1e-6, random_state: Any = None,
                 memory_limit_gb: float = DEFAULT_MEMORY_LIMIT_GB) -> None:
        self.n_clusters = n_clusters
        self.covariance_type = covariance_type
        self.n_init = n_init
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.memory_limit_gb = memory_limit_gb

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "GaussianMixtureClusterer":
        from sklearn.mixture import GaussianMixture

        report = ensure(progress)
        data = check_features(X, min_samples=2)
        n_samples, n_features = data.shape
        n_clusters = check_n_clusters(self.n_clusters, n_samples)
        covariance_type = check_choice(self.covariance_type, "covariance_type", GMM_COVARIANCE_TYPES)
        n_init = check_positive_int(self.n_init, "n_init")
        matrices = {"full": n_clusters, "tied": 1}.get(covariance_type, 0)
        needed = memory_needed_gb(3.0 * 8.0 * matrices * n_features * n_features)  # covariances, precisions, work
        if needed > float(self.memory_limit_gb):
            raise ValueError(f"a '{covariance_type}' Gaussian mixture on {n_features} features needs about "
                             f"{needed:.1f} GB (limit {float(self.memory_limit_gb):.1f} GB): use "
                             "covariance_type='diag', or reduce the features with PCA first")
        rng = np.random.default_rng(seed_from(self.random_state))
        best = None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*did not converge.*")
            for restart in range(n_init):
                report(restart / n_init, f"Gaussian mixture restart {restart + 1}/{n_init}")
                seed = int(rng.integers(np.iinfo(np.int32).max))
                # Start EM from our k-means (k-means++ seeding, restarts): scikit-learn's own start is a
                # single k-means run, which often merges two clusters and splits another.
                start = FastKMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit(data)
                weights, means, precisions = _gaussian_start(data, start.labels_, n_clusters, covariance_type,
                                                             float(self.reg_covar))
                model = GaussianMixture(n_components=n_clusters, covariance_type=covariance_type,
                                        max_iter=check_positive_int(self.max_iter, "max_iter"),
                                        reg_covar=float(self.reg_covar), init_params="random_from_data",
                                        weights_init=weights, means_init=means, precisions_init=precisions,
                                        random_state=seed).fit(data)
                if best is None or model.lower_bound_ > best.lower_bound_:
                    best = model
        posterior = best.predict_proba(data)
        self.labels_ = posterior.argmax(axis=1).astype(np.int64)
        self.confidence_ = posterior.max(axis=1).astype(np.float32)
        self.cluster_centers_ = best.means_.astype(np.float32)
        self.converged_ = bool(best.converged_)
        report(1.0, "Gaussian mixture done")
        return self


def _gaussian_start(X: np.ndarray, labels: np.ndarray, n_clusters: int, covariance_type: str,
                    reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights ``(K,)``, means ``(K, d)`` and precisions (scikit-learn's shape per covariance type)
    of the Gaussians fitted to a hard clustering ``labels`` (every cluster non-empty or given a floor)."""
    n_samples, n_features = X.shape
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    weights = np.maximum(counts, 1.0) / np.maximum(counts, 1.0).sum()
    means = cluster_means(X, labels, n_clusters).astype(np.float64)
    residuals = X - means[labels]
    if covariance_type in ("diag", "spherical"):
        variances = np.zeros((n_clusters, n_features))
        np.add.at(variances, labels, residuals ** 2)
        variances = variances / np.maximum(counts, 1.0)[:, None] + reg_covar
        if covariance_type == "spherical":
            return weights, means, 1.0 / variances.mean(axis=1)
        return weights, means, 1.0 / variances
    if covariance_type == "tied":
        covariance = residuals.T @ residuals / n_samples + reg_covar * np.eye(n_features)
        return weights, means, np.linalg.inv(covariance)
    precisions = np.empty((n_clusters, n_features, n_features))
    for cluster in range(n_clusters):
        member = residuals[labels == cluster]
        covariance = member.T @ member / max(len(member), 1) + reg_covar * np.eye(n_features)
        precisions[cluster] = np.linalg.inv(covariance)
    return weights, means, precisions


# ===================================================================================== spectral
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

    def __init__(self, n_clusters: int = 8, n_neighbors: int = 10, assign_labels: str = "kmeans",
                 random_state: Any = None) -> None:
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.assign_labels = assign_labels
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "SpectralClusterer":
        from scipy import sparse
        from sklearn.cluster import SpectralClustering

        report = ensure(progress)
        data = check_features(X, min_samples=3)
        n_samples = data.shape[0]
        n_clusters = check_n_clusters(self.n_clusters, n_samples)
        n_neighbors = min(check_positive_int(self.n_neighbors, "n_neighbors"), n_samples - 1)
        assign_labels = check_choice(self.assign_labels, "assign_labels", ("kmeans", "discretize", "cluster_qr"))
        report(0.0, "spectral clustering: neighbour graph")
        # The project's (cached, faiss) neighbour graph instead of scikit-learn's own search; the
        # affinity is scikit-learn's 'nearest_neighbors' one: each image and its k - 1 nearest
        # (itself included in the k), symmetrised as (A + A^T) / 2.
        knn = build_knn_graph(data, max(n_neighbors - 1, 1), metric="euclidean", progress=progress)
        connectivity = knn.directed()
        affinity = 0.5 * (connectivity + connectivity.T) + sparse.identity(n_samples, format="csr")
        report(0.3, "spectral clustering")
        model = SpectralClustering(n_clusters=n_clusters, affinity="precomputed",
                                   assign_labels=assign_labels, random_state=seed_from(self.random_state))
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
        Kernel width in feature distance units; 'auto' (or 0 / None) uses the root of the median
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

    def __init__(self, n_clusters: Optional[int] = None, n_neighbors: int = 5, sigma: Any = "auto",
                 alpha: float = 0.001, n_iter: int = 200, distribute_singletons: bool = True,
                 merge_to_k: bool = True) -> None:
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

        report(0.0, "PIC: nearest-neighbour graph")
        neighbour_sq, neighbours = nearest_neighbors(data, n_neighbors, progress=progress)
        if self.sigma in (None, "auto") or (isinstance(self.sigma, numbers.Real) and self.sigma == 0):
            median_sq = float(np.median(neighbour_sq))
            positive = neighbour_sq[neighbour_sq > 0]
            sigma_sq = median_sq if median_sq > 0 else (float(np.median(positive)) if positive.size else 1.0)
        elif isinstance(self.sigma, numbers.Real) and self.sigma > 0:
            sigma_sq = float(self.sigma) ** 2
        else:
            raise ValueError(f"sigma must be a positive number or 'auto', got {self.sigma!r}")
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
                warnings.warn(f"PIC found {self.n_found_clusters_} clusters, fewer than the {n_clusters} asked "
                              "for (it cannot split): lower n_neighbors or sigma for finer clusters",
                              UserWarning, stacklevel=2)
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


def merge_clusters_to_k(labels: np.ndarray, graph: Any, X: np.ndarray, n_clusters: int) -> np.ndarray:
    """Merge clusters down to ``n_clusters``: by average graph affinity, then Ward on means.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,), int64, values 0..c-1
    graph : scipy.sparse matrix of shape (n_samples, n_samples)
        Symmetric affinities.
    X : ndarray of shape (n_samples, n_features)
    n_clusters : int

    Returns
    -------
    ndarray of shape (n_samples,), int64, values 0..n_clusters-1
    """
    from scipy import sparse

    n_found = int(labels.max()) + 1
    membership = sparse.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)),
                                   shape=(len(labels), n_found))
    between = (membership.T @ graph @ membership).tocoo()
    sizes = np.bincount(labels, minlength=n_found).astype(np.float64)
    links: list[dict[int, float]] = [dict() for _ in range(n_found)]
    for a, b, weight in zip(between.row, between.col, between.data):
        if a != b and weight > 0:
            links[a][b] = links[a].get(b, 0.0) + weight
    parent = list(range(n_found))
    heap = [(-weight / (sizes[a] * sizes[b]), a, b) for a in range(n_found) for b, weight in links[a].items() if a < b]
    heapq.heapify(heap)
    groups = n_found
    while groups > n_clusters and heap:
        negative, a, b = heapq.heappop(heap)
        if parent[a] != a or parent[b] != b or b not in links[a]:
            continue
        if abs(-negative - links[a][b] / (sizes[a] * sizes[b])) > 1e-12 * max(-negative, 1e-300):
            continue  # stale entry: the pair's affinity changed since it was pushed
        # merge b into a
        parent[b] = a
        sizes[a] += sizes[b]
        for other, weight in links[b].items():
            if other == a:
                continue
            links[a][other] = links[a].get(other, 0.0) + weight
            links[other].pop(b, None)
            links[other][a] = links[a][other]
        links[a].pop(b, None)
        links[b] = {}
        for other, weight in links[a].items():
            heapq.heappush(heap, (-weight / (sizes[a] * sizes[other]), min(a, other), max(a, other)))
        groups -= 1

    def root(node: int) -> int:
        while parent[node] != node:
            node = parent[node]
        return node

    group_of = np.array([root(c) for c in range(n_found)])
    labels = np.unique(group_of[labels], return_inverse=True)[1]
    if groups > n_clusters:
        labels = _ward_merge(labels, X, n_clusters)
    return labels.astype(np.int64)


def _ward_merge(labels: np.ndarray, X: np.ndarray, n_clusters: int) -> np.ndarray:
    """Merge groups (no graph edge between them) by Ward's increase in within-group variance."""
    n_groups = int(labels.max()) + 1
    means = cluster_means(X, labels, n_groups).astype(np.float64)
    if n_groups > 300:
        # The exact size-weighted loop below is cubic in the number of groups; this many
        # disconnected groups only arise with a tiny n_neighbors, where plain Ward on the means will do.
        from sklearn.cluster import AgglomerativeClustering

        merged = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(means)
        return merged[labels]
    sizes = np.bincount(labels, minlength=n_groups).astype(np.float64)
    alive = np.ones(n_groups, dtype=bool)
    target = np.arange(n_groups)
    for _ in range(n_groups - n_clusters):
        index = np.flatnonzero(alive)
        m, s = means[index], sizes[index]
        squared = ((m[:, None, :] - m[None, :, :]) ** 2).sum(axis=2)
        cost = (s[:, None] * s[None, :] / (s[:, None] + s[None, :])) * squared
        np.fill_diagonal(cost, np.inf)
        i, j = np.unravel_index(np.argmin(cost), cost.shape)
        a, b = index[i], index[j]
        means[a] = (means[a] * sizes[a] + means[b] * sizes[b]) / (sizes[a] + sizes[b])
        sizes[a] += sizes[b]
        alive[b] = False
        target[target == b] = a
    return np.unique(target[labels], return_inverse=True)[1]


# ==================================================================================== registry
_K_HELP = "Restarts with different seeds; the best result is kept."


def _register_all() -> None:
    memory = ParamSpec("memory_limit_gb", "float", DEFAULT_MEMORY_LIMIT_GB, minimum=0.1, maximum=1024.0,
                       help="Refuse to start when the algorithm would need more memory than this (GB).")
    specs = [
        AlgorithmSpec(
            "kmeans", "k-means", "Groups images around K centres (k-means++ seeding, several restarts). "
            "Fast on large sets; the usual first choice.", FastKMeans,
            (ParamSpec("n_init", "int", 3, minimum=1, maximum=100, help=_K_HELP),
             ParamSpec("max_iter", "int", 100, minimum=1, maximum=10000, help="Upper bound on Lloyd iterations.")),
            uses_k=True, supports_auto_k=True),
        AlgorithmSpec(
            "minibatch_kmeans", "Mini-batch k-means", "k-means on small random batches: less memory and time on "
            "very large sets, slightly worse clusters.", MiniBatchKMeansClusterer,
            (ParamSpec("batch_size", "int", 1024, minimum=16, maximum=1_000_000, help="Samples per mini-batch."),
             ParamSpec("n_init", "int", 3, minimum=1, maximum=100, help=_K_HELP),
             ParamSpec("max_iter", "int", 100, minimum=1, maximum=10000, help="Passes over the data.")),
            uses_k=True, supports_auto_k=True),
        AlgorithmSpec(
            "agglomerative", "Agglomerative (hierarchical)", "Merges the closest groups until K remain. Needs "
            "memory growing with the square of the number of images (refused above a limit).",
            AgglomerativeClusterer,
            (ParamSpec("linkage", "choice", "ward", choices=AGGLOMERATIVE_LINKAGES,
                       help="ward: compact clusters (Euclidean only); average/complete/single: by distances."),
             ParamSpec("metric", "choice", "euclidean", choices=AGGLOMERATIVE_METRICS,
                       help="Distance for average/complete/single linkage."),
             memory),
            uses_k=True, supports_auto_k=False),
        AlgorithmSpec(
            "dbscan", "DBSCAN (density)", "Finds dense groups and leaves sparse images unassigned; chooses the "
            "number of clusters itself.", DBSCANClusterer,
            (ParamSpec("eps", "float", 0.0, minimum=0.0, maximum=1e6,
                       help="Neighbourhood radius; 0 = estimate it from the k-distance graph."),
             ParamSpec("min_samples", "int", 5, minimum=2, maximum=10000,
                       help="Images within the radius (itself included) that make a dense core."),
             ParamSpec("metric", "choice", "euclidean", choices=AGGLOMERATIVE_METRICS,
                       help="Distance (the automatic radius needs euclidean).")),
            uses_k=False, supports_auto_k=False),
        AlgorithmSpec(
            "hdbscan", "HDBSCAN (density, varying)", "Density clusters of varying density; images in no "
            "cluster stay unassigned. Chooses the number of clusters itself.", HDBSCANClusterer,
            (ParamSpec("min_cluster_size", "int", 5, minimum=2, maximum=100000,
                       help="Smallest group that counts as a cluster."),
             ParamSpec("min_samples", "int", 0, minimum=0, maximum=100000,
                       help="Density smoothing (larger: more images unassigned); 0 = min_cluster_size."),
             ParamSpec("cluster_selection_method", "choice", "eom", choices=("eom", "leaf"),
                       help="eom: the most persistent clusters; leaf: more, smaller clusters.")),
            uses_k=False, supports_auto_k=False),
        AlgorithmSpec(
            "gmm", "Gaussian mixture", "Soft clustering by a mixture of Gaussians; confidence is the "
            "probability of the chosen cluster.", GaussianMixtureClusterer,
            (ParamSpec("covariance_type", "choice", "diag", choices=GMM_COVARIANCE_TYPES,
                       help="Shape of each Gaussian; 'full' needs PCA-reduced features."),
             ParamSpec("n_init", "int", 1, minimum=1, maximum=100, help=_K_HELP),
             ParamSpec("max_iter", "int", 100, minimum=1, maximum=10000, help="EM iterations per restart."),
             ParamSpec("reg_covar", "float", 1e-6, minimum=0.0, maximum=10.0,
                       help="Added to covariance diagonals for stability."),
             memory),
            uses_k=True, supports_auto_k=True),
        AlgorithmSpec(
            "spectral", "Spectral (nearest-neighbour graph)", "Clusters the graph of nearest neighbours; finds "
            "non-convex groups. Slower on large sets.", SpectralClusterer,
            (ParamSpec("n_neighbors", "int", 10, minimum=2, maximum=1000, help="Neighbours per image in the graph."),
             ParamSpec("assign_labels", "choice", "kmeans", choices=("kmeans", "discretize", "cluster_qr"),
                       help="How labels are read from the spectral embedding.")),
            uses_k=True, supports_auto_k=False),
        AlgorithmSpec(
            "pic", "PIC (power iteration clustering)", "DeepCluster's graph clustering: a random walk on the "
            "nearest-neighbour graph finds density peaks; each peak's basin is a cluster, merged down to K.",
            PowerIterationClusterer,
            (ParamSpec("n_neighbors", "int", 5, minimum=1, maximum=1000,
                       help="Neighbours per image: more gives fewer, larger clusters before merging."),
             ParamSpec("sigma", "float", 0.0, minimum=0.0, maximum=1e6,
                       help="Kernel width; 0 = automatic (median neighbour distance)."),
             ParamSpec("alpha", "float", 0.001, minimum=1e-6, maximum=1.0,
                       help="Weight of the walk against the uniform teleport (DeepCluster: 0.001)."),
             ParamSpec("distribute_singletons", "bool", True,
                       help="Give one-image clusters to their nearest neighbour's cluster."),
             ParamSpec("merge_to_k", "bool", True,
                       help="Merge PIC's clusters down to K; off keeps the number PIC finds.")),
            uses_k=True, supports_auto_k=False, k_optional=True),
    ]
    for spec in specs:
        register(spec)


_register_all()
