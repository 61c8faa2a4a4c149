"""Exact k-nearest neighbours by blocked float32 BLAS products (used by PIC and DBSCAN's auto eps).

numpy rather than faiss for the same reason as :mod:`.fast_kmeans`: faiss's OpenMP search slows
down several-fold on a busy 2-core machine, a BLAS product does not.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..progress import ProgressCallback, check


def nearest_neighbors(X: np.ndarray, n_neighbors: int, queries: Optional[np.ndarray] = None,
                      progress: Optional[ProgressCallback] = None,
                      block_bytes: int = 64 * 1024 * 1024) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_neighbors`` nearest rows of ``X`` for each query row, nearest first.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The points searched.
    n_neighbors : int
        ``1 <= n_neighbors <= n_samples`` (without ``queries`` a point's own row is excluded, so
        at most ``n_samples - 1``).
    queries : ndarray of int of shape (n_queries,), optional
        Row indices of ``X`` to search for; default every row. A query never gets itself back
        (another row with the same values is a neighbour at distance 0).
    progress : callable, optional
        Heartbeats between blocks (cancel point).
    block_bytes : int
        Memory for one block of the query-by-point distance matrix.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float32
        Squared Euclidean distances, ascending.
    indices : ndarray of shape (n_queries, n_neighbors), int64
    """
    data = np.ascontiguousarray(X, dtype=np.float32)
    n_samples = data.shape[0]
    query_rows = np.arange(n_samples) if queries is None else np.asarray(queries, dtype=np.int64)
    if not 1 <= n_neighbors <= n_samples - 1:
        raise ValueError(f"n_neighbors must be between 1 and {n_samples - 1} for {n_samples} points, "
                         f"got {n_neighbors}")
    squared_norms = np.einsum("ij,ij->i", data, data)
    distances = np.empty((len(query_rows), n_neighbors), dtype=np.float32)
    indices = np.empty((len(query_rows), n_neighbors), dtype=np.int64)
    block = max(1, block_bytes // (4 * n_samples))
    for start in range(0, len(query_rows), block):
        rows = query_rows[start:start + block]
        squared = data[rows] @ data.T
        squared *= -2.0
        squared += squared_norms[None, :]
        squared += squared_norms[rows][:, None]
        np.maximum(squared, 0.0, out=squared)
        squared[np.arange(len(rows)), rows] = np.inf  # never one's own neighbour
        nearest = np.argpartition(squared, n_neighbors - 1, axis=1)[:, :n_neighbors]
        nearest_sq = np.take_along_axis(squared, nearest, axis=1)
        order = np.lexsort((nearest, nearest_sq), axis=1)  # by distance, ties by index: deterministic
        indices[start:start + len(rows)] = np.take_along_axis(nearest, order, axis=1)
        distances[start:start + len(rows)] = np.take_along_axis(nearest_sq, order, axis=1)
        check(progress, "nearest neighbours")
    return distances, indices
