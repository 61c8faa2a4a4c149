"""The Compare view: how the groups of two runs correspond, image by image.

:class:`CompareDialog` shows the overlap of two runs' groupings as a heat map (one row per group
of run A, one column per group of run B, each cell the images both share), with each A group's
match in B (``core.compare.match_clusters``, the Hungarian method) outlined in bold and put on the
diagonal; a summary line (NMI / ARI between the runs, how many images changed group, how many
groups matched); "Show images that moved", and a double-click on a cell, ask the window to select
those images in the grid (:attr:`CompareDialog.showImages`). Runs over different image sets are
compared on the images both hold. The dialog reads the two sessions once, when it opens.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.compare import UNASSIGNED, compare_labels, overlap_matrix, same_images
from .scatter import cluster_colour

HEAT_COLOUR = QColor("#2b6cb0")  # the cells' tint, stronger for a larger share of the row's images
MATCH_COLOUR = QColor("#f2a900")  # the matched pairs' tint (the diagonal)
# Data role of a cell: the image indices (into run A) it holds.
INDICES_ROLE = Qt.ItemDataRole.UserRole + 1
MATCHED_ROLE = Qt.ItemDataRole.UserRole + 2


def _swatch(cluster: int) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(cluster_colour(int(cluster)))
    return QIcon(pixmap)


def _name(session: Any, cluster: int) -> str:
    name_of = getattr(session, "name_of", None)
    return str(name_of(cluster)) if callable(name_of) else ("Unassigned" if cluster == UNASSIGNED else str(cluster))


def _common_images(session_a: Any, session_b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Indices into A and into B of the images both hold, in A's order."""
    if same_images(session_a, session_b):
        every = np.arange(len(session_a.paths), dtype=np.int64)
        return every, every.copy()
    where_b = {path: i for i, path in enumerate(session_b.paths)}
    pairs = [(i, where_b[path]) for i, path in enumerate(session_a.paths) if path in where_b]
    if not pairs:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    both = np.asarray(pairs, dtype=np.int64)
    return both[:, 0], both[:, 1]


