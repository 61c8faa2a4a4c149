"""Which images to review first: the ones the neighbour graph says are likely misplaced.

A person correcting a clustering looks through each cluster for the images that do not belong. The
grid's "Outliers first" order (distance to the cluster's centre, farthest first) shows the *atypical*
images first; many of those are in the right cluster (an unusual pose of the same person). An image
whose nearest neighbours are mostly in *other* clusters is more likely in the wrong one:
:func:`misplacement_scores` is the share of an image's neighbour-graph weight (the fuzzy weights the
default Leiden clustering uses) that lies outside its cluster, and :func:`review_order` sorts a
cluster by it, farthest from the centre first among equal scores.

Measured by ``benchmarks/curation.py`` (section "Review order"): to find the misplaced images of each
cluster, a person reading in this order looks at fewer images than in "Outliers first" (UMist 24
instead of 42 to find one per cluster; see ``benchmarks/results/curation.md``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def misplacement_scores(
    graph: Any, labels: np.ndarray, weighting: str = "fuzzy", n_neighbors: Optional[int] = None
) -> np.ndarray:
    """The share of each image's neighbour weight that lies in another cluster.

    Parameters
    ----------
    graph : KnnGraph
        The neighbour graph of the features the clustering ran on (:func:`.graph.build_knn_graph`).
    labels : array-like of int, shape (n_images,)
        The clusters now (``-1``, Unassigned, counts as one more group here).
    weighting : str
        Edge weights (:meth:`KnnGraph.adjacency`); ``'fuzzy'`` as the default Leiden.
    n_neighbors : int, optional
        Use each image's nearest ``n_neighbors`` only (default: all the graph holds).

    Returns
    -------
    ndarray of float64, shape (n_images,)
        0: every neighbour is in the image's cluster; 1: none is (also an image with no neighbour).
    """
    return share_outside(graph.adjacency(weighting=weighting, n_neighbors=n_neighbors), labels)


def share_outside(adjacency: Any, labels: np.ndarray) -> np.ndarray:
    """:func:`misplacement_scores` from the graph's symmetric weight matrix (``KnnGraph.adjacency``)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    adjacency = adjacency.tocsr()
    if adjacency.shape[0] != labels.size:
        raise ValueError(f"a graph of {adjacency.shape[0]} images for {labels.size} labels")
    rows = np.repeat(np.arange(labels.size), np.diff(adjacency.indptr))
    same = labels[rows] == labels[adjacency.indices]
    total = np.bincount(rows, weights=adjacency.data, minlength=labels.size)
    inside = np.bincount(rows, weights=adjacency.data * same, minlength=labels.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        share_inside = np.where(total > 0, inside / total, 0.0)
    return 1.0 - share_inside


def review_order(indices: np.ndarray, scores: np.ndarray, features: Optional[np.ndarray] = None) -> np.ndarray:
    """``indices`` (one cluster's images) with the likely misplaced first.

    Parameters
    ----------
    indices : ndarray of int
        The cluster's image indices.
    scores : ndarray of float, shape (n_images,)
        :func:`misplacement_scores` of every image.
    features : ndarray of shape (n_images, n_features), optional
        Ties (often many images with every neighbour inside) go farthest from the cluster's centre
        first; without features, in index order.

    Returns
    -------
    ndarray of int64
    """
    ordered = np.sort(np.asarray(indices, dtype=np.int64))
    if ordered.size < 2:
        return ordered
    if features is not None:
        rows = np.asarray(features[ordered], dtype=np.float64)
        distance = np.linalg.norm(rows - rows.mean(axis=0), axis=1)
    else:
        distance = np.zeros(ordered.size)
    # lexsort: the last key is the primary one; both descending.
    return ordered[np.lexsort((-distance, -np.asarray(scores, dtype=np.float64)[ordered]))]
