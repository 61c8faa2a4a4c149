"""The cluster grid: every cluster's header and thumbnails in ONE virtualised, self-painted view.

A hundred thousand images in a thousand clusters must scroll like twenty: the grid is a single
``QAbstractScrollArea`` that lays out and paints the cluster headers and the thumbnail cells itself
(no widget, no item view per cluster).  The layout is arithmetic over per-cluster *blocks*::

    block height = header height + ceil(images / columns) * cell height + gap   (collapsed: header + gap)

kept as cumulative offsets (a numpy array, O(clusters) to rebuild), so that painting, hit-testing
and scrolling to an image are a binary search plus a few multiplications: a paint touches only the
cells on screen, and only those cells ask the :class:`~imgcluster_gui.ui.thumbnails.ThumbnailLoader`
for their thumbnails (decoded off-thread; see :class:`~imgcluster_gui.ui.thumbnail_delegate.CellPainter`).

Columns are ``viewport width // narrowest cell`` and the cells are widened to fill the row: the grid
never scrolls sideways.

The session is the model (napari's pattern): every hand edit is a command on the undo stack
(:mod:`~imgcluster_gui.ui.commands`), the session emits, and the grid diffs the labels it last showed
against the session's (:func:`~imgcluster_gui.ui.cluster_model.label_changes`) to update only the
clusters concerned, keeping on screen what was there.  Selection, the current cell, the collapsed
clusters and the sort order inside clusters are view state: the labels are untouched by them.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable, Optional

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QDrag,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QFontMetrics,
    QHelpEvent,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QPolygon,
    QResizeEvent,
    QUndoStack,
    QWheelEvent,
)
from PySide6.QtWidgets import QAbstractScrollArea, QApplication, QFrame, QInputDialog, QMenu, QToolTip, QWidget

from ..core.clustering.community import DEFAULT_NEIGHBOURS as LEIDEN_NEIGHBOURS
from ..core.duplicates import (
    BEST_CRITERIA,
    DEFAULT_THRESHOLD,
    DuplicatePairs,
    Stacks,
    best_of_group,
    duplicate_pairs,
)
from ..core.photo_meta import instants, meta_of
from ..core.review import misplacement_scores
from ..core.session import UNASSIGNED, ClusterSession, SessionEvent
from .cluster_model import (
    MIME_TYPE,
    SORT_MODES,
    cluster_sort_key,
    decode_indices,
    encode_indices,
    label_changes,
    sort_members,
)
from .cluster_picker import ClusterPickerDialog
from .commands import (
    DeleteClusterCommand,
    MergeClustersCommand,
    MoveImagesCommand,
    NewClusterCommand,
    RenameClusterCommand,
)
from .preview import PreviewDialog
from .scatter import cluster_colour
from .thumbnail_delegate import CAPTION_MODES, CellPainter
from .thumbnails import ThumbnailLoader

__all__ = [
    "ClusterGridWidget",
    "DEFAULT_GRID_THUMBNAIL",
    "MAX_THUMBNAIL",
    "MIME_TYPE",
    "MIN_THUMBNAIL",
    "decode_indices",
    "encode_indices",
    "unsubscriber_on_destroy",
]

MIN_THUMBNAIL = 64
MAX_THUMBNAIL = 320
#: 128 px thumbnails: five or more columns in the main window's grid at 1400x880.
DEFAULT_GRID_THUMBNAIL = 128
ZOOM_STEP = 1.25  # Ctrl+wheel / Ctrl+plus / Ctrl+minus multiply or divide the size by this
HEADER_PADDING = 6  # above and below a header's text
ARROW_WIDTH = 24  # the collapse arrow's clickable strip at a header's left
SWATCH_WIDTH = 10  # the cluster's colour, beside its name
BLOCK_GAP = 6  # below a cluster's last row of cells
AUTOSCROLL_MARGIN = 40  # a drag this close to the top / bottom edge scrolls the view
AUTOSCROLL_MAX_STEP = 48  # pixels per tick at the very edge
AUTOSCROLL_INTERVAL_MS = 16
_READY_REPAINT_MS = 30  # thumbnails that arrive together are repainted together
# A neighbour search (stacks, "Likely misplaced first") the cache cannot answer runs on a background thread above
# this many images (exact search of 5,000 x 2,688 features: under a second here; 100,000: about a minute).
SEARCH_IN_BACKGROUND_ABOVE = 5_000
_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY_TEXT = "No clustering result yet: run one or open a session."
_RENAME_PROMPT = "New name (empty = suggested or default name):"
_SILHOUETTE_TIP = "Mean silhouette of the cluster's images (-1 to 1, higher = more compact and separate)"
_CTRL = Qt.KeyboardModifier.ControlModifier
_SHIFT = Qt.KeyboardModifier.ShiftModifier
_DIGIT_KEYS = {getattr(Qt.Key, f"Key_{d}"): d for d in range(1, 10)}
_ZOOM_IN_KEYS = (Qt.Key.Key_Plus, Qt.Key.Key_Equal)


class _Hit:
    """What is under a point of the viewport: a cluster's block, and which part of it."""

    __slots__ = ("cluster", "image", "part")

    def __init__(self, cluster: Optional[int], image: Optional[int], part: str) -> None:
        self.cluster = cluster
        self.image = image  # global index of the image whose cell it is, else None
        self.part = part  # "arrow", "header", "cell", "gap" (after the last cell of a block) or "none"


