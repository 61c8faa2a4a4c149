"""The metrics panel: how good the clustering is, and how it changed with hand edits.

Shows silhouette, Calinski-Harabasz and Davies-Bouldin; NMI / ARI / ACC / purity when the
session has ground truth; the granularity ladder of a graph clustering (one row per level, the
shown one highlighted; double-click a row to switch to it); the per-cluster silhouette as a bar
chart (bars labelled with the clusters' names, updated in place while the set of clusters stays
the same, so an edit does not re-layout it); the auto-K curve with the chosen K marked (a
silhouette sweep); and the per-epoch training curve of deep methods (``history_``).  After a
hand edit the metrics are recomputed (debounced, on a background thread) by the session's
``recompute_metrics`` and stored with ``set_metrics``: the panel only reads the session.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .scatter import cluster_colour
from .worker import BackgroundJob, JobFailure

# Bar labels: the plot's left axis takes about AXIS_MARGIN_PX, a character about CHAR_PX, and a label needs
# at least MIN_LABEL_PX (three characters and a gap).
AXIS_MARGIN_PX = 60
CHAR_PX = 7
MIN_LABEL_PX = 28
# Wait this long after the last hand edit before recomputing (a drag of many items is one burst).
REFRESH_DELAY_MS = 400
PLOT_HEIGHT = 170
INTERNAL_ROWS = (
    ("silhouette", "Silhouette", "{:.3f}", "Higher is better, in [-1, 1]"),
    ("calinski_harabasz", "Calinski-Harabasz", "{:.1f}", "Higher is better"),
    ("davies_bouldin", "Davies-Bouldin", "{:.3f}", "Lower is better"),
    ("n_clusters", "Clusters", "{:d}", ""),
    ("n_noise", "Unassigned", "{:d}", "Images in no cluster (noise or deleted clusters)"),
)
EXTERNAL_ROWS = (
    ("nmi", "NMI", "{:.3f}", "Normalised mutual information with the ground truth"),
    ("ari", "ARI", "{:.3f}", "Adjusted Rand index"),
    ("acc", "ACC", "{:.3f}", "Accuracy after the best cluster-to-class matching"),
    ("purity", "Purity", "{:.3f}", "Share of each cluster's majority class"),
)
# The granularity ladder's columns: (header, key of a session.granularity summary, format, tooltip).
LADDER_COLUMNS = (
    ("Groups", "n_clusters", "{:d}", "Groups at this level (unsorted images not counted)"),
    ("Unsorted", "n_unsorted", "{:d}", "Images in no group at this level"),
    ("Resol.", "resolution", "{:.3g}", "Resolution of the graph clustering (lower: fewer, larger groups)"),
    (
        "Modul.",
        "modularity",
        "{:.2f}",
        "Modularity: how much denser the groups are than chance (higher: better separated)",
    ),
    ("Silh.", "silhouette", "{:.2f}", "Mean silhouette of the level (sampled; higher is better)"),
)
_CURRENT_LEVEL_BRUSH = QBrush(QColor("#fff2b3"))


def _format(value: Any, fmt: str) -> str:
    if value is None:
        return "—"
    try:
        return fmt.format(int(value) if fmt == "{:d}" else float(value))
    except (TypeError, ValueError):
        return str(value)


def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    widget = pg.PlotWidget(background="w")
    widget.setTitle(title, size="9pt", color="#202020")
    widget.setLabel("left", left)
    widget.setLabel("bottom", bottom)
    widget.setMinimumHeight(PLOT_HEIGHT)
    widget.setMenuEnabled(False)
    widget.showGrid(x=False, y=True, alpha=0.25)
    for side in ("left", "bottom"):
        widget.getAxis(side).enableAutoSIPrefix(False)  # "x0.001" scaling confuses scores in [-1, 1]
    return widget


class MetricsPanel(QWidget):
    """Metrics of the shown session; follows its edits.

    Signals
    -------
    metricsUpdated(dict)
        Emitted after the shown metrics changed (a new session or a recompute after edits).
    """

    metricsUpdated = Signal(dict)
    levelActivated = Signal(int)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._session: Any = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._job: Optional[BackgroundJob] = None
        self._pending = False
        self._values: dict[str, QLabel] = {}
        self._history: list[dict[str, Any]] = []

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_DELAY_MS)
        self._timer.timeout.connect(self.recompute_now)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(4, 4, 4, 4)
        summary = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        self._summary_layout = summary  # side by side when there is room, stacked in a narrow dock
        internal = QGroupBox("Internal")
        internal_form = QFormLayout(internal)
        for key, title, _fmt, tip in INTERNAL_ROWS:
            internal_form.addRow(self._row(key, title, tip))
        self.external_box = QGroupBox("Against ground truth")
        external_form = QFormLayout(self.external_box)
        for key, title, _fmt, tip in EXTERNAL_ROWS:
            external_form.addRow(self._row(key, title, tip))
        summary.addWidget(internal)
        summary.addWidget(self.external_box)
        layout.addLayout(summary)
        self.note = QLabel("")
        self.note.setObjectName("metrics_note")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555")
        layout.addWidget(self.note)

        self.ladder_box = QGroupBox("Granularity levels")
        self.ladder_box.setObjectName("ladder_box")
        self.ladder_box.setToolTip(
            "The groupings the clustering found, fewest groups first. Double-click a row to "
            "show it (Ctrl+Z undoes); the highlighted row is the one shown."
        )
        ladder_layout = QVBoxLayout(self.ladder_box)
        ladder_layout.setContentsMargins(4, 4, 4, 4)
        self.ladder_table = QTableWidget(0, len(LADDER_COLUMNS))
        self.ladder_table.setObjectName("ladder_table")
        self.ladder_table.setHorizontalHeaderLabels([c[0] for c in LADDER_COLUMNS])
        for column, (_title, _key, _fmt, tip) in enumerate(LADDER_COLUMNS):
            self.ladder_table.horizontalHeaderItem(column).setToolTip(tip)
        self.ladder_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.ladder_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.ladder_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.ladder_table.verticalHeader().setVisible(False)
        self.ladder_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.ladder_table.horizontalHeader().setStretchLastSection(True)
        self.ladder_table.cellDoubleClicked.connect(lambda row, _column: self.levelActivated.emit(int(row)))
        ladder_layout.addWidget(self.ladder_table)
        layout.addWidget(self.ladder_box)

        self.silhouette_plot = _plot("Silhouette per cluster", "silhouette", "cluster")
        self.silhouette_plot.setObjectName("silhouette_plot")
        self.bars: Optional[pg.BarGraphItem] = None
        self._bar_clusters: list[int] = []  # the clusters of the bars, left to right
        self._bar_ticks: list[str] = []
        layout.addWidget(self.silhouette_plot)

        self.auto_k_plot = _plot("Auto-K: score vs K", "silhouette", "K")
        self.auto_k_plot.setObjectName("auto_k_plot")
        self.auto_k_curve = self.auto_k_plot.plot(
            [], [], pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=5, symbolBrush="#1f77b4"
        )
        self.auto_k_marker = pg.ScatterPlotItem(
            size=12, brush=pg.mkBrush("#d62728"), pen=pg.mkPen("#000"), symbol="star"
        )
        self.auto_k_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#d62728", style=Qt.PenStyle.DashLine))
        self.auto_k_plot.addItem(self.auto_k_marker)
        self.auto_k_plot.addItem(self.auto_k_line)
        layout.addWidget(self.auto_k_plot)

        self.training_plot = _plot("Training (per epoch)", "value", "epoch")
        self.training_plot.setObjectName("training_plot")
        self.training_plot.addLegend(offset=(-10, 10), labelTextSize="8pt")
        layout.addWidget(self.training_plot)
        layout.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.set_session(None)

    # The internal and external boxes side by side need about this many pixels; below it they are stacked.
    SIDE_BY_SIDE_MIN_WIDTH = 440

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        wide = event.size().width() >= self.SIDE_BY_SIDE_MIN_WIDTH
        direction = QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
        if self._summary_layout.direction() != direction:
            self._summary_layout.setDirection(direction)
        if self.bars is not None:
            self._label_bars()  # as many characters as the new width holds

    def _row(self, key: str, title: str, tip: str) -> QWidget:
        row = QWidget()
        row_layout = QHBoxLayout(row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        name = QLabel(title)
        name.setToolTip(tip)
        value = QLabel("—")
        value.setObjectName(f"metric_{key}")
        value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        value.setMinimumWidth(60)
        row_layout.addWidget(name, 1)
        row_layout.addWidget(value)
        self._values[key] = value
        return row

    # ================================================================ session
    def set_session(self, session: Any, history: Optional[Sequence[dict]] = None) -> None:
        """Show ``session``'s metrics and follow its edits; ``history`` is a deep method's ``history_``."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._timer.stop()
        if self._job is not None:
            self._job.cancel()
        self._session = session
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)
        self._bar_clusters = []  # a new session lays the bars out afresh
        self._fill_ladder()
        self.set_history(history or [])
        self.show_metrics((getattr(session, "metrics", None) or {}) if session is not None else {})

    def _on_session_event(self, event: Any) -> None:
        kind = getattr(event, "kind", event)
        if kind in ("labels", "reset"):
            self.schedule_recompute()
            self._highlight_ladder()
        elif kind == "metrics" and self._session is not None:
            self.show_metrics(self._session.metrics)
        elif kind == "names" and self.bars is not None:
            self._label_bars()

    def schedule_recompute(self) -> None:
        """Recompute after :data:`REFRESH_DELAY_MS` without further edits."""
        self.note.setText("Updating metrics after the edit…")
        self._timer.start()

    def is_refreshing(self) -> bool:
        """True while a recompute is scheduled or running."""
        return self._timer.isActive() or (self._job is not None and self._job.is_running()) or self._pending

    def recompute_now(self) -> Optional[BackgroundJob]:
        """Recompute the shown session's metrics on a background thread."""
        session = self._session
        if session is None:
            return None
        if self._job is not None and self._job.is_running():
            self._pending = True  # run again when this one ends: it saw older labels
            return self._job
        self._pending = False
        labels = np.asarray(session.labels).copy()  # a snapshot: edits may go on while it runs

        def compute(progress: Any) -> dict:
            return session.recompute_metrics(labels=labels)

        job = BackgroundJob(compute, title="Metrics failed", parent=self)
        job.succeeded.connect(lambda metrics, s=session, l=labels: self._on_recomputed(s, l, metrics))
        job.failed.connect(self._on_failed)
        job.finished.connect(lambda j=job: self._on_job_finished(j))
        self._job = job
        job.start()
        return job

    def _on_recomputed(self, session: Any, labels: np.ndarray, metrics: dict) -> None:
        if session is not self._session:
            return
        # Stored (emitting 'metrics', which redraws) only when these are still the session's labels.
        if not session.set_metrics(metrics, labels=labels):
            self.show_metrics(metrics)  # edits went on meanwhile: show it, the pending run will store

    def _on_failed(self, failure: JobFailure) -> None:
        self.note.setText(f"Metrics could not be computed: {failure.message}")

    def _on_job_finished(self, job: BackgroundJob) -> None:
        if self._job is job:
            self._job = None
        job.deleteLater()
        if self._pending:
            self.recompute_now()

    def wait_idle(self, milliseconds: int = 5000) -> None:
        """Block until a running recompute ends (on close)."""
        if self._job is not None:
            self._job.cancel()
            self._job.wait(milliseconds)

    # ================================================================ drawing
    def value_text(self, key: str) -> str:
        """The text shown for metric ``key`` (``'silhouette'``, ``'nmi'``...)."""
        return self._values[key].text()

    def show_metrics(self, metrics: dict) -> None:
        """Fill every field and chart from a session ``metrics`` dict."""
        metrics = dict(metrics or {})
        for key, _title, fmt, _tip in INTERNAL_ROWS:
            self._values[key].setText(_format(metrics.get(key), fmt))
        external = metrics.get("external") or {}
        self.external_box.setVisible(bool(external))
        for key, _title, fmt, _tip in EXTERNAL_ROWS:
            self._values[key].setText(_format(external.get(key), fmt))
        notes = []
        if metrics.get("reason"):
            notes.append(str(metrics["reason"]))
        sample = metrics.get("silhouette_sample_size")
        n_samples = metrics.get("n_samples")
        if sample and n_samples and sample < n_samples:
            notes.append(f"Silhouette estimated on a stratified sample of {sample} of {n_samples} images.")
        if external.get("n_labelled") and n_samples and external["n_labelled"] < n_samples:
            notes.append(f"Ground truth covers {external['n_labelled']} of {n_samples} images.")
        self.note.setText(" ".join(notes))
        self._draw_silhouette_bars(metrics.get("per_cluster_silhouette") or {})
        self._draw_auto_k(metrics.get("auto_k"))
        self.metricsUpdated.emit(metrics)

    def _draw_silhouette_bars(self, per_cluster: dict) -> None:
        """One bar per cluster, in id order, labelled with the cluster's name.

        While the set of clusters stays the same (a move, a rename, a recompute) the bars are updated in
        place and the view is left where it is, so the chart does not jump under the person editing; a
        new set of clusters (a merge, a new cluster, a new session) lays it out again.
        """
        items = sorted(((int(k), v) for k, v in per_cluster.items() if v is not None), key=lambda kv: kv[0])
        clusters = [k for k, _v in items]
        axis = self.silhouette_plot.getAxis("bottom")
        if not items:
            if self.bars is not None:
                self.silhouette_plot.removeItem(self.bars)
                self.bars = None
            self._bar_clusters = []
            axis.setTicks(None)
            self.silhouette_plot.setToolTip("")
            return
        heights = np.array([float(v) for _k, v in items])
        brushes = [pg.mkBrush(cluster_colour(k)) for k in clusters]
        if self.bars is not None and clusters == self._bar_clusters:
            self.bars.setOpts(height=heights, brushes=brushes)
            _x_range, (y_low, y_high) = self.silhouette_plot.getViewBox().viewRange()
            if heights.min() < y_low or heights.max() > y_high:  # grow to show every bar, never shrink
                self.silhouette_plot.setYRange(
                    min(y_low, float(heights.min())), max(y_high, float(heights.max())), padding=0
                )
            self._label_bars()
            return
        if self.bars is not None:
            self.silhouette_plot.removeItem(self.bars)
        xs = np.arange(len(items), dtype=float)
        self.bars = pg.BarGraphItem(x=xs, height=heights, width=0.8, brushes=brushes, pen=pg.mkPen(None))
        self.silhouette_plot.addItem(self.bars)
        self._bar_clusters = clusters
        self._label_bars()
        self.silhouette_plot.setXRange(-0.6, len(items) - 0.4, padding=0)
        low = min(0.0, float(heights.min()))
        high = max(0.05, float(heights.max()))
        self.silhouette_plot.setYRange(low, high, padding=0.05)

    def _label_bars(self) -> None:
        """The bars' axis labels and tooltip: the clusters' names (what the grid and the scatter call them)."""
        clusters = list(self._bar_clusters)
        names = [self._cluster_name(k) for k in clusters]
        # Labels must not run into each other: as many characters as a bar's width holds, and every step-th
        # label only when even a short one does not fit (the tooltip has every full name).
        per_bar = max(1.0, (self.silhouette_plot.width() - AXIS_MARGIN_PX) / max(1, len(clusters)))
        step = max(1, math.ceil(MIN_LABEL_PX / per_bar), len(clusters) // 20)
        limit = max(3, min(14, int(per_bar * step // CHAR_PX)))
        ticks = [(float(i), _short(name, limit)) for i, name in enumerate(names) if i % step == 0]
        self.silhouette_plot.getAxis("bottom").setTicks([ticks])
        self._bar_ticks = [text for _value, text in ticks]
        heights = self.bar_heights()
        lines = [f"{name}: {height:.3f}" for name, height in zip(names, heights)]
        more = f"\n… and {len(lines) - 40} more" if len(lines) > 40 else ""
        self.silhouette_plot.setToolTip("Silhouette per cluster\n" + "\n".join(lines[:40]) + more)

    def _cluster_name(self, cluster: int) -> str:
        name_of = getattr(self._session, "name_of", None) if self._session is not None else None
        return str(name_of(cluster)) if callable(name_of) else str(cluster)

    def bar_clusters(self) -> list[int]:
        """The clusters of the drawn bars, left to right."""
        return list(self._bar_clusters) if self.bars is not None else []

    def bar_labels(self) -> list[str]:
        """The texts under the bars (the clusters' names, shortened when long)."""
        return list(self._bar_ticks) if self.bars is not None else []

    def bar_heights(self) -> list[float]:
        """The drawn per-cluster silhouette bars, in cluster order."""
        if self.bars is None:
            return []
        return [float(h) for h in self.bars.opts["height"]]

    def _draw_auto_k(self, auto_k: Optional[dict]) -> None:
        """The silhouette sweep's curve; without a sweep the plot is hidden and its title says why."""
        if not auto_k or not auto_k.get("ks"):
            self.auto_k_curve.setData([], [])
            self.auto_k_marker.setData([], [])
            self.auto_k_line.hide()
            self.auto_k_plot.setTitle(f"Auto-K: not used ({k_origin(self._session, auto_k)})", size="9pt", color="#777")
            self.auto_k_plot.setVisible(False)
            return
        self.auto_k_plot.setVisible(True)
        ks = [int(k) for k in auto_k["ks"]]
        scores = [np.nan if v is None else float(v) for v in auto_k.get("silhouette", [])]
        self.auto_k_curve.setData(ks, scores, connect="finite")
        best = int(auto_k.get("best_k", ks[0]))
        if best in ks:
            self.auto_k_marker.setData([best], [scores[ks.index(best)]])
        self.auto_k_line.setValue(best)
        self.auto_k_line.show()
        self.auto_k_plot.setTitle(f"Auto-K: silhouette vs K (chosen K = {best})", size="9pt", color="#202020")

    def auto_k_points(self) -> tuple[list[float], list[float]]:
        xs, ys = self.auto_k_curve.getData()
        return ([] if xs is None else list(xs)), ([] if ys is None else list(ys))

    # ================================================================ granularity ladder
    def _fill_ladder(self) -> None:
        """One row per granularity level of the session (hidden when it has fewer than two)."""
        session = self._session
        levels = list(getattr(session, "granularity", None) or []) if session is not None else []
        if session is None or int(getattr(session, "n_granularity_levels", 0) or 0) < 2:
            levels = []
        table = self.ladder_table
        table.blockSignals(True)
        table.setRowCount(len(levels))
        for row, summary in enumerate(levels):
            for column, (_title, key, fmt, _tip) in enumerate(LADDER_COLUMNS):
                item = QTableWidgetItem(_format(summary.get(key), fmt))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if summary.get("selected"):
                    item.setToolTip("The level the clustering chose")
                table.setItem(row, column, item)
        table.blockSignals(False)
        self.ladder_box.setVisible(bool(levels))
        if levels:
            rows_height = sum(table.rowHeight(r) for r in range(len(levels)))
            table.setFixedHeight(
                min(rows_height, 10 * table.verticalHeader().defaultSectionSize())
                + table.horizontalHeader().height()
                + 2 * table.frameWidth()
                + 2
                # room for the horizontal scroll bar of a narrow dock
                + table.horizontalScrollBar().sizeHint().height()
            )
        self._highlight_ladder()

    def _highlight_ladder(self) -> None:
        """Bold, tinted row for the level the grid shows now (none when the labels fit no level)."""
        session = self._session
        table = self.ladder_table
        if session is None or table.rowCount() == 0:
            self._ladder_current = None
            return
        current = session.granularity_level()
        self._ladder_current = current
        bold = QFont(table.font())
        bold.setBold(True)
        for row in range(table.rowCount()):
            for column in range(table.columnCount()):
                item = table.item(row, column)
                item.setFont(bold if row == current else table.font())
                item.setBackground(_CURRENT_LEVEL_BRUSH if row == current else QBrush())
        table.blockSignals(True)
        if current is None:
            table.clearSelection()
        else:
            table.selectRow(current)
        table.blockSignals(False)

    def current_ladder_row(self) -> Optional[int]:
        """The highlighted row (the level shown now), or None."""
        return getattr(self, "_ladder_current", None)

    def ladder_rows(self) -> list[list[str]]:
        """The ladder table's texts, row by row."""
        table = self.ladder_table
        return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]

    def set_history(self, history: Sequence[dict], live: bool = False) -> None:
        """Plot a deep method's per-epoch ``history_`` (loss, NMI between epochs, NMI to the truth).

        ``live=True`` while the method trains (the window calls it as epochs complete): the title
        then reads the latest epoch, loss and NMI.
        """
        self._history = [dict(row) for row in history]
        self.training_plot.clear()
        rows = [r for r in self._history if r.get("phase", "cluster") != "pretrain"] or self._history
        self.training_plot.setVisible(bool(rows))
        if not rows:
            return
        self.training_plot.setTitle(training_title(rows[-1], live), size="9pt", color="#202020")
        epochs = np.arange(len(rows), dtype=float)
        for key, colour, name in (
            ("loss", "#1f77b4", "loss (scaled)"),
            ("nmi_change", "#2ca02c", "NMI vs previous"),
            ("nmi_true", "#d62728", "NMI vs truth"),
        ):
            values = np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])
            if np.all(np.isnan(values)):
                continue
            if key == "loss":  # put the loss on the same 0-1 scale as the NMI curves
                peak = np.nanmax(np.abs(values))
                values = values / peak if peak > 0 else values
            self.training_plot.plot(epochs, values, pen=pg.mkPen(colour, width=2), name=name, connect="finite")

    def history(self) -> list[dict]:
        return list(self._history)

    def training_title(self) -> str:
        return str(self.training_plot.getPlotItem().titleLabel.text)


def k_origin(session: Any, auto_k: Optional[dict] = None) -> str:
    """How the session's number of groups came about, in words ('Leiden found 20 groups', 'K = 15 from the
    neighbour graph', 'K was given')."""
    auto_k = (
        auto_k
        if auto_k is not None
        else ((getattr(session, "metrics", None) or {}).get("auto_k") if session is not None else None)
    )
    if auto_k and auto_k.get("method") == "graph":
        return f"K = {int(auto_k.get('best_k', 0))} from the neighbour graph"
    if auto_k and auto_k.get("method") == "silhouette":
        return f"K = {int(auto_k.get('best_k', 0))} from the silhouette sweep"
    settings = dict(getattr(session, "settings", None) or {}) if session is not None else {}
    algorithm = settings.get("algorithm")
    spec = None
    if algorithm:
        from ..core.clustering.registry import get_algorithm

        try:
            spec = get_algorithm(str(algorithm))
        except KeyError:
            spec = None
    if spec is not None and (
        not spec.uses_k or (getattr(spec, "k_optional", False) and settings.get("n_clusters") is None)
    ):
        groups = _selected_groups(session)
        return f"{str(spec.name).split(' (')[0]} found {groups} group" + ("" if groups == 1 else "s")
    if settings.get("n_clusters") is not None:
        return f"K = {int(settings['n_clusters'])} was given"
    return "K was given"


def _selected_groups(session: Any) -> int:
    """Groups of the level the clustering chose (else of the original labels)."""
    from ..core.session import count_clusters

    for summary in getattr(session, "granularity", None) or []:
        if summary.get("selected"):
            return int(summary.get("n_clusters", 0))
    labels = getattr(session, "original_labels", None)
    return count_clusters(labels) if labels is not None else 0


def _short(name: str, limit: int = 14) -> str:
    """A name cut to fit under a bar (the plot's tooltip has it whole)."""
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def training_title(row: dict, live: bool = False) -> str:
    """``'Training (live): epoch 3 · loss 0.412 · NMI vs truth 0.71'`` from a history row."""
    phase = "pre-training epoch" if row.get("phase") == "pretrain" else "epoch"
    parts = [f"{phase} {row.get('epoch', '?')}"]
    if row.get("loss") is not None:
        parts.append(f"loss {float(row['loss']):.4g}")
    if row.get("nmi_true") is not None:
        parts.append(f"NMI vs truth {float(row['nmi_true']):.3f}")
    elif row.get("nmi_change") is not None:
        parts.append(f"NMI vs previous {float(row['nmi_change']):.3f}")
    return ("Training (live): " if live else "Training: ") + " · ".join(parts)
