"""Feature preprocessing before clustering: optional PCA (with whitening), then L2 normalisation.

L2 comes *after* PCA so that Euclidean distances between rows are cosine distances of the
reduced features, which is what k-means on CNN features is usually run on.
"""

from __future__ import annotations

import warnings
from typing import Optional, Union

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import normalize


def _check_features(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"features must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"features are empty (shape {X.shape})")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"features must be numbers, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    bad_rows = ~np.isfinite(X).all(axis=1)
    if bad_rows.any():
        raise ValueError(f"features contain NaN or infinite values in {int(bad_rows.sum())} of {X.shape[0]} rows")
    return X


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


def preprocess_features(X, pca_dims: Optional[int] = None, whiten: bool = False, l2: bool = True,
                        random_state: int = 0, return_notes: bool = False
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
    X = _check_features(X)
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
            notes.append(f"PCA dimensions capped at {cap} (asked {pca_dims}; the data has {n_samples} "
                         f"samples and {n_features} features).")
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
