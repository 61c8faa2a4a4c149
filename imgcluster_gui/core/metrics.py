"""Cluster quality: internal (no ground truth) and external (against known classes) metrics.

Conventions
-----------
* Label ``-1`` means "unassigned / noise".  Internal metrics leave those samples out and
  report how many there were (``n_noise``).
* External metrics keep every sample.  For NMI and ARI the noise samples form one group of their
  own; for ACC and purity they count as wrongly assigned (an unassigned image is not a success).
* A metric that is undefined for the input (one cluster, all noise, ...) is ``None`` and
  ``reason`` says why, instead of raising.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_samples,
)
from sklearn.metrics.cluster import contingency_matrix

NOISE = -1


def _stratified_sample(labels: np.ndarray, sample_size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of about ``sample_size`` samples, each cluster in proportion and at least 2 of it.

    Keeping every cluster in the sample lets per-cluster silhouettes exist for small clusters.
    """
    clusters, counts = np.unique(labels, return_counts=True)
    fraction = sample_size / labels.shape[0]
    chosen = []
    for cluster, count in zip(clusters, counts):
        members = np.flatnonzero(labels == cluster)
        take = min(count, max(2, int(round(count * fraction))))
        chosen.append(rng.choice(members, size=take, replace=False) if take < count else members)
    return np.sort(np.concatenate(chosen))


def _unscored(labels: np.ndarray, reason: Optional[str]) -> dict[str, Any]:
    """The internal-metrics dict with the counts filled in and no score yet (``reason`` says why)."""
    keep = labels != NOISE
    clusters, sizes = np.unique(labels[keep], return_counts=True)
    return {
        "silhouette": None,
        "silhouette_sample_size": 0,
        "calinski_harabasz": None,
        "davies_bouldin": None,
        "per_cluster_silhouette": {},
        "per_cluster_size": {int(c): int(s) for c, s in zip(clusters, sizes)},
        "n_clusters": int(clusters.size),
        "n_noise": int((~keep).sum()),
        "n_samples": int(keep.sum()),
        "reason": reason,
    }


def internal_metrics(X, labels, sample_size: Optional[int] = 10000, random_state: int = 0) -> dict[str, Any]:
    """Silhouette, Calinski-Harabasz, Davies-Bouldin and per-cluster silhouette.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The features the clustering was run on.
    labels : array-like of int, shape (n_samples,)
        Cluster of each sample; ``-1`` = noise (left out).
    sample_size : int or None
        Silhouette costs O(n^2): above this many (non-noise) samples it is computed on a sample
        stratified by cluster, and the overall value is each cluster's mean weighted by the
        cluster's full size.  ``None`` = always exact.  CH and DB always use every sample.
    random_state : int
        Seed of the sample.

    Returns
    -------
    dict
        ``silhouette`` (float or None), ``silhouette_sample_size`` (int: samples it was computed
        on), ``calinski_harabasz``, ``davies_bouldin`` (float or None),
        ``per_cluster_silhouette`` (dict cluster -> float), ``per_cluster_size`` (dict cluster ->
        int), ``n_clusters``, ``n_noise``, ``n_samples`` (non-noise samples used) and ``reason``
        (None, or why the metrics are None).
    """
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    labels = np.asarray(labels).astype(np.int64, copy=False)
    if X.ndim != 2 or labels.ndim != 1 or X.shape[0] != labels.shape[0]:
        raise ValueError(f"X must be (n_samples, n_features) and labels (n_samples,); got {X.shape} and {labels.shape}")

    keep = labels != NOISE
    X_used, labels_used = X[keep], labels[keep]
    n_used = int(keep.sum())
    clusters, sizes = np.unique(labels_used, return_counts=True)
    result = _unscored(labels, reason=None)
    if n_used == 0:
        result["reason"] = "every sample is noise (label -1): no cluster to score"
        return result
    if clusters.size < 2:
        result["reason"] = f"needs at least 2 clusters, found {clusters.size}"
        return result
    if clusters.size >= n_used:
        result["reason"] = f"needs fewer clusters than samples ({clusters.size} clusters for {n_used} samples)"
        return result

    result["calinski_harabasz"] = float(calinski_harabasz_score(X_used, labels_used))
    with np.errstate(divide="ignore", invalid="ignore"):
        result["davies_bouldin"] = float(davies_bouldin_score(X_used, labels_used))

    if sample_size is not None and n_used > sample_size:
        rng = np.random.default_rng(random_state)
        idx = _stratified_sample(labels_used, int(sample_size), rng)
    else:
        idx = np.arange(n_used)
    sample_labels = labels_used[idx]
    scores = silhouette_samples(X_used[idx], sample_labels)
    per_cluster = {int(c): float(scores[sample_labels == c].mean()) for c in clusters}
    # Weight each cluster's mean by its full size, so the stratified sample is unbiased overall.
    result["silhouette"] = float(sum(per_cluster[int(c)] * s for c, s in zip(clusters, sizes)) / n_used)
    result["silhouette_sample_size"] = int(idx.size)
    result["per_cluster_silhouette"] = per_cluster
    return result


