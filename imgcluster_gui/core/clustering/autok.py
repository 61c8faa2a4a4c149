"""Choose the number of clusters: sweep K, score each clustering by the silhouette.

The silhouette is the criterion of the project's seed papers (and of clustimage); the
Calinski-Harabasz and Davies-Bouldin indices are reported beside it for the user to compare.
Above ``sample_size`` samples the silhouette (quadratic in N) is computed on one fixed random
sample, the same for every K so the scores stay comparable; CH and DB use all samples (linear).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..progress import ProgressLike, ensure, wrap_callback


@dataclass
class AutoKResult:
    """The outcome of :func:`choose_k`.

    Attributes
    ----------
    best_k : int
        The K with the highest silhouette.
    ks : list of int
        The K values tried, ascending.
    silhouette, calinski_harabasz, davies_bouldin : list of float or None
        Score per K (None where undefined, e.g. fewer than 2 clusters came out).
        Higher is better for the first two, lower for Davies-Bouldin.
    labels : ndarray of shape (n_samples,), int64
        The clustering at ``best_k``.
    sample_size : int
        Samples the silhouette was computed on.
    n_clusters_found : list of int
        Distinct clusters each run actually produced (may be below K on degenerate data).
    """

    best_k: int
    ks: list[int]
    silhouette: list[Optional[float]]
    calinski_harabasz: list[Optional[float]]
    davies_bouldin: list[Optional[float]]
    labels: np.ndarray
    sample_size: int
    n_clusters_found: list[int] = field(default_factory=list)


def k_range(k_min: int, k_max: int, n_samples: int) -> list[int]:
    """K values to try: ``[k_min, k_max]`` clipped to ``[2, n_samples - 1]`` (the silhouette's range)."""
    if n_samples < 3:
        raise ValueError(f"choosing K needs at least 3 samples, got {n_samples}")
    low = max(2, int(k_min))
    high = min(int(k_max), n_samples - 1)
    if low > high:
        raise ValueError(
            f"no K to try: the range [{k_min}, {k_max}] clipped to [2, {n_samples - 1}] ({n_samples} samples) is empty"
        )
    return list(range(low, high + 1))


SWEEP_SPACES = ("features", "umap")


def umap_space(
    X: np.ndarray, n_components: int = 10, n_neighbors: int = 15, random_state: Optional[int] = 0
) -> np.ndarray:
    """A low-dimensional UMAP embedding (cosine, ``min_dist=0``: clusters packed tight) of ``X``."""
    try:
        import umap
    except ImportError:
        raise ValueError("the silhouette sweep in UMAP space needs umap-learn: pip install umap-learn") from None
    n_samples = X.shape[0]
    components = max(2, min(n_components, X.shape[1], n_samples - 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba / n_jobs notices
        model = umap.UMAP(
            n_components=components,
            n_neighbors=max(2, min(n_neighbors, n_samples - 1)),
            min_dist=0.0,
            metric="cosine",
            random_state=random_state,
            init="spectral" if n_samples > components + 1 else "random",
        )
        return np.ascontiguousarray(model.fit_transform(X), dtype=np.float32)


def choose_k(
    X: Any,
    algorithm: str = "kmeans",
    k_min: int = 2,
    k_max: int = 30,
    random_state: Any = 0,
    sample_size: int = 5000,
    progress: ProgressLike = None,
    space: str = "features",
    **params: Any,
) -> AutoKResult:
    """Cluster ``X`` for every K in the range and pick the K of highest silhouette.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    algorithm : str
        A registry id that takes K (``spec.uses_k``); default k-means.
    k_min, k_max : int
        The range, clipped to ``[2, n_samples - 1]``.
    random_state : int or None
        Seed of the clusterings and of the silhouette sample.
    sample_size : int
        Largest number of samples the silhouette is computed on.
    space : {'features', 'umap'}
        Where the sweep clusters and scores: the features themselves (the seed papers'
        criterion), or a 10-d UMAP embedding of them (``umap-learn``; the optional ``umap``
        extra). Silhouettes of CNN features peak at K = 2 or at the range end on most sets;
        in a UMAP space, where each group's neighbours are pulled together, the curve peaks
        closer to the number of classes on COIL-20 (20 instead of 34; README).
    progress : callable, optional
        ``progress(fraction, stage)``; raising :class:`~imgcluster_gui.core.progress.Cancelled` stops.
    **params
        Algorithm parameters passed to :func:`~imgcluster_gui.core.clustering.registry.make_estimator`.

    Returns
    -------
    AutoKResult

    Raises
    ------
    ValueError
        The algorithm does not take K, too few samples, an empty range, or no K gave a defined score.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    from .base import check_features, seed_from
    from .registry import get_algorithm, make_estimator

    spec = get_algorithm(algorithm)
    if not spec.uses_k:
        raise ValueError(f"{spec.name} chooses its own number of clusters: there is no K to sweep")
    report = ensure(progress)
    data = check_features(X, min_samples=3, dtype=np.float32)
    n_samples = data.shape[0]
    ks = k_range(k_min, k_max, n_samples)
    if space not in SWEEP_SPACES:
        raise ValueError(f"space must be one of {SWEEP_SPACES}, got {space!r}")
    if space == "umap":
        report(0.0, "UMAP embedding for the sweep")
        data = umap_space(data, random_state=seed_from(random_state))
        progress = wrap_callback(progress, 0.2, 1.0)
        report = ensure(progress)
    if int(sample_size) < 3:
        raise ValueError(f"sample_size must be at least 3, got {sample_size}")
    rng = np.random.default_rng(seed_from(random_state))
    if n_samples > sample_size:
        scored = np.sort(rng.choice(n_samples, size=int(sample_size), replace=False))
    else:
        scored = np.arange(n_samples)

    silhouettes: list[Optional[float]] = []
    calinski: list[Optional[float]] = []
    davies: list[Optional[float]] = []
    found: list[int] = []
    best_labels: Optional[np.ndarray] = None
    best_score = -np.inf
    best_k = ks[0]
    for position, k in enumerate(ks):
        step = wrap_callback(progress, position / len(ks), (position + 1) / len(ks), f"K={k}: ")
        estimator = make_estimator(algorithm, n_clusters=k, random_state=random_state, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "fewer clusters than K" is recorded below instead
            labels = np.asarray(estimator.fit(data, progress=step).labels_, dtype=np.int64)
        assigned = labels >= 0
        n_found = len(np.unique(labels[assigned]))
        found.append(n_found)
        sample_labels = labels[scored]
        sample_assigned = sample_labels >= 0
        sample_found = len(np.unique(sample_labels[sample_assigned]))
        silhouette = (
            float(silhouette_score(data[scored][sample_assigned], sample_labels[sample_assigned]))
            if 2 <= sample_found < sample_assigned.sum()
            else None
        )
        defined = 2 <= n_found < assigned.sum()
        silhouettes.append(silhouette)
        calinski.append(float(calinski_harabasz_score(data[assigned], labels[assigned])) if defined else None)
        davies.append(float(davies_bouldin_score(data[assigned], labels[assigned])) if defined else None)
        if silhouette is not None and silhouette > best_score:
            best_score, best_k, best_labels = silhouette, k, labels
        report(
            (position + 1) / len(ks), f"K={k}: silhouette {silhouette if silhouette is None else round(silhouette, 3)}"
        )
    if best_labels is None:
        raise ValueError("no K gave at least 2 clusters with a defined silhouette (are all samples identical?)")
    return AutoKResult(
        best_k=best_k,
        ks=ks,
        silhouette=silhouettes,
        calinski_harabasz=calinski,
        davies_bouldin=davies,
        labels=best_labels,
        sample_size=len(scored),
        n_clusters_found=found,
    )
