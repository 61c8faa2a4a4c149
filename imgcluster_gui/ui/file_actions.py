"""Show a file in the system's file manager, or open it in its default app.

"Open file location" selects the file in a file-manager window where the platform allows it:
Windows ``explorer /select,``, macOS ``open -R``, Linux the freedesktop ``FileManager1.ShowItems``
call over D-Bus (Nautilus, Dolphin, Nemo, Caja, Thunar answer it), else the containing folder via
``QDesktopServices.openUrl``.  Programs are started with an argument list, never through a shell,
so no file name can be read as a command.

Both functions return a :class:`FileActionResult` that is falsy on failure and carries the
sentence to show.  The seams tests replace are module functions: :func:`launch` (starts a
program), :func:`open_url` (``QDesktopServices.openUrl``) and :func:`show_items_over_dbus`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices

FILE_MANAGER_SERVICE = "org.freedesktop.FileManager1"
FILE_MANAGER_PATH = "/org/freedesktop/FileManager1"


@dataclass(frozen=True)
class FileActionResult:
    """What an action did: ``ok``, and ``message`` (why it failed, for the person; empty on success).

    Truthy exactly when the action succeeded, so ``if not open_file_location(p): ...`` reads naturally.
    """

    ok: bool
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok


def launch(argv: Sequence[str]) -> None:
    """Start ``argv`` (program and arguments, no shell) without waiting for it.

    Raises
    ------
    OSError
        The program could not be started (not installed, not executable).
    """
    # start_new_session: the file manager must not die with this app or share its terminal signals.
    options: dict = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if sys.platform != "win32":
        options["start_new_session"] = True
    subprocess.Popen(list(argv), shell=False, close_fds=True, **options)  # noqa: S603 - a list argv, no shell


def open_url(url: QUrl) -> bool:
    """``QDesktopServices.openUrl`` (the platform's default handler); False when nothing handled it."""
    return bool(QDesktopServices.openUrl(url))


def show_items_over_dbus(uri: str) -> Optional[str]:
    """Ask the freedesktop file manager to select ``uri``; None on success, else why not.

    Returns ``"QtDBus is not available"`` when PySide6 was built without it, and the D-Bus error
    text when no file manager answers on the session bus.
    """
    try:
        from PySide6.QtDBus import QDBusConnection, QDBusInterface, QDBusMessage
    except ImportError:
        return "QtDBus is not available"
    bus = QDBusConnection.sessionBus()
    if not bus.isConnected():
        return "no D-Bus session bus"
    interface = QDBusInterface(FILE_MANAGER_SERVICE, FILE_MANAGER_PATH, FILE_MANAGER_SERVICE, bus)
    if not interface.isValid():
        return interface.lastError().message() or "no file manager answers on D-Bus"
    reply = interface.call("ShowItems", [uri], "")
    if reply.type() == QDBusMessage.MessageType.ErrorMessage:
        return reply.errorMessage() or reply.errorName() or "the file manager refused"
    return None


def _checked(path: str) -> tuple[Optional[str], str]:
    """``(absolute path, "")`` for an existing file, else ``(None, the reason)``."""
    if not path:
        return None, "No file is chosen."
    absolute = os.path.abspath(os.fsdecode(path))
    if not os.path.exists(absolute):
        return None, f"The file no longer exists: {absolute}"
    return absolute, ""


def open_file_location(path: str, platform: Optional[str] = None) -> FileActionResult:
    """Show ``path`` selected in the file manager (or at least its folder).

    Parameters
    ----------
    path : str
        An existing file.
    platform : str, optional
        ``sys.platform`` value to act for (default: this one).

    Returns
    -------
    FileActionResult
        Falsy, with the reason in ``message``, when the file is missing or no file manager opened.
    """
    absolute, problem = _checked(path)
    if absolute is None:
        return FileActionResult(False, problem)
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        # "/select," then the path as its own argument: explorer reads `/select, "C:\a b\c.jpg"`.
        return _launched(["explorer", "/select,", os.path.normpath(absolute)], "Explorer")
    if platform == "darwin":
        return _launched(["open", "-R", absolute], "Finder")
    reason = show_items_over_dbus(QUrl.fromLocalFile(absolute).toString())
    if reason is None:
        return FileActionResult(True)
    # No freedesktop file manager: open the folder (the file cannot be selected, but it is there).
    folder = os.path.dirname(absolute)
    if open_url(QUrl.fromLocalFile(folder)):
        return FileActionResult(True)
    return FileActionResult(False, f"Could not open the folder {folder} ({reason}); no file manager is set up.")


def open_with_default_app(path: str) -> FileActionResult:
    """Open ``path`` in the app the system opens such files with.

    Returns
    -------
    FileActionResult
        Falsy, with the reason in ``message``, when the file is missing or no app opened it.
    """
    absolute, problem = _checked(path)
    if absolute is None:
        return FileActionResult(False, problem)
    if open_url(QUrl.fromLocalFile(absolute)):
        return FileActionResult(True)
    return FileActionResult(False, f"No app opened {os.path.basename(absolute)}: is one set up for this file type?")


def _launched(argv: list[str], what: str) -> FileActionResult:
    try:
        launch(argv)
    except OSError as exc:
        return FileActionResult(False, f"Could not start {what} ({exc.strerror or exc}).")
    return FileActionResult(True)