def clustering_metrics(
    X, labels, ground_truth: Optional[Sequence] = None, sample_size: Optional[int] = 10000, random_state: int = 0
) -> dict[str, Any]:
    """The metrics of one assignment as a result shows them: the one function for a run and after edits.

    The pipeline scores its result with it, and a session rescoring its labels after hand edits
    calls it too, so the same labels always give the same numbers.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or None
        The features the clustering ran on. None (a session saved without features): the
        internal scores are None with a ``reason``; the sizes and counts are still given.
    labels : array-like of int, shape (n_samples,)
        Cluster of each sample; ``-1`` = unassigned.
    ground_truth : sequence of hashable or None, length n_samples, optional
        Known classes; ``None`` entries (images without a class) are left out of the external
        metrics.
    sample_size, random_state
        Passed to :func:`internal_metrics`.

    Returns
    -------
    dict
        :func:`internal_metrics` keys, plus ``"external"``: :func:`external_metrics` over the
        samples with a known class, with ``n_labelled`` (how many), or None when fewer than two
        samples have one.
    """
    labels = np.asarray(labels).astype(np.int64, copy=False)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if X is not None:
        result = internal_metrics(X, labels, sample_size=sample_size, random_state=random_state)
    else:
        result = _unscored(labels, reason="the session has no features")
    result["external"] = None
    if ground_truth is not None:
        if len(ground_truth) != labels.shape[0]:
            raise ValueError(f"ground_truth has {len(ground_truth)} entries for {labels.shape[0]} labels")
        known = [i for i, g in enumerate(ground_truth) if g is not None]
        if len(known) >= 2:
            external = external_metrics([ground_truth[i] for i in known], labels[known])
            external["n_labelled"] = len(known)
            result["external"] = external
    return result


