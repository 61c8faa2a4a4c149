"""Edits of the shown session that the window starts, and the undo history of each run.

:class:`RunUndoStacks` keeps one ``QUndoStack`` per run in a ``QUndoGroup`` whose active stack is
the shown run's: switching runs, or a new run, never clears another run's history (the window's
Undo / Redo actions follow the group).  :class:`EditController` owns no state of its own: regroup
to a granularity level and new cluster from the selection are commands pushed on the active stack
(:mod:`imgcluster_gui.ui.commands`), and the command calls the session model, so the views only
follow the session's events.  (The grid pushes its own commands for drags, renames, merges and
deletes, on the stack it is given.)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoGroup, QUndoStack
from PySide6.QtWidgets import QWidget

from . import dialogs
from .granularity import groups_text, label_counts
from .log_panel import LogPanel


class RunUndoStacks(QObject):
    """One undo stack per run (per session), kept while the app is open; the shown run's is active.

    Parameters
    ----------
    parent : QObject
    runs : callable, optional
        The run list's records now (``RunRecord`` s); the stacks of sessions no longer among them
        (another file opened) are dropped when a session is shown.

    Attributes
    ----------
    group : QUndoGroup
        Its active stack is the shown run's; ``group.createUndoAction`` gives actions that follow it.
    """

    def __init__(self, parent: QObject, runs: Optional[Callable[[], Iterable[Any]]] = None) -> None:
        super().__init__(parent)
        self.group = QUndoGroup(self)
        self._runs = runs or (lambda: ())
        # id(session) -> (session, stack); the session is kept so its id cannot be reused meanwhile.
        self._stacks: dict[int, tuple[Any, QUndoStack]] = {}
        # Active while no session is shown, so pushes and the actions always have a stack.
        self._idle = QUndoStack(self)
        self.group.addStack(self._idle)
        self.group.setActiveStack(self._idle)

    def stack_for(self, session: Any) -> QUndoStack:
        """The undo stack of ``session``'s run (created empty on first use)."""
        if session is None:
            return self._idle
        entry = self._stacks.get(id(session))
        if entry is None or entry[0] is not session:
            stack = QUndoStack(self)
            self.group.addStack(stack)
            entry = self._stacks[id(session)] = (session, stack)
        return entry[1]

    def active_stack(self) -> QUndoStack:
        """The shown run's stack (an empty one before the first)."""
        return self.group.activeStack() or self._idle

    def activate(self, session: Any, grid: Any = None) -> QUndoStack:
        """Make ``session``'s stack the active one and hand it to ``grid``; returns it.

        The grid gets it through ``set_undo_stack(stack)`` when it has that method, else its
        ``undo_stack`` attribute is replaced (read when it builds its sections).
        """
        stack = self.stack_for(session)
        self.group.setActiveStack(stack)
        self._forget_gone(keep=session)
        if grid is not None:
            setter = getattr(grid, "set_undo_stack", None)
            if callable(setter):
                setter(stack)
            elif hasattr(grid, "undo_stack"):
                grid.undo_stack = stack
        return stack

    def _forget_gone(self, keep: Any) -> None:
        alive = {id(record.session) for record in self._runs()} | {id(keep)}
        for key in [key for key in self._stacks if key not in alive]:
            _session, stack = self._stacks.pop(key)
            self.group.removeStack(stack)
            stack.deleteLater()