class CompareDialog(QDialog):
    """Two runs side by side: the overlap of their groups, the matched pairs and the images that moved.

    Parameters
    ----------
    session_a, session_b : ClusterSession
        The runs to compare; A gives the rows (and is the reference for the matching), B the columns.
    names : sequence of two str
        How the runs are called ("Run 1", "Run 2").
    numbers_table : QWidget, optional
        The run list's table of numbers, shown in a second tab.
    shown_session : callable, optional
        Returns the session on screen; :attr:`showImages` gives indices into it (matched by path).
        Default: run A.
    parent : QWidget, optional

    Signals
    -------
    showImages(list)
        Image indices (into the session on screen) to select in the grid.
    """

    showImages = Signal(list)

    def __init__(
        self,
        session_a: Any,
        session_b: Any,
        names: Sequence[str] = ("Run A", "Run B"),
        numbers_table: Optional[QWidget] = None,
        shown_session: Optional[Callable[[], Any]] = None,
        parent: Optional[QWidget] = None,
    ) -> None:
        super().__init__(parent)
        self.session_a, self.session_b = session_a, session_b
        self.names = (str(names[0]), str(names[1])) if len(names) >= 2 else ("Run A", "Run B")
        self._shown_session = shown_session
        self.setWindowTitle(f"Compare {self.names[0]} and {self.names[1]}")

        self.indices_a, self.indices_b = _common_images(session_a, session_b)
        labels_a = np.asarray(session_a.labels, dtype=np.int64)[self.indices_a]
        labels_b = np.asarray(session_b.labels, dtype=np.int64)[self.indices_b]
        self.comparison = compare_labels(labels_a, labels_b)
        matrix, ids_a, ids_b = overlap_matrix(labels_a, labels_b)
        self._labels_a, self._labels_b = labels_a, labels_b
        # Matched rows first and the columns in the order of their matches, so the matched pairs form an
        # unbroken diagonal; then the groups without a counterpart; Unassigned last.
        match_of_a = {a: b for b, a in self.comparison.mapping.items()}
        rows = [int(a) for a in ids_a if int(a) in match_of_a]
        rows += [int(a) for a in ids_a if int(a) not in match_of_a and int(a) != UNASSIGNED]
        rows += [UNASSIGNED] if UNASSIGNED in ids_a else []
        columns = [match_of_a[a] for a in rows if a in match_of_a]
        columns += [int(b) for b in ids_b if int(b) not in columns and int(b) != UNASSIGNED]
        columns += [UNASSIGNED] if UNASSIGNED in ids_b else []
        row_at = {int(a): i for i, a in enumerate(ids_a)}
        column_at = {int(b): j for j, b in enumerate(ids_b)}
        self.row_ids: list[int] = rows
        self.column_ids: list[int] = columns
        self.matrix: np.ndarray = matrix[np.ix_([row_at[a] for a in rows], [column_at[b] for b in columns])]

        self.summary = QLabel(self.summary_text())
        self.summary.setObjectName("compare_summary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = self._build_table()
        self.moved_button = QPushButton("Show images that moved")
        self.moved_button.setObjectName("show_moved")
        self.moved_button.setToolTip(
            f"Select in the grid the images whose group in {self.names[1]} is not the match of their group in "
            f"{self.names[0]} (double-click a cell for the images it holds)"
        )
        self.moved_button.setEnabled(self.comparison.moved.size > 0)
        self.moved_button.clicked.connect(self.show_moved)

        groups = QWidget()
        groups_layout = QVBoxLayout(groups)
        groups_layout.setContentsMargins(4, 4, 4, 4)
        groups_layout.addWidget(self.summary)
        groups_layout.addWidget(self.table, 1)
        hint = QLabel(
            f"Rows: groups of {self.names[0]}; columns: groups of {self.names[1]}. Each cell counts the images both "
            "share; bold cells are matched groups. Double-click a cell to select its images."
        )
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #555")
        groups_layout.addWidget(hint)
        bar = QHBoxLayout()
        bar.addWidget(self.moved_button)
        bar.addStretch(1)
        groups_layout.addLayout(bar)

        self.tabs = QTabWidget()
        self.tabs.addTab(groups, "Groups")
        if numbers_table is not None:
            self.tabs.addTab(numbers_table, "Numbers")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)
        self.resize(min(1100, 260 + 90 * max(2, len(self.column_ids))), min(800, 220 + 28 * max(2, len(self.row_ids))))

    # ---------------------------------------------------------------- summary
    def summary_text(self) -> str:
        """``'NMI 0.873 · ARI 0.812 · 37 of 240 images changed group · 8 of 10 groups matched'``."""
        result = self.comparison
        if result.n_images == 0:
            return f"{self.names[0]} and {self.names[1]} have no image in common."
        parts = []
        if result.nmi is not None and result.ari is not None:
            parts.append(f"NMI {result.nmi:.3f} · ARI {result.ari:.3f}")
        moved = int(result.moved.size)
        parts.append(f"{moved} of {result.n_images} image{'' if result.n_images == 1 else 's'} changed group")
        n_groups = len([a for a in self.row_ids if a != UNASSIGNED])
        parts.append(f"{len(result.mapping)} of {n_groups} group{'' if n_groups == 1 else 's'} matched")
        text = " · ".join(parts)
        if result.n_images < max(len(self.session_a.paths), len(self.session_b.paths)):
            text += f" (compared on the {result.n_images} images both runs hold)"
        return text

    # ---------------------------------------------------------------- table
    def _header(self, session: Any, cluster: int, count: int) -> QTableWidgetItem:
        item = QTableWidgetItem(f"{_name(session, cluster)} ({count})")
        item.setIcon(_swatch(cluster))
        item.setToolTip(f"{_name(session, cluster)}: {count} image{'' if count == 1 else 's'}")
        return item

    def _build_table(self) -> QTableWidget:
        rows, columns = len(self.row_ids), len(self.column_ids)
        table = QTableWidget(rows, columns)
        table.setObjectName("overlap_table")
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        for r, cluster in enumerate(self.row_ids):
            table.setVerticalHeaderItem(r, self._header(self.session_a, cluster, int(self.matrix[r].sum())))
        for c, cluster in enumerate(self.column_ids):
            table.setHorizontalHeaderItem(c, self._header(self.session_b, cluster, int(self.matrix[:, c].sum())))
        matched = {(a, b) for b, a in self.comparison.mapping.items()}
        bold = QFont(table.font())
        bold.setBold(True)
        for r, cluster_a in enumerate(self.row_ids):
            row_total = max(1, int(self.matrix[r].sum()))
            for c, cluster_b in enumerate(self.column_ids):
                count = int(self.matrix[r, c])
                is_match = (cluster_a, cluster_b) in matched
                item = QTableWidgetItem(str(count) if count else "")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setData(MATCHED_ROLE, is_match)
                share = count / row_total
                tint = QColor(MATCH_COLOUR if is_match else HEAT_COLOUR)
                tint.setAlpha(int(40 + 180 * share) if count else 0)
                item.setBackground(QBrush(tint))
                if share > 0.6 and not is_match:
                    item.setForeground(QBrush(QColor("white")))
                if is_match:
                    item.setFont(bold)
                where = (
                    f"{_name(self.session_a, cluster_a)} in {self.names[0]} and "
                    f"{_name(self.session_b, cluster_b)} in {self.names[1]}"
                )
                item.setToolTip(
                    f"{count} image{'' if count == 1 else 's'} in {where}" + (" (matched groups)" if is_match else "")
                )
                table.setItem(r, c, item)
        table.resizeColumnsToContents()
        table.cellDoubleClicked.connect(self.show_cell)
        return table

    def cell_indices(self, row: int, column: int) -> list[int]:
        """The images (indices into run A) in the cell's pair of groups."""
        cluster_a, cluster_b = self.row_ids[row], self.column_ids[column]
        inside = (self._labels_a == cluster_a) & (self._labels_b == cluster_b)
        return [int(i) for i in self.indices_a[inside]]

    def is_matched(self, row: int, column: int) -> bool:
        """Whether the cell pairs two matched groups (highlighted)."""
        item = self.table.item(row, column)
        return bool(item is not None and item.data(MATCHED_ROLE))

    def moved_indices(self) -> list[int]:
        """The images (indices into run A) that changed group."""
        return [int(i) for i in self.indices_a[self.comparison.moved]]

    # ---------------------------------------------------------------- asking the window
    def show_cell(self, row: int, column: int) -> None:
        """Ask the window to select a cell's images."""
        self._emit_images(self.cell_indices(row, column))

    def show_moved(self) -> None:
        """Ask the window to select the images that changed group."""
        self._emit_images(self.moved_indices())

    def _emit_images(self, indices_in_a: list[int]) -> None:
        shown = self._shown_session() if self._shown_session is not None else self.session_a
        if shown is None:
            return
        if shown is not self.session_a and not same_images(shown, self.session_a):
            where = {path: i for i, path in enumerate(shown.paths)}
            paths = self.session_a.paths
            indices_in_a = [where[paths[i]] for i in indices_in_a if paths[i] in where]
        self.showImages.emit(list(indices_in_a))
