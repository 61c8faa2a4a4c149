"""The run list: every run of this session kept side by side, like the papers' comparison tables.

Each row is a :class:`~imgcluster_gui.core.session.RunRecord` (backbone, algorithm, K, internal and
external metrics, time) of the widget's :class:`~imgcluster_gui.core.session.RunHistory`: the runs
are core state, this widget only displays them. Selecting a row asks the window to show that run;
the table itself is the side-by-side comparison, sortable by any column, and "Compare selected"
opens a transposed table of the chosen runs (one column per run).
"""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.session import RunHistory, RunRecord

__all__ = ["COLUMNS", "RunList", "RunRecord"]

# (header, key into RunRecord.row(), number format)
COLUMNS = (
    ("#", "number", "{:d}"),
    ("Started", "started", None),
    ("Backbone", "backbone", None),
    ("Layer", "layer", None),
    ("Algorithm", "algorithm", None),
    ("K", "k", "{:d}"),
    ("Images", "n_images", "{:d}"),
    ("Silhouette", "silhouette", "{:.3f}"),
    ("CH", "calinski_harabasz", "{:.1f}"),
    ("DB", "davies_bouldin", "{:.3f}"),
    ("NMI", "nmi", "{:.3f}"),
    ("ARI", "ari", "{:.3f}"),
    ("ACC", "acc", "{:.3f}"),
    ("Purity", "purity", "{:.3f}"),
    ("Time (s)", "seconds", "{:.1f}"),
)


class _SortableItem(QTableWidgetItem):
    """Sorts numbers as numbers (missing values last)."""

    def __init__(self, text: str, value: Any) -> None:
        super().__init__(text)
        self._value = value

    def __lt__(self, other: QTableWidgetItem) -> bool:  # noqa: D105 - Qt's sort hook
        mine, theirs = self._value, getattr(other, "_value", None)
        if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)):
            return mine < theirs
        if mine is None or theirs is None:
            return theirs is None and mine is not None
        return str(mine) < str(theirs)


def _format(value: Any, fmt: Optional[str]) -> str:
    if value is None:
        return "—"
    if fmt is None:
        return str(value)
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