class EditController(QObject):
    """Regroups and new clusters on the shown run's undo stack.

    Parameters
    ----------
    undo : RunUndoStacks or QUndoStack
        Commands go to ``undo.active_stack()`` (the shown run's), or to the one stack given.
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
    #: A re-cluster or fine-tune on the corrections started (True) or ended (False): the window's Cancel follows it.
    finetuneRunningChanged = Signal(bool)

    def __init__(
        self,
        undo: Union[RunUndoStacks, QUndoStack],
        grid: Any,
        log_panel: LogPanel,
        shown_session: Callable[[], Any],
        ask_keep_hand_placed: Callable[[int], Optional[bool]],
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self._undo = undo
        self._grid = grid
        self._log = log_panel
        self._shown_session = shown_session
        self._ask_keep_hand_placed = ask_keep_hand_placed
        self.corrections_job: Any = None  # the running re-cluster or fine-tune (BackgroundJob), if any

    def undo_stack(self) -> QUndoStack:
        """Where the next command goes: the shown run's stack."""
        undo = self._undo
        return undo.active_stack() if isinstance(undo, RunUndoStacks) else undo

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
        self.undo_stack().push(command)
        groups, unsorted = label_counts(session.labels)
        self.statusMessage.emit(f"{groups_text(groups, unsorted)} (Ctrl+Z goes back).")
        self._log.info(
            f"{command.text()}: level {int(level) + 1} of {session.n_granularity_levels}, "
            f"{command.edit.indices.size} image(s) changed group."
        )
        return True

    # ------------------------------------------------------------------ learning from the corrections (issue 14)
    def confirm_cluster(self, cluster: int) -> bool:
        """Confirm ``cluster`` (an undoable edit): its images become corrections a re-cluster keeps."""
        from .commands import ConfirmClusterCommand

        session = self._shown_session()
        if session is None or int(cluster) < 0 or not session.indices_of(int(cluster)).size:
            return False
        command = ConfirmClusterCommand(session, int(cluster))
        self.undo_stack().push(command)
        self.statusMessage.emit(f"{command.text()}: a re-cluster keeps these images together.")
        return True

    def _corrections(self) -> Any:
        session = self._shown_session()
        if session is None:
            self.statusMessage.emit("Run a clustering or open a session first.")
            return None
        if session.features is None:
            self.statusMessage.emit("This result has no features to re-cluster (run the clustering again).")
            return None
        constraints = session.constraints()
        if constraints.is_empty:
            self.statusMessage.emit("No corrections yet: move images or confirm a cluster first.")
            return None
        return constraints

    def recluster_with_corrections(self, method: str = "propagation") -> Any:
        """Re-assign every image not placed by hand, keeping the corrections, on a background thread.

        Returns the started :class:`~imgcluster_gui.ui.worker.BackgroundJob` (None when there is nothing
        to keep, or a job on the corrections is running). Its result is one undoable edit, applied only if
        the labels did not change meanwhile; the images it moved are then selected. Cancel with
        :meth:`cancel_corrections_job`.
        """
        from ..core.constraints import RECLUSTER_TEXT, recluster, recluster_edit

        constraints = self._corrections()
        if constraints is None or not self._idle_for("Re-clustering"):
            return None
        session = self._shown_session()
        features, labels = session.features, session.labels.copy()

        def work(progress: Any) -> Any:
            return recluster(features, labels, constraints, method=method, progress=progress)

        def done(new_labels: Any) -> None:
            edit = recluster_edit(labels, new_labels, RECLUSTER_TEXT)
            if edit.is_noop:
                self.statusMessage.emit("Re-clustering with the corrections changed nothing.")
                return
            self._apply_correction_result(session, labels, edit, constraints.anchors.size)

        return self._start_corrections_job(work, done, "Re-clustering with the corrections", "Re-clustering")

    def finetune_with_corrections(self, loss: str = "cross_entropy") -> Any:
        """Train a projection head on the corrections (background thread), then re-cluster in its space.

        Returns the started :class:`~imgcluster_gui.ui.worker.BackgroundJob` (None when there is nothing
        to learn from); its result is pushed as one undoable edit unless the labels changed meanwhile.
        Cancel with :meth:`cancel_corrections_job`.
        """
        from ..core.constraints import RECLUSTER_PREFIX, recluster_edit
        from ..core.finetune import finetune_and_recluster

        constraints = self._corrections()
        if constraints is None or not self._idle_for("Fine-tuning"):
            return None
        session = self._shown_session()
        if not constraints.enough_to_train():
            self.statusMessage.emit("Fine-tuning needs at least 2 corrected images in each of 2 clusters.")
            return None
        features, labels = session.features.copy(), session.labels.copy()

        def train(progress: Any) -> Any:
            return finetune_and_recluster(features, labels, constraints, loss=loss, progress=progress)

        def done(outcome: Any) -> None:
            if outcome.labels is None:
                self.statusMessage.emit(outcome.reason)
                return
            edit = recluster_edit(labels, outcome.labels, f"{RECLUSTER_PREFIX}my corrections (fine-tuned)")
            if edit.is_noop:
                self.statusMessage.emit("Fine-tuning and re-clustering changed nothing.")
                return
            self._apply_correction_result(session, labels, edit, constraints.anchors.size)
            self._log.info(f"Fine-tuned a projection head on {constraints.anchors.size} corrected image(s).")

        return self._start_corrections_job(train, done, "Fine-tuning", "Fine-tuning")

    def cancel_corrections_job(self) -> None:
        """Stop the running re-cluster or fine-tune (nothing of it is applied)."""
        if self.corrections_job is not None:
            self.corrections_job.cancel()

    def _idle_for(self, what: str) -> bool:
        if self.corrections_job is None:
            return True
        self.statusMessage.emit(f"{what} waits: the last job on the corrections is still running (Esc cancels it).")
        return False

    def _start_corrections_job(self, work: Any, done: Callable[[Any], None], doing: str, noun: str) -> Any:
        """Run ``work`` on a :class:`BackgroundJob` with progress in the status bar; ``done(result)`` on success."""
        from .worker import BackgroundJob

        def succeeded(result: Any) -> None:
            if job.cancel_requested:  # Cancel pressed as the work ended: the person said no
                self.statusMessage.emit(f"{noun} cancelled.")
                return
            done(result)

        job = BackgroundJob(work, title=f"{noun} failed", parent=self)
        job.progressed.connect(lambda info: self.statusMessage.emit(f"{doing}… {int(info.fraction * 100)} %"))
        job.succeeded.connect(succeeded)
        job.failed.connect(lambda failure: self.statusMessage.emit(f"{noun} failed: {failure}"))
        job.cancelled.connect(lambda: self.statusMessage.emit(f"{noun} cancelled."))
        job.finished.connect(self._forget_corrections_job)
        self.corrections_job = job
        job.start()
        self.finetuneRunningChanged.emit(True)
        return job

    def _apply_correction_result(self, session: Any, labels: Any, edit: Any, kept: int) -> None:
        """Push ``edit`` (planned from ``labels``) as one undoable edit, if ``session`` is still shown unchanged."""
        from .commands import ReclusterCommand

        if self._shown_session() is not session or not (session.labels == labels).all():
            self.statusMessage.emit("The clusters changed while it ran: nothing applied (run it again).")
            return
        command = ReclusterCommand(session, edit)
        self.undo_stack().push(command)
        # What changed is what a person wants to check next: it becomes the selection.
        self._grid.reveal_and_select(edit.indices.tolist())
        self.statusMessage.emit(
            f"{command.text()}, {kept} corrected image(s) kept; the images that changed group are selected "
            "(Ctrl+Z goes back)."
        )
        self._log.info(f"{command.text()}: {kept} image(s) placed by hand stayed where they are.")

    def _forget_corrections_job(self) -> None:
        self.corrections_job = None
        self.finetuneRunningChanged.emit(False)