def silhouettes_of(X, label_sets: Sequence, sample_size: int = 2000, random_state: int = 0) -> list[Optional[float]]:
    """The mean silhouette of several labelings of the same ``X``, on one shared sample.

    The pairwise distances of one random sample (``sample_size`` rows) are computed once (one
    BLAS product) and every labeling is scored on them, so a ladder of granularity levels costs
    about one silhouette. Noise (-1) is left out; None where a labeling has fewer than 2 groups
    in the sample.
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, size=sample_size, replace=False)) if n > sample_size else np.arange(n)
    sample = X[rows]
    norms = np.einsum("ij,ij->i", sample, sample)
    distances = norms[:, None] + norms[None, :] - 2.0 * (sample @ sample.T)
    np.maximum(distances, 0.0, out=distances)
    np.sqrt(distances, out=distances)
    scores: list[Optional[float]] = []
    for labels in label_sets:
        labels = np.asarray(labels, dtype=np.int64)[rows]
        keep = labels != NOISE
        groups, codes = np.unique(labels[keep], return_inverse=True)
        if groups.size < 2 or groups.size >= keep.sum():
            scores.append(None)
            continue
        d = distances[np.ix_(keep, keep)]
        onehot = np.zeros((codes.size, groups.size), dtype=np.float32)
        onehot[np.arange(codes.size), codes] = 1.0
        sizes = onehot.sum(axis=0)
        totals = d @ onehot  # distance of each sample to each group, summed
        own = totals[np.arange(codes.size), codes] / np.maximum(sizes[codes] - 1, 1)
        mean_to = totals / sizes[None, :]
        mean_to[np.arange(codes.size), codes] = np.inf
        nearest = mean_to.min(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (nearest - own) / np.maximum(own, nearest)
        value[sizes[codes] <= 1] = 0.0  # scikit-learn's convention for singletons
        scores.append(float(np.nan_to_num(value).mean()))
    return scores


def _encode(values: Union[Sequence[Any], np.ndarray], name: str) -> np.ndarray:
    """Integer codes for labels of any hashable type (strings, ints, mixed)."""
    array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if any(v is None for v in array):
        raise ValueError(f"{name} contains None: drop unlabelled samples first")
    keys = np.array([f"{type(v).__name__}:{v}" for v in array]) if array.size else np.array([], dtype=str)
    _, codes = np.unique(keys, return_inverse=True)
    return codes.astype(np.int64)


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    true_codes = _encode(y_true, "y_true")
    pred = np.asarray(y_pred)
    if pred.ndim != 1 or pred.shape[0] != true_codes.shape[0]:
        raise ValueError(f"y_true and y_pred must have the same length; got {true_codes.shape[0]} and {pred.shape}")
    if true_codes.shape[0] == 0:
        raise ValueError("no samples to score")
    is_noise = np.zeros(pred.shape[0], dtype=bool)
    if np.issubdtype(pred.dtype, np.integer):
        is_noise = pred == NOISE
    pred_codes = _encode(pred, "y_pred")
    return true_codes, pred_codes, is_noise


def cluster_accuracy(y_true, y_pred) -> float:
    """Clustering accuracy: the best one-to-one matching of clusters to classes (Hungarian).

    Works with any number of clusters and classes (an unmatched cluster counts as wrong) and
    with string labels.  Noise (``-1``) is never matched: those samples count as wrong.

    Parameters
    ----------
    y_true : sequence, shape (n_samples,)
    y_pred : sequence, shape (n_samples,)

    Returns
    -------
    float in [0, 1]
    """
    true_codes, pred_codes, is_noise = _check_pair(y_true, y_pred)
    n = true_codes.shape[0]
    assigned = ~is_noise
    if not assigned.any():
        return 0.0
    table = contingency_matrix(pred_codes[assigned], true_codes[assigned])  # clusters x classes
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / n)


def purity(y_true, y_pred) -> float:
    """Share of samples whose cluster's majority class is their own class (noise counts as wrong)."""
    true_codes, pred_codes, is_noise = _check_pair(y_true, y_pred)
    assigned = ~is_noise
    if not assigned.any():
        return 0.0
    table = contingency_matrix(pred_codes[assigned], true_codes[assigned])
    return float(table.max(axis=1).sum() / true_codes.shape[0])


def external_metrics(y_true, y_pred) -> dict[str, Any]:
    """NMI, ARI, ACC (Hungarian) and purity against known classes.

    Parameters
    ----------
    y_true : sequence, shape (n_samples,)
        Known classes (strings or integers).
    y_pred : sequence of int, shape (n_samples,)
        Clusters; ``-1`` = noise (see the module docstring for how it is counted).

    Returns
    -------
    dict
        ``nmi``, ``ari``, ``acc``, ``purity`` (floats), ``n_classes``, ``n_clusters`` (noise not
        counted), ``n_noise``, ``n_samples``.
    """
    true_codes, pred_codes, is_noise = _check_pair(y_true, y_pred)
    return {
        "nmi": float(normalized_mutual_info_score(true_codes, pred_codes)),
        "ari": float(adjusted_rand_score(true_codes, pred_codes)),
        "acc": cluster_accuracy(y_true, y_pred),
        "purity": purity(y_true, y_pred),
        "n_classes": int(np.unique(true_codes).size),
        "n_clusters": int(np.unique(pred_codes[~is_noise]).size),
        "n_noise": int(is_noise.sum()),
        "n_samples": int(true_codes.shape[0]),
    }