class ClusterGridWidget(QAbstractScrollArea):
    """All clusters of a session, editable by drag and drop, keyboard and context menus, with undo.

    Parameters
    ----------
    session : ClusterSession or None
    undo_stack : QUndoStack
        Every edit is pushed here (:meth:`set_undo_stack` replaces it).
    loader : ThumbnailLoader
    parent : QWidget, optional
    thumb_size : int
        Side of a cell's thumbnail in pixels (64 to 320).

    Signals
    -------
    selectionChanged(list)
        Global image indices selected by the user, or left in the selection after an edit (not
        emitted by :meth:`select_indices`, so a linked scatter plot does not echo back).
    imageActivated(int)
        An image was double-clicked or Enter pressed on it (a preview opens too when
        :attr:`preview_on_activate`).
    quickLookRequested(int)
        Space on the current image.
    thumbnailSizeChanged(int)
        The thumbnail size changed (:meth:`set_thumbnail_size`, Ctrl+wheel, Ctrl+plus/minus/0).
    statusMessage(str)
        Something the person should read in the status bar (why "Open file location" failed).
    """

    selectionChanged = Signal(list)
    imageActivated = Signal(int)
    quickLookRequested = Signal(int)
    thumbnailSizeChanged = Signal(int)
    statusMessage = Signal(str)

    def __init__(
        self,
        session: Optional[ClusterSession],
        undo_stack: QUndoStack,
        loader: ThumbnailLoader,
        parent: Optional[QWidget] = None,
        thumb_size: int = DEFAULT_GRID_THUMBNAIL,
    ) -> None:
        super().__init__(parent)
        self.undo_stack = undo_stack
        self.loader = loader
        self.preview_on_activate = True
        self.cell_painter = CellPainter(loader, _clamp_size(thumb_size))
        self.cell_painter.set_palette(self.palette())
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Always on: a bar that comes and goes would change the columns, hence the height, hence the bar.
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.viewport().setAutoFillBackground(False)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

        self._session: Optional[ClusterSession] = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._sort_mode = "index"
        # ---- what is shown: the labels it follows, the clusters in order and their images in display order
        self._shown_labels: Optional[np.ndarray] = None
        self._order: list[int] = []
        self._members: dict[int, np.ndarray] = {}
        self._row_of = _EMPTY  # per image: its position in its cluster's display order
        self._collapsed: set[int] = set()
        # ---- near-duplicate stacks (view state; see set_stacking): the pairs are found once per session
        self._stacking = False
        self._stack_best = "sharpest"
        self._stack_threshold = DEFAULT_THRESHOLD
        self._stack_pairs: Optional[DuplicatePairs] = None
        self._stack_scores: Optional[np.ndarray] = None  # per image: sharpness / pixels, NaN = not measured
        self._stacks = Stacks(0)
        self._similar: Optional[QWidget] = None  # the open "More like this" dialog
        self._names: Optional[np.ndarray] = None  # lower-cased file names, for the name sort
        self._times: Optional[np.ndarray] = None  # capture instants, for the time sort
        # ---- the "likely misplaced first" sort: the features' neighbour graph (once per session; cached on disk
        # by core/graph.py, so usually the run's own) and the scores of the labels they were computed for
        self._review_graph: Any = None
        self._graph_job: Any = None  # the background neighbour search, while one runs (see _neighbour_graph)
        self._misplaced: Optional[np.ndarray] = None
        self._misplaced_for: Optional[int] = None  # the session's revision the scores are of
        self._path_index: dict[str, int] = {}
        # ---- layout (see _relayout)
        self._tops = np.zeros(1, dtype=np.int64)  # block tops, and the total height last
        self._block_of: dict[int, int] = {}
        self._columns = 1
        self._cell_height = 1
        self._header_height = 1
        # ---- selection, current cell, interaction
        self._selected = np.zeros(0, dtype=bool)
        self._current: Optional[int] = None
        self._anchor: Optional[int] = None
        self._focus_cluster: Optional[int] = None  # the cluster Ctrl+A selects (current image's, or a header clicked)
        self._press_pos: Optional[QPoint] = None
        self._press_image: Optional[int] = None
        self._deferred_select: Optional[int] = None  # a click on a selected cell selects it alone unless a drag starts
        self._band_origin: Optional[QPoint] = None  # rubber band: its corners in content coordinates
        self._band_end: Optional[QPoint] = None
        self._band_base = np.zeros(0, dtype=bool)
        self._drop_cluster: Optional[int] = None
        self._drag_pos: Optional[QPoint] = None
        self._previews: list[PreviewDialog] = []
        self._picker: Optional[ClusterPickerDialog] = None
        self._ready_paths: set[str] = set()
        self._fonts()

        # Coalesced: selection changes (one signal per user gesture) and ready thumbnails (one repaint).
        self._selection_timer = QTimer(self, singleShot=True, interval=0)
        self._selection_timer.timeout.connect(self._emit_selection)
        self._ready_timer = QTimer(self, singleShot=True, interval=_READY_REPAINT_MS)
        self._ready_timer.timeout.connect(self._repaint_ready)
        self._autoscroll_timer = QTimer(self, interval=AUTOSCROLL_INTERVAL_MS)
        self._autoscroll_timer.timeout.connect(self._autoscroll_tick)
        loader.thumbnailReady.connect(self._on_thumbnail_ready)
        self.set_session(session)
        # A deleted grid must not stay subscribed to a session that outlives it.
        self.destroyed.connect(unsubscriber_on_destroy(self))

    # ================================================================== session
    def session(self) -> Optional[ClusterSession]:
        """The session shown (None: nothing)."""
        return self._session

    def set_undo_stack(self, stack: QUndoStack) -> None:
        """Push later edits on ``stack`` (the window gives each run its own history)."""
        self.undo_stack = stack

    def set_session(self, session: Optional[ClusterSession]) -> None:
        """Show another result (or none); pending thumbnails of the previous one are dropped."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._session = session
        self.loader.set_generation()
        self._path_index = {} if session is None else {p: i for i, p in enumerate(session.paths)}
        self._names = None
        self._times = None
        self._review_graph = self._misplaced = self._misplaced_for = None
        self._graph_job = None  # a search still running for the last session is ignored when it ends
        self.cell_painter.set_photo_meta(
            None if session is None else session.paths, getattr(session, "photo_meta", None)
        )
        self._collapsed = set()
        self._stack_pairs = self._stack_scores = None
        self._stacks = Stacks(0)
        self._current = self._anchor = self._focus_cluster = None
        self._selected = np.zeros(0 if session is None else len(session), dtype=bool)
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)
        self._rebuild()
        self.verticalScrollBar().setValue(0)
        self._selection_timer.start()

    def _rebuild(self) -> None:
        """Read every cluster's images from the session (a new session, or a ``'reset'`` event)."""
        session = self._session
        self._members = {}
        if session is None:
            self._shown_labels = None
            self._row_of = _EMPTY
        else:
            labels = session.labels
            self._shown_labels = labels.copy()
            self._row_of = np.zeros(len(session), dtype=np.int64)
            self._refresh_stacks()
            # One stable sort splits the images by cluster (O(n log n), not one scan per cluster).
            by_label = np.argsort(labels, kind="stable").astype(np.int64)
            clusters, starts = np.unique(labels[by_label], return_index=True)
            bounds = list(starts) + [by_label.size]
            for k, cluster in enumerate(clusters):
                self._set_members(int(cluster), by_label[bounds[k] : bounds[k + 1]])
            if self._selected.size != len(session):
                self._selected = np.zeros(len(session), dtype=bool)
        self._order = sorted(self._members, key=cluster_sort_key)
        self._collapsed &= set(self._members)
        self._relayout()

    def _set_members(self, cluster: int, indices: np.ndarray) -> None:
        """Put ``indices`` (the cluster's images) in display order and index their positions."""
        ordered = self._stacks.arrange(self._sorted(indices))  # a closed stack shows its cover only
        self._members[cluster] = ordered
        self._row_of[ordered] = np.arange(ordered.size, dtype=np.int64)

    def _sorted(self, indices: np.ndarray) -> np.ndarray:
        session = self._session
        mode = self._sort_mode
        if mode == "name" and self._names is None and session is not None:
            self._names = np.array([os.path.basename(p).casefold() for p in session.paths])
        if mode == "time" and self._times is None and session is not None:
            self._times = instants(getattr(session, "photo_meta", None))  # None without capture dates: the folder order
        features = session.features if session is not None else None
        misplaced = self._misplacement() if mode == "misplaced" else None
        return sort_members(indices, mode, names=self._names, features=features, times=self._times, misplaced=misplaced)

    def _neighbour_graph(self, purpose: str) -> Any:
        """The features' neighbour graph (the default Leiden's 10-NN), or None while a background search runs.

        The run's own graph usually comes from the cache. Otherwise a small session is searched here and now,
        a large one (:data:`SEARCH_IN_BACKGROUND_ABOVE`) on a background thread: the status bar says so, and
        when it ends the stacks and the sort that wanted it are redone. ``ValueError`` for features that
        cannot be compared.
        """
        from ..core.graph import build_knn_graph, cached_knn_graph

        session = self._session
        assert session is not None and session.features is not None
        features = session.features
        graph = cached_knn_graph(features, LEIDEN_NEIGHBOURS, metric="cosine")
        if graph is not None:
            return graph
        if len(session) <= SEARCH_IN_BACKGROUND_ABOVE:
            return build_knn_graph(features, n_neighbors=LEIDEN_NEIGHBOURS, metric="cosine")
        if self._graph_job is None:
            from .worker import BackgroundJob

            job = BackgroundJob(
                lambda progress: build_knn_graph(
                    features, n_neighbors=LEIDEN_NEIGHBOURS, metric="cosine", progress=progress
                ),
                title="Finding similar photos failed",
                parent=self,
            )
            job.succeeded.connect(lambda graph, s=session, j=job: self._on_graph_found(s, j, graph))
            job.failed.connect(lambda failure, j=job: self._on_graph_failed(j, failure))
            self._graph_job = job
            job.start()
        self.statusMessage.emit(f"Finding each image's nearest neighbours for {purpose} (in the background)…")
        return None

    @property
    def graph_job(self) -> Any:
        """The background neighbour search while one runs (see :meth:`_neighbour_graph`), else None."""
        return self._graph_job

    def _on_graph_found(self, session: ClusterSession, job: Any, graph: Any) -> None:
        if job is not self._graph_job or session is not self._session:
            return  # another session is shown now
        self._graph_job = None
        self._review_graph = graph
        anchor = self._scroll_anchor()
        if self._stacking and self._stack_pairs is None:
            self._rebuild()  # the stacks read the graph from the cache now
        elif self._sort_mode == "misplaced":
            self._resort_all()
        self._restore_anchor(anchor)
        self.viewport().update()
        if not (self._sort_mode == "misplaced" and self._misplaced is not None):
            self.statusMessage.emit("Nearest neighbours found.")

    def _on_graph_failed(self, job: Any, failure: Any) -> None:
        if job is self._graph_job:
            self._graph_job = None
            self.statusMessage.emit(f"Finding similar photos failed: {failure}")

    def _resort_all(self) -> None:
        """Every cluster in the sort order now; "Likely misplaced first" also says in the status bar how many."""
        assert self._session is not None
        for cluster in self._order:
            self._set_members(cluster, self._members[cluster])
        if self._sort_mode == "misplaced" and self._misplaced is not None:
            self.statusMessage.emit(misplaced_summary(self._misplaced, self._session.labels))

    def _misplacement(self) -> Optional[np.ndarray]:
        """``core.review.misplacement_scores`` of the session's labels now (None: no features, or not comparable)."""
        session = self._session
        if session is None or session.features is None or len(session) < 2:
            return None
        # Asked once per cluster while sorting: the session's revision (every label change bumps it) says
        # whether the scores are current, not a comparison of all the labels each time.
        if self._misplaced is not None and self._misplaced_for == session.revision:
            return self._misplaced
        if self._review_graph is None:
            if self._graph_job is not None:
                return None  # a search runs: asked once, not once per cluster
            try:
                self._review_graph = self._neighbour_graph('"Likely misplaced first"')
            except ValueError as exc:  # features that cannot be compared (NaN): outliers first, and why
                self.statusMessage.emit(f"Likely misplaced images cannot be found ({exc}): outliers first instead")
                return None
            if self._review_graph is None:
                return None  # searched in the background: outliers first until it ends
        self._misplaced = misplacement_scores(self._review_graph, session.labels)
        self._misplaced_for = session.revision
        return self._misplaced

    def _on_session_event(self, event: SessionEvent) -> None:
        if self._session is None:
            return
        if event.kind == "reset":  # everything may have changed (the clustering's own labels back)
            anchor = self._scroll_anchor()
            self._rebuild()
            self._restore_anchor(anchor)
            self._drop_vanished_selection()
        elif event.kind == "labels":
            self._apply_label_change()
        elif event.kind in ("metrics", "names"):
            self.viewport().update()  # headers are painted from the session: nothing to rebuild

    def _apply_label_change(self) -> None:
        """Follow the session's labels: only the clusters that lost or gained images are re-read.

        The change is the diff between the labels shown and the session's (not the event's list),
        so the grid cannot drift from the session.  Moved images leave the selection; what was at
        the viewport's top stays there.
        """
        session = self._session
        assert session is not None
        shown = self._shown_labels
        if shown is None or shown.shape != session.labels.shape:
            self._rebuild()
            return
        changes = label_changes(shown, session.labels)
        if not changes:
            self.viewport().update()
            return
        if self._stacking:  # stacks regroup with the clusters: every block is re-read (O(n log n))
            moved = np.flatnonzero(shown != session.labels)
            anchor = self._scroll_anchor()
            self._rebuild()
            self._restore_anchor(anchor)
            if self._selected[moved].any():
                self._selected[moved] = False
                self._selection_timer.start()
            return
        self._shown_labels = session.labels.copy()
        emptied = {c for c, (leaving, arriving) in changes.items() if c in self._members and session.size_of(c) == 0}
        anchor = self._scroll_anchor(avoid=emptied)
        current_place = self._place_of(self._current) if self._current is not None else None
        # First what stays in each cluster (from the positions before any cluster is re-indexed) ...
        staying: dict[int, np.ndarray] = {}
        for cluster, (leaving, _arriving) in changes.items():
            old = self._members.get(cluster, _EMPTY)
            if leaving.size and old.size:
                keep = np.ones(old.size, dtype=bool)
                keep[self._row_of[leaving]] = False
                old = old[keep]
            staying[cluster] = old
        # ... then each cluster's new display order.
        for cluster, (_leaving, arriving) in changes.items():
            old = staying[cluster]
            if not arriving.size and self._sort_mode in ("index", "name"):
                kept = old  # what stays keeps its order: only the positions shift
            else:
                kept = self._sorted(np.concatenate([old, arriving]))
            if kept.size == 0:
                self._members.pop(cluster, None)
                self._collapsed.discard(cluster)
                continue
            self._members[cluster] = kept
            self._row_of[kept] = np.arange(kept.size, dtype=np.int64)
        self._order = sorted(self._members, key=cluster_sort_key)
        moved = np.concatenate([np.concatenate(pair) for pair in changes.values()])
        deselected = bool(self._selected[moved].any())
        self._selected[moved] = False
        self._relayout()
        self._restore_anchor(anchor)
        if self._current is not None and shown[self._current] != session.labels[self._current]:
            # The current image moved: the cell that takes its place becomes current (as in a file list).
            self._current = self._anchor = None
            if current_place is not None and current_place[0] in self._members:
                members = self._members[current_place[0]]
                self._current = self._anchor = int(members[min(current_place[1], members.size - 1)])
        if deselected:
            self._selection_timer.start()
        self.viewport().update()

    def _drop_vanished_selection(self) -> None:
        if self._session is not None and self._selected.size != len(self._session):
            self._selected = np.zeros(len(self._session), dtype=bool)

    # ================================================================== layout
    def _fonts(self) -> None:
        self._metrics = QFontMetrics(self.font())
        self._bold = QFont(self.font())
        self._bold.setBold(True)
        self._bold_metrics = QFontMetrics(self._bold)

    def _relayout(self) -> None:
        """Recompute columns, cell size and the blocks' offsets: O(clusters)."""
        width = max(1, self.viewport().width())
        self._columns = max(1, width // self.cell_painter.min_cell_width())
        self._cell_height = self.cell_painter.cell_height(self._metrics)
        self._header_height = max(self._bold_metrics.height(), self._metrics.height()) + 2 * HEADER_PADDING
        sizes = np.fromiter((self._members[c].size for c in self._order), dtype=np.int64, count=len(self._order))
        expanded = np.fromiter((c not in self._collapsed for c in self._order), dtype=bool, count=len(self._order))
        rows = np.where(expanded, -(-sizes // self._columns), 0)
        heights = self._header_height + rows * self._cell_height + BLOCK_GAP
        self._tops = np.concatenate([[0], np.cumsum(heights)]).astype(np.int64)
        self._block_of = {c: b for b, c in enumerate(self._order)}
        bar = self.verticalScrollBar()
        page = max(1, self.viewport().height())
        bar.setRange(0, max(0, int(self._tops[-1]) - page))
        bar.setPageStep(page)
        bar.setSingleStep(max(16, self._cell_height // 3))
        self.horizontalScrollBar().setRange(0, 0)  # never sideways
        self.viewport().update()

    def _cell_x(self, column: int) -> tuple[int, int]:
        """Left edge and width of ``column``'s cells (cells are widened to fill the viewport)."""
        width = max(1, self.viewport().width())
        left = column * width // self._columns
        return left, (column + 1) * width // self._columns - left

    def _place_of(self, image: int) -> Optional[tuple[int, int]]:
        """(cluster, position in its display order) of a shown image, else None."""
        if self._shown_labels is None or not 0 <= image < self._shown_labels.size:
            return None
        cluster = int(self._shown_labels[image])
        if cluster not in self._members or (image < self._stacks.hidden.size and self._stacks.hidden[image]):
            return None  # not shown (a closed stack hides all but its cover)
        return cluster, int(self._row_of[image])

    def _hit(self, pos: QPoint) -> _Hit:
        y = pos.y() + self.verticalScrollBar().value()
        if not self._order or y < 0 or y >= self._tops[-1]:
            return _Hit(None, None, "none")
        block = int(np.searchsorted(self._tops, y, side="right")) - 1
        cluster = self._order[block]
        into = y - int(self._tops[block])
        if into < self._header_height:
            return _Hit(cluster, None, "arrow" if pos.x() < ARROW_WIDTH else "header")
        if cluster in self._collapsed:
            return _Hit(cluster, None, "gap")
        members = self._members[cluster]
        row = (into - self._header_height) // self._cell_height
        width = max(1, self.viewport().width())
        column = min(self._columns - 1, max(0, pos.x()) * self._columns // width)
        position = row * self._columns + column
        if position < members.size:
            return _Hit(cluster, int(members[position]), "cell")
        return _Hit(cluster, None, "gap")

    def _cell_content_rect(self, image: int) -> Optional[QRect]:
        """The cell of ``image`` in content coordinates (None when it is not shown)."""
        place = self._place_of(image)
        if place is None or place[0] in self._collapsed:
            return None
        cluster, position = place
        row, column = divmod(position, self._columns)
        left, width = self._cell_x(column)
        top = int(self._tops[self._block_of[cluster]]) + self._header_height + row * self._cell_height
        return QRect(left, top, width, self._cell_height)

    # ---- geometry for tests and the window
    def cell_rect(self, image: int) -> QRect:
        """The cell of ``image`` in viewport coordinates (an empty rectangle when it is not shown)."""
        rect = self._cell_content_rect(int(image))
        return QRect() if rect is None else rect.translated(0, -self.verticalScrollBar().value())

    def cluster_rect(self, cluster: int) -> QRect:
        """The block of ``cluster`` (header, cells and the gap after them) in viewport coordinates."""
        block = self._block_of.get(int(cluster))
        if block is None:
            return QRect()
        top = int(self._tops[block]) - self.verticalScrollBar().value()
        return QRect(0, top, self.viewport().width(), int(self._tops[block + 1] - self._tops[block]))

    def header_rect(self, cluster: int) -> QRect:
        """The header of ``cluster`` in viewport coordinates."""
        rect = self.cluster_rect(cluster)
        return QRect() if rect.isNull() else QRect(rect.x(), rect.y(), rect.width(), self._header_height)

    def index_at(self, point: QPoint) -> Optional[int]:
        """The image whose cell is at ``point`` (viewport coordinates), else None."""
        return self._hit(point).image

    def cluster_at(self, point: QPoint) -> Optional[int]:
        """The cluster whose block is at ``point`` (viewport coordinates), else None."""
        return self._hit(point).cluster

    def columns(self) -> int:
        """Cells per row at the current width and thumbnail size."""
        return self._columns

    def indices_of(self, cluster: int) -> list[int]:
        """The images of ``cluster`` in display order (empty when it is not shown)."""
        return [int(i) for i in self._members.get(int(cluster), _EMPTY)]

    def visible_indices_of(self, cluster: int) -> list[int]:
        """The images of ``cluster`` whose cells are on screen now, in display order."""
        block = self._block_of.get(int(cluster))
        if block is None or cluster in self._collapsed:
            return []
        top = self.verticalScrollBar().value()
        first_cell = int(self._tops[block]) + self._header_height
        first_row = max(0, (top - first_cell) // self._cell_height)
        last_row = (top + self.viewport().height() - 1 - first_cell) // self._cell_height
        if last_row < first_row:
            return []
        members = self._members[int(cluster)]
        return [int(i) for i in members[first_row * self._columns : (last_row + 1) * self._columns]]

    def visible_paths(self) -> list[str]:
        """Files of the cells on screen now (the benchmark waits for their thumbnails)."""
        session = self._session
        if session is None:
            return []
        return [session.paths[i] for c in self._order for i in self.visible_indices_of(c)]

    def header_text(self, cluster: int) -> tuple[str, str]:
        """(name, details) a cluster's header shows in full: ``("Reds", "8 images  ·  silhouette 0.61")``."""
        count, silhouette, _tip = self._header_parts(int(cluster))
        session = self._session
        name = session.name_of(int(cluster)) if session is not None else ""
        return name, count + silhouette

    def empty_message(self) -> str:
        """The text the grid shows instead of clusters ("" when it shows some)."""
        return "" if self._order else _EMPTY_TEXT

    def cluster_order(self) -> list[int]:
        """Cluster ids in the order their blocks are shown (ascending, Unassigned last)."""
        return list(self._order)

    # ---- collapse / expand
    def is_expanded(self, cluster: int) -> bool:
        """True when ``cluster`` is shown with its thumbnails (not collapsed to its header)."""
        return int(cluster) in self._members and int(cluster) not in self._collapsed

    def set_expanded(self, cluster: int, expanded: bool) -> None:
        """Show or hide a cluster's thumbnails (its header stays)."""
        cluster = int(cluster)
        if cluster not in self._members or expanded == (cluster not in self._collapsed):
            return
        anchor = self._scroll_anchor()
        if expanded:
            self._collapsed.discard(cluster)
        else:
            self._collapsed.add(cluster)
        self._relayout()
        self._restore_anchor(anchor)

    def set_all_expanded(self, expanded: bool) -> None:
        """Expand or collapse every cluster (what was at the top stays there)."""
        anchor = self._scroll_anchor()
        self._collapsed = set() if expanded else set(self._members)
        self._relayout()
        self._restore_anchor(anchor)

    # ---- near-duplicate stacks (core/duplicates.py)
    def is_stacking(self) -> bool:
        """Whether groups of near-duplicates are shown as stacks (see :meth:`set_stacking`)."""
        return self._stacking

    def set_stacking(self, enabled: bool, best: Optional[str] = None) -> None:
        """Show each group of near-identical images of a cluster as one stack: its best image, a count badge.

        ``best`` (``"sharpest"`` or ``"largest"``) chooses the cover, the image "Keep best" keeps.
        The choice stays for the next session shown; a session without features shows no stacks.
        """
        if best is not None and best != self._stack_best:
            if best not in BEST_CRITERIA:
                raise ValueError(f"unknown stack choice {best!r} (expected one of {', '.join(BEST_CRITERIA)})")
            self._stack_best, self._stack_scores = best, None
        elif bool(enabled) == self._stacking:
            return
        self._stacking = bool(enabled)
        if self._stacking and self._session is not None and self._session.features is None:
            self.statusMessage.emit("This result has no features: near-duplicates cannot be stacked")
        anchor = self._scroll_anchor()
        self._rebuild()
        self._restore_anchor(anchor)

    def stack_best(self) -> str:
        """How a stack's cover is chosen: ``"sharpest"`` or ``"largest"``."""
        return self._stack_best

    def stack_threshold(self) -> float:
        """The feature cosine from which two images of a cluster are stacked as near-duplicates."""
        return self._stack_threshold

    def set_stack_threshold(self, threshold: float) -> None:
        """Stack images at least ``threshold`` alike (0-1; ``core/duplicates.py``); the stacks are found again."""
        threshold = float(threshold)
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"a stack threshold is a cosine in (0, 1], got {threshold}")
        if threshold == self._stack_threshold:
            return
        self._stack_threshold, self._stack_pairs = threshold, None
        if self._stacking:
            anchor = self._scroll_anchor()
            self._rebuild()
            self._restore_anchor(anchor)

    def stacks(self) -> dict[int, list[int]]:
        """The stacks shown: cover -> every image of its group (ascending); empty when not stacking."""
        return {c: m.tolist() for c, m in self._stacks.members.items()} if self._stacking else {}

    def set_stack_expanded(self, image: int, expanded: bool) -> None:
        """Open (every image shown after the cover) or close the stack ``image`` is in."""
        session = self._session
        if session is None or not self._stacking or not self._stacks.set_expanded(int(image), expanded):
            return
        anchor = self._scroll_anchor()
        cluster = int(session.labels[int(image)])
        self._set_members(cluster, session.indices_of(cluster))
        self._relayout()
        self._restore_anchor(anchor)

    def select_stack_rest(self, image: int) -> list[int]:
        """ "Keep best, select the rest": open ``image``'s stack and select all of it but the cover.

        The person then moves them (Delete: to Unassigned, or "Move selection to" / "New cluster from
        selection" for a "Duplicates" cluster), undoable as any move.
        """
        cover = self._stacks.cover(int(image)) if self._stacking else None
        if cover is None:
            return []
        self.set_stack_expanded(cover, True)
        rest = [int(i) for i in self._stacks.members[cover] if int(i) != cover]
        self._set_selection(self._only(rest))
        self._current = self._anchor = rest[0]
        self.scroll_to_index(rest[0])
        return rest

    def _on_stack_badge(self, image: int, pos: QPoint) -> bool:
        count = self._stacks.count(image) if self._stacking else 0
        return bool(count) and self.cell_painter.stack_badge_rect(self.cell_rect(image), count).contains(pos)

    def _refresh_stacks(self) -> None:
        """The stacks of the current labels: pairs found once per session, grouped per cluster each time."""
        session = self._session
        if session is None or not self._stacking or session.features is None:
            self._stacks = Stacks(0)
            return
        if self._stack_pairs is None:
            from ..core.photo_meta import instants

            table = getattr(session, "photo_meta", None)
            times = instants(table, exif_only=True) if table is not None else None  # bursts need capture times
            try:
                if self._graph_job is not None or self._neighbour_graph("the near-duplicate stacks") is None:
                    self._stacks = Stacks(0)  # searched in the background: no stacks until it ends
                    return
                self._stack_pairs = duplicate_pairs(session.features, self._stack_threshold, times=times)
            except ValueError as exc:  # features that cannot be compared (NaN): no stacks, and why
                self.statusMessage.emit(f"Near-duplicates cannot be stacked: {exc}")
                self._stacks = Stacks(0)
                return
        if self._stack_scores is None:
            self._stack_scores = np.full(len(session), np.nan)
        groups = self._stack_pairs.groups(session.labels)
        covers = [best_of_group(g, session.paths, self._stack_best, scores=self._stack_scores) for g in groups]
        self._stacks = Stacks(len(session), groups, covers, expanded=self._stacks.expanded)

    # ---- similar images
    def open_similar(self, image: int) -> Optional[QWidget]:
        """ "More like this": a dialog of the images nearest to ``image`` from every cluster."""
        session = self._session
        if session is None or session.features is None or not 0 <= int(image) < len(session):
            return None
        from .similar_dialog import SimilarDialog

        if self._similar is not None:
            self._similar.close()
        dialog = SimilarDialog(session, int(image), self.loader, self)
        dialog.selectRequested.connect(self.reveal_and_select)
        dialog.finished.connect(lambda _r, d=dialog: setattr(self, "_similar", None) if self._similar is d else None)
        self._similar = dialog
        dialog.show()
        return dialog

    def reveal_and_select(self, indices: list) -> None:
        """Select ``indices`` as a user's selection (announced), opening the stacks and clusters that hide them."""
        indices = [int(i) for i in indices]
        if not indices or self._session is None:
            return
        self.scroll_to_index(int(indices[0]))  # opens a closed stack or cluster holding it
        for index in indices:
            if self._place_of(int(index)) is None:
                self.scroll_to_index(int(index))
        self._set_selection(self._only(indices))
        self._current = self._anchor = int(indices[0])
        self.scroll_to_index(int(indices[0]))

    # ---- view choices
    def thumbnail_size(self) -> int:
        """Side of a cell's thumbnail in pixels."""
        return self.cell_painter.thumb_size

    def set_thumbnail_size(self, size: int) -> None:
        """Cells of ``size`` pixels (clamped to 64..320); the image at the top stays at the top."""
        size = _clamp_size(size)
        if size == self.cell_painter.thumb_size:
            return
        anchor = self._scroll_anchor()
        self.cell_painter.set_thumb_size(size)
        self._relayout()
        self._restore_anchor(anchor)
        self.thumbnailSizeChanged.emit(size)

    def _zoom(self, steps: float) -> None:
        self.set_thumbnail_size(round(self.thumbnail_size() * ZOOM_STEP**steps))

    def caption_mode(self) -> str:
        """``"name"``, ``"date"`` or ``"none"`` (see :meth:`set_caption_mode`)."""
        return self.cell_painter.caption_mode

    def set_caption_mode(self, mode: str) -> None:
        """Captions under the thumbnails: ``"name"`` (file name), ``"date"`` (file date) or ``"none"``."""
        if mode not in CAPTION_MODES:
            raise ValueError(f"unknown caption mode {mode!r} (expected one of {', '.join(CAPTION_MODES)})")
        if mode == self.cell_painter.caption_mode:
            return
        anchor = self._scroll_anchor()
        self.cell_painter.set_caption_mode(mode)
        self._relayout()
        self._restore_anchor(anchor)

    def sort_mode(self) -> str:
        """The order inside clusters (see :meth:`set_sort_mode`)."""
        return self._sort_mode

    def set_sort_mode(self, mode: str) -> None:
        """Order inside clusters: ``"index"`` (folder order), ``"name"``, ``"distance"``, ``"distance_desc"``,
        ``"misplaced"`` or ``"time"``.

        The distance is to the cluster's centre in ``session.features`` (``"distance"``: outliers
        last; ``"distance_desc"``: outliers first, to review them).  ``"misplaced"``: the images whose
        neighbours are mostly in other clusters first (``core/review.py``); a cluster that changes is
        re-sorted, the others keep their order while a person works.  The labels are untouched.
        """
        if mode not in SORT_MODES:
            raise ValueError(f"unknown sort mode {mode!r} (expected one of {', '.join(SORT_MODES)})")
        if mode == self._sort_mode:
            return
        self._sort_mode = mode
        if self._session is not None:
            self._resort_all()
        self.viewport().update()
        if self._current is not None:
            self.scroll_to_index(self._current)

    # ================================================================== scroll position
    def _scroll_anchor(self, avoid: Iterable[int] = ()) -> Optional[tuple[int, int, Optional[int], int]]:
        """What the viewport's top shows: (cluster, pixels into its block, image of the top row, pixels into it).

        None at the very top (the top stays shown).  Clusters in ``avoid`` (about to go) are skipped.
        """
        value = self.verticalScrollBar().value()
        if value <= 0 or not self._order:
            return None
        avoid = set(avoid)
        block = min(len(self._order) - 1, int(np.searchsorted(self._tops, value, side="right")) - 1)
        offset = value - int(self._tops[block])
        while block < len(self._order) and self._order[block] in avoid:
            block, offset = block + 1, 0
        if block >= len(self._order):
            return None
        cluster = self._order[block]
        image, image_offset = None, 0
        into_cells = offset - self._header_height
        if cluster not in self._collapsed and into_cells >= 0:
            row = into_cells // self._cell_height
            members = self._members[cluster]
            if row * self._columns < members.size:
                image, image_offset = int(members[row * self._columns]), into_cells - row * self._cell_height
        return cluster, offset, image, image_offset

    def _restore_anchor(self, anchor: Optional[tuple[int, int, Optional[int], int]]) -> None:
        if anchor is None:
            return
        cluster, offset, image, image_offset = anchor
        block = self._block_of.get(cluster)
        if block is None:
            return
        value = int(self._tops[block]) + min(offset, int(self._tops[block + 1] - self._tops[block]) - 1)
        if image is not None:
            rect = self._cell_content_rect(image)
            if rect is not None and self._place_of(image) is not None and self._place_of(image)[0] == cluster:
                value = rect.top() + image_offset
        self.verticalScrollBar().setValue(value)

    def scroll_to_cluster(self, cluster: int) -> None:
        """Scroll so ``cluster``'s header is at the top (as far as the scroll range allows); never sideways."""
        block = self._block_of.get(int(cluster))
        if block is None:
            return
        self.verticalScrollBar().setValue(int(self._tops[block]))
        self.horizontalScrollBar().setValue(0)

    def scroll_to_index(self, image: int) -> None:
        """Scroll so image ``image`` (global index) is visible, expanding its cluster; never sideways."""
        place = self._place_of(int(image))
        if place is None and self._stacking and self._stacks.cover(int(image)) is not None:
            self.set_stack_expanded(int(image), True)  # under a closed stack: open it
            place = self._place_of(int(image))
        if place is None:
            return
        self.set_expanded(place[0], True)
        rect = self._cell_content_rect(int(image))
        if rect is None:
            return
        bar = self.verticalScrollBar()
        top, height = bar.value(), self.viewport().height()
        if rect.top() < top:
            bar.setValue(rect.top() - (self._header_height if place[1] < self._columns else 0))
        elif rect.bottom() >= top + height:
            bar.setValue(rect.bottom() + 1 - height)
        self.horizontalScrollBar().setValue(0)

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802 - Qt API
        # Only vertical; the exposed strip is repainted (the rest is moved, not repainted).
        if dy:
            self.viewport().scroll(0, dy)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        anchor = self._scroll_anchor()
        super().resizeEvent(event)
        self._relayout()
        self._restore_anchor(anchor)

    # ================================================================== painting
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self.viewport())
        colours = self.cell_painter.colours
        area = event.rect()
        painter.fillRect(area, colours["base"])
        if not self._order:
            painter.setPen(colours["text"])
            painter.drawText(self.viewport().rect(), int(Qt.AlignmentFlag.AlignCenter), _EMPTY_TEXT)
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        scroll = self.verticalScrollBar().value()
        y0, y1 = scroll + area.top(), scroll + area.bottom() + 1
        width = self.viewport().width()
        tops = self._tops
        block = max(0, int(np.searchsorted(tops, y0, side="right")) - 1)
        session = self._session
        assert session is not None
        paths, selected, columns, cell_h = session.paths, self._selected, self._columns, self._cell_height
        lefts = [self._cell_x(col) for col in range(columns)]
        metrics, paint_cell, current = self._metrics, self.cell_painter.paint, self._current
        stack_members = self._stacks.members if self._stacking else {}
        while block < len(self._order) and tops[block] < y1:
            cluster = self._order[block]
            top = int(tops[block])
            if top + self._header_height > y0:
                self._paint_header(painter, cluster, QRect(0, top - scroll, width, self._header_height))
            if cluster not in self._collapsed:
                members = self._members[cluster]
                cells_top = top + self._header_height
                first_row = max(0, (y0 - cells_top) // cell_h)
                last_row = min((members.size - 1) // columns, (y1 - 1 - cells_top) // cell_h)
                for row in range(first_row, last_row + 1):
                    y = cells_top + row * cell_h - scroll
                    start = row * columns
                    for column, image in enumerate(members[start : start + columns].tolist()):
                        left, cell_w = lefts[column]
                        paint_cell(
                            painter,
                            QRect(left, y, cell_w, cell_h),
                            paths[image],
                            bool(selected[image]),
                            image == current,
                            metrics,
                        )
                        if image in stack_members:  # a stack's cover: its count badge
                            self.cell_painter.paint_stack_badge(
                                painter,
                                QRect(left, y, cell_w, cell_h),
                                int(stack_members[image].size),
                                image in self._stacks.expanded,
                            )
            if cluster == self._drop_cluster:
                self._paint_drop_highlight(painter, QRect(0, top - scroll, width, int(tops[block + 1]) - top))
            block += 1
        if self._band_origin is not None and self._band_end is not None:
            band = QRect(self._band_origin, self._band_end).normalized().translated(0, -scroll)
            highlight = QColor(colours["highlight"])
            painter.setPen(QPen(highlight, 1))
            highlight.setAlpha(50)
            painter.fillRect(band, highlight)
            painter.drawRect(band.adjusted(0, 0, -1, -1))

    def _header_parts(self, cluster: int) -> tuple[str, str, str]:
        """The header's count (never elided), its silhouette part, and the tooltip."""
        session = self._session
        size = self._members.get(cluster, _EMPTY).size
        if self._stacking and session is not None and size:
            size = session.size_of(cluster)  # the images under closed stacks count too
        count = f"{size} image" + ("" if size == 1 else "s")
        silhouette_text, tooltip = "", _SILHOUETTE_TIP
        if session is not None and cluster != UNASSIGNED:
            silhouette = (session.metrics.get("per_cluster_silhouette") or {}).get(cluster)
            if silhouette is not None:
                stale = session.metrics_stale
                silhouette_text = f"  ·  silhouette {silhouette:.2f}" + (" (before edits)" if stale else "")
                if stale:
                    tooltip += "; computed before the latest hand edits"
            suggestion = session.suggested_name(cluster)
            if suggestion is not None:  # where the name comes from (or what a custom name replaced)
                custom = cluster in session.cluster_names
                tooltip = suggestion.describe() + (" (your name replaces it)" if custom else "") + "<br>" + tooltip
        return count, silhouette_text, tooltip

    def _paint_header(self, painter: QPainter, cluster: int, rect: QRect) -> None:
        session = self._session
        assert session is not None
        colours = self.cell_painter.colours
        painter.fillRect(rect.adjusted(0, 1, 0, -1), colours["header"])
        # The collapse arrow: pointing down when expanded, right when collapsed.
        cx, cy = rect.x() + ARROW_WIDTH // 2, rect.center().y()
        if cluster in self._collapsed:
            arrow = QPolygon([QPoint(cx - 3, cy - 5), QPoint(cx + 3, cy), QPoint(cx - 3, cy + 5)])
        else:
            arrow = QPolygon([QPoint(cx - 5, cy - 3), QPoint(cx + 5, cy - 3), QPoint(cx, cy + 3)])
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colours["header_text"])
        painter.drawPolygon(arrow)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        swatch_h = self._metrics.height() - 4
        painter.fillRect(
            QRect(rect.x() + ARROW_WIDTH, cy - swatch_h // 2, SWATCH_WIDTH, swatch_h), cluster_colour(cluster)
        )
        x = rect.x() + ARROW_WIDTH + SWATCH_WIDTH + 8
        room = self.header_room()
        name, details = self.header_layout(cluster, room)
        name_w = self._bold_metrics.horizontalAdvance(name)
        text_rect = QRect(x, rect.y(), max(0, room), rect.height())
        align = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        painter.setPen(colours["header_text"])
        painter.setFont(self._bold)
        painter.drawText(text_rect, align, name)
        painter.setFont(self.font())
        painter.drawText(text_rect.adjusted(name_w, 0, 0, 0), align, details)

    def header_layout(self, cluster: int, room: int) -> tuple[str, str]:
        """What a header shows in ``room`` pixels: (name, "  ·  count  ·  silhouette").

        The name in full when there is room, else elided at its end; the count is never elided;
        the silhouette is left out first.
        """
        session = self._session
        if session is None:
            return "", ""
        name = session.name_of(cluster)
        count, silhouette, _tip = self._header_parts(cluster)
        count = "  ·  " + count
        name_w = self._bold_metrics.horizontalAdvance(name)
        count_w = self._metrics.horizontalAdvance(count)
        if name_w + count_w > room:
            name = self._bold_metrics.elidedText(name, Qt.TextElideMode.ElideRight, max(0, room - count_w))
            name_w = self._bold_metrics.horizontalAdvance(name)
        if silhouette and name_w + count_w + self._metrics.horizontalAdvance(silhouette) <= room:
            count += silhouette
        return name, count

    def header_room(self) -> int:
        """Pixels a header has for its name and details at the current width."""
        return self.viewport().width() - ARROW_WIDTH - SWATCH_WIDTH - 16  # 8 px before the name, 8 after

    def _paint_drop_highlight(self, painter: QPainter, rect: QRect) -> None:
        highlight = QColor(self.cell_painter.colours["highlight"])
        painter.setPen(QPen(highlight, 2))
        painter.drawRect(rect.adjusted(1, 1, -2, -2))
        highlight.setAlpha(40)
        painter.fillRect(rect.adjusted(2, 2, -2, -2), highlight)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.PaletteChange:
            self.cell_painter.set_palette(self.palette())
            self.viewport().update()
        elif event.type() == QEvent.Type.FontChange:
            self._fonts()
            self._relayout()
        super().changeEvent(event)

    # ---- thumbnails
    def _on_thumbnail_ready(self, path: str) -> None:
        self._ready_paths.add(path)
        if not self._ready_timer.isActive():
            self._ready_timer.start()

    def _repaint_ready(self) -> None:
        paths, self._ready_paths = self._ready_paths, set()
        shown = self.viewport().rect()
        for path in paths:
            image = self._path_index.get(path)
            if image is None:
                continue
            rect = self.cell_rect(image)
            if not rect.isNull() and rect.intersects(shown):
                self.viewport().update(rect)

    # ================================================================== selection
    def selected_indices(self) -> list[int]:
        """Selected global image indices, ascending."""
        return [int(i) for i in np.flatnonzero(self._selected)]

    def acted_on_indices(self) -> list[int]:
        """What a drag, a move or "New cluster from selection" takes: the selection, and with a closed stack's
        cover the whole stack (its hidden near-duplicates go where the stack goes, as in a photo organiser)."""
        chosen = self._selected.copy()
        if self._stacking:
            for cover, members in self._stacks.members.items():
                if chosen[cover] and not self._stacks.is_expanded(cover):
                    chosen[members] = True
        return [int(i) for i in np.flatnonzero(chosen)]

    def current_index(self) -> Optional[int]:
        """The current image (keyboard focus cell), or None."""
        return self._current

    def select_indices(self, indices: Iterable[int], scroll: bool = True) -> None:
        """Select these global indices (e.g. from the scatter plot) without emitting ``selectionChanged``."""
        if self._session is None:
            return
        wanted = np.unique(np.asarray(list(indices), dtype=np.int64))
        wanted = wanted[(wanted >= 0) & (wanted < len(self._session))]
        self._selected[:] = False
        self._selected[wanted] = True
        self._selection_timer.stop()
        if wanted.size:
            self._current = self._anchor = int(wanted[0])
            self._focus_cluster = None  # Ctrl+A now means the current image's cluster
        self.viewport().update()
        if scroll and wanted.size:
            self.scroll_to_index(int(wanted[0]))

    def _set_selection(self, mask: np.ndarray) -> None:
        """A selection the user made: shown, and reported once the gesture's events are handled."""
        if not np.array_equal(mask, self._selected):
            self._selected = mask
            self._selection_timer.start()
        self.viewport().update()

    def _emit_selection(self) -> None:
        self.selectionChanged.emit(self.selected_indices())

    def _only(self, images: Iterable[int]) -> np.ndarray:
        mask = np.zeros_like(self._selected)
        mask[np.asarray(list(images), dtype=np.int64)] = True
        return mask

    def _navigable(self) -> list[int]:
        """Clusters whose cells are shown (expanded), in display order."""
        return [c for c in self._order if c not in self._collapsed]

    def _range(self, first: int, last: int) -> np.ndarray:
        """The images from ``first`` to ``last`` (either order) in display order, over shown clusters."""
        a, b = self._place_of(first), self._place_of(last)
        if a is None or b is None or a[0] in self._collapsed or b[0] in self._collapsed:
            return np.asarray([last], dtype=np.int64)
        if (self._block_of[a[0]], a[1]) > (self._block_of[b[0]], b[1]):
            a, b = b, a
        parts = []
        for cluster in self._order[self._block_of[a[0]] : self._block_of[b[0]] + 1]:
            if cluster in self._collapsed:
                continue
            members = self._members[cluster]
            start = a[1] if cluster == a[0] else 0
            stop = b[1] + 1 if cluster == b[0] else members.size
            parts.append(members[start:stop])
        return np.concatenate(parts) if parts else _EMPTY

    def _click_select(self, image: int, modifiers: Qt.KeyboardModifier) -> None:
        """Select as a click (or arrow key) does: alone, Ctrl toggles, Shift extends from the anchor."""
        if modifiers & _SHIFT and self._anchor is not None:
            mask = self._selected.copy() if modifiers & _CTRL else np.zeros_like(self._selected)
            mask[self._range(self._anchor, image)] = True
        elif modifiers & _CTRL:
            mask = self._selected.copy()
            mask[image] = not mask[image]
            self._anchor = image
        else:
            mask = self._only([image])
            self._anchor = image
        self._current = image
        self._focus_cluster = int(self._shown_labels[image]) if self._shown_labels is not None else None
        self._set_selection(mask)

    def select_all_in_cluster(self) -> None:
        """Ctrl+A: the current cluster's images; again (all of them already selected): every image."""
        cluster = self._focus_cluster
        if cluster not in self._members and self._current is not None:
            place = self._place_of(self._current)
            cluster = place[0] if place else None
        if cluster not in self._members:
            cluster = self._order[0] if self._order else None
        if cluster is None:
            return
        members = self._members[cluster]
        if self._selected[members].all() and np.count_nonzero(self._selected) == members.size:
            self._set_selection(np.ones_like(self._selected))
        else:
            self._set_selection(self._only(members))

    # ================================================================== keyboard
    def _step(self, key: int) -> Optional[int]:
        """The image an arrow / Home / End / page key moves the current cell to."""
        shown = self._navigable()
        if not shown:
            return None
        first_image = int(self._members[shown[0]][0])
        last_image = int(self._members[shown[-1]][-1])
        place = self._place_of(self._current) if self._current is not None else None
        if place is None or place[0] in self._collapsed:
            return last_image if key in (Qt.Key.Key_End, Qt.Key.Key_Up, Qt.Key.Key_PageUp) else first_image
        if key == Qt.Key.Key_Home:
            return first_image
        if key == Qt.Key.Key_End:
            return last_image
        cluster, position = place
        members = self._members[cluster]
        columns = self._columns
        k = shown.index(cluster)
        previous = self._members[shown[k - 1]] if k > 0 else None
        following = self._members[shown[k + 1]] if k + 1 < len(shown) else None
        if key == Qt.Key.Key_Left:
            if position > 0:
                return int(members[position - 1])
            return int(previous[-1]) if previous is not None else None
        if key == Qt.Key.Key_Right:
            if position + 1 < members.size:
                return int(members[position + 1])
            return int(following[0]) if following is not None else None
        column = position % columns
        if key == Qt.Key.Key_Up:
            if position >= columns:
                return int(members[position - columns])
            if previous is None:
                return None
            last_row = (previous.size - 1) // columns
            return int(previous[min(last_row * columns + column, previous.size - 1)])
        if key == Qt.Key.Key_Down:
            if position // columns < (members.size - 1) // columns:
                return int(members[min(position + columns, members.size - 1)])
            return int(following[min(column, following.size - 1)]) if following is not None else None
        if key in (Qt.Key.Key_PageUp, Qt.Key.Key_PageDown):
            rect = self._cell_content_rect(self._current)
            if rect is None:
                return None
            page = max(self._cell_height, self.viewport().height() - self._cell_height)
            target_y = rect.center().y() + (page if key == Qt.Key.Key_PageDown else -page)
            return self._image_near(rect.center().x(), target_y)
        return None

    def _image_near(self, x: int, y: int) -> int:
        """The shown image whose cell is nearest to content point (x, y) in its block (ends clamp)."""
        shown = self._navigable()
        y = max(0, min(int(self._tops[-1]) - 1, y))
        block = int(np.searchsorted(self._tops, y, side="right")) - 1
        cluster = self._order[block]
        if cluster in self._collapsed:  # the next shown cluster below, else the last one above
            below = [c for c in shown if self._block_of[c] > block]
            cluster = below[0] if below else shown[-1]
            y = int(self._tops[self._block_of[cluster]])
        members = self._members[cluster]
        cells_top = int(self._tops[self._block_of[cluster]]) + self._header_height
        row = max(0, min((members.size - 1) // self._columns, (y - cells_top) // self._cell_height))
        width = max(1, self.viewport().width())
        column = min(self._columns - 1, max(0, x) * self._columns // width)
        return int(members[min(row * self._columns + column, members.size - 1)])

    def event(self, event: QEvent) -> bool:
        # The keys the grid handles win over the window's shortcuts while it has the focus.
        if event.type() == QEvent.Type.ShortcutOverride:
            key_event: QKeyEvent = event  # type: ignore[assignment]
            if self._handles_key(key_event):
                event.accept()
                return True
        return super().event(event)

    def _handles_key(self, event: QKeyEvent) -> bool:
        key, ctrl = event.key(), bool(event.modifiers() & _CTRL)
        if ctrl and key in (*_ZOOM_IN_KEYS, Qt.Key.Key_Minus, Qt.Key.Key_0, Qt.Key.Key_A, Qt.Key.Key_M):
            return True
        return key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace, Qt.Key.Key_Space) or (key in _DIGIT_KEYS and not ctrl)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        key, modifiers = event.key(), event.modifiers()
        ctrl = bool(modifiers & _CTRL)
        if ctrl and key in _ZOOM_IN_KEYS:
            self._zoom(1)
        elif ctrl and key == Qt.Key.Key_Minus:
            self._zoom(-1)
        elif ctrl and key == Qt.Key.Key_0:
            self.set_thumbnail_size(DEFAULT_GRID_THUMBNAIL)
        elif ctrl and key == Qt.Key.Key_A:
            self.select_all_in_cluster()
        elif ctrl and key == Qt.Key.Key_M:
            self.open_move_picker()
        elif key == Qt.Key.Key_Escape and self._selected.any():
            self._set_selection(np.zeros_like(self._selected))
        elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.move_selection_to(UNASSIGNED)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if self._current is not None:
                self._activate(self._current)
        elif key == Qt.Key.Key_Space:
            if self._current is not None:
                if ctrl:  # Ctrl+Space toggles the current cell (as in Qt's item views)
                    mask = self._selected.copy()
                    mask[self._current] = not mask[self._current]
                    self._set_selection(mask)
                else:
                    self.quickLookRequested.emit(self._current)
        elif key in _DIGIT_KEYS and not ctrl:
            position = _DIGIT_KEYS[key] - 1
            if position < len(self._order):
                self.move_selection_to(self._order[position])
        elif key in (
            Qt.Key.Key_Left,
            Qt.Key.Key_Right,
            Qt.Key.Key_Up,
            Qt.Key.Key_Down,
            Qt.Key.Key_Home,
            Qt.Key.Key_End,
            Qt.Key.Key_PageUp,
            Qt.Key.Key_PageDown,
        ):
            target = self._step(key)
            if target is not None:
                if ctrl and not modifiers & _SHIFT:  # Ctrl+arrow moves the current cell only
                    self._current = target
                    self.viewport().update()
                else:
                    self._click_select(target, modifiers & ~_CTRL)
                self.scroll_to_index(target)
        else:
            super().keyPressEvent(event)

    # ================================================================== mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        pos = event.position().toPoint()
        hit = self._hit(pos)
        self._press_pos, self._press_image, self._deferred_select = pos, None, None
        if event.button() != Qt.MouseButton.LeftButton:
            return
        modifiers = event.modifiers()
        if hit.part == "arrow" and hit.cluster is not None:
            self.set_expanded(hit.cluster, not self.is_expanded(hit.cluster))
            return
        if hit.part == "cell" and hit.image is not None:
            if self._on_stack_badge(hit.image, pos):
                self.set_stack_expanded(hit.image, not self._stacks.is_expanded(hit.image))
                return
            self._press_image = hit.image
            if self._selected[hit.image] and not modifiers & (_CTRL | _SHIFT):
                self._deferred_select = hit.image  # may be the start of a drag of the whole selection
                self._current = hit.image
                self.viewport().update()
            else:
                self._click_select(hit.image, modifiers)
            return
        # Empty space (a header, the gap after a block's cells, below the last block): a rubber band.
        if hit.cluster is not None:
            self._focus_cluster = hit.cluster
        content = pos + QPoint(0, self.verticalScrollBar().value())
        self._band_origin, self._band_end = content, content
        self._band_base = self._selected.copy() if modifiers & (_CTRL | _SHIFT) else np.zeros_like(self._selected)
        if not modifiers & (_CTRL | _SHIFT):
            self._set_selection(self._band_base.copy())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if not event.buttons() & Qt.MouseButton.LeftButton or self._press_pos is None:
            return
        pos = event.position().toPoint()
        if self._band_origin is not None:
            self._drag_pos = pos  # near an edge the view scrolls and the band grows with it
            self._update_band()
            if self._autoscroll_step() and not self._autoscroll_timer.isActive():
                self._autoscroll_timer.start()
            return
        distance = (pos - self._press_pos).manhattanLength()
        if self._press_image is not None and distance >= QApplication.startDragDistance():
            self._deferred_select = None
            self._start_drag()

    def _update_band(self) -> None:
        """Stretch the rubber band to the mouse (content coordinates) and select what it meets."""
        if self._band_origin is None or self._drag_pos is None:
            return
        self._band_end = self._drag_pos + QPoint(0, self.verticalScrollBar().value())
        mask = self._band_base.copy()
        mask[self._images_in_band()] = True
        self._set_selection(mask)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._deferred_select is not None:
            self._click_select(self._deferred_select, Qt.KeyboardModifier.NoModifier)
        self._deferred_select = None
        if self._band_origin is not None:
            self._band_origin = self._band_end = None
            self._autoscroll_timer.stop()
            self._drag_pos = None
            self.viewport().update()
        self._press_pos = self._press_image = None

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        hit = self._hit(event.position().toPoint())
        if hit.part == "cell" and hit.image is not None and self._on_stack_badge(hit.image, event.position().toPoint()):
            self.set_stack_expanded(hit.image, not self._stacks.is_expanded(hit.image))  # the double click's 2nd
        elif hit.part == "cell" and hit.image is not None:
            self._activate(hit.image)
        elif hit.part == "header" and hit.cluster is not None:
            self._ask_rename(hit.cluster)
        elif hit.part == "arrow" and hit.cluster is not None:  # the second click of a double click on the arrow
            self.set_expanded(hit.cluster, not self.is_expanded(hit.cluster))

    def _images_in_band(self) -> np.ndarray:
        """Images whose cells meet the rubber band."""
        if self._band_origin is None or self._band_end is None:
            return _EMPTY
        band = QRect(self._band_origin, self._band_end).normalized()
        width = max(1, self.viewport().width())
        first_column = max(0, band.left()) * self._columns // width
        last_column = min(self._columns - 1, max(0, band.right()) * self._columns // width)
        if band.left() >= width or band.right() < 0:
            return _EMPTY
        found = []
        block = max(0, int(np.searchsorted(self._tops, band.top(), side="right")) - 1)
        while block < len(self._order) and self._tops[block] <= band.bottom():
            cluster = self._order[block]
            if cluster not in self._collapsed:
                members = self._members[cluster]
                cells_top = int(self._tops[block]) + self._header_height
                first_row = max(0, (band.top() - cells_top) // self._cell_height)
                last_row = min((members.size - 1) // self._columns, (band.bottom() - cells_top) // self._cell_height)
                for row in range(first_row, last_row + 1):
                    start = row * self._columns
                    found.append(members[start + first_column : start + last_column + 1])
            block += 1
        return np.concatenate(found) if found else _EMPTY

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt API
        if event.modifiers() & _CTRL:  # Ctrl+wheel: thumbnail size, one step per notch
            notches = event.angleDelta().y() / 120
            if notches:
                self._zoom(1 if notches > 0 else -1)
            event.accept()
            return
        super().wheelEvent(event)

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.ToolTip:
            help_event: QHelpEvent = event  # type: ignore[assignment]
            text = self.tooltip_at(help_event.pos())
            if text:
                QToolTip.showText(help_event.globalPos(), text, self.viewport())
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().viewportEvent(event)

    def tooltip_at(self, point: QPoint) -> str:
        """The hover card at ``point`` (viewport coordinates): a cell's file and cluster, a header's silhouette."""
        session = self._session
        hit = self._hit(point)
        if session is None or hit.cluster is None:
            return ""
        if hit.image is not None:
            card = self.cell_painter.hover_card(session.paths[hit.image], session.name_of(hit.cluster))
            count = self._stacks.count(hit.image) if self._stacking else 0
            if count:  # a stack's cover says what the badge does
                what = "close" if self._stacks.is_expanded(hit.image) else "open"
                card += f"<br>Best of {count} near-duplicates: click ×{count} to {what} the stack"
            return card
        if hit.part in ("header", "arrow"):
            name, details = self.header_text(hit.cluster)
            tip = self._header_parts(hit.cluster)[2]
            what = "collapse" if self.is_expanded(hit.cluster) else "expand"
            return f"<b>{name}</b><br>{details}<br>{tip}<br>Click the arrow to {what}; double-click to rename."
        return ""

    # ================================================================== drag and drop
    def _start_drag(self) -> None:
        session = self._session
        indices = np.asarray(self.acted_on_indices(), dtype=np.int64)
        if session is None or not indices.size:
            return
        drag = QDrag(self)
        drag.setMimeData(encode_indices(session, indices))
        drag.setPixmap(self._drag_pixmap(indices))
        drag.exec(Qt.DropAction.MoveAction, Qt.DropAction.MoveAction)
        # The drag's event loop took the release: the press is over.
        self._press_pos = self._press_image = None

    def _drag_pixmap(self, indices: np.ndarray) -> QPixmap:
        """The first dragged thumbnail with a count badge (not every image: thousands may be dragged)."""
        session = self._session
        assert session is not None
        side = min(self.thumbnail_size(), 128)
        pixmap = QPixmap(side, side)
        pixmap.fill(QColor(0, 0, 0, 0))
        painter = QPainter(pixmap)
        first = int(self._press_image if self._press_image is not None else indices[0])
        image = self.cell_painter.thumbnail(session.paths[first])
        if image is not None:
            painter.setOpacity(0.8)
            scale = side / max(image.width(), image.height(), 1)
            w, h = round(image.width() * scale), round(image.height() * scale)
            painter.drawImage(QRect((side - w) // 2, (side - h) // 2, w, h), image)
            painter.setOpacity(1.0)
        else:
            painter.fillRect(pixmap.rect(), self.palette().color(QPalette.ColorRole.Midlight))
        badge = QRect(side - 52, side - 22, 50, 20)
        painter.fillRect(badge, self.palette().color(QPalette.ColorRole.Highlight))
        painter.setPen(self.palette().color(QPalette.ColorRole.HighlightedText))
        painter.drawText(badge, int(Qt.AlignmentFlag.AlignCenter), str(len(indices)))
        painter.end()
        return pixmap

    def _drop_target(self, pos: QPoint, mime: Any) -> Optional[int]:
        """The cluster a drop at ``pos`` would move the dragged images to (None: refused)."""
        session = self._session
        indices = decode_indices(session, mime)
        if session is None or indices is None or not indices.size:
            return None
        cluster = self._hit(pos).cluster
        if cluster is None or not np.any(session.labels[indices] != cluster):
            return None
        return cluster

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if decode_indices(self._session, event.mimeData()) is None:
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.MoveAction)
        event.accept()
        self.dragMoveEvent(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt API
        pos = event.position().toPoint()
        self._drag_pos = pos
        self._set_drop_cluster(self._drop_target(pos, event.mimeData()))
        if decode_indices(self._session, event.mimeData()) is None:
            event.ignore()
        else:
            # Accepted everywhere (a refused spot must not end the drag); the drop checks the target.
            event.setDropAction(Qt.DropAction.MoveAction)
            event.accept()
        if self._autoscroll_step() and not self._autoscroll_timer.isActive():
            self._autoscroll_timer.start()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802 - Qt API
        self._end_drag_feedback()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        target = self._drop_target(event.position().toPoint(), event.mimeData())
        indices = decode_indices(self._session, event.mimeData())
        self._end_drag_feedback()
        if target is None or indices is None:
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.MoveAction)
        event.accept()
        self.move_indices(indices, target)

    def drop_target(self) -> Optional[int]:
        """The cluster highlighted as the target of the drag in progress, else None."""
        return self._drop_cluster

    def _set_drop_cluster(self, cluster: Optional[int]) -> None:
        if cluster != self._drop_cluster:
            self._drop_cluster = cluster
            self.viewport().update()

    def _end_drag_feedback(self) -> None:
        self._autoscroll_timer.stop()
        self._drag_pos = None
        self._set_drop_cluster(None)

    def _autoscroll_step(self) -> int:
        """Pixels per tick the view scrolls for the drag position: faster nearer the edge, 0 away from it."""
        if self._drag_pos is None:
            return 0
        y, height = self._drag_pos.y(), self.viewport().height()
        margin = min(AUTOSCROLL_MARGIN, height // 4)
        if y < margin:
            return -max(1, math.ceil(AUTOSCROLL_MAX_STEP * (margin - y) / max(1, margin)))
        if y >= height - margin:
            return max(1, math.ceil(AUTOSCROLL_MAX_STEP * (y - (height - margin) + 1) / max(1, margin)))
        return 0

    def _autoscroll_tick(self) -> None:
        step = self._autoscroll_step()
        bar = self.verticalScrollBar()
        if not step or (step < 0 and bar.value() == bar.minimum()) or (step > 0 and bar.value() == bar.maximum()):
            self._autoscroll_timer.stop()
            return
        bar.setValue(bar.value() + step)
        self._update_band()

    # ================================================================== edits (pushed on the undo stack)
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
        """Move the selected images to ``cluster`` (undoable); False when nothing would change."""
        return self.move_indices(self.acted_on_indices(), cluster)

    def new_cluster_from_selection(self, name: Optional[str] = None) -> Optional[int]:
        """Put the selected images in a new cluster; returns its id (None without a selection)."""
        selected = self.acted_on_indices()
        if self._session is None or not selected:
            return None
        command = NewClusterCommand(self._session, selected, name)
        self.undo_stack.push(command)
        return command.cluster

    def rename_cluster(self, cluster: int, name: Optional[str]) -> None:
        """Name ``cluster`` (empty or None: back to its default name), undoable."""
        if self._session is not None:
            self.undo_stack.push(RenameClusterCommand(self._session, cluster, name))

    def merge_clusters(self, clusters: Iterable[int], into: int) -> None:
        """Move every image of ``clusters`` into ``into``, undoable."""
        if self._session is not None:
            self.undo_stack.push(MergeClustersCommand(self._session, clusters, into))

    def delete_cluster(self, cluster: int) -> None:
        """Send ``cluster``'s images to Unassigned, undoable."""
        if self._session is not None:
            self.undo_stack.push(DeleteClusterCommand(self._session, cluster))

    # ================================================================== menus and dialogs
    def build_context_menu(self, cluster: int, image: Optional[int] = None) -> QMenu:
        """The context menu of ``cluster``'s block (``image``: the image under the mouse, if any)."""
        session = self._session
        menu = QMenu(self)
        if session is None:
            return menu
        selected = self.acted_on_indices()
        others = [c for c in session.cluster_ids() if c != cluster]

        new_action = menu.addAction(f"New cluster from selection ({len(selected)})…", lambda: self._ask_new_cluster())
        new_action.setEnabled(bool(selected))
        move_menu = menu.addMenu(f"Move selection ({len(selected)}) to")
        move_menu.setEnabled(bool(selected))
        for target in [c for c in session.cluster_ids() if c != UNASSIGNED] + [UNASSIGNED]:
            move_menu.addAction(session.name_of(target), lambda t=target: self.move_selection_to(t))
        picker_action = menu.addAction("Move to cluster…", self.open_move_picker)
        picker_action.setShortcut(QKeySequence("Ctrl+M"))
        picker_action.setEnabled(bool(selected))
        menu.addSeparator()
        name = session.name_of(cluster)
        rename_action = menu.addAction(f"Rename “{name}”…", lambda: self._ask_rename(cluster))
        rename_action.setEnabled(cluster != UNASSIGNED)
        suggested = session.suggested_name(cluster) if cluster != UNASSIGNED else None
        if cluster in session.cluster_names and suggested is not None and not suggested.is_mixed:
            menu.addAction(f"Use suggested name “{suggested.text}”", lambda: self.rename_cluster(cluster, ""))
        merge_menu = menu.addMenu(f"Merge “{name}” into")
        merge_menu.setEnabled(bool(others))
        for target in others:
            merge_menu.addAction(session.name_of(target), lambda t=target: self.merge_clusters([cluster], t))
        delete_action = menu.addAction(f"Delete “{name}” (images to Unassigned)", lambda: self.delete_cluster(cluster))
        delete_action.setEnabled(cluster != UNASSIGNED)
        from .commands import ConfirmClusterCommand  # its images become corrections (core/constraints.py)

        confirm_action = menu.addAction(
            f"Confirm “{name}”", lambda: self.undo_stack.push(ConfirmClusterCommand(session, cluster))
        )
        confirm_action.setToolTip("These images belong together: a re-cluster with your corrections keeps them")
        confirm_action.setEnabled(cluster != UNASSIGNED and bool(session.indices_of(cluster).size))
        expanded = self.is_expanded(cluster)
        menu.addAction(
            f"{'Collapse' if expanded else 'Expand'} “{name}”", lambda: self.set_expanded(cluster, not expanded)
        )
        if image is not None and 0 <= image < len(session):
            path = session.paths[image]
            menu.addSeparator()
            menu.addAction("Preview…", lambda: self.open_preview(image))
            similar_action = menu.addAction("More like this…", lambda: self.open_similar(image))
            similar_action.setEnabled(session.features is not None)
            similar_action.setToolTip("The most similar images from every cluster")
            cover = self._stacks.cover(image) if self._stacking else None
            if cover is not None:
                opened = self._stacks.is_expanded(image)
                menu.addAction(
                    "Collapse stack" if opened else f"Expand stack ({self._stacks.count(cover)})",
                    lambda: self.set_stack_expanded(image, not opened),
                )
                menu.addAction("Keep best, select the rest", lambda: self.select_stack_rest(image))
            menu.addAction("Open file location", lambda: self._open_file_location(path))
            menu.addAction("Open with default application", lambda: self._open_with_default_app(path))
        return menu

    def _open_file_location(self, path: str) -> None:
        from .file_actions import open_file_location  # another module of the shell: imported when used

        self._report_file_action(open_file_location(path))

    def _open_with_default_app(self, path: str) -> None:
        from .file_actions import open_with_default_app

        self._report_file_action(open_with_default_app(path))

    def _report_file_action(self, result: Any) -> None:
        # A failed action says why (no modal box: the window shows it in its status bar).
        message = getattr(result, "message", "")
        if result is not None and not result and message:
            self.statusMessage.emit(str(message))

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 - Qt API
        hit = self._hit(event.pos())
        if hit.cluster is None:
            return
        if hit.image is not None and not self._selected[hit.image]:
            self._click_select(hit.image, Qt.KeyboardModifier.NoModifier)  # the menu acts on what was clicked
        self.build_context_menu(hit.cluster, hit.image).exec(event.globalPos())

    def open_move_picker(self) -> Optional[ClusterPickerDialog]:
        """ "Move to cluster…": a type-ahead list of the clusters; the selection moves on Enter (undoable)."""
        session = self._session
        selected = self.acted_on_indices()
        if session is None or not selected:
            return None
        current = {int(c) for c in np.unique(session.labels[selected])}
        dialog = ClusterPickerDialog(
            session, self, f"Move {len(selected)} image{'' if len(selected) == 1 else 's'} to", exclude=current
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def moved() -> None:
            chosen = dialog.chosen_cluster()
            if chosen is not None:
                self.move_indices(selected, chosen)

        dialog.accepted.connect(moved)
        dialog.finished.connect(lambda _result: setattr(self, "_picker", None))
        self._picker = dialog
        dialog.open()
        return dialog

    def _ask_new_cluster(self) -> None:
        name, ok = QInputDialog.getText(self, "New cluster", "Name of the new cluster (may be empty):")
        if ok:
            self.new_cluster_from_selection(name or None)

    def _ask_rename(self, cluster: int) -> None:
        session = self._session
        if session is None or cluster == UNASSIGNED:
            return
        name, ok = QInputDialog.getText(
            self, "Rename cluster", _RENAME_PROMPT, text=session.cluster_names.get(cluster, "")
        )
        if ok:
            self.rename_cluster(cluster, name)

    def _activate(self, image: int) -> None:
        self.imageActivated.emit(image)
        if self.preview_on_activate:
            self.open_preview(image)

    def open_preview(self, image: int) -> Optional[PreviewDialog]:
        """Open a non-modal larger preview of image ``image`` (global index).

        The preview steps through the image's cluster in grid order; the grid's current cell follows it.
        """
        session = self._session
        if session is None or not 0 <= image < len(session):
            return None
        place = self._place_of(image)
        members = self._members[place[0]] if place is not None else np.asarray([image], dtype=np.int64)
        start = place[1] if place is not None else 0
        table = getattr(session, "photo_meta", None)  # capture time and place for the info line
        dialog = PreviewDialog(
            [session.paths[i] for i in members.tolist()],
            start,
            self.loader,
            self,
            names=session.name_of(int(session.labels[image])),
            thumbnail_size=self.cell_painter.bucket(),
            photo_meta=None if table is None else [meta_of(table, i) for i in members.tolist()],
        )
        self._previews.append(dialog)
        dialog.finished.connect(lambda _result, d=dialog: self._previews.remove(d) if d in self._previews else None)
        shown = members.copy()  # the order the preview was opened with (an edit may re-sort the grid)
        dialog.currentChanged.connect(lambda position: self._follow_preview(int(shown[position])))
        dialog.show()
        return dialog

    def _follow_preview(self, image: int) -> None:
        if self._place_of(image) is None:
            return
        self._current = self._anchor = image
        self.viewport().update()
        self.scroll_to_index(image)

    # ================================================================== teardown
    def dispose(self) -> None:
        """Stop following the session (call before dropping the widget while the session lives on)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._ready_timer.stop()
        self._selection_timer.stop()
        self._autoscroll_timer.stop()


def _clamp_size(size: int) -> int:
    return int(min(MAX_THUMBNAIL, max(MIN_THUMBNAIL, int(size))))


def unsubscriber_on_destroy(widget: Any) -> Callable[..., None]:
    """A ``destroyed`` slot that ends ``widget._unsubscribe``'s session subscription (grid, granularity bar)."""
    holder = widget.__dict__  # the Python side outlives the C++ widget

    def on_destroyed(*_args: Any) -> None:
        unsubscribe = holder.get("_unsubscribe")
        if unsubscribe is not None:
            unsubscribe()
            holder["_unsubscribe"] = None

    return on_destroyed


def misplaced_summary(scores: np.ndarray, labels: np.ndarray) -> str:
    """The status line of "Likely misplaced first": how many images have most of their neighbours elsewhere."""
    assigned = labels != UNASSIGNED
    likely = int(np.count_nonzero((scores >= 0.5) & assigned))
    clusters = int(np.unique(labels[(scores >= 0.5) & assigned]).size)
    if not likely:
        return "Likely misplaced first: no image has most of its neighbours in another cluster."
    return (
        f"Likely misplaced first: {likely} image{'s' if likely != 1 else ''} in {clusters} "
        f"cluster{'s' if clusters != 1 else ''} {'have' if likely != 1 else 'has'} most of "
        f"{'their' if likely != 1 else 'its'} neighbours in another cluster; "
        f"{'they head their clusters' if likely != 1 else 'it heads its cluster'}."
    )
