"""Fast k-means with k-means++-quality seeding: seeding and Lloyd on subsamples, then a full-data polish.

Why this exists (see ``../shared/MEASURED.md``): faiss's default random initialisation loses 12-18%
inertia against scikit-learn's k-means++, while scikit-learn spends most of its time *seeding*
(k-means++ passes over every point in float64). Here:

1. a training subsample of ``train_points_per_centroid * K`` points is drawn once;
2. each restart seeds with greedy k-means++ (scikit-learn's rule: ``2 + log K`` candidates per
   step, keep the one that lowers the potential most) on a smaller seeding subsample, in float32
   with one BLAS product per step;
3. Lloyd iterations run from those centres on the training subsample;
4. the restart with the lowest training inertia is polished by Lloyd iterations on *all* points
   (until the inertia improves by less than ``tol``) and every point is assigned.

Seeding and Lloyd on subsamples cost a fraction of a full pass; the polish recovers the
full-data optimum, so the inertia matches scikit-learn's k-means++ on all points.

The distance computations are float32 BLAS products (numpy), not faiss: on this project's
2-core machines faiss's OpenMP search ran 4-5x slower than the same GEMM in numpy whenever
another process was busy (OpenMP threads spin-wait), which is the normal state of a GUI that
paints thumbnails while clustering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..progress import ProgressLike, check, ensure, wrap_callback


@dataclass
class KMeansFit:
    """The outcome of :func:`fast_kmeans`.

    Attributes
    ----------
    centers : ndarray of shape (n_clusters, n_features), float32
    labels : ndarray of shape (n_samples,), int64
    inertia : float
        Sum of squared distances of every sample to its centre.
    nearest_sq, second_sq : ndarray of shape (n_samples,), float32
        Squared distance to the nearest and the second-nearest centre (``inf`` when K = 1).
    n_iter : int
        Lloyd iterations of the kept restart (subsample + full data).
    """

    centers: np.ndarray
    labels: np.ndarray
    inertia: float
    nearest_sq: np.ndarray
    second_sq: np.ndarray
    n_iter: int


def as_float32_rows(X: np.ndarray) -> np.ndarray:
    """``X`` as a C-contiguous float32 matrix (what BLAS wants); copies only when needed."""
    return np.ascontiguousarray(X, dtype=np.float32)


def kmeans_plusplus(
    X: np.ndarray, n_clusters: int, rng: np.random.Generator, n_local_trials: Optional[int] = None
) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with scikit-learn's greedy trials).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32, C-contiguous
    n_clusters : int
        Number of centres, at most ``n_samples``.
    rng : numpy.random.Generator
    n_local_trials : int, optional
        Candidates tried per step; default ``3 * (2 + int(log(n_clusters)))``, three times
        scikit-learn's: on a small seeding subsample a well-separated cluster is otherwise missed
        in about half of the runs with K = 100 (measured), and the extra candidates cost little.

    Returns
    -------
    ndarray of shape (n_clusters,), int64
        Distinct row indices of ``X`` chosen as centres (rows may repeat values when points do).
    """
    n_samples = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 3 * (2 + int(math.log(n_clusters)))
    squared_norms = np.einsum("ij,ij->i", X, X)
    chosen = np.empty(n_clusters, dtype=np.int64)
    chosen[0] = rng.integers(n_samples)
    closest_sq = _squared_distances(X, squared_norms, chosen[:1])[0]
    closest_sq[chosen[0]] = 0.0
    for step in range(1, n_clusters):
        cumulative = np.cumsum(closest_sq, dtype=np.float64)
        if cumulative[-1] <= 0.0:
            # Every point coincides with a chosen centre (duplicates): take unused rows at random.
            unused = np.setdiff1d(np.arange(n_samples), chosen[:step])
            chosen[step:] = rng.choice(unused, size=n_clusters - step, replace=False)
            break
        candidates = np.searchsorted(cumulative, rng.random(n_local_trials) * cumulative[-1], side="right")
        candidates = np.minimum(candidates, n_samples - 1)
        candidate_sq = np.minimum(_squared_distances(X, squared_norms, candidates), closest_sq[None, :])
        candidate_sq[np.arange(len(candidates)), candidates] = 0.0
        best = int(np.argmin(candidate_sq.sum(axis=1, dtype=np.float64)))
        chosen[step] = candidates[best]
        closest_sq = candidate_sq[best]
    return chosen


