"""The Qt model of one cluster's images, the drag payload, and the diff that keeps models in step.

The session (:class:`~imgcluster_gui.core.session.ClusterSession`) is the model in the napari
sense: it owns the labels and emits a :class:`~imgcluster_gui.core.session.SessionEvent` after
every edit.  :class:`ClusterImagesModel` adapts one cluster of it to Qt's item views:

* a drop calls the model (:meth:`ClusterImagesModel.dropMimeData`), which pushes a
  :class:`~imgcluster_gui.ui.commands.MoveImagesCommand` on the undo stack; the model does not
  change there;
* the session then emits, the grid works out from its copy of the labels it last showed which
  images left and joined each cluster (:func:`label_changes`), and each affected model applies
  that with ``beginRemoveRows`` / ``beginInsertRows`` for the rows concerned
  (:meth:`ClusterImagesModel.apply_moves`): views keep their selection and scroll position.
  Only a change too scattered to describe in few row ranges resets a model.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from PySide6.QtCore import QAbstractListModel, QMimeData, QModelIndex, Qt
from PySide6.QtGui import QUndoStack

from ..core.session import UNASSIGNED, ClusterSession
from .commands import MoveImagesCommand

MIME_TYPE = "application/x-imgcluster-image-indices"
IndexRole = Qt.ItemDataRole.UserRole + 1  # the image's global index in the session
PathRole = Qt.ItemDataRole.UserRole + 2
#: Above this many contiguous row ranges (removed + inserted) a model resets instead (a regrouping
#: scatters thousands of images: one reset is cheaper than thousands of row signals).
MAX_INCREMENTAL_RANGES = 256
# Computed once: enum arithmetic is slow in Python and flags() runs often.
_ITEM_FLAGS = (
    Qt.ItemFlag.ItemIsEnabled
    | Qt.ItemFlag.ItemIsSelectable
    | Qt.ItemFlag.ItemIsDragEnabled
    | Qt.ItemFlag.ItemIsDropEnabled
    | Qt.ItemFlag.ItemNeverHasChildren
)
_EMPTY = np.zeros(0, dtype=np.int64)


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


def row_ranges(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted ``rows`` as inclusive ``(first, last)`` ranges of consecutive rows."""
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1)
    starts = np.concatenate([rows[:1], rows[breaks + 1]])
    ends = np.concatenate([rows[breaks], rows[-1:]])
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


