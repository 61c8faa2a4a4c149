"""The shown session and the workspace file: save, save as, open, autosave, restore, quit, reopen.

:class:`SessionController` owns which :class:`~imgcluster_gui.core.session.ClusterSession` is on
screen (:attr:`~SessionController.session`), the file of the workspace (:attr:`~SessionController.path`:
every run of the run list, :func:`~imgcluster_gui.core.session.save_workspace`), the subscriptions
to the runs' events (the title's ``*`` is "any run modified"), the periodic autosave timer and the
state the autosave file holds (so the timer skips an unchanged workspace).  It also asks the
questions that keep work from being lost: Save / Discard / Cancel before quitting or opening
another file with unsaved changes, and, at the next start, whether to reopen the last session
(the file, or the autosave of work never saved; remembered in the settings).  Every change goes
through the session model (``set_setting``, ``mark_modified``) or the core's save; the views are
told through signals and never write the session themselves.  Files are written atomically; a
corrupt file gives a message, never a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from ..core.session import load_workspace, save_workspace
from .dialogs import Messages
from .log_panel import LogPanel
from .run_list import RunList, RunRecord
from .settings import AppSettings, autosave_path
from .side_panel import SidePanel
from .worker import JobFailure

SESSION_FILTER = "imgcluster sessions (*.imgcluster);;All files (*)"
SESSION_SUFFIX = ".imgcluster"


class SessionController(QObject):
    """The session on screen, its file and its autosave.

    Parameters
    ----------
    settings : AppSettings
    messages : Messages
    log_panel : LogPanel
    run_list : RunList
        An opened file becomes a run of the list.
    side_panel : SidePanel
        An opened file's folder goes there.
    embedding_method : callable
        The scatter's embedding, saved with the session (unless it has one).
    parent : QWidget
        Parent of the file dialogs.

    Signals
    -------
    showRequested(object, object, object)
        ``(session, history, path)``: an opened file should be shown (the window calls :meth:`show`).
    titleChanged()
        The file name or the unsaved flag changed.
    autosaved(object)
        The autosave file (a ``Path``) was written.
    """

    showRequested = Signal(object, object, object)
    titleChanged = Signal()
    autosaved = Signal(object)

    def __init__(
        self,
        settings: AppSettings,
        messages: Messages,
        log_panel: LogPanel,
        run_list: RunList,
        side_panel: SidePanel,
        embedding_method: Callable[[], str],
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self._settings = settings
        self._messages = messages
        self._log = log_panel
        self._run_list = run_list
        self._side_panel = side_panel
        self._embedding_method = embedding_method
        self.session: Any = None
        self.path: Optional[Path] = None
        # id(session) -> (session, unsubscribe) for every run followed (their 'modified' flips retitle the window).
        self._followed: dict[int, tuple[Any, Callable[[], None]]] = {}
        # RunHistory.state_key() of the workspace the autosave file holds: the periodic autosave skips it unchanged.
        self._autosaved: Optional[tuple] = None
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(int(settings.autosave_minutes() * 60_000))
        self.autosave_timer.timeout.connect(self._periodic_autosave)

    # ---------------------------------------------------------------- the shown session
    def current(self) -> Any:
        """The session on screen (None before the first run or file)."""
        return self.session

    @property
    def runs(self) -> Any:
        """The workspace: the run list's :class:`~imgcluster_gui.core.session.RunHistory`."""
        return self._run_list.runs

    def is_modified(self) -> bool:
        """True when any run has changes no Save wrote (the workspace's one unsaved flag)."""
        return bool(self.runs.modified) or bool(self.session is not None and self.session.modified)

    def window_title(self) -> str:
        """``imgcluster — <folder> — <file>``, with `` *`` while any run has unsaved changes."""
        parts = ["imgcluster"]
        if self.session is not None:
            root = getattr(self.session, "root", None)
            parts.append(Path(str(root)).name if root else "session")
            if self.path is not None:
                parts.append(self.path.name)
        title = " — ".join(parts)
        if self.session is not None and self.is_modified():  # the sessions own the unsaved flags
            title += " *"
        return title

    def show(self, session: Any, path: Optional[Path] = None) -> None:
        """Make ``session`` the shown run and follow the events of every run.

        ``path`` is the workspace file it was opened from (None: the file stays as it is: a new run
        or another run of the list belongs to the same workspace). A session that is not in the
        run list yet (shown by a script or a test) becomes a run of it, so Save keeps it.
        """
        self.session = session
        if path is not None:
            self.path = path
        if session is not None:
            record = self.runs.record_of(session)
            if record is None:
                settings = getattr(session, "settings", None) or {}
                record = RunRecord(
                    number=self._run_list.next_number(),
                    session=session,
                    config=dict(settings),
                    source="file",
                    title=str(settings.get("title") or "session"),
                )
                self._run_list.add_run(record)
            elif self.runs.current_number != record.number:
                self._run_list.set_current(record.number)
        self._follow_runs()

    def _follow_runs(self) -> None:
        """Subscribe to every run of the list (and the shown session); drop the runs that left it."""
        wanted = {id(r.session): r.session for r in self.runs}
        if self.session is not None:
            wanted[id(self.session)] = self.session
        for key in [key for key, (session, _u) in self._followed.items() if wanted.get(key) is not session]:
            self._followed.pop(key)[1]()
        for key, session in wanted.items():
            if key not in self._followed:
                self._followed[key] = (session, session.subscribe(self._on_session_event))

    def detach(self) -> None:
        """Stop listening to the runs (they may outlive the window: a test, a script)."""
        for _session, unsubscribe in self._followed.values():
            unsubscribe()
        self._followed.clear()

    def _on_session_event(self, event: Any) -> None:
        if getattr(event, "kind", "") == "modified":
            self.titleChanged.emit()

    def _log_model_warning(self, session: Any) -> None:
        """Say when a deep run's trained network could not be saved or read back (the session itself is fine)."""
        warning = getattr(session, "model_warning", None)
        if warning:
            self._log.warning(warning)

    def _sync_session_settings(self) -> None:
        self.session.set_setting("embedding", self._embedding_method(), overwrite=False)

    # ---------------------------------------------------------------- files
    def save(self, path: Optional[str] = None, ask: bool = False) -> bool:
        """Save every run of the run list, with their edits, to one file (atomically); asks for a file name
        when needed. True when saved."""
        if self.session is None or not len(self.runs):
            return False
        target = Path(path) if path else (None if ask else self.path)
        if target is None:
            start = str(Path(self._settings.proposed_directory("session")) / f"clusters{SESSION_SUFFIX}")
            chosen, _ = QFileDialog.getSaveFileName(self._parent, "Save session", start, SESSION_FILTER)
            if not chosen:
                return False
            target = Path(chosen)
            if not target.suffix:
                target = target.with_suffix(SESSION_SUFFIX)
        self._sync_session_settings()
        try:
            save_workspace(target, self.runs)
        except Exception as exc:
            self._messages.show_failure(JobFailure.from_exception(exc, "Could not save the session"))
            return False
        self.path = target
        self._settings.set_last_directory("session", str(target.parent))
        self._settings.set_last_session(str(target))
        runs = len(self.runs)
        self._log.info(f"Session saved to {target} ({runs} run{'' if runs == 1 else 's'})")
        for record in self.runs:
            self._log_model_warning(record.session)
        self.titleChanged.emit()
        return True

    def open(self, path: Optional[str] = None) -> bool:
        """Open a session file: its runs replace the run list, the one current when saved is shown; True when opened.

        Unsaved changes are asked about first (Save / Discard / Cancel); an old one-run file opens
        as one run; a corrupt file gives a message and changes nothing.
        """
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(
                self._parent, "Open session", self._settings.proposed_directory("session"), SESSION_FILTER
            )
            if not chosen:
                return False
            path = chosen
        if not self.confirm_discard(
            "Open another session", "Save the changes to your runs before opening another session?"
        ):
            return False
        try:
            runs = load_workspace(path)
        except Exception as exc:
            self._messages.show_failure(JobFailure.from_exception(exc, "Could not open the session"))
            return False
        current = runs.current
        assert current is not None  # a loaded workspace holds a run and knows its current one
        # The opened file replaces the workspace (its runs, their undo histories, its file name).
        self._run_list.set_runs(runs)
        self.path = Path(path)
        self.showRequested.emit(current.session, current.history, Path(path))
        settings = getattr(current.session, "settings", None) or {}
        if settings.get("folder"):
            self._side_panel.set_folder(str(settings["folder"]))
        if not _same_file(Path(path), autosave_path()):
            self._settings.set_last_directory("session", str(Path(path).parent))
            self._settings.set_last_session(str(path))
        count = len(runs)
        self._log.info(f"Opened session {path} ({count} run{'' if count == 1 else 's'}, run {current.number} shown)")
        for record in runs:
            self._log_model_warning(record.session)
        return True

    def confirm_discard(self, title: str, question: str) -> bool:
        """With unsaved changes, ask Save / Discard / Cancel; True when the work may go (saved or discarded).

        Save saves every run (asking for a file name when there is none); a cancelled or failed
        save keeps the work, and the answer is False.
        """
        if not len(self.runs) or not self.is_modified():
            return True
        answer = self._messages.ask_save_changes(title, question)
        if answer == "save":
            return self.save()
        return answer == "discard"

    def confirm_close(self) -> bool:
        """Before quitting: Save / Discard / Cancel when any run has unsaved changes; True when the window may close.

        Remembers what the next start offers to reopen: the saved file, or the autosave (which the
        window writes on close) when the work has no file. Discard keeps the autosave for recovery.
        """
        if not self.confirm_discard("Quit imgcluster", "Your runs have unsaved changes. Save them before quitting?"):
            return False
        if len(self.runs):
            if self.path is not None and not _same_file(self.path, autosave_path()):
                self._settings.set_last_session(str(self.path))
            else:
                self._settings.set_last_session(str(autosave_path()), is_autosave=True)
        return True

    def offer_reopen_last(self) -> bool:
        """At start (the window shown, nothing open yet): offer to reopen the last session; True when reopened."""
        path, is_autosave = self._settings.last_session()
        if not path or len(self.runs) or not Path(path).is_file():
            return False
        what = "your unsaved work from last time" if is_autosave else Path(path).name
        if not self._messages.confirm("Reopen your last session?", f"Reopen {what}?"):
            return False
        return self.restore_autosave() if is_autosave else self.open(path)

    # ---------------------------------------------------------------- autosave
    def autosave_now(self, force: bool = True) -> Optional[Path]:
        """Write the shown session to the autosave file; returns the path (None when nothing was written).

        ``force=False`` (the periodic timer) skips a session unchanged since the last autosave, so
        a large idle session does not hit the disk every few minutes.
        """
        runs = self.runs
        if self.session is None or not len(runs) or (not force and self._autosaved == runs.state_key()):
            return None
        target = autosave_path()
        self._sync_session_settings()
        try:
            save_workspace(target, runs, mark_saved=False)  # a copy: the work still counts as unsaved
        except Exception as exc:  # the autosave must never interrupt the user; say it in the log
            self._log.warning(f"Autosave failed: {exc}")
            return None
        self._autosaved = runs.state_key()
        self.autosaved.emit(target)
        return target

    def _periodic_autosave(self) -> None:
        self.autosave_now(force=False)

    def restore_autosave(self) -> bool:
        """Open the autosaved session as unsaved work (saving it asks for a new file name)."""
        path = autosave_path()
        if not path.is_file():
            self._messages.show_error("Nothing to restore", "There is no autosaved session.")
            return False
        opened = self.open(str(path))
        if opened:
            self.path = None  # saving must not overwrite the autosave by default
            for record in self.runs:
                record.session.mark_modified()  # every restored run is unsaved work
            self.titleChanged.emit()
        return opened

    def offer_restore(self) -> bool:
        """After a crash (autosave newer than the last clean exit), offer to restore it."""
        if not self._settings.should_offer_restore():
            return False
        if not self._messages.confirm(
            "Restore your work?", "imgcluster did not close normally last time. Restore the autosaved session?"
        ):
            return False
        return self.restore_autosave()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b