class RunList(QWidget):
    """The table of a :class:`RunHistory`'s runs.

    Parameters
    ----------
    runs : RunHistory, optional
        The runs to show (default: a new, empty history); :attr:`runs` gives it.
    parent : QWidget, optional

    Signals
    -------
    runActivated(int)
        The user selected a run (its :attr:`RunRecord.number`).
    showImages(list)
        The Compare view asks to select these images (indices into the run shown) in the grid.
    """

    runActivated = Signal(int)
    showImages = Signal(list)

    def __init__(self, parent: Optional[QWidget] = None, runs: Optional[RunHistory] = None) -> None:
        super().__init__(parent)
        self.runs: RunHistory = runs if runs is not None else RunHistory()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("run_table")
        self.table.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # Oldest run first until the user clicks a header (Qt's default indicator is descending).
        self.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.compare_button = QPushButton("Compare selected…")
        self.compare_button.setToolTip(
            "Two runs: which group of one is which group of the other, and the images that moved; "
            "more runs: their numbers side by side, one column per run"
        )
        self.compare_button.clicked.connect(self.show_comparison)
        bar = QHBoxLayout()
        bar.addStretch(1)
        bar.addWidget(self.compare_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.table, 1)
        layout.addLayout(bar)

    # ---------------------------------------------------------------- records
    def records(self) -> list[RunRecord]:
        return self.runs.records()

    def record(self, number: int) -> RunRecord:
        return self.runs.record(number)

    def next_number(self) -> int:
        return self.runs.next_number()

    def add_run(self, record: RunRecord) -> None:
        """Append a run and make it the current one (selected, without emitting runActivated)."""
        self.runs.add(record)
        self.refresh()

    def set_runs(self, runs: RunHistory) -> None:
        """Show ``runs`` instead (an opened session file's), its current run selected (without runActivated)."""
        self.runs = runs
        self.refresh()

    def current_number(self) -> Optional[int]:
        return self.runs.current_number

    def set_current(self, number: int) -> None:
        self.runs.set_current(number)
        self._select_row_of(number)

    def refresh(self, number: Optional[int] = None) -> None:
        """Redraw the table (metrics change after hand edits)."""
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        records = self.runs.records()
        self.table.setRowCount(len(records))
        for row, record in enumerate(records):
            values = record.row()
            for column, (_header, key, fmt) in enumerate(COLUMNS):
                item = _SortableItem(_format(values[key], fmt), values[key])
                item.setData(Qt.ItemDataRole.UserRole, record.number)
                if fmt is not None:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        self.table.setSortingEnabled(True)
        self.table.blockSignals(False)
        if self.runs.current_number is not None:
            self._select_row_of(self.runs.current_number)

    def _select_row_of(self, number: int) -> None:
        self.table.blockSignals(True)
        self.table.clearSelection()
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == number:
                self.table.selectRow(row)
        self.table.blockSignals(False)

    def selected_numbers(self) -> list[int]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) for row in rows]

    def _on_selection(self) -> None:
        numbers = self.selected_numbers()
        if len(numbers) == 1 and numbers[0] != self.runs.current_number:
            self.runs.set_current(numbers[0])
            self.runActivated.emit(numbers[0])

    # ---------------------------------------------------------------- comparison
    def comparison_table(self, numbers: Optional[list[int]] = None) -> QTableWidget:
        """A table with one column per run and one row per column of the list."""
        chosen = [self.record(n) for n in (numbers or [r.number for r in self.runs])]
        table = QTableWidget(len(COLUMNS) - 1, len(chosen))
        table.setObjectName("comparison_table")
        table.setVerticalHeaderLabels([c[0] for c in COLUMNS[1:]])
        table.setHorizontalHeaderLabels([f"Run {r.number}" for r in chosen])
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for column, record in enumerate(chosen):
            values = record.row()
            for row, (_header, key, fmt) in enumerate(COLUMNS[1:]):
                table.setItem(row, column, QTableWidgetItem(_format(values[key], fmt)))
        table.resizeColumnsToContents()
        return table

    def show_comparison(self) -> QDialog:
        """Open (non-modal) the side-by-side table of the selected runs, or all runs."""
        numbers = self.selected_numbers()
        if len(numbers) < 2:
            numbers = [r.number for r in self.runs]
        if len(numbers) == 2:  # two runs: how their groups correspond (ui/compare_view.py), numbers as a tab
            return self._compare_two(numbers)
        dialog = QDialog(self)
        dialog.setWindowTitle("Compare runs")
        layout = QVBoxLayout(dialog)
        layout.addWidget(self.comparison_table(numbers))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.close)
        layout.addWidget(buttons)
        dialog.resize(200 + 110 * max(1, len(numbers)), 480)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _compare_two(self, numbers: list[int]) -> QDialog:
        from .compare_view import CompareDialog

        # The run on screen gives the rows, so "Show images that moved" selects in the grid what the rows name.
        first, second = sorted(numbers, key=lambda n: n != self.runs.current_number)
        a, b = self.record(first), self.record(second)
        import weakref

        # A weak reference: a closure holding the parent widget crashes PySide when the dialog is deleted.
        owner = weakref.ref(self)

        def shown_session() -> Any:
            run_list = owner()
            current = run_list.runs.current if run_list is not None else None
            return current.session if current is not None else None

        dialog = CompareDialog(
            a.session,
            b.session,
            (f"Run {a.number}", f"Run {b.number}"),
            numbers_table=self.comparison_table(numbers),
            shown_session=shown_session,
            parent=self,
        )
        dialog.showImages.connect(self.showImages)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog
