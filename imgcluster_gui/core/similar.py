"""Similar images ("More like this"): the nearest images to one image across all clusters.

The similarity is the cosine of the feature rows (the session's features in the window, the
backbone's in ``imgcluster similar``), computed exactly against every image: one matrix-vector
product, a few milliseconds for 100,000 images, so no index is needed and the answer never misses a
neighbour the way an approximate graph search can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .duplicates import unit_rows

__all__ = ["SimilarImages", "most_similar", "most_similar_to_vector"]


@dataclass
class SimilarImages:
    """The nearest images, best first.

    Attributes
    ----------
    indices : ndarray of int64
    similarities : ndarray of float32
        Cosine similarity (1 = same direction).
    """

    indices: np.ndarray
    similarities: np.ndarray

    @property
    def distances(self) -> np.ndarray:
        """Cosine distance ``1 - similarity``."""
        return (1.0 - self.similarities).astype(np.float32)

    def __len__(self) -> int:
        return int(self.indices.size)


def most_similar_to_vector(features: Any, query: Any, top: int = 12, exclude: Optional[Any] = None) -> SimilarImages:
    """The ``top`` rows of ``features`` most similar (cosine) to the vector ``query``.

    Parameters
    ----------
    features : array-like of shape (n_images, n_features)
    query : array-like of shape (n_features,)
    top : int
        How many to return (fewer when there are fewer images).
    exclude : array-like of int, optional
        Indices never returned (the query image itself).

    Returns
    -------
    SimilarImages
    """
    if int(top) < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    X = unit_rows(features)
    q = unit_rows(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
    if q.size != X.shape[1]:
        raise ValueError(f"the query has {q.size} features, the images {X.shape[1]}")
    scores = X @ q
    if exclude is not None:
        scores[np.asarray(exclude, dtype=np.int64).reshape(-1)] = -np.inf
    count = int(min(int(top), int(np.isfinite(scores).sum())))
    if count <= 0:
        return SimilarImages(np.zeros(0, np.int64), np.zeros(0, np.float32))
    best = np.argpartition(-scores, count - 1)[:count] if count < scores.size else np.arange(scores.size)
    best = best[np.isfinite(scores[best])]
    best = best[np.lexsort((best, -scores[best]))]  # most similar first, ties by index
    return SimilarImages(best.astype(np.int64), np.clip(scores[best], -1.0, 1.0).astype(np.float32))


def most_similar(features: Any, index: int, top: int = 12) -> SimilarImages:
    """The ``top`` images most similar to image ``index`` (itself left out).

    Parameters
    ----------
    features : array-like of shape (n_images, n_features)
    index : int
    top : int

    Returns
    -------
    SimilarImages
    """
    X = np.asarray(features)
    if not 0 <= int(index) < X.shape[0]:
        raise IndexError(f"image {index} is not one of the {X.shape[0]} images")
    return most_similar_to_vector(X, X[int(index)], top=top, exclude=[int(index)])


@dataclass
class FolderFeatures:
    """The backbone features of a folder's images (through the feature cache).

    Attributes
    ----------
    paths : list of str
        The images that have features, aligned with ``features``' rows.
    features : ndarray of float32, shape (n_images, n_features)
    skipped : list
        ``SkippedFile`` entries: files the scan or the decoder refused, with the reason.
    """

    paths: list[str]
    features: np.ndarray
    skipped: list


def folder_features(
    folder: Any,
    extra: Optional[list] = None,
    backbone: Optional[str] = None,
    recursive: bool = True,
    cache: bool = True,
    device: str = "auto",
    progress: Any = None,
) -> FolderFeatures:
    """Scan ``folder`` and extract (or read from the cache) the features of its images and of ``extra`` files.

    The command line's ``similar`` and ``duplicates`` use it: the second call on a folder reads
    every feature from the cache. Without ``backbone``, the app's default features (``DEFAULT_BACKBONES``
    side by side), which the near-duplicate threshold was chosen on, and which a session's grid compares.
    """
    from .dataset import scan_folder
    from .features.backbones import DEFAULT_BACKBONES
    from .features.extract import extract_features, extract_multiview
    from .progress import ensure

    progress = ensure(progress)
    scan = scan_folder(folder, recursive=recursive, progress=progress.sub(0.0, 0.1, "Scanning"))
    paths = [str(p) for p in scan.paths]
    known = set(paths)
    paths += [str(p) for p in (extra or []) if str(p) not in known]
    features_progress = progress.sub(0.1, 1.0, "Features")
    if backbone is None and len(DEFAULT_BACKBONES) > 1:
        result = extract_multiview(
            paths, list(DEFAULT_BACKBONES), device=device, cache=cache, progress=features_progress
        )
    else:
        result = extract_features(
            paths, backbone=backbone or DEFAULT_BACKBONES[0], device=device, cache=cache, progress=features_progress
        )
    return FolderFeatures([str(p) for p in result.paths], result.features, list(scan.skipped) + list(result.failed))
