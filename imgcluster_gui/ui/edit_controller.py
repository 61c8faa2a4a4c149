"""Edits of the shown session that the window starts: regroup to a granularity level, new cluster from the selection.

:class:`EditController` owns no state of its own: every edit is a command pushed on the window's
undo stack (:mod:`imgcluster_gui.ui.commands`), and the command calls the session model, so the
views only follow the session's events.  (The grid pushes its own commands for drags, renames,
merges and deletes.)
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QWidget

from . import dialogs
from .granularity import groups_text, label_counts
from .log_panel import LogPanel


class EditController(QObject):
    """Regroups and new clusters on ``undo_stack``.

    Parameters
    ----------
    undo_stack : QUndoStack
    grid : ClusterGridWidget
        Gives the selected images and makes the new cluster.
    log_panel : LogPanel
    shown_session : callable
        The session on screen (None before the first).
    ask_keep_hand_placed : callable
        ``ask(count) -> True keep / False replace / None cancel`` for images placed by hand.
    parent : QWidget
        Parent of the name dialog.

    Signals
    -------
    statusMessage(str)
        A line for the status bar.
    """

    statusMessage = Signal(str)

    def __init__(
        self,
        undo_stack: QUndoStack,
        grid: Any,
        log_panel: LogPanel,
        shown_session: Callable[[], Any],
        ask_keep_hand_placed: Callable[[int], Optional[bool]],
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self._undo_stack = undo_stack
        self._grid = grid
        self._log = log_panel
        self._shown_session = shown_session
        self._ask_keep_hand_placed = ask_keep_hand_placed

    def new_cluster_from_selection(self, name: Optional[str] = None) -> Optional[int]:
        """Put the grid's selected images in a new cluster (asks for a name when ``name`` is None)."""
        if self._shown_session() is None or not self._grid.selected_indices():
            self.statusMessage.emit("Select images in the grid or the scatter plot first.")
            return None
        if name is None:
            name, ok = dialogs.ask_cluster_name(self._parent)
            if not ok:
                return None
        return self._grid.new_cluster_from_selection(name)

    def set_granularity_level(self, level: int, keep_hand_placed: Optional[bool] = None) -> bool:
        """Show granularity level ``level`` of the session (an undoable edit); True when the labels changed.

        With images placed by hand, ``keep_hand_placed=None`` asks whether they stay where they
        are; cancelling changes nothing.
        """
        from .commands import RegroupCommand

        session = self._shown_session()
        if session is None or session.n_granularity_levels < 2 or not 0 <= int(level) < session.n_granularity_levels:
            return False
        if keep_hand_placed is None:
            placed = int(session.hand_placed().size)
            if placed and session.granularity_level() != int(level):
                choice = self._ask_keep_hand_placed(placed)
                if choice is None:
                    self.statusMessage.emit("Regrouping cancelled.")
                    return False
                keep_hand_placed = choice
            else:
                keep_hand_placed = True
        command = RegroupCommand(session, int(level), keep_hand_placed=bool(keep_hand_placed))
        if command.edit.is_noop:
            return False
        self._undo_stack.push(command)
        groups, unsorted = label_counts(session.labels)
        self.statusMessage.emit(f"{groups_text(groups, unsorted)} (Ctrl+Z goes back).")
        self._log.info(
            f"{command.text()}: level {int(level) + 1} of {session.n_granularity_levels}, "
            f"{command.edit.indices.size} image(s) changed group."
        )
        return True
