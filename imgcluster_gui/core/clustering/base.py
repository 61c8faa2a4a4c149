"""What every clustering estimator of this package shares: the base class, input checks, helpers.

Estimators follow scikit-learn's contract (``__init__`` only stores parameters, validation in
``fit``, learned state ends with ``_``) and the project's progress protocol: ``fit(X, y=None,
progress=None)`` calls ``progress(fraction, stage)`` between restarts/iterations; a callback that
raises :class:`~imgcluster_gui.core.progress.Cancelled` stops the fit.

The feature-matrix check has one home, :func:`imgcluster_gui.core.preprocess.check_features`
(imported here for the estimators). This module registers no algorithm.
"""

from __future__ import annotations

import heapq
import numbers
import warnings
from typing import Any, Optional

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state

from ..choices import AUTO, is_auto
from ..preprocess import check_features
from ..progress import ProgressCallback
from .registry import ParamSpec

__all__ = [
    "AUTO",
    "DEFAULT_MEMORY_LIMIT_GB",
    "DISTANCE_METRICS",
    "RESTARTS_HELP",
    "ProgressClusterer",
    "check_auto_number",
    "check_choice",
    "check_features",
    "check_n_clusters",
    "check_positive_int",
    "cluster_means",
    "memory_needed_gb",
    "MEMORY_PARAM",
    "merge_clusters_to_k",
    "seed_from",
    "warn_if_fewer_clusters",
]

#: Memory an algorithm may plan to allocate before it refuses with an explanation (GB).
DEFAULT_MEMORY_LIMIT_GB = 2.0
#: Distances scikit-learn's agglomerative clustering and DBSCAN take here.
DISTANCE_METRICS = ("euclidean", "cosine", "manhattan")
#: Help text of every ``n_init``.
RESTARTS_HELP = "Restarts with different seeds; the best result is kept."


#: The ``memory_limit_gb`` parameter of the methods that refuse above a memory estimate.
MEMORY_PARAM = ParamSpec(
    "memory_limit_gb",
    "float",
    minimum=0.1,
    maximum=1024.0,
    help="Refuse to start when the algorithm would need more memory than this (GB).",
)


def check_n_clusters(n_clusters: Any, n_samples: int, minimum: int = 1) -> int:
    """``n_clusters`` as an int in ``[minimum, n_samples]``, or a ValueError that says what to do.

    ``minimum`` is 1 for the classic methods and 2 for the deep ones (a one-cluster target
    distribution teaches a network nothing).
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise ValueError(f"n_clusters must be a whole number, got {n_clusters!r}")
    value = int(n_clusters)
    if value < minimum:
        raise ValueError(f"n_clusters must be at least {minimum}, got {n_clusters}")
    if value > n_samples:
        raise ValueError(
            f"n_clusters={n_clusters} is more than the {n_samples} samples to cluster: choose K <= {n_samples}"
        )
    return value


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_auto_number(value: Any, name: str, minimum: float, integer: bool = False, inclusive: bool = True) -> Any:
    """``AUTO`` (:func:`~imgcluster_gui.core.choices.is_auto`: ``'auto'`` or None) or a number
    ``>= minimum`` (``> minimum`` when not ``inclusive``; a whole number when ``integer``).

    Raises
    ------
    ValueError
        Anything else, naming the parameter and what it takes.
    """
    if is_auto(value):
        return AUTO
    kinds = (numbers.Integral,) if integer else (numbers.Real,)
    ok = not isinstance(value, bool) and isinstance(value, kinds)
    if ok:
        ok = value >= minimum if inclusive else value > minimum
    if not ok:
        what = "a whole number" if integer else "a number"
        if inclusive:
            text = f"{what} >= {minimum}"
        elif minimum == 0:
            text = f"a positive {what[2:]}"
        else:
            text = f"{what} > {minimum}"
        raise ValueError(f"{name} must be {text} or {AUTO!r}, got {value!r}")
    return int(value) if integer else float(value)


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


def warn_if_fewer_clusters(labels: np.ndarray, n_clusters: int, name: str) -> None:
    found = len(np.unique(labels[labels >= 0]))
    if found < n_clusters:
        warnings.warn(
            f"{name} found {found} distinct clusters instead of the {n_clusters} asked for "
            "(X has fewer distinct points or groups than K)",
            UserWarning,
            stacklevel=3,
        )


class ProgressClusterer(ClusterMixin, BaseEstimator):
    """Base of the project's estimators: ``fit_predict`` that forwards ``progress``.

    A subclass lists its user-facing parameters in ``param_specs`` (:class:`ParamSpec` s without
    defaults: the registry reads them from ``__init__``).
    """

    param_specs: tuple[ParamSpec, ...] = ()

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None):  # pragma: no cover
        raise NotImplementedError

    def fit_predict(
        self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None, **fit_params: Any
    ) -> np.ndarray:
        """Fit and return ``labels_`` of shape (n_samples,), int64, -1 = unassigned."""
        return self.fit(X, y, progress=progress, **fit_params).labels_


# ============================================================================ merging groups to K
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
    membership = sparse.csr_matrix(
        (np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), n_found)
    )
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
