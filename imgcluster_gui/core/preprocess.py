"""Feature preprocessing before clustering: optional PCA (with whitening), then L2 normalisation.

L2 comes *after* PCA so that Euclidean distances between rows are cosine distances of the
reduced features, which is what k-means on CNN features is usually run on.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Optional, Union

import numpy as np


def check_features(X: Any, min_samples: int = 1, dtype: Any = np.float32) -> np.ndarray:
    """Validate a feature matrix and return it as a C-contiguous array of ``dtype``.

    The one check of a feature matrix: preprocessing, every clustering estimator (classic and
    deep) and auto-K call it.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    min_samples : int
        Fewest rows accepted (a clustering method may need 2 or 3).
    dtype : numpy dtype
        Of the returned array (float32 by default; some scikit-learn methods want float64).

    Raises
    ------
    ValueError
        Not 2-D, empty, too few samples, not numbers, or NaN / infinite values (with how many rows).
    """
    try:
        array = np.asarray(X)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"X must be a 2-D numeric feature matrix: {error}") from None
    if array.ndim != 2:
        raise ValueError(f"X must be a 2-D feature matrix (n_samples, n_features), got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"X must hold numbers, got dtype {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"X (the features) is empty: shape {array.shape}")
    if array.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} samples to cluster, got {array.shape[0]}")
    array = np.ascontiguousarray(array, dtype=dtype)
    bad_rows = ~np.isfinite(array).all(axis=1)
    if bad_rows.any():
        raise ValueError(
            f"X contains NaN or infinite values in {int(bad_rows.sum())} of {array.shape[0]} rows: "
            "check the feature extraction"
        )
    return array


def pca_cap(n_samples: int, n_features: int, whiten: bool) -> int:
    """The most PCA components that carry information for data of this shape.

    ``min(n_samples, n_features)`` is what PCA can return.  With whitening, one fewer than the
    number of samples: centred data has rank at most ``n_samples - 1``, and whitening a
    zero-variance component divides by zero.
    """
    cap = min(n_samples, n_features)
    if whiten and n_samples <= n_features:
        cap = n_samples - 1
    return max(cap, 0)


def preprocess_features(
    X,
    pca_dims: Optional[int] = None,
    whiten: bool = False,
    l2: bool = True,
    random_state: int = 0,
    return_notes: bool = False,
) -> Union[np.ndarray, tuple[np.ndarray, list[str]]]:
    """Reduce and normalise features.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Raw features.
    pca_dims : int, optional
        Keep this many principal components.  Capped at :func:`pca_cap` (``min(n_samples,
        n_features)``, one less with whitening); the cap is reported.  ``None`` = no PCA.
    whiten : bool
        Scale each principal component to unit variance.  Implies PCA: with ``pca_dims=None``
        all informative components are kept.
    l2 : bool
        Scale every row to unit Euclidean norm (after PCA).  All-zero rows stay zero.
    random_state : int
        Seed of the randomised SVD used on large inputs.
    return_notes : bool
        Return ``(X, notes)`` instead of ``X``.  Otherwise each note is issued as a ``UserWarning``
        so that it is never silent.

    Returns
    -------
    X_out : ndarray of shape (n_samples, n_components), float32
        ``n_components`` is ``n_features`` without PCA.
    notes : list of str
        Only when ``return_notes``: human-readable remarks (PCA capped or skipped).

    Raises
    ------
    ValueError
        ``X`` is not 2-D, is empty, holds NaN/inf, or ``pca_dims`` is not a positive integer.
    """
    from sklearn.decomposition import PCA  # here, not at import: check_features is wanted without scikit-learn's PCA
    from sklearn.preprocessing import normalize

    X = check_features(X)
    notes: list[str] = []
    n_samples, n_features = X.shape

    if pca_dims is not None:
        if isinstance(pca_dims, bool) or not isinstance(pca_dims, (int, np.integer)) or pca_dims < 1:
            raise ValueError(f"pca_dims must be a positive integer or None, got {pca_dims!r}")
    wants_pca = pca_dims is not None or whiten
    if wants_pca:
        cap = pca_cap(n_samples, n_features, whiten)
        n_components = cap if pca_dims is None else min(int(pca_dims), cap)
        if pca_dims is not None and pca_dims > cap:
            notes.append(
                f"PCA dimensions capped at {cap} (asked {pca_dims}; the data has {n_samples} "
                f"samples and {n_features} features)."
            )
        if n_components < 1:
            notes.append(f"PCA skipped: {n_samples} sample(s) are too few to estimate components.")
        else:
            pca = PCA(n_components=n_components, whiten=whiten, random_state=random_state)
            X = pca.fit_transform(X).astype(np.float32, copy=False)

    if l2:
        X = normalize(X, norm="l2", copy=True).astype(np.float32, copy=False)
    else:
        X = np.array(X, dtype=np.float32, copy=True)  # never hand back the caller's own buffer

    if return_notes:
        return X, notes
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return X


def umap_reduce(X: Any, n_components: int = 10, random_state: int = 0) -> np.ndarray:
    """``X`` reduced to ``n_components`` dimensions with UMAP (cosine, ``min_dist=0``) before the graph.

    UMAP pulls each image's neighbours together, so the groups the neighbour graph and k-means
    see are tighter (measured in ``benchmarks/features.py``). Needs ``umap-learn``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features after :func:`preprocess_features`.
    n_components : int
        Output dimensions (capped for tiny inputs).
    random_state : int
        UMAP's seed (fixed: the same folder gives the same groups).

    Raises
    ------
    ValueError
        umap-learn is not installed, or ``n_components`` is not a positive integer.
    """
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"UMAP dimensions must be a positive integer, got {n_components!r}")
    data = check_features(X)
    if importlib.util.find_spec("umap") is None:
        raise ValueError("UMAP reduction needs umap-learn: pip install umap-learn (or run without --umap)")
    from .clustering.autok import umap_space

    return umap_space(data, n_components=int(n_components), random_state=random_state)
