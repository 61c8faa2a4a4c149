"""Start the desktop app: the QApplication, the main window, crash restore or reopening the last session,
an optional first run.

The questions are asked here, after the window is shown, never in the window's constructor (tests
build windows without being asked anything)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from PySide6.QtCore import QCoreApplication, QTimer
from PySide6.QtWidgets import QApplication

from .settings import APPLICATION, ORGANISATION


def create_application(argv: Optional[Sequence[str]] = None) -> QApplication:
    """The process's QApplication (created once), named so QSettings finds the app's settings."""
    QCoreApplication.setOrganizationName(ORGANISATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
    from .icons import app_icon

    app.setWindowIcon(app_icon("app"))
    return app  # type: ignore[return-value]


def open_main_window(
    folder: Optional[str] = None, run: bool = True, offer_restore: bool = True, offer_reopen: bool = True
):
    """Build and show the main window, then offer the work of last time.

    Parameters
    ----------
    folder : str, optional
        Put this folder in the side panel; with ``run`` the first clustering starts at once
        (unless a crash restore was accepted, which shows the restored work instead).
    run : bool
    offer_restore : bool
        Ask to restore the autosave when the last session did not close normally.
    offer_reopen : bool
        After a normal close, ask to reopen the last session (its file, or the autosave of work
        never saved). Not asked when ``folder`` is given: the person came for that folder.

    Returns
    -------
    MainWindow
    """
    from .main_window import MainWindow

    window = MainWindow()
    window.show()
    restored = False
    if offer_restore and window.settings.should_offer_restore():
        restored = window.offer_restore()  # after a crash: the autosave, newer than any file
    elif offer_reopen and not folder:
        restored = window.session_controller.offer_reopen_last()
    if folder:
        window.set_folder(str(Path(folder).expanduser()))
        if run and not restored:
            # After the window has painted once, so the user sees it before the work starts.
            QTimer.singleShot(0, window.start_run)
    return window


def run_app(folder: Optional[str] = None, run: bool = True, argv: Optional[Sequence[str]] = None) -> int:
    """Open the window (on ``folder``, clustering it at once when ``run``) and run the event loop
    until it closes; returns the exit status."""
    app = create_application(argv)
    window = open_main_window(folder, run=run)
    status = app.exec()
    del window
    return int(status)
