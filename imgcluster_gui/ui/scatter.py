"""The scatter plot: the session's 2-D embedding, one colour per cluster (pyqtgraph).

* Colours follow the session: a hand edit (``labels``/``names``/``reset`` event) recolours at once.
* Hovering a point shows its thumbnail and path; a click selects the nearest point (Ctrl/Shift
  adds), a left-drag draws a lasso (middle-drag pans, the wheel zooms).  ``selectionChanged``
  carries the selected image indices, and :meth:`ScatterView.set_selection` takes the grid's
  selection the other way, without echoing it back.
* The embedding method (PCA / t-SNE / UMAP) is recomputed from ``session.features`` on a
  :class:`~imgcluster_gui.ui.worker.BackgroundJob`, never on the GUI thread, and handed to
  ``session.set_embedding``; the view redraws on the session's ``'embedding'`` event (it only
  reads the session).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core.embedding import EMBEDDING_LABELS
from .worker import BackgroundJob, JobFailure

# 20 well-separated colours (Tableau 20 order: strong then light) ; "unassigned" (-1) is grey.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#9edae5",
    "#dbdb8d",
    "#393b79",
)
UNASSIGNED_COLOUR = "#b0b0b0"
POINT_SIZE = 7
SELECTED_SIZE = 11
# Hover and click reach: within this many screen pixels of a point.
PICK_RADIUS_PX = 8
HOVER_THUMB_SIZE = 128
LEGEND_MAX_CLUSTERS = 20


def cluster_colour(cluster_id: int) -> QColor:
    """The colour of a cluster everywhere in the app (grey for unassigned, ``-1``)."""
    if cluster_id < 0:
        return QColor(UNASSIGNED_COLOUR)
    return QColor(PALETTE[cluster_id % len(PALETTE)])


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule test of many points against one polygon.

    Parameters
    ----------
    points : ndarray of shape (n_points, 2)
    polygon : ndarray of shape (n_vertices, 2)
        Closed implicitly (last vertex joins the first).

    Returns
    -------
    ndarray of bool, shape (n_points,)
    """
    points = np.asarray(points, dtype=np.float64)
    polygon = np.asarray(polygon, dtype=np.float64)
    inside = np.zeros(len(points), dtype=bool)
    if len(polygon) < 3 or len(points) == 0:
        return inside
    x, y = points[:, 0], points[:, 1]
    xj, yj = polygon[-1]
    # One vectorised pass per edge: fast for 20k points and a few hundred lasso vertices.
    for xi, yi in polygon:
        crosses = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at_y = (xj - xi) * (y - yi) / (yj - yi) + xi
        inside ^= crosses & (x < x_at_y)
        xj, yj = xi, yi
    return inside


class _SelectionViewBox(pg.ViewBox):
    """A ViewBox whose left-drag draws a lasso and whose left-click picks a point."""

    def __init__(
        self,
        on_click: Callable[[QPointF, Any], None],
        on_lasso: Callable[[list, Any], None],
        lasso_enabled: Callable[[], bool],
    ) -> None:
        super().__init__()
        self._on_click = on_click
        self._on_lasso = on_lasso
        self._lasso_enabled = lasso_enabled
        self._lasso_points: list[QPointF] = []
        self._lasso_item = pg.PlotCurveItem(pen=pg.mkPen("#333333", width=1.5, style=Qt.PenStyle.DashLine))
        self._lasso_item.setZValue(20)
        self.addItem(self._lasso_item, ignoreBounds=True)

    def mouseClickEvent(self, ev: Any) -> None:  # noqa: N802 - pyqtgraph's hook
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._on_click(self.mapSceneToView(ev.scenePos()), ev.modifiers())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev: Any, axis: Optional[int] = None) -> None:  # noqa: N802
        if ev.button() != Qt.MouseButton.LeftButton or not self._lasso_enabled():
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if ev.isStart():
            self._lasso_points = [self.mapSceneToView(ev.buttonDownScenePos())]
        self._lasso_points.append(self.mapSceneToView(ev.scenePos()))
        xs = [p.x() for p in self._lasso_points] + [self._lasso_points[0].x()]
        ys = [p.y() for p in self._lasso_points] + [self._lasso_points[0].y()]
        self._lasso_item.setData(xs, ys)
        if ev.isFinish():
            polygon = [(p.x(), p.y()) for p in self._lasso_points]
            self._lasso_points = []
            self._lasso_item.setData([], [])
            self._on_lasso(polygon, ev.modifiers())


