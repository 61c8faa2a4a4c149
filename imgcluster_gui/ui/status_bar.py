"""The status bar's own pieces: what the window shows, in one line, and the files a run left out.

:func:`describe_session` is pure (no Qt): the window calls it whenever the shown session changes
(a run finished, a session opened or saved, an edit) and puts the line in its status bar, so the
bar always describes what is on screen, e.g. ``"Run 2 · 1,000 images in 10 groups · 12 unsorted ·
session.imgcluster"``.  :class:`SkippedFilesIndicator` is a status-bar label, "3 files skipped
(show)", whose link opens :class:`SkippedFilesDialog`: every file the run could not read, with
the reason (Lightroom's "some files could not be imported" list).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

__all__ = ["SkippedFilesDialog", "SkippedFilesIndicator", "describe_session", "skipped_pairs"]

SEPARATOR = " · "
SHOW_LINK = "show"


def _count(n: int, word: str) -> str:
    """``'1 image'``, ``'1,000 images'`` (thousands separated: a 5-digit number is read at a glance)."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def describe_session(session: Any, run_number: Optional[int] = None, path: Union[str, Path, None] = None) -> str:
    """One line that says what is on screen.

    Parameters
    ----------
    session : ClusterSession or None
        The shown session (``paths`` and ``labels``; label -1 = unsorted).
    run_number : int, optional
        The run the session came from (the run list's number); left out when None.
    path : str or path, optional
        The session's file; only its name is shown (the title bar has the rest).

    Returns
    -------
    str
        e.g. ``"Run 2 · 1,000 images in 10 groups · 12 unsorted · session.imgcluster"``;
        ``"No result yet"`` without a session.
    """
    if session is None:
        return "No result yet"
    labels = [int(label) for label in session.labels]
    n_groups = len({label for label in labels if label >= 0})
    n_unsorted = sum(1 for label in labels if label < 0)
    parts = []
    if run_number is not None:
        parts.append(f"Run {int(run_number)}")
    parts.append(f"{_count(len(labels), 'image')} in {_count(n_groups, 'group')}")
    if n_unsorted:
        parts.append(f"{n_unsorted:,} unsorted")
    if path:
        parts.append(Path(path).name)
    return SEPARATOR.join(parts)


def skipped_pairs(skipped: Iterable[Any]) -> list[tuple[str, str]]:
    """``(path, reason)`` pairs from ``SkippedFile`` objects or ``(path, reason)`` tuples."""
    pairs = []
    for item in skipped:
        if isinstance(item, (tuple, list)):
            path, reason = (list(item) + ["", ""])[:2]
        else:
            path, reason = getattr(item, "path", item), getattr(item, "reason", "")
        pairs.append((os.fspath(path) if isinstance(path, os.PathLike) else str(path), str(reason or "")))
    return pairs


class SkippedFilesDialog(QDialog):
    """The files a run left out, one row each with the reason; the list can be copied as text."""

    def __init__(self, skipped: list[tuple[str, str]], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{_count(len(skipped), 'file')} skipped")
        self.setObjectName("skipped_files_dialog")
        self._skipped = list(skipped)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("These files were not clustered (they could not be read as images):"))
        self.tree = QTreeWidget()
        self.tree.setObjectName("skipped_files_tree")
        self.tree.setHeaderLabels(["File", "Reason"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        for path, reason in self._skipped:
            row = QTreeWidgetItem([path, reason])
            row.setToolTip(0, path)
            row.setToolTip(1, reason)
            self.tree.addTopLevelItem(row)
        self.tree.resizeColumnToContents(0)
        layout.addWidget(self.tree, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy list")
        copy.setToolTip("Copy the files and reasons as text (one per line) to paste into a report")
        copy.clicked.connect(self.copy_to_clipboard)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
        self.resize(760, 360)

    def text(self) -> str:
        """The list as text: ``path<TAB>reason`` per line."""
        return "\n".join(f"{path}\t{reason}" for path, reason in self._skipped)

    def copy_to_clipboard(self) -> None:
        QApplication.clipboard().setText(self.text())


class SkippedFilesIndicator(QLabel):
    """``"3 files skipped (show)"`` in the status bar; hidden while nothing was skipped.

    The link opens :class:`SkippedFilesDialog` (non-modal: the grid stays usable beside it).
    """

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("skipped_files_indicator")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.linkActivated.connect(lambda _link: self.show_list())
        self._skipped: list[tuple[str, str]] = []
        self.dialog: Optional[SkippedFilesDialog] = None
        self.set_skipped([])

    def skipped(self) -> list[tuple[str, str]]:
        """The ``(path, reason)`` pairs shown."""
        return list(self._skipped)

    def set_skipped(self, skipped: Iterable[Any]) -> None:
        """Show the count of ``skipped`` (``(path, reason)`` pairs or ``SkippedFile`` objects); none hides it."""
        self._skipped = skipped_pairs(skipped)
        count = len(self._skipped)
        self.setText(f"{_count(count, 'file')} skipped (<a href='{SHOW_LINK}'>{SHOW_LINK}</a>)" if count else "")
        self.setToolTip("Files the last run could not read; click “show” for the list and the reasons")
        self.setVisible(bool(count))

    def show_list(self) -> Optional[SkippedFilesDialog]:
        """Open the list of skipped files (one dialog at a time); None while nothing was skipped."""
        if not self._skipped:
            return None
        if self.dialog is not None:
            self.dialog.close()
        dialog = SkippedFilesDialog(self._skipped, self.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(lambda _result, d=dialog: self._forget_dialog(d))
        self.dialog = dialog
        dialog.show()
        return dialog

    def _forget_dialog(self, dialog: SkippedFilesDialog) -> None:
        if self.dialog is dialog:  # a dialog closed for a newer one must not forget the newer one
            self.dialog = None
