"""The cluster grid: one collapsible section per cluster, thumbnails in virtualised list views.

The grid is split along model / view lines, the session being the model (as napari's layers):

* :mod:`~imgcluster_gui.ui.cluster_model`: :class:`ClusterImagesModel`, the Qt model of one
  cluster's images (it keeps only the cluster's sorted image indices, no image data), the drag
  payload (:func:`encode_indices` / :func:`decode_indices`) and the label diff;
* :mod:`~imgcluster_gui.ui.thumbnail_delegate`: :class:`ThumbnailDelegate`, the cells' painter;
* this module: the view widgets.  Each section is a header (name, size, mean silhouette) and a
  ``QListView`` in icon mode with uniform item sizes and batched layout.  The view is as tall as
  its content and the outer scroll area scrolls, so Qt paints only the visible items and the
  delegate only requests thumbnails that are on screen.

Hand edits go through the undo stack: a drop calls the model's ``dropMimeData`` (or the header's
``dropped`` signal the grid's :meth:`ClusterGridWidget.move_indices`), which pushes a
:class:`~imgcluster_gui.ui.commands.MoveImagesCommand`.  The views then follow the session's
events: the grid diffs the labels it last showed against the session's, removes and inserts just
the rows that changed in the models of the clusters concerned, adds and removes sections, and
keeps the scroll position on what was on screen.  Only ``'reset'`` (or another session) rebuilds.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
from PySide6.QtCore import (
    QCoreApplication,
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    QRect,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QDrag,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QMouseEvent,
    QPainter,
    QPalette,
    QPixmap,
    QResizeEvent,
    QUndoStack,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListView,
    QMenu,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.session import UNASSIGNED, ClusterSession, SessionEvent
from .cluster_model import (
    MAX_INCREMENTAL_RANGES,
    MIME_TYPE,
    ClusterImagesModel,
    IndexRole,
    PathRole,
    cluster_sort_key,
    decode_indices,
    encode_indices,
    label_changes,
)
from .commands import (
    DeleteClusterCommand,
    MergeClustersCommand,
    MoveImagesCommand,
    NewClusterCommand,
    RenameClusterCommand,
)
from .preview import PreviewDialog
from .thumbnail_delegate import ThumbnailDelegate
from .thumbnails import DEFAULT_THUMBNAIL_SIZE, ThumbnailLoader

# Re-exported: the main window, the benchmarks and the tests import these from here.
__all__ = [
    "ClusterGridWidget",
    "ClusterHeader",
    "ClusterImagesModel",
    "ClusterListView",
    "ClusterSection",
    "IndexRole",
    "MIME_TYPE",
    "PathRole",
    "ThumbnailDelegate",
    "decode_indices",
    "encode_indices",
    "unsubscriber_on_destroy",
]

_READY_REPAINT_MS = 30  # thumbnails that arrive together are repainted together
_LAYOUT_LEVELS = 4  # list view -> section -> container -> scroll area's viewport
_sort_key = cluster_sort_key


# ============================================================================ views


class ClusterListView(QListView):
    """Icon-mode list of one cluster's thumbnails; as tall as its content (the grid scrolls)."""

    def __init__(self, model: ClusterImagesModel, delegate: ThumbnailDelegate, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(500)
        self.setSpacing(0)
        self.setItemDelegate(delegate)
        self.setGridSize(delegate.cell_size(self.font()))
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setModel(model)
        # Rows come and go one range at a time: the height follows each change.
        model.modelReset.connect(self.fit_height)
        model.rowsInserted.connect(self.fit_height)
        model.rowsRemoved.connect(self.fit_height)
        self._fitted_width = -1
        self.fit_height()

    def cluster_model(self) -> ClusterImagesModel:
        return self.model()  # type: ignore[return-value]

    def columns_for(self, width: int) -> int:
        return max(1, width // max(1, self.gridSize().width()))

    def fit_height(self) -> None:
        """Make the view exactly as tall as its rows at the current width."""
        rows = math.ceil(self.model().rowCount() / self.columns_for(self.viewport().width() or self.width()))
        height = rows * self.gridSize().height() + 2 * self.frameWidth() + 2
        if self.height() != height or self.minimumHeight() != height:
            self.setFixedHeight(height)
        self._fitted_width = self.width()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.fit_height()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt API
        event.ignore()  # the grid's scroll area scrolls, not this view

    def startDrag(self, supported_actions: Qt.DropAction) -> None:  # noqa: N802 - Qt API
        # Qt's default renders every selected item into the drag pixmap: too slow for thousands.
        indexes = self.selectedIndexes()
        if not indexes:
            return
        drag = QDrag(self)
        drag.setMimeData(self.model().mimeData(indexes))
        drag.setPixmap(self._drag_pixmap(indexes))
        drag.exec(supported_actions, Qt.DropAction.MoveAction)

    def _drag_pixmap(self, indexes: Sequence[QModelIndex]) -> QPixmap:
        delegate: ThumbnailDelegate = self.itemDelegate()  # type: ignore[assignment]
        side = delegate.thumb_size
        pixmap = QPixmap(side, side)
        pixmap.fill(QColor(0, 0, 0, 0))
        painter = QPainter(pixmap)
        image = delegate.loader.cached(indexes[0].data(PathRole), side)
        if image is not None:
            painter.setOpacity(0.8)
            painter.drawImage(QPoint((side - image.width()) // 2, (side - image.height()) // 2), image)
            painter.setOpacity(1.0)
        else:
            painter.fillRect(pixmap.rect(), self.palette().color(QPalette.ColorRole.Midlight))
        badge = QRect(side - 44, side - 22, 42, 20)
        painter.fillRect(badge, self.palette().color(QPalette.ColorRole.Highlight))
        painter.setPen(self.palette().color(QPalette.ColorRole.HighlightedText))
        painter.drawText(badge, int(Qt.AlignmentFlag.AlignCenter), str(len(indexes)))
        painter.end()
        return pixmap


class ClusterHeader(QFrame):
    """A section's title bar: collapse arrow, name, size and silhouette; images can be dropped on it."""

    toggled = Signal(bool)  # True = expanded
    dropped = Signal(object)  # ndarray of global indices
    renameRequested = Signal()
    menuRequested = Signal(QPoint)

    def __init__(self, session_getter: Callable[[], Optional[ClusterSession]], parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._session_getter = session_getter
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setAcceptDrops(True)
        self.arrow = QToolButton(self)
        self.arrow.setAutoRaise(True)
        self.arrow.setCheckable(True)
        self.arrow.setChecked(True)
        self.arrow.setArrowType(Qt.ArrowType.DownArrow)
        self.arrow.toggled.connect(self._on_arrow)
        self.name_label = QLabel(self)
        font = self.name_label.font()
        font.setBold(True)
        self.name_label.setFont(font)
        self.info_label = QLabel(self)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 8, 2)
        layout.addWidget(self.arrow)
        layout.addWidget(self.name_label)
        layout.addWidget(self.info_label, 1)
        self._drop_highlight = False

    def _on_arrow(self, expanded: bool) -> None:
        self.arrow.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.toggled.emit(expanded)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self.renameRequested.emit()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 - Qt API
        self.menuRequested.emit(event.globalPos())

    def _set_highlight(self, on: bool) -> None:
        if on != self._drop_highlight:
            self._drop_highlight = on
            self.setBackgroundRole(QPalette.ColorRole.Highlight if on else QPalette.ColorRole.Window)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if decode_indices(self._session_getter(), event.mimeData()) is not None:
            event.setDropAction(Qt.DropAction.MoveAction)
            event.accept()
            self._set_highlight(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt API
        event.setDropAction(Qt.DropAction.MoveAction)
        event.accept()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._set_highlight(False)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        self._set_highlight(False)
        indices = decode_indices(self._session_getter(), event.mimeData())
        if indices is None:
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.MoveAction)
        event.accept()
        self.dropped.emit(indices)


class ClusterSection(QWidget):
    """Header + thumbnail view of one cluster."""

    def __init__(
        self,
        cluster: int,
        model: ClusterImagesModel,
        delegate: ThumbnailDelegate,
        session_getter: Callable[[], Optional[ClusterSession]],
        parent: Optional[QWidget] = None,
    ):
        super().__init__(parent)
        self.cluster = int(cluster)
        self.model = model
        self.header = ClusterHeader(session_getter, self)
        self.view = ClusterListView(model, delegate, self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 6)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.view)
        self.header.toggled.connect(self.view.setVisible)

    def is_expanded(self) -> bool:
        return self.header.arrow.isChecked()

    def selected_rows(self) -> np.ndarray:
        """Selected rows of the view, ascending."""
        return _selected_rows(self.view.selectionModel())

    def apply_moves(self, leaving: np.ndarray, arriving: np.ndarray) -> None:
        """Follow images leaving and joining the cluster (global indices), row ranges at a time.

        The view keeps the selection of the images that stayed; when the model had to reset (a
        change over too many row ranges) that selection is put back.
        """
        model = self.model
        selection_model = self.view.selectionModel()
        kept = None
        if selection_model.hasSelection():
            kept = np.setdiff1d(model.global_indices()[self.selected_rows()], leaving)
        if model.apply_moves(leaving, arriving, MAX_INCREMENTAL_RANGES) or kept is None or not kept.size:
            return
        rows = np.searchsorted(model.global_indices(), kept)
        selection_model.select(_row_ranges(model, rows), QItemSelectionModel.SelectionFlag.Select)

    def set_expanded(self, expanded: bool) -> None:
        self.header.arrow.setChecked(expanded)

    def update_header(self, session: ClusterSession) -> None:
        """Show the cluster's current name, size and silhouette."""
        size = self.model.rowCount()
        self.header.name_label.setText(session.name_of(self.cluster))
        parts = [f"{size} image" + ("" if size == 1 else "s")]
        silhouette = (session.metrics.get("per_cluster_silhouette") or {}).get(self.cluster)
        tooltip = "Mean silhouette of the cluster's images (-1 to 1, higher = more compact and separate)"
        if silhouette is not None and self.cluster != UNASSIGNED:
            stale = session.metrics_stale
            parts.append(f"silhouette {silhouette:.2f}" + (" (before edits)" if stale else ""))
            if stale:
                tooltip += "; computed before the latest hand edits"
        self.header.info_label.setText("  ·  ".join(parts))
        self.header.info_label.setToolTip(tooltip)


# ============================================================================ the grid


class _ScrollAnchor:
    """What the viewport's top showed before an edit (see :meth:`ClusterGridWidget._scroll_anchor`)."""

    __slots__ = ("section", "section_offset", "image", "image_offset")

    def __init__(self, section: ClusterSection, section_offset: int) -> None:
        self.section = section
        self.section_offset = section_offset  # pixels from the section's top to the viewport's
        self.image: Optional[int] = None  # global index of the first cell of the top row of cells shown
        self.image_offset = 0  # pixels from that row's top to the viewport's


class ClusterGridWidget(QWidget):
    """All clusters of a session, editable by drag and drop and context menus, with undo.

    Parameters
    ----------
    session : ClusterSession or None
    undo_stack : QUndoStack
        Every edit is pushed here (Ctrl+Z / Ctrl+Shift+Z are the main window's actions).
    loader : ThumbnailLoader
    parent : QWidget, optional
    thumb_size : int
        Longer side of a thumbnail in pixels.

    Signals
    -------
    selectionChanged(list)
        Global image indices selected by the user (not emitted by :meth:`select_indices`, so a
        linked scatter plot does not echo back).
    imageActivated(int)
        An image was double-clicked (a preview opens too when :attr:`preview_on_activate`).
    """

    selectionChanged = Signal(list)
    imageActivated = Signal(int)

    def __init__(
        self,
        session: Optional[ClusterSession],
        undo_stack: QUndoStack,
        loader: ThumbnailLoader,
        parent: Optional[QWidget] = None,
        thumb_size: int = DEFAULT_THUMBNAIL_SIZE,
    ) -> None:
        super().__init__(parent)
        self.undo_stack = undo_stack
        self.loader = loader
        self.preview_on_activate = True
        self.delegate = ThumbnailDelegate(loader, thumb_size, self)
        self.delegate.set_palette(self.palette())
        self._session: Optional[ClusterSession] = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._sections: dict[int, ClusterSection] = {}
        self._path_index: dict[str, int] = {}
        # The labels the sections show: a session event is applied as the diff from these.
        self._shown_labels: Optional[np.ndarray] = None
        self._programmatic_selection = False
        self._ready_paths: set[str] = set()
        self._previews: list[PreviewDialog] = []

        self.scroll_area = QScrollArea(self)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.container = QWidget()
        self.sections_layout = QVBoxLayout(self.container)
        self.sections_layout.setContentsMargins(4, 4, 4, 4)
        self.sections_layout.setSpacing(2)
        self.sections_layout.addStretch(1)
        self.scroll_area.setWidget(self.container)
        self.scroll_area.verticalScrollBar().setSingleStep(self.delegate.cell_size(self.font()).height() // 2)
        self.empty_label = QLabel("No clustering result yet: run one or open a session.", self)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.scroll_area, 1)

        # Coalesce selection changes of several views (and ready thumbnails) into one update.
        self._selection_timer = QTimer(self, singleShot=True, interval=0)
        self._selection_timer.timeout.connect(self._emit_selection)
        self._ready_timer = QTimer(self, singleShot=True, interval=_READY_REPAINT_MS)
        self._ready_timer.timeout.connect(self._repaint_ready)
        loader.thumbnailReady.connect(self._on_thumbnail_ready)
        self.set_session(session)
        # A deleted grid must not stay subscribed to a session that outlives it.
        self.destroyed.connect(unsubscriber_on_destroy(self))

    # ------------------------------------------------------------------ session
    def session(self) -> Optional[ClusterSession]:
        return self._session

    def set_session(self, session: Optional[ClusterSession]) -> None:
        """Show another result (or none); pending thumbnails of the previous one are dropped."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._session = session
        self.loader.set_generation()
        self._path_index = {} if session is None else {p: i for i, p in enumerate(session.paths)}
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)
        self._rebuild()

    def _rebuild(self) -> None:
        self.container.setUpdatesEnabled(False)
        try:
            for cluster in list(self._sections):
                self._remove_section(cluster)
            self._shown_labels = None
            if self._session is not None:
                self._shown_labels = self._session.labels.copy()
                for position, cluster in enumerate(self._session.cluster_ids()):
                    self._add_section(cluster, position)
        finally:
            self.container.setUpdatesEnabled(True)
        has_result = self._session is not None and len(self._session) > 0
        self.empty_label.setVisible(not has_result)
        self.scroll_area.setVisible(has_result)
        self._selection_timer.start()

    def _add_section(self, cluster: int, position: Optional[int] = None) -> ClusterSection:
        assert self._session is not None
        model = ClusterImagesModel(self._session, cluster, self.undo_stack)
        section = ClusterSection(cluster, model, self.delegate, self.session, self.container)
        model.setParent(section)  # goes with its section
        section.update_header(self._session)
        view = section.view
        view.selectionModel().selectionChanged.connect(self._on_view_selection)
        view.doubleClicked.connect(lambda index, v=view: self._activate(v, index))
        view.customContextMenuRequested.connect(
            lambda pos, v=view, c=cluster: self._show_menu(c, v.viewport().mapToGlobal(pos), v.indexAt(pos))
        )
        section.header.dropped.connect(lambda indices, c=cluster: self.move_indices(indices, c))
        section.header.renameRequested.connect(lambda c=cluster: self._ask_rename(c))
        section.header.menuRequested.connect(lambda pos, c=cluster: self._show_menu(c, pos, QModelIndex()))
        if position is None:
            position = sum(1 for other in self._sections if _sort_key(other) < _sort_key(cluster))
        self.sections_layout.insertWidget(position, section)
        self._sections[cluster] = section
        return section

    def _remove_section(self, cluster: int) -> None:
        section = self._sections.pop(cluster)
        self.sections_layout.removeWidget(section)
        section.hide()
        section.deleteLater()

    def _on_session_event(self, event: SessionEvent) -> None:
        session = self._session
        if session is None:
            return
        if event.kind == "reset":  # everything may have changed (the clustering's own labels back)
            self._rebuild()
            return
        if event.kind == "metrics":
            for section in self._sections.values():
                section.update_header(session)
            return
        if event.kind == "names":  # only headers show names: the models' rows are unchanged
            for cluster in event.clusters:
                if cluster in self._sections:
                    self._sections[cluster].update_header(session)
            return
        if event.kind == "labels":
            self._apply_label_change()

    def _apply_label_change(self) -> None:
        """Follow the session's labels: rows out of and into the models of the clusters concerned.

        The change is the diff between the labels the sections show and the session's (not the
        event's list), so the views cannot drift from the session.  Sections of clusters that
        emptied are removed, of clusters that appeared added; the others keep their selection.
        """
        session = self._session
        assert session is not None
        shown = self._shown_labels
        if shown is None or shown.shape != session.labels.shape:
            self._rebuild()
            return
        changes = label_changes(shown, session.labels)
        self._shown_labels = session.labels.copy()
        if changes:
            emptied = {cluster for cluster in changes if cluster in self._sections and session.size_of(cluster) == 0}
            anchor = self._scroll_anchor(emptied)
            selection_touched = False
            for cluster in sorted(changes, key=_sort_key):
                leaving, arriving = changes[cluster]
                section = self._sections.get(cluster)
                if section is None:
                    if arriving.size and self.container.isVisible():
                        # Shown now, not by the layout's queued show: its height counts at once.
                        self._add_section(cluster).show()
                    elif arriving.size:
                        self._add_section(cluster)
                    continue
                selection_touched |= section.view.selectionModel().hasSelection()
                if cluster in emptied:
                    self._remove_section(cluster)
                else:
                    section.apply_moves(leaving, arriving)
            if anchor is not None and any(_sort_key(c) <= _sort_key(anchor.section.cluster) for c in changes):
                self._restore_scroll(anchor)
            if selection_touched:
                self._selection_timer.start()  # the moved images left the selection
        # The metrics' mean silhouettes now describe older labels: every header says so.
        for section in self._sections.values():
            section.update_header(session)
        self.empty_label.setVisible(len(session) == 0)

    def _scroll_anchor(self, leaving: Iterable[int] = ()) -> Optional[_ScrollAnchor]:
        """What the viewport's top shows: a section (not one of ``leaving``) and the top row of its cells.

        None at the very top (the top stays shown) or while the grid is hidden.
        """
        value = self.scroll_area.verticalScrollBar().value()
        if value <= 0 or not self.isVisible():
            return None
        leaving = set(leaving)
        for cluster in self.cluster_order():
            section = self._sections[cluster]
            if cluster in leaving or section.y() + section.height() <= value:
                continue
            anchor = _ScrollAnchor(section, value - section.y())
            view, model = section.view, section.model
            into_view = value - self._content_top(view)
            if view.isVisible() and into_view >= 0 and model.rowCount():
                line = into_view // view.gridSize().height()
                row = line * view.columns_for(view.viewport().width())
                if row < model.rowCount():
                    anchor.image = model.global_index(row)
                    anchor.image_offset = into_view - line * view.gridSize().height()
            return anchor
        return None

    def _content_top(self, view: ClusterListView) -> int:
        """Where the first row of ``view``'s cells is in the scrolled container."""
        return view.viewport().mapTo(self.container, QPoint(0, 0)).y()

    def _restore_scroll(self, anchor: _ScrollAnchor) -> None:
        """Scroll so that what was at the viewport's top is there again (rows or sections above it changed)."""
        # Lay the sections out now, not on the next event loop: a view's new height asks its section
        # to lay out, which asks the container, which asks the scroll area (a request posted while
        # posted events are sent waits for the next round, so one round per level) ...
        for _level in range(_LAYOUT_LEVELS):
            QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        QCoreApplication.sendEvent(self.scroll_area, QEvent(QEvent.Type.LayoutRequest))
        # ... so that the new positions are known.
        section = anchor.section
        value = section.y() + anchor.section_offset
        row = section.model.row_of(anchor.image) if anchor.image is not None else -1
        if row >= 0:
            view = section.view
            line = row // view.columns_for(view.viewport().width())
            value = self._content_top(view) + line * view.gridSize().height() + anchor.image_offset
        self.scroll_area.verticalScrollBar().setValue(value)

    # ------------------------------------------------------------------ access (also for tests)
    def sections(self) -> dict[int, ClusterSection]:
        """Shown sections by cluster id (a copy)."""
        return dict(self._sections)

    def section(self, cluster: int) -> ClusterSection:
        return self._sections[int(cluster)]

    def cluster_order(self) -> list[int]:
        """Cluster ids in the order their sections are shown."""
        order = []
        for i in range(self.sections_layout.count()):
            widget = self.sections_layout.itemAt(i).widget()
            if isinstance(widget, ClusterSection) and widget.cluster in self._sections:
                order.append(widget.cluster)
        return order

    def set_all_expanded(self, expanded: bool) -> None:
        for section in self._sections.values():
            section.set_expanded(expanded)

    # ------------------------------------------------------------------ selection
    def selected_indices(self) -> list[int]:
        """Selected global image indices, ascending."""
        chosen: list[np.ndarray] = []
        for section in self._sections.values():
            rows = section.selected_rows()
            if rows.size:
                chosen.append(section.model.global_indices()[rows])
        return [int(i) for i in np.unique(np.concatenate(chosen))] if chosen else []

    def select_indices(self, indices: Iterable[int], scroll: bool = True) -> None:
        """Select these global indices (e.g. from the scatter plot) without emitting ``selectionChanged``."""
        session = self._session
        if session is None:
            return
        wanted = np.unique(np.asarray(list(indices), dtype=np.int64))
        wanted = wanted[(wanted >= 0) & (wanted < len(session))]
        by_cluster: dict[int, np.ndarray] = {}
        if wanted.size:
            labels = session.labels[wanted]
            for cluster in np.unique(labels):
                by_cluster[int(cluster)] = wanted[labels == cluster]
        self._programmatic_selection = True
        try:
            for cluster, section in self._sections.items():
                selection_model = section.view.selectionModel()
                members = by_cluster.get(cluster)
                if members is None:
                    if selection_model.hasSelection():
                        selection_model.clearSelection()
                    continue
                rows = np.searchsorted(section.model.global_indices(), members)
                selection_model.select(
                    _row_ranges(section.model, rows), QItemSelectionModel.SelectionFlag.ClearAndSelect
                )
        finally:
            self._programmatic_selection = False
        self._selection_timer.stop()
        if scroll and wanted.size:
            self.scroll_to_index(int(wanted[0]))

    def scroll_to_index(self, image: int) -> None:
        """Scroll the grid so image ``image`` (global index) is visible, expanding its section."""
        session = self._session
        if session is None or not 0 <= image < len(session):
            return
        section = self._sections.get(int(session.labels[image]))
        if section is None:
            return
        section.set_expanded(True)
        row = section.model.row_of(image)
        if row < 0:
            return
        cell = section.view.gridSize()
        columns = section.view.columns_for(section.view.viewport().width())
        cell_origin = QPoint((row % columns) * cell.width(), (row // columns) * cell.height())
        top_left = section.view.viewport().mapTo(self.container, cell_origin)
        self.scroll_area.ensureVisible(
            top_left.x() + cell.width() // 2, top_left.y() + cell.height() // 2, cell.width(), cell.height()
        )

    def _on_view_selection(self, *args: Any) -> None:
        if not self._programmatic_selection:
            self._selection_timer.start()

    def _emit_selection(self) -> None:
        self.selectionChanged.emit(self.selected_indices())

    # ------------------------------------------------------------------ edits (pushed on the undo stack)
    def move_indices(self, indices: Iterable[int], cluster: int) -> bool:
        """Move images to ``cluster``; False when nothing would change."""
        if self._session is None:
            return False
        command = MoveImagesCommand(self._session, indices, cluster)
        if command.edit.is_noop:
            return False
        self.undo_stack.push(command)
        return True

    def move_selection_to(self, cluster: int) -> bool:
        return self.move_indices(self.selected_indices(), cluster)

    def new_cluster_from_selection(self, name: Optional[str] = None) -> Optional[int]:
        """Put the selected images in a new cluster; returns its id (None without a selection)."""
        selected = self.selected_indices()
        if self._session is None or not selected:
            return None
        command = NewClusterCommand(self._session, selected, name)
        self.undo_stack.push(command)
        return command.cluster

    def rename_cluster(self, cluster: int, name: Optional[str]) -> None:
        if self._session is not None:
            self.undo_stack.push(RenameClusterCommand(self._session, cluster, name))

    def merge_clusters(self, clusters: Iterable[int], into: int) -> None:
        if self._session is not None:
            self.undo_stack.push(MergeClustersCommand(self._session, clusters, into))

    def delete_cluster(self, cluster: int) -> None:
        if self._session is not None:
            self.undo_stack.push(DeleteClusterCommand(self._session, cluster))

    # ------------------------------------------------------------------ menus and dialogs
    def build_context_menu(self, cluster: int, image_index: Optional[QModelIndex] = None) -> QMenu:
        """The context menu of ``cluster``'s section (``image_index``: the item under the mouse)."""
        session = self._session
        menu = QMenu(self)
        if session is None:
            return menu
        selected = self.selected_indices()
        others = [c for c in session.cluster_ids() if c != cluster]

        new_action = menu.addAction(f"New cluster from selection ({len(selected)})…", lambda: self._ask_new_cluster())
        new_action.setEnabled(bool(selected))
        move_menu = menu.addMenu(f"Move selection ({len(selected)}) to")
        move_menu.setEnabled(bool(selected))
        for target in [c for c in session.cluster_ids() if c != UNASSIGNED] + [UNASSIGNED]:
            move_menu.addAction(session.name_of(target), lambda t=target: self.move_selection_to(t))
        menu.addSeparator()
        name = session.name_of(cluster)
        rename_action = menu.addAction(f"Rename “{name}”…", lambda: self._ask_rename(cluster))
        rename_action.setEnabled(cluster != UNASSIGNED)
        merge_menu = menu.addMenu(f"Merge “{name}” into")
        merge_menu.setEnabled(bool(others))
        for target in others:
            merge_menu.addAction(session.name_of(target), lambda t=target: self.merge_clusters([cluster], t))
        delete_action = menu.addAction(f"Delete “{name}” (images to Unassigned)", lambda: self.delete_cluster(cluster))
        delete_action.setEnabled(cluster != UNASSIGNED)
        if image_index is not None and image_index.isValid():
            menu.addSeparator()
            image = int(image_index.data(IndexRole))
            menu.addAction("Preview…", lambda: self.open_preview(image))
        return menu

    def _show_menu(self, cluster: int, global_pos: QPoint, index: QModelIndex) -> None:
        self.build_context_menu(cluster, index).exec(global_pos)

    def _ask_new_cluster(self) -> None:
        name, ok = QInputDialog.getText(self, "New cluster", "Name of the new cluster (may be empty):")
        if ok:
            self.new_cluster_from_selection(name or None)

    def _ask_rename(self, cluster: int) -> None:
        session = self._session
        if session is None or cluster == UNASSIGNED:
            return
        name, ok = QInputDialog.getText(
            self, "Rename cluster", "New name (empty = default name):", text=session.cluster_names.get(cluster, "")
        )
        if ok:
            self.rename_cluster(cluster, name)

    def _activate(self, view: ClusterListView, index: QModelIndex) -> None:
        if not index.isValid():
            return
        image = int(index.data(IndexRole))
        self.imageActivated.emit(image)
        if self.preview_on_activate:
            self.open_preview(image)

    def open_preview(self, image: int) -> Optional[PreviewDialog]:
        """Open a non-modal larger preview of image ``image`` (global index)."""
        session = self._session
        if session is None or not 0 <= image < len(session):
            return None
        dialog = PreviewDialog(session.paths[image], session.name_of(int(session.labels[image])), self)
        self._previews.append(dialog)
        dialog.finished.connect(lambda _result, d=dialog: self._previews.remove(d) if d in self._previews else None)
        dialog.show()
        return dialog

    # ------------------------------------------------------------------ thumbnails
    def _on_thumbnail_ready(self, path: str) -> None:
        self._ready_paths.add(path)
        if not self._ready_timer.isActive():
            self._ready_timer.start()

    def _repaint_ready(self) -> None:
        session = self._session
        paths, self._ready_paths = self._ready_paths, set()
        if session is None:
            return
        for path in paths:
            image = self._path_index.get(path)
            if image is None:
                continue
            section = self._sections.get(int(session.labels[image]))
            if section is None or not section.view.isVisible():
                continue
            row = section.model.row_of(image)
            if row >= 0:
                section.view.update(section.model.index(row))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.PaletteChange:
            self.delegate.set_palette(self.palette())
        super().changeEvent(event)

    # ------------------------------------------------------------------ teardown
    def dispose(self) -> None:
        """Stop following the session (call before dropping the widget while the session lives on)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._ready_timer.stop()
        self._selection_timer.stop()


def unsubscriber_on_destroy(widget: Any) -> Callable[..., None]:
    """A ``destroyed`` slot that ends ``widget._unsubscribe``'s session subscription (grid, granularity bar)."""
    holder = widget.__dict__  # the Python side outlives the C++ widget

    def on_destroyed(*_args: Any) -> None:
        unsubscribe = holder.get("_unsubscribe")
        if unsubscribe is not None:
            unsubscribe()
            holder["_unsubscribe"] = None

    return on_destroyed


def _selected_rows(selection_model: QItemSelectionModel) -> np.ndarray:
    """The selected rows of a list view's selection model, ascending (read range by range)."""
    ranges = [(r.top(), r.bottom()) for r in selection_model.selection() if r.isValid()]
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([np.arange(top, bottom + 1, dtype=np.int64) for top, bottom in ranges]))


def _row_ranges(model: ClusterImagesModel, rows: np.ndarray) -> QItemSelection:
    """A selection of ``rows`` (sorted) as few contiguous ranges (fast for thousands of rows)."""
    selection = QItemSelection()
    if rows.size == 0:
        return selection
    breaks = np.flatnonzero(np.diff(rows) != 1)
    starts = np.concatenate([[rows[0]], rows[breaks + 1]])
    ends = np.concatenate([rows[breaks], [rows[-1]]])
    for start, end in zip(starts, ends):
        selection.select(model.index(int(start)), model.index(int(end)))
    return selection
