"""The window's dialogs and message boxes.

:class:`Messages` owns the only state here: the last error shown (``last_error``, read by tests and
the screenshot tool) and the non-modal error boxes still open.  Errors never block (a window-modal
box opened with ``open()``, the line also in the log);
questions (:meth:`Messages.confirm`) block and go through ``QMessageBox.question``, which tests
replace.  Tracebacks never appear in a dialog: they go to the error log and the box says where.
The other helpers are stateless dialogs: :class:`FolderExportDialog` (where and how to
export the clusters as folders), :func:`ask_keep_hand_placed`, :func:`ask_cluster_name`,
:func:`open_preview`, :func:`show_shortcuts` and :func:`show_about`.
"""

from __future__ import annotations

from typing import Iterable, Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from .log_panel import LogPanel
from .worker import JobFailure


class FolderExportDialog(QDialog):
    """Asks where to export the clusters as folders and how (copy, symlink, move)."""

    MODES = (
        ("copy", "Copy the images (safe, uses disk space)"),
        ("symlink", "Symbolic links to the images (no copies)"),
        ("move", "Move the images out of their folder (asks again; can be undone)"),
    )

    def __init__(self, start_folder: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export clusters as folders")
        form = QFormLayout(self)
        row = QHBoxLayout()
        self.target_edit = QLineEdit(start_folder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.target_edit, 1)
        row.addWidget(browse)
        form.addRow("Target folder", row)
        self.mode_group = QButtonGroup(self)
        modes = QVBoxLayout()
        for index, (mode, text) in enumerate(self.MODES):
            button = QRadioButton(text)
            button.setProperty("mode", mode)
            button.setChecked(index == 0)
            self.mode_group.addButton(button)
            modes.addWidget(button)
        form.addRow("Mode", modes)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into", self.target_edit.text())
        if folder:
            self.target_edit.setText(folder)

    def choice(self) -> tuple[str, str]:
        """``(target folder, mode)``."""
        return self.target_edit.text().strip(), str(self.mode_group.checkedButton().property("mode"))


class Messages:
    """Errors and questions over ``parent``; errors also go to ``log``.

    Attributes
    ----------
    last_error : tuple of (title, message, details), or None
        The last error shown.
    """

    def __init__(self, parent: QWidget, log: LogPanel) -> None:
        self._parent = parent
        self._log = log
        self.last_error: Optional[tuple[str, str, str]] = None
        self._boxes: list[QMessageBox] = []

    def show_error(self, title: str, message: str, details: str = "") -> QMessageBox:
        """Show a short, non-blocking error; also logged.

        ``details`` (a traceback) never appears in the box: it goes to the error log
        (:func:`~imgcluster_gui.ui.settings.write_error_details`) and the box says where.
        """
        self.last_error = (title, message, details)
        self._log.error(f"{title}: {message}")
        text = message
        if details:
            from .settings import write_error_details

            written = write_error_details(title, message, details)
            if written is not None:
                text = f"{message}\n\nDetails were written to {written}"
                self._log.info(f"Details of “{title}” were written to {written}")
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self._parent)
        box.setObjectName("error_box")
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r, b=box: self._boxes.remove(b) if b in self._boxes else None)
        self._boxes.append(box)
        box.open()  # non-blocking: the event loop (and any running job) keeps going
        return box

    def show_failure(self, failure: JobFailure) -> QMessageBox:
        """A job's failure as :meth:`show_error`; a user error (the folder is empty...) explains itself,
        so its traceback is not even logged; an unexpected one goes to the error log."""
        details = "" if failure.user_error else failure.details
        return self.show_error(failure.title, failure.message, details)

    def confirm(self, title: str, question: str) -> bool:
        """Ask a yes/no question (blocking); tests replace ``QMessageBox.question``."""
        answer = QMessageBox.question(
            self._parent,
            title,
            question,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def ask_save_changes(self, title: str, question: str) -> str:
        """Save / Discard / Cancel for unsaved work (blocking): ``'save'``, ``'discard'`` or ``'cancel'``.

        Tests replace this method. A replaced ``QMessageBox.question`` that answers Yes (an
        "agree to everything" stub) counts as Discard, the answer that never opens a file dialog;
        the autosave still holds the work.
        """
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self._parent, title, question, buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save
        )
        if answer == buttons.Save:
            return "save"
        if answer in (buttons.Discard, buttons.Yes):
            return "discard"
        return "cancel"

    def ask_export_into_non_empty(self, target: str, dated_name: str) -> Optional[str]:
        """``target`` already holds files: ``'new'`` (a dated sub-folder ``dated_name``, the default),
        ``'merge'`` (into ``target``) or None (cancel). Blocking; tests replace this method."""
        answer = _ask_either(
            self._parent,
            "export_target_box",
            "The target folder is not empty",
            f"{target} already holds files. Export into a new sub-folder {dated_name}, "
            "or merge into it (existing files are kept; new ones get _1, _2 on a name clash)?",
            "New dated sub-folder",
            "Merge into it",
        )
        return None if answer is None else ("new" if answer else "merge")


def _ask_either(
    parent: Optional[QWidget], name: str, title: str, text: str, default_text: str, other_text: str
) -> Optional[bool]:
    """A blocking question with two answers and Cancel: True = the default (safe) answer, False = the other
    (destructive) one, None = Cancel or Esc."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, parent)
    box.setObjectName(name)
    default = box.addButton(default_text, QMessageBox.ButtonRole.AcceptRole)
    other = box.addButton(other_text, QMessageBox.ButtonRole.DestructiveRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(default)
    box.setEscapeButton(cancel)
    box.exec()
    clicked = box.clickedButton()
    box.deleteLater()
    if clicked is default:
        return True
    if clicked is other:
        return False
    return None


def ask_keep_hand_placed(parent: QWidget, count: int) -> Optional[bool]:
    """Ask whether the ``count`` images placed by hand keep their place: True keep, False replace, None cancel."""
    images = f"{count} hand-placed image" + ("" if count == 1 else "s")
    return _ask_either(
        parent,
        "hand_placed_box",
        "Regroup the images",
        f"You placed {images} by hand. Keep them where they are, or regroup them too?",
        f"Keep my {images} where they are",
        "Replace them too",
    )


def ask_cluster_name(parent: QWidget) -> tuple[Optional[str], bool]:
    """Ask the name of a new cluster: ``(name or None when empty, accepted)``."""
    text, ok = QInputDialog.getText(parent, "New cluster", "Name of the new cluster (may be empty):")
    return (text or None), bool(ok)


def show_shortcuts(parent: QWidget, actions: Iterable[QAction]) -> QMessageBox:
    """A non-modal list of ``actions`` with their shortcuts."""
    lines = [f"{a.text().replace('&', '')}: {a.shortcut().toString()}" for a in actions]
    box = QMessageBox(
        QMessageBox.Icon.Information, "Keyboard shortcuts", "\n".join(lines), QMessageBox.StandardButton.Ok, parent
    )
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def show_about(parent: QWidget) -> None:
    from .. import __version__ as version

    QMessageBox.about(
        parent,
        "About imgcluster",
        f"imgcluster {version}\nSort a folder of images into groups with pretrained CNN features.",
    )
