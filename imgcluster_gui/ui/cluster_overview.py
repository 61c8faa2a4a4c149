"""The cluster overview: every cluster of the shown session in one list, each row a drop target.

One row per cluster (the session's ``cluster_ids()``, Unassigned last whatever the sort): its
colour (the scatter's :func:`~imgcluster_gui.ui.scatter.cluster_colour`), a representative
thumbnail (the member nearest the cluster's centre in ``session.features``, else its first image),
the name, the number of images and a cohesion score.  Cohesion is the cluster's mean silhouette
from ``session.metrics['per_cluster_silhouette']`` when the session has one (metrics recomputed
after edits replace it), else the mean cosine similarity of its members to their centroid,
computed here from ``session.features``.

Clicking a row emits :attr:`ClusterOverview.clusterActivated` (the window scrolls the grid to that
cluster).  Dragging thumbnails from the grid over a row highlights it; dropping emits
:attr:`ClusterOverview.dropRequested` with the dragged images and the row's cluster, which the
window turns into the undoable move.  The payload is the grid's own (``cluster_model``'s
``encode_indices`` / ``decode_indices``): drags from another session are refused.

The list follows the session's events (:meth:`ClusterOverview.set_session`, as the scatter and
metrics panel do): counts, names, representatives and cohesion update after every edit, only for
the clusters the edit touched, and rows move with layout changes so the scroll position and the
selection stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QIcon,
    QImage,
    QPainter,
    QPen,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.session import UNASSIGNED
from .cluster_model import MIME_TYPE, decode_indices
from .scatter import cluster_colour
from .thumbnails import DEFAULT_THUMBNAIL_SIZE, ThumbnailLoader

ClusterRole = Qt.ItemDataRole.UserRole + 1  # the cluster id
SizeRole = Qt.ItemDataRole.UserRole + 2
CohesionRole = Qt.ItemDataRole.UserRole + 3  # float or None
RepresentativeRole = Qt.ItemDataRole.UserRole + 4  # path of the representative image, or None
DropTargetRole = Qt.ItemDataRole.UserRole + 5  # True on the row under a drag

#: Sort orders of the combo box: (key, label). Unassigned stays last in every one.
SORT_ORDERS = (
    ("grid", "Grid order"),
    ("size", "Size (largest first)"),
    ("name", "Name"),
    ("cohesion", "Cohesion (weakest first)"),
)
ROW_THUMBNAIL = 32  # the thumbnail's side in a row, px: compact, so many clusters are drop targets at once
SWATCH_WIDTH = 6
ROW_PADDING = 3
_DROP_COLOUR = QColor("#3d7eff")


@dataclass
class ClusterSummary:
    """What a row shows of one cluster."""

    cluster: int
    name: str
    size: int
    cohesion: Optional[float]  # None when undefined (one image, no features, Unassigned)
    representative: Optional[int]  # global index of the representative image
    suggested: bool = False  # the name is the one suggested from ImageNet classes (shown in italics)
    suggestion_tip: str = ""  # where a suggestion comes from ("suggested from ImageNet classes: ...")


def _unit_rows(features: np.ndarray) -> np.ndarray:
    rows = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def centroid_cosines(features: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``features`` (n, d) to the direction of their mean (n,)."""
    unit = _unit_rows(features)
    centre = unit.mean(axis=0)
    norm = float(np.linalg.norm(centre))
    if norm <= 1e-12:
        return np.zeros(len(unit), dtype=np.float32)  # rows cancel out: no common direction
    return unit @ (centre / norm)


