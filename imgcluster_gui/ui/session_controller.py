"""The shown session and its files: save, save as, open, autosave, restore after a crash.

:class:`SessionController` owns which :class:`~imgcluster_gui.core.session.ClusterSession` is on
screen (:attr:`~SessionController.session`), the file it was opened from or saved to
(:attr:`~SessionController.path`), the subscription to its events, the periodic autosave timer
and the ``(uid, revision)`` the autosave file holds (so the timer skips an unchanged session).
Every change goes through the session model (``save``, ``set_setting``, ``mark_modified``); the
views are told through signals and never write the session themselves.  Sessions save
atomically; a corrupt file gives a message, never a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

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
        self._unsubscribe: Optional[Callable[[], None]] = None
        # (uid, revision) of the session the autosave file holds: the periodic autosave skips it unchanged.
        self._autosaved: Optional[tuple[str, int]] = None
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(int(settings.autosave_minutes() * 60_000))
        self.autosave_timer.timeout.connect(self._periodic_autosave)

    # ---------------------------------------------------------------- the shown session
    def current(self) -> Any:
        """The session on screen (None before the first run or file)."""
        return self.session

    def window_title(self) -> str:
        """``imgcluster — <folder> — <file>``, with `` *`` while the session has unsaved changes."""
        parts = ["imgcluster"]
        if self.session is not None:
            root = getattr(self.session, "root", None)
            parts.append(Path(str(root)).name if root else "session")
            if self.path is not None:
                parts.append(self.path.name)
        title = " — ".join(parts)
        if self.session is not None and self.session.modified:  # the session owns the unsaved flag
            title += " *"
        return title

    def show(self, session: Any, path: Optional[Path] = None) -> None:
        """Make ``session`` (from ``path``, or unsaved) the shown one and follow its events."""
        self.detach()
        self.session = session
        self.path = path
        self._autosaved = None
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)

    def detach(self) -> None:
        """Stop listening to the shown session (it may outlive the window: the run list, a test)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

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
        """Save the shown session (atomically); asks for a file name when needed. True when saved."""
        if self.session is None:
            return False
        target = Path(path) if path else (None if ask else self.path)
        if target is None:
            start = str(Path(self._settings.last_directory("session") or Path.home()) / f"clusters{SESSION_SUFFIX}")
            chosen, _ = QFileDialog.getSaveFileName(self._parent, "Save session", start, SESSION_FILTER)
            if not chosen:
                return False
            target = Path(chosen)
            if not target.suffix:
                target = target.with_suffix(SESSION_SUFFIX)
        self._sync_session_settings()
        try:
            self.session.save(target)
        except Exception as exc:
            self._messages.show_failure(JobFailure.from_exception(exc, "Could not save the session"))
            return False
        self.path = target
        self._settings.set_last_directory("session", str(target.parent))
        self._log.info(f"Session saved to {target}")
        self._log_model_warning(self.session)
        self.titleChanged.emit()
        return True

    def open(self, path: Optional[str] = None) -> bool:
        """Open a saved session file (a corrupt one gives a message); True when opened."""
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(
                self._parent, "Open session", self._settings.last_directory("session"), SESSION_FILTER
            )
            if not chosen:
                return False
            path = chosen
        from ..core.session import ClusterSession

        try:
            session = ClusterSession.load(path)
        except Exception as exc:
            self._messages.show_failure(JobFailure.from_exception(exc, "Could not open the session"))
            return False
        settings = getattr(session, "settings", None) or {}
        record = RunRecord(
            number=self._run_list.next_number(),
            session=session,
            config=dict(settings),
            source="file",
            title=Path(path).name,
        )
        self._run_list.add_run(record)
        self.showRequested.emit(session, None, Path(path))
        if settings.get("folder"):
            self._side_panel.set_folder(str(settings["folder"]))
        self._settings.set_last_directory("session", str(Path(path).parent))
        self._log.info(f"Opened session {path}")
        self._log_model_warning(session)
        return True

    # ---------------------------------------------------------------- autosave
    def autosave_now(self, force: bool = True) -> Optional[Path]:
        """Write the shown session to the autosave file; returns the path (None when nothing was written).

        ``force=False`` (the periodic timer) skips a session unchanged since the last autosave, so
        a large idle session does not hit the disk every few minutes.
        """
        session = self.session
        if session is None or (not force and self._autosaved == (session.uid, session.revision)):
            return None
        target = autosave_path()
        self._sync_session_settings()
        try:
            session.save(target, mark_saved=False)  # a copy: the work still counts as unsaved
        except Exception as exc:  # the autosave must never interrupt the user; say it in the log
            self._log.warning(f"Autosave failed: {exc}")
            return None
        self._autosaved = (session.uid, session.revision)
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
            self.session.mark_modified()
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
