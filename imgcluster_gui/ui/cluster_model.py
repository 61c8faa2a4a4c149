"""What the cluster grid keeps beside the session: the drag payload, the display order, the label diff.

The session (:class:`~imgcluster_gui.core.session.ClusterSession`) is the model in the napari
sense: it owns the labels and emits a :class:`~imgcluster_gui.core.session.SessionEvent` after
every edit.  The grid (:mod:`~imgcluster_gui.ui.cluster_grid`) never changes labels itself: a drop
pushes a :class:`~imgcluster_gui.ui.commands.MoveImagesCommand`, the session emits, and the grid
works out from its copy of the labels it last showed which images left and joined each cluster
(:func:`label_changes`), so that it updates only the clusters concerned.
"""

from __future__ import annotations

import json
from typing import Iterable, Optional

import numpy as np
from PySide6.QtCore import QMimeData

from ..core.session import UNASSIGNED, ClusterSession

MIME_TYPE = "application/x-imgcluster-image-indices"


def encode_indices(session: ClusterSession, indices: Iterable[int]) -> QMimeData:
    """Drag payload: the session's id and the dragged images' global indices."""
    mime = QMimeData()
    payload = {"session": session.uid, "indices": [int(i) for i in indices]}
    mime.setData(MIME_TYPE, json.dumps(payload).encode("ascii"))
    return mime


def decode_indices(session: Optional[ClusterSession], mime: Optional[QMimeData]) -> Optional[np.ndarray]:
    """The dragged global indices if ``mime`` comes from ``session``, else None."""
    if session is None or mime is None or not mime.hasFormat(MIME_TYPE):
        return None
    try:
        payload = json.loads(bytes(mime.data(MIME_TYPE).data()).decode("ascii"))
        if payload.get("session") != session.uid:
            return None  # from another result: its indices mean other images
        indices = np.asarray(payload["indices"], dtype=np.int64).reshape(-1)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if indices.size and (indices.min() < 0 or indices.max() >= len(session)):
        return None
    return indices


def cluster_sort_key(cluster: int) -> tuple[bool, int]:
    """Order of the sections: ascending ids, Unassigned last (as ``session.cluster_ids()``)."""
    return (cluster == UNASSIGNED, cluster)


def label_changes(shown: np.ndarray, labels: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """What changed between the labels a view ``shown`` and the session's ``labels`` now.

    Returns ``{cluster: (leaving, arriving)}`` for every cluster that lost or gained images:
    the global indices (ascending, int64) that left it and that joined it.
    """
    changed = np.flatnonzero(shown != labels).astype(np.int64, copy=False)
    if changed.size == 0:
        return {}
    before, after = shown[changed], labels[changed]
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for cluster in np.unique(np.concatenate([before, after])):
        out[int(cluster)] = (changed[before == cluster], changed[after == cluster])
    return out


#: How the grid orders the images inside a cluster (a view choice: the labels are untouched).
SORT_MODES = ("index", "name", "distance", "distance_desc", "misplaced", "time")


def sort_members(
    indices: np.ndarray,
    mode: str,
    names: Optional[np.ndarray] = None,
    features: Optional[np.ndarray] = None,
    times: Optional[np.ndarray] = None,
    misplaced: Optional[np.ndarray] = None,
) -> np.ndarray:
    """A cluster's image indices in display order.

    Parameters
    ----------
    indices : ndarray of int
        The cluster's global image indices (any order).
    mode : {"index", "name", "distance", "distance_desc", "misplaced", "time"}
        ``"index"``: the folder order (ascending index); ``"name"``: by file name (case-insensitive,
        ties by index); ``"distance"``: by distance to the cluster's centre in ``features``, outliers
        last; ``"distance_desc"``: outliers first (to review them); ``"misplaced"``: the likely
        misplaced first (``core/review.py``: most neighbours in other clusters; outliers first among
        equals); ``"time"``: by capture time, oldest first, images without a date last (in folder
        order).  Without ``names`` / ``features`` / ``times`` / ``misplaced`` the folder order is used
        (``"misplaced"`` without scores: outliers first).
    names : ndarray of str, optional
        Lower-cased file name of every image of the session.
    features : ndarray of shape (n_images, n_features), optional
        The session's features.
    times : ndarray of shape (n_images,), optional
        Capture instant of every image (``core.photo_meta.instants``), NaN = unknown.
    misplaced : ndarray of shape (n_images,), optional
        ``core.review.misplacement_scores`` of every image.

    Returns
    -------
    ndarray of int64
    """
    if mode not in SORT_MODES:
        raise ValueError(f"unknown sort mode {mode!r} (expected one of {', '.join(SORT_MODES)})")
    ordered = np.sort(np.asarray(indices, dtype=np.int64))
    if ordered.size < 2 or mode == "index":
        return ordered
    if mode == "name":
        if names is None:
            return ordered
        return ordered[np.argsort(names[ordered], kind="stable")]
    if mode == "time":
        if times is None:
            return ordered
        # NaN sorts last in numpy's argsort: the undated images follow, in folder order (stable).
        return ordered[np.argsort(np.asarray(times, dtype=np.float64)[ordered], kind="stable")]
    if mode == "misplaced":
        if misplaced is not None:
            from ..core.review import review_order

            return review_order(ordered, misplaced, features)
        mode = "distance_desc"
    if features is None:
        return ordered
    rows = np.asarray(features[ordered], dtype=np.float64)
    distances = np.linalg.norm(rows - rows.mean(axis=0), axis=1)
    order = np.argsort(-distances if mode == "distance_desc" else distances, kind="stable")
    return ordered[order]