class ScatterView(QWidget):
    """2-D embedding of a :class:`ClusterSession`, coloured by cluster, with linked selection.

    Parameters
    ----------
    loader : ThumbnailLoader, optional
        Gives hover thumbnails (``request(path, size)``, ``thumbnailReady(str)``).
    parent : QWidget, optional

    Signals
    -------
    selectionChanged(list)
        Indices of the selected images, after a click or a lasso (not after :meth:`set_selection`).
    imageActivated(int)
        Double-click on a point.
    embeddingChanged(str)
        A recomputed embedding (method name) is shown.
    embeddingFailed(object)
        A :class:`JobFailure` from the recompute.
    """

    selectionChanged = Signal(list)
    imageActivated = Signal(int)
    embeddingChanged = Signal(str)
    embeddingFailed = Signal(object)

    def __init__(self, loader: Any = None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        from ..core.embedding import available_methods

        self._loader = loader
        self._session: Any = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._positions = np.zeros((0, 2), dtype=np.float64)
        self._selected = np.zeros(0, dtype=np.int64)
        self._hovered: Optional[int] = None
        self._job: Optional[BackgroundJob] = None
        self._method = "pca"

        self.method_combo = QComboBox()
        self.method_combo.setObjectName("embedding_combo")
        for method in available_methods():
            self.method_combo.addItem(EMBEDDING_LABELS.get(method, method), method)
        self.method_combo.setToolTip("How the features are projected to 2-D (computed in the background)")
        self.method_combo.currentIndexChanged.connect(lambda _i: self.recompute(self.method_combo.currentData()))
        self.lasso_check = QCheckBox("Lasso")
        self.lasso_check.setChecked(True)
        self.lasso_check.setToolTip("Left-drag draws a lasso (Ctrl/Shift adds). Untick to pan with the left button.")
        clear = QPushButton("Clear selection")
        clear.clicked.connect(lambda: self._select(np.zeros(0, dtype=np.int64), emit=True))
        self.status = QLabel("")
        self.status.setObjectName("scatter_status")
        # Informative, never a reason to widen the dock (the grid keeps its share of the window).
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setMinimumWidth(0)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Embedding"))
        bar.addWidget(self.method_combo)
        bar.addWidget(self.lasso_check)
        bar.addWidget(clear)
        bar.addWidget(self.status, 1)

        self.view_box = _SelectionViewBox(self._on_click, self._on_lasso, self.lasso_check.isChecked)
        self.plot = pg.PlotWidget(viewBox=self.view_box, background="w")
        self.plot.setObjectName("scatter_plot")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.points = pg.ScatterPlotItem(size=POINT_SIZE, pen=pg.mkPen(None), pxMode=True)
        self.selection_item = pg.ScatterPlotItem(
            size=SELECTED_SIZE, pen=pg.mkPen("#000000", width=1.6), brush=pg.mkBrush(None), pxMode=True
        )
        self.selection_item.setZValue(10)
        self.hover_item = pg.ScatterPlotItem(
            size=SELECTED_SIZE + 6, pen=pg.mkPen("#ff7f0e", width=2.5), brush=pg.mkBrush(None), pxMode=True
        )
        self.hover_item.setZValue(11)
        self.plot.addItem(self.points)
        self.plot.addItem(self.selection_item)
        self.plot.addItem(self.hover_item)
        self.legend = pg.LegendItem(offset=(-10, 10), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 200))
        self.legend.setParentItem(self.plot.getPlotItem())
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_scene_click)

        self.hover = QFrame(self.plot)
        self.hover.setObjectName("scatter_hover")
        self.hover.setFrameShape(QFrame.Shape.StyledPanel)
        self.hover.setStyleSheet("#scatter_hover { background: #ffffee; border: 1px solid #888; }")
        self.hover_image = QLabel()
        self.hover_image.setFixedSize(HOVER_THUMB_SIZE, HOVER_THUMB_SIZE)
        self.hover_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hover_text = QLabel()
        self.hover_text.setWordWrap(True)
        self.hover_text.setMinimumWidth(HOVER_THUMB_SIZE + 100)
        self.hover_text.setMaximumWidth(HOVER_THUMB_SIZE + 200)
        hover_layout = QVBoxLayout(self.hover)
        hover_layout.setContentsMargins(4, 4, 4, 4)
        hover_layout.addWidget(self.hover_image, 0, Qt.AlignmentFlag.AlignHCenter)
        hover_layout.addWidget(self.hover_text)
        self.hover.hide()
        if loader is not None and hasattr(loader, "thumbnailReady"):
            loader.thumbnailReady.connect(self._on_thumbnail_ready)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.plot, 1)

    # ================================================================ session
    def session(self) -> Any:
        return self._session

    def set_session(self, session: Any) -> None:
        """Show ``session`` (or nothing for None) and follow its edits."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.cancel_recompute()
        self._session = session
        self._selected = np.zeros(0, dtype=np.int64)
        self._hide_hover()
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)
            method = (getattr(session, "settings", None) or {}).get("embedding")
            if method:
                self._set_method_silently(method)
        self._reload_positions()
        self.view_box.autoRange()

    def _set_method_silently(self, method: str) -> None:
        index = self.method_combo.findData(method)
        if index >= 0:
            self.method_combo.blockSignals(True)
            self.method_combo.setCurrentIndex(index)
            self.method_combo.blockSignals(False)
            self._method = method

    def _on_session_event(self, event: Any) -> None:
        kind = getattr(event, "kind", event)
        if kind == "reset":
            self._reload_positions()
        elif kind == "embedding":
            method = (getattr(self._session, "settings", None) or {}).get("embedding")
            if method:
                self._set_method_silently(method)
            self._reload_positions()
        elif kind == "labels":
            indices = np.asarray(getattr(event, "indices", ()), dtype=np.int64)
            if not self._recolour_points(indices):
                self._recolour()
        elif kind == "names":
            self._update_legend()

    def _recolour_points(self, indices: np.ndarray) -> bool:
        """Recolour only the images of a hand edit (a drag of 100 among 20,000 stays instant).

        Returns False when a full recolour is needed (no indices, or points and labels disagree).
        """
        if self._session is None or not len(indices):
            return False
        labels = np.asarray(self._session.labels)
        data = self.points.data
        if len(data) != len(labels) or indices.min() < 0 or indices.max() >= len(labels):
            return False
        brushes: dict[int, Any] = {}
        column = data["brush"]  # a view: writing into it changes the item's data
        for index in indices.tolist():
            cluster = int(labels[index])
            brush = brushes.get(cluster)
            if brush is None:
                brush = brushes[cluster] = pg.mkBrush(cluster_colour(cluster))
            column[index] = brush
        data["sourceRect"][indices] = 0  # only these spots are looked up in the atlas again
        self.points.updateSpots()
        self.points.update()
        self._update_legend()
        return True

    def _reload_positions(self) -> None:
        embedding = None if self._session is None else getattr(self._session, "embedding", None)
        if embedding is None or len(np.shape(embedding)) != 2:
            self._positions = np.zeros((0, 2), dtype=np.float64)
            self.points.setData([], [])
            self.selection_item.setData([], [])
            self.status.setText("No embedding" if self._session is not None else "")
            self._update_legend()
            return
        self._positions = np.asarray(embedding, dtype=np.float64)[:, :2]
        self.points.setData(pos=self._positions, data=np.arange(len(self._positions)))
        self._recolour()
        self._draw_selection()

    def _recolour(self) -> None:
        if self._session is None or not len(self._positions):
            return
        labels = np.asarray(self._session.labels)
        # One brush object per cluster, shared by its points: fast for tens of thousands.
        brushes = {int(c): pg.mkBrush(cluster_colour(int(c))) for c in np.unique(labels)}
        self.points.setBrush([brushes[int(c)] for c in labels])
        self._update_legend()
        self.status.setText(f"{len(labels)} images · {EMBEDDING_LABELS.get(self._method, self._method)}")

    def _update_legend(self) -> None:
        self.legend.clear()
        if self._session is None or not len(self._positions):
            return
        ids = list(self._session.cluster_ids())
        if len(ids) > LEGEND_MAX_CLUSTERS:
            return
        for cluster in ids:
            sample = pg.ScatterPlotItem(size=POINT_SIZE, pen=pg.mkPen(None), brush=pg.mkBrush(cluster_colour(cluster)))
            self.legend.addItem(sample, self._session.name_of(cluster))

    # ================================================================ colours, for tests and the grid
    def point_colours(self) -> list[str]:
        """The colour (``#rrggbb``) each point is drawn with now, in image order."""
        brushes = self.points.data["brush"] if len(self._positions) else []
        return [b.color().name() for b in brushes]

    def positions(self) -> np.ndarray:
        return self._positions.copy()

    # ================================================================ selection
    def selected_indices(self) -> list[int]:
        return [int(i) for i in self._selected]

    def set_selection(self, indices: Sequence[int]) -> None:
        """Show ``indices`` as selected (from the grid); does not emit ``selectionChanged``."""
        self._select(np.asarray(list(indices), dtype=np.int64), emit=False)

    def _select(self, indices: np.ndarray, emit: bool) -> None:
        n = len(self._positions)
        indices = np.unique(indices[(indices >= 0) & (indices < n)]) if n else np.zeros(0, dtype=np.int64)
        self._selected = indices
        self._draw_selection()
        if emit:
            self.selectionChanged.emit([int(i) for i in indices])

    def _draw_selection(self) -> None:
        if len(self._selected) and len(self._positions):
            self.selection_item.setData(pos=self._positions[self._selected])
        else:
            self.selection_item.setData([], [])

    def _combine(self, picked: np.ndarray, modifiers: Any) -> np.ndarray:
        additive = bool(modifiers & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier))
        if additive:
            return np.union1d(self._selected, picked)
        return picked

    def nearest_point(self, x: float, y: float, radius_px: float = PICK_RADIUS_PX) -> Optional[int]:
        """Index of the point nearest to data position (x, y) within ``radius_px`` screen pixels."""
        if not len(self._positions):
            return None
        pixel = self.view_box.viewPixelSize()
        px_w = pixel[0] or 1.0
        px_h = pixel[1] or 1.0
        dx = (self._positions[:, 0] - x) / px_w
        dy = (self._positions[:, 1] - y) / px_h
        distance = dx * dx + dy * dy
        best = int(np.argmin(distance))
        return best if distance[best] <= radius_px * radius_px else None

    def select_at(self, x: float, y: float, modifiers: Any = Qt.KeyboardModifier.NoModifier) -> Optional[int]:
        """Select the point at data position (x, y) as a click would; returns it (None = cleared)."""
        index = self.nearest_point(x, y)
        picked = np.zeros(0, dtype=np.int64) if index is None else np.array([index], dtype=np.int64)
        self._select(self._combine(picked, modifiers), emit=True)
        return index

    def select_in_polygon(
        self, polygon: Sequence[tuple[float, float]], modifiers: Any = Qt.KeyboardModifier.NoModifier
    ) -> list[int]:
        """Select the points inside ``polygon`` (data coordinates) as a lasso would; returns them."""
        mask = points_in_polygon(self._positions, np.asarray(polygon, dtype=np.float64))
        picked = np.flatnonzero(mask).astype(np.int64)
        self._select(self._combine(picked, modifiers), emit=True)
        return [int(i) for i in picked]

    def _on_click(self, position: QPointF, modifiers: Any) -> None:
        self.select_at(position.x(), position.y(), modifiers)

    def _on_lasso(self, polygon: list, modifiers: Any) -> None:
        self.select_in_polygon(polygon, modifiers)

    def _on_scene_click(self, ev: Any) -> None:
        if ev.double() and ev.button() == Qt.MouseButton.LeftButton:
            point = self.view_box.mapSceneToView(ev.scenePos())
            index = self.nearest_point(point.x(), point.y())
            if index is not None:
                self.imageActivated.emit(index)

    # ================================================================ hover
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if not len(self._positions) or not self.view_box.sceneBoundingRect().contains(scene_pos):
            self._hide_hover()
            return
        point = self.view_box.mapSceneToView(scene_pos)
        index = self.nearest_point(point.x(), point.y())
        if index is None:
            self._hide_hover()
            return
        widget_pos = self.plot.mapFromScene(scene_pos)
        self.show_hover(index, widget_pos.x(), widget_pos.y())

    def hovered_index(self) -> Optional[int]:
        return self._hovered if self.hover.isVisible() else None

    def show_hover(self, index: int, x: Optional[float] = None, y: Optional[float] = None) -> None:
        """Show the thumbnail and path of image ``index`` near widget position (x, y) (default: its point)."""
        session = self._session
        if session is None or not 0 <= index < len(session.paths):
            return
        if (x is None or y is None) and len(self._positions):
            scene = self.view_box.mapViewToScene(QPointF(*self._positions[index]))
            widget_pos = self.plot.mapFromScene(scene)
            x, y = widget_pos.x(), widget_pos.y()
        x, y = (10.0 if x is None else x), (10.0 if y is None else y)
        if len(self._positions):
            self.hover_item.setData(pos=self._positions[index : index + 1])
        path = str(session.paths[index])
        cluster = int(session.labels[index])
        self._hovered = index
        self.hover_text.setText(f"{path}\n{session.name_of(cluster)}")
        self.hover_image.setPixmap(self._thumbnail(path) or QPixmap())
        self.hover.adjustSize()
        # Keep the popup inside the plot, offset from the cursor.
        left = min(int(x) + 14, max(0, self.plot.width() - self.hover.width()))
        top = min(int(y) + 14, max(0, self.plot.height() - self.hover.height()))
        self.hover.move(left, top)
        self.hover.show()
        self.hover.raise_()

    def _hide_hover(self) -> None:
        self._hovered = None
        self.hover.hide()
        self.hover_item.setData([], [])

    def _thumbnail(self, path: str) -> Optional[QPixmap]:
        if self._loader is None:
            return None
        image = self._loader.request(path, HOVER_THUMB_SIZE)
        if isinstance(image, QImage) and not image.isNull():
            return QPixmap.fromImage(image)
        if isinstance(image, QPixmap) and not image.isNull():
            return image
        return None  # not decoded yet: thumbnailReady will bring it

    def _on_thumbnail_ready(self, path: str) -> None:
        if self._hovered is not None and self.hover.isVisible() and self._session is not None:
            if str(self._session.paths[self._hovered]) == path:
                pixmap = self._thumbnail(path)
                if pixmap is not None:
                    self.hover_image.setPixmap(pixmap)

    # ================================================================ embedding method
    def method(self) -> str:
        return self._method

    def recompute(self, method: str) -> Optional[BackgroundJob]:
        """Recompute the 2-D embedding with ``method`` in the background; returns the job.

        Needs ``session.features``; without them (an old session file) the method stays as is
        and a message is shown.
        """
        self._set_method_silently(method)
        session = self._session
        if session is None:
            return None
        features = getattr(session, "features", None)
        if features is None:
            self.status.setText("This session has no features: re-run to change the embedding.")
            return None
        self.cancel_recompute()
        from ..core.embedding import embed_2d

        features = np.asarray(features)
        job = BackgroundJob(
            lambda progress: embed_2d(features, method=method, progress=progress), title="Embedding failed", parent=self
        )
        job.progressed.connect(
            lambda info: self.status.setText(f"{EMBEDDING_LABELS.get(method, method)}: {int(info.fraction * 100)} %")
        )
        job.succeeded.connect(lambda coords, s=session, m=method: self._apply_embedding(s, m, coords))
        job.failed.connect(self._on_embedding_failed)
        job.finished.connect(lambda j=job: self._forget_job(j))
        self._job = job
        self.status.setText(f"Computing {EMBEDDING_LABELS.get(method, method)}…")
        job.start()
        return job

    def cancel_recompute(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def is_computing(self) -> bool:
        return self._job is not None and self._job.is_running()

    def running_job(self) -> Optional[BackgroundJob]:
        return self._job

    def _forget_job(self, job: BackgroundJob) -> None:
        if self._job is job:
            self._job = None
        job.deleteLater()

    def _apply_embedding(self, session: Any, method: str, coords: np.ndarray) -> None:
        if session is not self._session:
            return  # the user moved on to another run meanwhile
        self._method = method
        session.set_embedding(coords, method=method)  # its 'embedding' event redraws the points
        self.view_box.autoRange()
        self.embeddingChanged.emit(method)

    def _on_embedding_failed(self, failure: JobFailure) -> None:
        self.status.setText(f"Embedding failed: {failure.message}")
        self.embeddingFailed.emit(failure)