class ClusterImagesModel(QAbstractListModel):
    """The images of one cluster, read from the session (rows ascend by global index).

    Drops push a :class:`MoveImagesCommand` on ``undo_stack``; the model itself changes only when
    the grid passes it the session's change (:meth:`apply_moves`, or :meth:`refresh` to re-read
    the cluster), with row insertions and removals so that views keep their state.
    """

    def __init__(
        self, session: ClusterSession, cluster: int, undo_stack: QUndoStack, parent: Optional[Any] = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.cluster = int(cluster)
        self.undo_stack = undo_stack
        self._indices: np.ndarray = session.indices_of(self.cluster)

    # ---- reading
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else int(self._indices.size)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < self._indices.size:
            return None
        image = int(self._indices[index.row()])
        if role == IndexRole:
            return image
        if role == PathRole:
            return self.session.paths[image]
        if role == Qt.ItemDataRole.DisplayRole:
            return os.path.basename(self.session.paths[image])
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.session.paths[image]
        return None

    def global_indices(self) -> np.ndarray:
        """Global indices of the rows, ascending (a view: do not modify)."""
        return self._indices

    def global_index(self, row: int) -> int:
        return int(self._indices[row])

    def path_at(self, row: int) -> str:
        """The file of ``row`` (the delegate's fast path)."""
        return self.session.paths[self._indices[row]]

    def row_of(self, image: int) -> int:
        """The row of global index ``image``, or -1 when it is not in this cluster."""
        row = int(np.searchsorted(self._indices, image))
        return row if row < self._indices.size and self._indices[row] == image else -1

    # ---- following the session
    def plan_moves(self, leaving: np.ndarray, arriving: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows ``leaving`` occupies now, the rows ``arriving`` will occupy, and the new indices.

        Rows ascend.  Indices of ``leaving`` not shown here, and of ``arriving`` already shown,
        are ignored.
        """
        old = self._indices
        leaving = np.unique(np.asarray(leaving, dtype=np.int64))
        arriving = np.unique(np.asarray(arriving, dtype=np.int64))
        removed_rows = _EMPTY
        if leaving.size and old.size:
            rows = np.minimum(np.searchsorted(old, leaving), old.size - 1)
            removed_rows = rows[old[rows] == leaving].astype(np.int64, copy=False)
        kept = np.delete(old, removed_rows) if removed_rows.size else old
        if arriving.size and kept.size:
            rows = np.minimum(np.searchsorted(kept, arriving), kept.size - 1)
            arriving = arriving[kept[rows] != arriving]
        if not arriving.size:
            return removed_rows, _EMPTY, kept
        new = np.union1d(kept, arriving).astype(np.int64, copy=False)
        return removed_rows, np.searchsorted(new, arriving).astype(np.int64, copy=False), new

    def apply_moves(self, leaving: np.ndarray, arriving: np.ndarray, max_ranges: int = MAX_INCREMENTAL_RANGES) -> bool:
        """Remove the rows of ``leaving`` and insert rows for ``arriving`` (global indices).

        Each run of consecutive rows is one ``beginRemoveRows`` / ``beginInsertRows`` pair (removals
        from the last run up, then insertions from the first run down, so the rows of every signal
        are right when it is emitted).  Returns False when it reset the model instead: the change
        was spread over more than ``max_ranges`` row ranges.
        """
        removed_rows, inserted_rows, final = self.plan_moves(leaving, arriving)
        removed, inserted = row_ranges(removed_rows), row_ranges(inserted_rows)
        if not removed and not inserted:
            return True
        if len(removed) + len(inserted) > max_ranges:
            self.beginResetModel()
            self._indices = final
            self.endResetModel()
            return False
        root = QModelIndex()
        if removed:
            old = self._indices
            keep = np.ones(old.size, dtype=bool)
            for first, last in reversed(removed):
                self.beginRemoveRows(root, first, last)
                keep[first : last + 1] = False
                self._indices = old[keep]
                self.endRemoveRows()
        if inserted:
            pending = np.zeros(final.size, dtype=bool)
            pending[inserted_rows] = True
            for first, last in inserted:
                self.beginInsertRows(root, first, last)
                pending[first : last + 1] = False
                self._indices = final[~pending]
                self.endInsertRows()
        self._indices = final
        return True

    def refresh(self) -> bool:
        """Re-read the cluster's members from the session (incrementally, see :meth:`apply_moves`)."""
        new = self.session.indices_of(self.cluster)
        old = self._indices
        return self.apply_moves(np.setdiff1d(old, new, assume_unique=True), np.setdiff1d(new, old, assume_unique=True))

    def reset(self) -> None:
        """Re-read the cluster's members with a model reset (views lose their selection)."""
        self.beginResetModel()
        self._indices = self.session.indices_of(self.cluster)
        self.endResetModel()

    # ---- drag and drop
    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        return _ITEM_FLAGS if index.isValid() else Qt.ItemFlag.ItemIsDropEnabled

    def supportedDropActions(self) -> Qt.DropAction:  # noqa: N802 - Qt API
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    def supportedDragActions(self) -> Qt.DropAction:  # noqa: N802 - Qt API
        return Qt.DropAction.MoveAction

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt API
        return [MIME_TYPE]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:  # noqa: N802 - Qt API
        rows = sorted({i.row() for i in indexes if i.isValid()})
        return encode_indices(self.session, self._indices[rows] if rows else [])

    def canDropMimeData(
        self,
        data: QMimeData,
        action: Qt.DropAction,
        row: int,
        column: int,  # noqa: N802
        parent: QModelIndex,
    ) -> bool:
        indices = decode_indices(self.session, data)
        return indices is not None and bool(np.any(self.session.labels[indices] != self.cluster))

    def dropMimeData(
        self,
        data: QMimeData,
        action: Qt.DropAction,
        row: int,
        column: int,  # noqa: N802
        parent: QModelIndex,
    ) -> bool:
        """Move the dropped images into this cluster through the undo stack."""
        if action == Qt.DropAction.IgnoreAction or not self.canDropMimeData(data, action, row, column, parent):
            return False
        self.undo_stack.push(MoveImagesCommand(self.session, decode_indices(self.session, data), self.cluster))
        return True

    def removeRows(self, row: int, count: int, parent: QModelIndex = QModelIndex()) -> bool:  # noqa: N802, B008
        # A finished move-drag asks the source to remove its rows: the session already moved them.
        return False