def _squared_distances(X: np.ndarray, squared_norms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Squared distances ``(len(rows), n_samples)`` from ``X[rows]`` to every row of ``X`` (one GEMM)."""
    distances = X[rows] @ X.T
    distances *= -2.0
    distances += squared_norms[None, :]
    distances += squared_norms[rows][:, None]
    np.maximum(distances, 0.0, out=distances)  # the expansion can dip below 0 by rounding
    return distances


def _assignment_block_rows(n_clusters: int) -> int:
    """Rows per block so that one block's ``(rows, K)`` distance matrix stays near 32 MB."""
    return max(256, (8 * 1024 * 1024) // max(n_clusters, 1))


def assign(
    X: np.ndarray, centers: np.ndarray, squared_norms: Optional[np.ndarray] = None, second: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest (and optionally second-nearest) centre of each row of ``X``, one GEMM per block.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32, C-contiguous
    centers : ndarray of shape (n_clusters, n_features), float32
    squared_norms : ndarray of shape (n_samples,), optional
        ``(X ** 2).sum(1)`` when already known.
    second : bool
        Also compute the distance to the second-nearest centre.

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
    nearest_sq : ndarray of shape (n_samples,), float32
        Squared distance to the assigned centre.
    second_sq : ndarray of shape (n_samples,), float32
        Squared distance to the second-nearest centre (``inf`` with one centre or ``second=False``).
    """
    n_samples = X.shape[0]
    n_clusters = centers.shape[0]
    if squared_norms is None:
        squared_norms = np.einsum("ij,ij->i", X, X)
    center_norms = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(n_samples, dtype=np.int64)
    nearest_sq = np.empty(n_samples, dtype=np.float32)
    second_sq = np.full(n_samples, np.inf, dtype=np.float32)
    block = _assignment_block_rows(n_clusters)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the ||x||^2 term does not change the ranking.
        partial = X[start:stop] @ centers.T
        partial *= -2.0
        partial += center_norms[None, :]
        rows = np.arange(stop - start)
        best = np.argmin(partial, axis=1)
        labels[start:stop] = best
        nearest_sq[start:stop] = partial[rows, best] + squared_norms[start:stop]
        if second and n_clusters > 1:
            partial[rows, best] = np.inf
            second_sq[start:stop] = partial.min(axis=1) + squared_norms[start:stop]
    np.maximum(nearest_sq, 0.0, out=nearest_sq)  # the expansion can dip below 0 by rounding
    np.maximum(second_sq, 0.0, out=second_sq)
    return labels, nearest_sq, second_sq


def _update_centers(X: np.ndarray, labels: np.ndarray, nearest_sq: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Means of the assigned points; an empty cluster moves onto the worst-fitted point (as scikit-learn)."""
    from scipy import sparse

    n_samples = X.shape[0]
    n_clusters = previous.shape[0]
    membership = sparse.csr_matrix(
        (np.ones(n_samples, dtype=np.float32), (labels, np.arange(n_samples))), shape=(n_clusters, n_samples)
    )
    sums = np.asarray(membership @ X, dtype=np.float64)
    counts = np.bincount(labels, minlength=n_clusters)
    centers = previous.astype(np.float64, copy=True)
    filled = counts > 0
    centers[filled] = sums[filled] / counts[filled, None]
    empty = np.flatnonzero(~filled)
    if empty.size:
        farthest = np.argsort(nearest_sq, kind="stable")[::-1][: empty.size]
        centers[empty[: farthest.size]] = X[farthest]
    return np.ascontiguousarray(centers, dtype=np.float32)


def lloyd(
    X: np.ndarray,
    centers: np.ndarray,
    max_iter: int,
    tol: float,
    progress: ProgressLike = None,
    stage: str = "k-means",
    squared_norms: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, float, int]:
    """Lloyd iterations from ``centers``; the callback is called after every iteration.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32, C-contiguous
    centers : ndarray of shape (n_clusters, n_features), float32
    max_iter : int
    tol : float
        Stop when an iteration lowers the inertia by less than this fraction (or labels stop changing).
    progress : callable, optional
    stage : str
    squared_norms : ndarray of shape (n_samples,), optional

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float32
    inertia : float
        Inertia of the last assignment.
    iterations : int
    """
    report = ensure(progress)
    if squared_norms is None:
        squared_norms = np.einsum("ij,ij->i", X, X)
    previous_labels: Optional[np.ndarray] = None
    previous_inertia = math.inf
    inertia = math.inf
    iterations = 0
    for iterations in range(1, max_iter + 1):
        labels, nearest_sq, _ = assign(X, centers, squared_norms)
        inertia = float(nearest_sq.sum(dtype=np.float64))
        if previous_labels is not None and np.array_equal(labels, previous_labels):
            break
        centers = _update_centers(X, labels, nearest_sq, centers)
        report(iterations / max_iter, stage)
        if math.isfinite(previous_inertia) and previous_inertia - inertia <= tol * previous_inertia:
            break
        previous_labels, previous_inertia = labels, inertia
    return centers, inertia, iterations


def fast_kmeans(
    X: np.ndarray,
    n_clusters: int,
    n_init: int = 3,
    max_iter: int = 100,
    tol: float = 1e-4,
    random_state: Optional[int] = 0,
    train_points_per_centroid: int = 256,
    seed_points_per_centroid: int = 32,
    progress: ProgressLike = None,
) -> KMeansFit:
    """k-means: k-means++ seeding on a subsample, Lloyd on a subsample, best of ``n_init``, polished on all.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32, C-contiguous, finite
    n_clusters : int
        ``1 <= n_clusters <= n_samples`` (checked by the caller).
    n_init : int
        Restarts (seeding + subsample Lloyd each); the lowest training inertia is kept.
    max_iter : int
        Upper bound on Lloyd iterations, for the subsample phase and for the polish each.
    tol : float
        Stop once an iteration lowers the inertia by less than this fraction.
    random_state : int or None
        Seed of every random choice (the result is deterministic for an int).
    train_points_per_centroid, seed_points_per_centroid : int
        Subsample sizes per centre for the Lloyd and the seeding phases (all points when fewer).
    progress : callable, optional
        ``progress(fraction, stage)``; may raise :class:`~imgcluster_gui.core.progress.Cancelled`.

    Returns
    -------
    KMeansFit
    """
    report = ensure(progress)
    n_samples = X.shape[0]
    rng = np.random.default_rng(random_state)
    train_size = min(n_samples, max(n_clusters * train_points_per_centroid, n_clusters))
    train = X[np.sort(rng.choice(n_samples, size=train_size, replace=False))] if train_size < n_samples else X
    train_norms = np.einsum("ij,ij->i", train, train)
    seed_size = min(train_size, max(n_clusters * seed_points_per_centroid, n_clusters))
    polish = train_size < n_samples
    restart_share = 0.7 if polish else 0.95  # of the bar; the full-data polish gets the rest

    best_centers: Optional[np.ndarray] = None
    best_inertia = math.inf
    best_iterations = 0
    for restart in range(n_init):
        stage = f"k-means restart {restart + 1}/{n_init}"
        start = restart_share * restart / n_init
        report(start, stage)
        restart_rng = np.random.default_rng(rng.integers(2**63 - 1))
        seeding_rows = (
            np.sort(restart_rng.choice(train_size, size=seed_size, replace=False))
            if seed_size < train_size
            else np.arange(train_size)
        )
        seeding_set = np.ascontiguousarray(train[seeding_rows])
        initial = seeding_set[kmeans_plusplus(seeding_set, n_clusters, restart_rng)]
        check(progress, stage)
        centers, inertia, iterations = lloyd(
            train,
            initial,
            max_iter,
            tol,
            wrap_callback(progress, start, restart_share * (restart + 1) / n_init),
            stage,
            squared_norms=train_norms,
        )
        if inertia < best_inertia:
            best_centers, best_inertia, best_iterations = centers, inertia, iterations
    assert best_centers is not None

    squared_norms = None
    if polish:
        squared_norms = np.einsum("ij,ij->i", X, X)
        best_centers, _, polish_iterations = lloyd(
            X,
            best_centers,
            max_iter,
            tol,
            wrap_callback(progress, restart_share, 0.95),
            "k-means on all points",
            squared_norms=squared_norms,
        )
        best_iterations += polish_iterations
    check(progress, "assigning points")
    labels, nearest_sq, second_sq = assign(X, best_centers, squared_norms, second=True)
    report(1.0, "k-means done")
    return KMeansFit(
        centers=best_centers,
        labels=labels,
        inertia=float(nearest_sq.sum(dtype=np.float64)),
        nearest_sq=nearest_sq,
        second_sq=second_sq,
        n_iter=best_iterations,
    )


def centroid_confidence(nearest_sq: np.ndarray, second_sq: np.ndarray) -> np.ndarray:
    """Per-sample membership confidence in [0, 1] from the distances to the two nearest centres.

    ``1 - d1 / d2`` (Euclidean distances): 1 at a centre, 0 on the boundary between two clusters
    (a centroid version of the silhouette); 1 when there is a single centre.

    Parameters
    ----------
    nearest_sq, second_sq : ndarray of shape (n_samples,)
        Squared distances to the nearest and second-nearest centre.

    Returns
    -------
    ndarray of shape (n_samples,), float32
    """
    nearest = np.sqrt(np.asarray(nearest_sq, dtype=np.float64))
    second = np.sqrt(np.asarray(second_sq, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(second > 0, nearest / second, 1.0)
    ratio = np.where(np.isinf(second), 0.0, ratio)
    return np.clip(1.0 - ratio, 0.0, 1.0).astype(np.float32)
