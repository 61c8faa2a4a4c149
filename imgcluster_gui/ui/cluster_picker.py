"""A type-ahead cluster picker: "Move to cluster…" (Ctrl+M in the grid).

With hundreds of clusters a menu of names is too long to scan; the picker is a filter box over the
list of clusters ("name (count)"): typing narrows the list, Up / Down choose, Enter moves.
"""

from __future__ import annotations

from typing import Iterable, Optional

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.session import UNASSIGNED, ClusterSession

_CLUSTER_ROLE = Qt.ItemDataRole.UserRole + 1
# Keys the filter box passes to the list, so the choice moves while typing.
_LIST_KEYS = {Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown}


def cluster_entry(session: ClusterSession, cluster: int) -> str:
    """The line a cluster has in the picker: ``"name (count)"``."""
    return f"{session.name_of(cluster)} ({session.size_of(cluster)})"


class ClusterPickerDialog(QDialog):
    """Choose a cluster by typing part of its name.

    Parameters
    ----------
    session : ClusterSession
    parent : QWidget, optional
    title : str
        The window title (what the choice is for).
    exclude : iterable of int
        Clusters not offered (e.g. the one the images are in already).

    The chosen cluster is :meth:`chosen_cluster` once the dialog is accepted.
    """

    def __init__(
        self,
        session: ClusterSession,
        parent: Optional[QWidget] = None,
        title: str = "Move to cluster",
        exclude: Iterable[int] = (),
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.session = session
        excluded = {int(c) for c in exclude}
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Type part of a cluster's name…")
        self.filter_edit.setClearButtonEnabled(True)
        self.list_widget = QListWidget(self)
        # Named clusters and numbered ones alike, Unassigned last (as the grid shows them).
        for cluster in session.cluster_ids() + ([] if UNASSIGNED in session.cluster_ids() else [UNASSIGNED]):
            if cluster in excluded:
                continue
            item = QListWidgetItem(cluster_entry(session, cluster))
            item.setData(_CLUSTER_ROLE, int(cluster))
            self.list_widget.addItem(item)
        self.status_label = QLabel(self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self._accept_current)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.list_widget, 1)
        layout.addWidget(self.status_label)
        layout.addWidget(buttons)
        self.filter_edit.textChanged.connect(self.apply_filter)
        self.filter_edit.installEventFilter(self)
        self.filter_edit.returnPressed.connect(self._accept_current)
        self.list_widget.itemActivated.connect(lambda _item: self._accept_current())
        self.list_widget.currentItemChanged.connect(lambda *_args: self._update_ok())
        self._chosen: Optional[int] = None
        self.resize(360, 420)
        self.apply_filter("")
        self.filter_edit.setFocus()

    def apply_filter(self, text: str) -> None:
        """Show only the clusters whose line contains every word of ``text`` (case-insensitive)."""
        words = text.casefold().split()
        first_shown: Optional[QListWidgetItem] = None
        shown = 0
        for row in range(self.list_widget.count()):
            item = self.list_widget.item(row)
            line = item.text().casefold()
            hidden = not all(word in line for word in words)
            item.setHidden(hidden)
            if not hidden:
                shown += 1
                first_shown = first_shown or item
        current = self.list_widget.currentItem()
        if current is None or current.isHidden():
            self.list_widget.setCurrentItem(first_shown)
        self.status_label.setText(f"{shown} of {self.list_widget.count()} shown")
        self._update_ok()

    def visible_entries(self) -> list[str]:
        """The lines the list shows now, in order."""
        return [
            self.list_widget.item(row).text()
            for row in range(self.list_widget.count())
            if not self.list_widget.item(row).isHidden()
        ]

    def chosen_cluster(self) -> Optional[int]:
        """The cluster chosen (after acceptance), else None."""
        return self._chosen

    def _current_cluster(self) -> Optional[int]:
        item = self.list_widget.currentItem()
        if item is None or item.isHidden():
            return None
        return int(item.data(_CLUSTER_ROLE))

    def _update_ok(self) -> None:
        self.ok_button.setEnabled(self._current_cluster() is not None)

    def _accept_current(self) -> None:
        cluster = self._current_cluster()
        if cluster is None:
            return
        self._chosen = cluster
        self.accept()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        # Up / Down in the filter box move the list's choice (the focus stays in the box).
        if watched is self.filter_edit and event.type() == QEvent.Type.KeyPress:
            key_event: QKeyEvent = event  # type: ignore[assignment]
            if key_event.key() in _LIST_KEYS:
                self.list_widget.setFocus()
                self.list_widget.keyPressEvent(key_event)
                self.filter_edit.setFocus()
                return True
        return super().eventFilter(watched, event)