def members_of(labels: np.ndarray, clusters: Iterable[int]) -> dict[int, np.ndarray]:
    """The members (ascending global indices) of each of ``clusters``, from one sort of ``labels``.

    One ``argsort`` instead of a full scan per cluster: a regrouping into 1,000 clusters of
    100,000 images is read in milliseconds.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")  # stable: members stay in ascending order
    ordered = labels[order]
    out = {}
    for cluster in clusters:
        first = int(np.searchsorted(ordered, cluster, side="left"))
        last = int(np.searchsorted(ordered, cluster, side="right"))
        out[int(cluster)] = order[first:last].astype(np.int64, copy=False)
    return out


def summarise_cluster(session: Any, cluster: int, members: Optional[np.ndarray] = None) -> ClusterSummary:
    """The row of ``cluster``: name, size, cohesion and representative image, read from ``session``.

    ``members`` (its images, ascending) saves a scan of the labels when the caller has them.
    """
    members = session.indices_of(cluster) if members is None else members
    representative: Optional[int] = int(members[0]) if members.size else None
    cosine: Optional[float] = None
    features = getattr(session, "features", None)
    if features is not None and members.size and cluster != UNASSIGNED:
        cosines = centroid_cosines(features[members])
        representative = int(members[int(np.argmax(cosines))])  # the most typical member
        if members.size > 1:
            cosine = float(cosines.mean())
    cohesion = cosine
    silhouettes = (getattr(session, "metrics", None) or {}).get("per_cluster_silhouette")
    if silhouettes:
        # With per-cluster silhouettes, every row uses them (a new cluster waits for the recompute).
        value = silhouettes.get(int(cluster), silhouettes.get(str(cluster)))
        cohesion = None if value is None or cluster == UNASSIGNED else float(value)
    suggest = getattr(session, "suggested_name", None)
    suggestion = suggest(cluster) if suggest is not None else None
    suggested = suggestion is not None and not suggestion.is_mixed and int(cluster) not in session.cluster_names
    tip = "" if suggestion is None else suggestion.describe()
    return ClusterSummary(
        int(cluster), session.name_of(cluster), int(members.size), cohesion, representative, suggested, tip
    )


def cohesion_kind(session: Any) -> str:
    """``'silhouette'``, ``'cosine'`` or ``''``: what the cohesion column of ``session`` is."""
    if session is None:
        return ""
    if (getattr(session, "metrics", None) or {}).get("per_cluster_silhouette"):
        return "silhouette"
    return "cosine" if getattr(session, "features", None) is not None else ""


class ClusterOverviewModel(QAbstractListModel):
    """One row per cluster of a session, in a chosen order (:data:`SORT_ORDERS`)."""

    def __init__(self, parent: Optional[Any] = None) -> None:
        super().__init__(parent)
        self.session: Any = None
        self._rows: list[ClusterSummary] = []
        self._sort = "grid"
        self._descending = False  # the reverse of the chosen order
        self._drop_target: Optional[int] = None

    # ---- reading
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row.name
        if role == ClusterRole:
            return row.cluster
        if role == SizeRole:
            return row.size
        if role == CohesionRole:
            return row.cohesion
        if role == RepresentativeRole:
            return None if row.representative is None else self.session.paths[row.representative]
        if role == DropTargetRole:
            return row.cluster == self._drop_target
        if role == Qt.ItemDataRole.DecorationRole:
            return cluster_colour(row.cluster)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row)
        return None

    def clusters(self) -> list[int]:
        """The cluster ids in row order."""
        return [row.cluster for row in self._rows]

    def summary(self, row: int) -> ClusterSummary:
        return self._rows[row]

    def row_of(self, cluster: int) -> int:
        """The row of ``cluster``, or -1."""
        for row, summary in enumerate(self._rows):
            if summary.cluster == cluster:
                return row
        return -1

    def details(self, row: ClusterSummary) -> str:
        """The row's second line: size and cohesion."""
        size = f"{row.size} image" + ("" if row.size == 1 else "s")
        kind = cohesion_kind(self.session)
        if row.cohesion is None or not kind:
            return size
        return f"{size}  ·  {'silhouette' if kind == 'silhouette' else 'cohesion'} {row.cohesion:.2f}"

    def _tooltip(self, row: ClusterSummary) -> str:
        lines = [f"{row.name}: {self.details(row)}"]
        if row.suggestion_tip:
            lines.append(row.suggestion_tip[:1].upper() + row.suggestion_tip[1:])
        kind = cohesion_kind(self.session)
        if kind == "silhouette":
            stale = getattr(self.session, "metrics_stale", False)
            lines.append("Cohesion: mean silhouette of the members" + (" (before the last edits)" if stale else ""))
        elif kind == "cosine":
            lines.append("Cohesion: mean cosine similarity of the members to the cluster's centre")
        lines.append("Click to show it in the grid; drop images here to move them into it.")
        return "\n".join(lines)

    # ---- sorting
    @property
    def sort_order(self) -> str:
        return self._sort

    def set_sort(self, order: str, descending: bool = False) -> None:
        """Order the rows by ``order`` (a key of :data:`SORT_ORDERS`), reversed when ``descending``."""
        if order not in dict(SORT_ORDERS):
            raise ValueError(f"unknown sort order {order!r}; known: {', '.join(k for k, _ in SORT_ORDERS)}")
        self._sort, self._descending = order, bool(descending)
        self._reorder()

    def _sort_key(self, row: ClusterSummary) -> tuple:
        if self._sort == "size":
            return (-row.size, row.cluster)
        if self._sort == "name":
            return (row.name.casefold(), row.cluster)
        if self._sort == "cohesion":
            # Undefined cohesion sorts after every number.
            return (row.cohesion is None, row.cohesion if row.cohesion is not None else 0.0, row.cluster)
        return (row.cluster,)

    def _ordered(self, rows: list[ClusterSummary]) -> list[ClusterSummary]:
        sorted_rows = sorted((r for r in rows if r.cluster != UNASSIGNED), key=self._sort_key, reverse=self._descending)
        return sorted_rows + [r for r in rows if r.cluster == UNASSIGNED]  # Unassigned is not a group

    def _reorder(self) -> None:
        """Put the rows in order with a layout change (views keep selection and scroll position)."""
        ordered = self._ordered(self._rows)
        if [r.cluster for r in ordered] == [r.cluster for r in self._rows]:
            return
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        clusters = [self._rows[index.row()].cluster for index in persistent]
        self._rows = ordered
        new_rows = {row.cluster: position for position, row in enumerate(self._rows)}
        self.changePersistentIndexList(persistent, [self.index(new_rows[c]) for c in clusters])
        self.layoutChanged.emit()

    # ---- following the session
    def set_session(self, session: Any) -> None:
        """Show the clusters of ``session`` (None: no rows), with a model reset."""
        self.beginResetModel()
        self.session = session
        self._drop_target = None
        self._rows = [] if session is None else self._ordered(self._summaries(session.cluster_ids()))
        self.endResetModel()

    def refresh(self, clusters: Optional[set[int]] = None) -> None:
        """Re-read ``clusters`` (default: all) from the session: rows come and go, change and re-sort in place."""
        if self.session is None:
            return
        present = self.session.cluster_ids()
        wanted = set(present)
        # Clusters that no longer have images leave (bottom-up, each its own removal).
        for row in range(len(self._rows) - 1, -1, -1):
            if self._rows[row].cluster not in wanted:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
        shown = {row.cluster for row in self._rows}
        changed = wanted if clusters is None else {int(c) for c in clusters} & wanted
        new = [c for c in present if c not in shown]
        summaries = {s.cluster: s for s in self._summaries(sorted(changed | set(new)))}
        for position, row in enumerate(self._rows):
            if row.cluster in summaries:
                self._rows[position] = summaries[row.cluster]
        # New clusters arrive at the end, then everything moves to its sorted place.
        if new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self._rows.extend(summaries[c] for c in new)
            self.endInsertRows()
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1))
        self._reorder()

    def _summaries(self, clusters: list[int]) -> list[ClusterSummary]:
        if len(clusters) <= 2:  # a move touches two clusters: two scans beat a sort
            return [summarise_cluster(self.session, c) for c in clusters]
        members = members_of(self.session.labels, clusters)
        return [summarise_cluster(self.session, c, members[c]) for c in clusters]

    # ---- the drop highlight
    def set_drop_target(self, cluster: Optional[int]) -> None:
        """Highlight the row of ``cluster`` (None: none)."""
        if cluster == self._drop_target:
            return
        previous, self._drop_target = self._drop_target, cluster
        for target in (previous, cluster):
            if target is not None and (row := self.row_of(target)) >= 0:
                self.dataChanged.emit(self.index(row), self.index(row), [DropTargetRole])

    def drop_target(self) -> Optional[int]:
        return self._drop_target

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt API
        return [MIME_TYPE]


class ClusterRowDelegate(QStyledItemDelegate):
    """Paints a row: colour swatch, representative thumbnail, name, and size with cohesion."""

    def __init__(self, overview: "ClusterOverview") -> None:
        super().__init__(overview)
        self._overview = overview

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt API
        return QSize(200, ROW_THUMBNAIL + 2 * ROW_PADDING)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        model = index.model()
        assert isinstance(model, ClusterOverviewModel)
        summary = model.summary(index.row())
        painter.save()
        style = option.widget.style() if option.widget is not None else None
        background = QStyleOptionViewItem(option)
        self.initStyleOption(background, index)
        background.text = ""
        background.icon = QIcon()
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, background, painter, option.widget)
        rect = option.rect
        painter.fillRect(
            QRect(rect.left() + 1, rect.top() + ROW_PADDING, SWATCH_WIDTH, rect.height() - 2 * ROW_PADDING),
            cluster_colour(summary.cluster),
        )
        thumb = QRect(
            rect.left() + SWATCH_WIDTH + 2 * ROW_PADDING, rect.top() + ROW_PADDING, ROW_THUMBNAIL, ROW_THUMBNAIL
        )
        image = self._overview.thumbnail_of(summary)
        if image is not None:
            scaled = image.scaled(
                thumb.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(thumb.center())
            painter.drawImage(target, scaled)
        else:
            painter.fillRect(thumb, QColor("#e4e4e4"))
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_colour = option.palette.highlightedText() if selected else option.palette.text()
        text_left = thumb.right() + 2 * ROW_PADDING
        text_rect = QRect(text_left, rect.top() + ROW_PADDING, rect.right() - text_left - ROW_PADDING, ROW_THUMBNAIL)
        font = option.font
        bold = QFont(font)
        bold.setBold(True)
        bold.setItalic(summary.suggested)  # a suggested name looks different from one a person gave
        painter.setPen(QPen(text_colour.color()))
        painter.setFont(bold)
        metrics = painter.fontMetrics()
        half = text_rect.height() // 2
        name = metrics.elidedText(summary.name, Qt.TextElideMode.ElideRight, text_rect.width())
        painter.drawText(
            QRect(text_rect.left(), text_rect.top(), text_rect.width(), half),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom),
            name,
        )
        painter.setFont(font)
        details = painter.fontMetrics().elidedText(
            model.details(summary), Qt.TextElideMode.ElideRight, text_rect.width()
        )
        painter.drawText(
            QRect(text_rect.left(), text_rect.top() + half, text_rect.width(), text_rect.height() - half),
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop),
            details,
        )
        if index.data(DropTargetRole):
            # The row a drop would go to: a strong outline, visible over the selection colour too.
            painter.setPen(QPen(_DROP_COLOUR, 2))
            painter.setBrush(QColor(61, 126, 255, 40))
            painter.drawRoundedRect(rect.adjusted(1, 1, -2, -2), 4, 4)
        painter.restore()


class ClusterListView(QListView):
    """The overview's list: every row takes a drop of the grid's images (see :class:`ClusterOverview`)."""

    dropRequested = Signal(list, int)

    def __init__(self, model: ClusterOverviewModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setModel(model)
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setDropIndicatorShown(False)  # the row highlight says where the images go
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setUniformItemSizes(True)

    def overview_model(self) -> ClusterOverviewModel:
        model = self.model()
        assert isinstance(model, ClusterOverviewModel)
        return model

    def drop_cluster(self, event: QDropEvent) -> Optional[tuple[np.ndarray, int]]:
        """``(indices, cluster)`` a drop at the event's position would move, or None when it cannot."""
        model = self.overview_model()
        indices = decode_indices(model.session, event.mimeData())
        if indices is None or not indices.size:
            return None
        index = self.indexAt(event.position().toPoint())
        if not index.isValid():
            return None
        cluster = int(index.data(ClusterRole))
        if not np.any(model.session.labels[indices] != cluster):
            return None  # all already there: nothing would move
        return indices, cluster

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if decode_indices(self.overview_model().session, event.mimeData()) is None:
            event.ignore()
            return
        event.acceptProposedAction()  # the drag may move between rows: each move is judged below
        self._judge(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt API
        super().dragMoveEvent(event)  # scrolls the list when the drag nears its edge
        self._judge(event)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802 - Qt API
        super().dragLeaveEvent(event)
        self.overview_model().set_drop_target(None)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        target = self.drop_cluster(event)
        self.overview_model().set_drop_target(None)
        self.stopAutoScroll()
        if target is None:
            event.ignore()
            return
        indices, cluster = target
        event.setDropAction(Qt.DropAction.MoveAction)
        event.accept()
        self.dropRequested.emit([int(i) for i in indices], cluster)

    def _judge(self, event: QDragMoveEvent) -> None:
        target = self.drop_cluster(event)
        self.overview_model().set_drop_target(None if target is None else target[1])
        if target is None:
            event.ignore()
        else:
            event.setDropAction(Qt.DropAction.MoveAction)
            event.accept()


class ClusterOverview(QWidget):
    """Every cluster of the shown session, sortable, each row a drop target (see the module docstring).

    Parameters
    ----------
    loader : ThumbnailLoader, optional
        The window's thumbnail loader (shared with the grid, so the representatives come from its
        caches); without one the rows show no thumbnails.
    parent : QWidget, optional
    thumbnail_size : int
        The size thumbnails are requested at (the grid's, to share its cache); painted smaller.

    Signals
    -------
    clusterActivated(int)
        A row was clicked (or chosen with the keyboard): the cluster id.
    dropRequested(list, int)
        Images (global indices) were dropped on the row of a cluster: move them there.
    """

    clusterActivated = Signal(int)
    dropRequested = Signal(list, int)
    #: (cluster, name) from the row's context menu; "" = drop the custom name (the suggestion comes back).
    renameRequested = Signal(int, str)

    def __init__(
        self,
        loader: Optional[ThumbnailLoader] = None,
        parent: Optional[QWidget] = None,
        thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
    ) -> None:
        super().__init__(parent)
        self._session: Any = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self.loader = loader
        self.thumbnail_size = int(thumbnail_size)
        self.model = ClusterOverviewModel(self)

        self.sort_combo = QComboBox()
        self.sort_combo.setObjectName("overview_sort")
        for key, label in SORT_ORDERS:
            self.sort_combo.addItem(label, key)
        self.sort_combo.setToolTip("Order of the clusters (Unassigned stays last)")
        self.reverse_button = QToolButton()
        self.reverse_button.setObjectName("overview_reverse")
        self.reverse_button.setText("⇅")
        self.reverse_button.setCheckable(True)
        self.reverse_button.setToolTip("Reverse the order")
        self.summary_label = QLabel("")
        self.summary_label.setObjectName("overview_summary")
        self.summary_label.setStyleSheet("color: #555")
        self.view = ClusterListView(self.model)
        self.view.setObjectName("overview_list")
        self.delegate = ClusterRowDelegate(self)
        self.view.setItemDelegate(self.delegate)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Sort:"))
        bar.addWidget(self.sort_combo, 1)
        bar.addWidget(self.reverse_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.summary_label)

        self.sort_combo.currentIndexChanged.connect(self._apply_sort)
        self.reverse_button.toggled.connect(self._apply_sort)
        self.view.clicked.connect(self._on_activated)
        self.view.activated.connect(self._on_activated)
        self.view.dropRequested.connect(self.dropRequested)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_context_menu)
        if loader is not None:
            loader.thumbnailReady.connect(self._on_thumbnail_ready)

    # ------------------------------------------------------------------ session
    def session(self) -> Any:
        return self._session

    def set_session(self, session: Any) -> None:
        """Show the clusters of ``session`` (or nothing for None) and follow its edits."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._session = session
        self.model.set_session(session)
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)
        self._update_summary()

    def _on_session_event(self, event: Any) -> None:
        kind = getattr(event, "kind", event)
        if kind == "labels":
            clusters = set(getattr(event, "clusters", ()) or ())
            self.model.refresh(clusters or None)
        elif kind == "names":
            self.model.refresh(set(getattr(event, "clusters", ()) or ()) or None)
        elif kind in ("metrics", "reset"):
            self.model.refresh()  # cohesion of every cluster (or everything) changed
        else:
            return
        self._update_summary()

    # ------------------------------------------------------------------ naming
    def context_menu(self, cluster: int) -> QMenu:
        """The row's menu: "Rename…" and "Use suggested name" (when a custom name hides a suggestion)."""
        menu = QMenu(self)
        session = self._session
        if session is None or cluster == UNASSIGNED:
            return menu
        name = session.name_of(cluster)
        menu.addAction(f"Rename “{name}”…", lambda: self.ask_rename(cluster))
        suggest = getattr(session, "suggested_name", None)
        suggestion = suggest(cluster) if suggest is not None else None
        usable = suggestion is not None and not suggestion.is_mixed
        label = f"Use suggested name “{suggestion.text}”" if usable and suggestion else "Use suggested name"
        use = menu.addAction(label, lambda: self.renameRequested.emit(int(cluster), ""))
        use.setEnabled(bool(usable and int(cluster) in session.cluster_names))
        if suggestion is not None:
            use.setToolTip(suggestion.describe())
        return menu

    def ask_rename(self, cluster: int) -> None:
        """Ask for a new name (empty = the suggested or default name) and emit :attr:`renameRequested`."""
        session = self._session
        if session is None or cluster == UNASSIGNED:
            return
        name, ok = QInputDialog.getText(
            self,
            "Rename cluster",
            "New name (empty = suggested or default name):",
            text=session.cluster_names.get(cluster, ""),
        )
        if ok:
            self.renameRequested.emit(int(cluster), name)

    def _show_context_menu(self, point: Any) -> None:
        index = self.view.indexAt(point)
        if index.isValid():
            self.context_menu(int(index.data(ClusterRole))).exec(self.view.viewport().mapToGlobal(point))

    def _update_summary(self) -> None:
        if self._session is None:
            self.summary_label.setText("")
            return
        clusters = [c for c in self.model.clusters() if c != UNASSIGNED]
        text = f"{len(clusters)} cluster" + ("" if len(clusters) == 1 else "s")
        unassigned = self._session.size_of(UNASSIGNED)
        if unassigned:
            text += f", {unassigned} unassigned"
        self.summary_label.setText(text)

    # ------------------------------------------------------------------ sorting and activation
    def set_sort(self, order: str, descending: bool = False) -> None:
        """Sort by ``order`` (``'grid'``, ``'size'``, ``'name'``, ``'cohesion'``), as the combo box does."""
        index = self.sort_combo.findData(order)
        if index < 0:
            raise ValueError(f"unknown sort order {order!r}")
        self.sort_combo.blockSignals(True)
        self.reverse_button.blockSignals(True)
        self.sort_combo.setCurrentIndex(index)
        self.reverse_button.setChecked(bool(descending))
        self.sort_combo.blockSignals(False)
        self.reverse_button.blockSignals(False)
        self._apply_sort()

    def _apply_sort(self, *_args: Any) -> None:
        self.model.set_sort(str(self.sort_combo.currentData()), self.reverse_button.isChecked())

    def _on_activated(self, index: QModelIndex) -> None:
        if index.isValid():
            self.clusterActivated.emit(int(index.data(ClusterRole)))

    def select_cluster(self, cluster: int) -> None:
        """Select (and scroll to) the row of ``cluster``, without emitting :attr:`clusterActivated`."""
        row = self.model.row_of(int(cluster))
        if row >= 0:
            index = self.model.index(row)
            self.view.setCurrentIndex(index)
            self.view.scrollTo(index)

    def row_rect(self, cluster: int) -> QRect:
        """The rectangle of ``cluster``'s row in the list's viewport (empty when it has none)."""
        row = self.model.row_of(int(cluster))
        return self.view.visualRect(self.model.index(row)) if row >= 0 else QRect()

    # ------------------------------------------------------------------ thumbnails
    def thumbnail_of(self, summary: ClusterSummary) -> Optional[QImage]:
        """The representative's thumbnail (queued in the loader when not cached yet), or None."""
        if self.loader is None or summary.representative is None or self._session is None:
            return None
        return self.loader.request(self._session.paths[summary.representative], self.thumbnail_size)

    def _on_thumbnail_ready(self, path: str) -> None:
        for row in range(self.model.rowCount()):
            if self.model.index(row).data(RepresentativeRole) == path:
                index = self.model.index(row)
                self.view.update(index)


__all__ = [
    "ClusterListView",
    "ClusterOverview",
    "ClusterOverviewModel",
    "ClusterRowDelegate",
    "ClusterSummary",
    "ClusterRole",
    "CohesionRole",
    "DropTargetRole",
    "RepresentativeRole",
    "SizeRole",
    "centroid_cosines",
    "members_of",
    "cohesion_kind",
    "summarise_cluster",
    "SORT_ORDERS",
]
