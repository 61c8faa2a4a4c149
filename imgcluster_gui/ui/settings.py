"""Persistent settings of the desktop app, and where its autosave lives.

Settings go through :class:`QSettings` in INI format (organisation ``imgcluster``), so tests can
redirect them with ``QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, tmp_dir)``.
The autosave file and the crash marker live in the platformdirs user data folder, which
``IMGCLUSTER_DATA_DIR`` overrides (tests point it at a temporary folder).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from ..core.storage import data_dir

ORGANISATION = "imgcluster"
APPLICATION = "imgcluster"
MAX_RECENT_FOLDERS = 10
# Periodic autosave: often enough to lose little, rare enough not to stall big sessions on disk.
DEFAULT_AUTOSAVE_MINUTES = 3
AUTOSAVE_FILE_NAME = "autosave.imgcluster"
ERROR_LOG_NAME = "errors.log"
# One error log of at most ~1 MB plus one backup: enough for a bug report, never a disk filler.
ERROR_LOG_MAX_BYTES = 1_000_000


def user_data_dir() -> Path:
    """Folder for the autosave (the app's data folder, see :mod:`~imgcluster_gui.core.storage`); created."""
    return data_dir()


def autosave_path() -> Path:
    """Where the periodic and on-close autosave of the current session is written."""
    return user_data_dir() / AUTOSAVE_FILE_NAME


def default_documents_dir() -> str:
    """The user's documents folder (``QStandardPaths.DocumentsLocation``), created when missing."""
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    folder = Path(documents) if documents else Path.home() / "Documents"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the dialog still opens there or at its own default
    return str(folder)


def log_dir() -> Path:
    """Folder of the error log: platformdirs' user log folder, or ``logs`` in ``$IMGCLUSTER_DATA_DIR``; created."""
    import os

    from ..core.storage import APP_NAME, DATA_ENV_VAR

    if os.environ.get(DATA_ENV_VAR):
        folder = data_dir() / "logs"
    else:
        import platformdirs

        folder = Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def error_log_path() -> Path:
    """The error log, where tracebacks go instead of dialogs."""
    return log_dir() / ERROR_LOG_NAME


def write_error_details(title: str, message: str, details: str) -> Optional[Path]:
    """Append one error's details (a traceback) to the error log; returns the log, None if it cannot be written.

    The log is kept small: above :data:`ERROR_LOG_MAX_BYTES` it becomes ``errors.log.1`` (the older
    backup is dropped), so a long sitting never fills the disk.
    """
    import os

    try:
        path = error_log_path()
        if path.exists() and path.stat().st_size > ERROR_LOG_MAX_BYTES:
            os.replace(path, path.with_name(ERROR_LOG_NAME + ".1"))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(path, "a", encoding="utf-8", errors="replace") as fh:
            fh.write(f"==== {stamp} {title}: {message}\n{details.rstrip()}\n\n")
    except OSError:
        return None  # no log folder (read-only home...): the message alone must still be shown
    return path


class AppSettings:
    """Typed access to the app's :class:`QSettings` (recent folders, window layout, panel state).

    Parameters
    ----------
    settings : QSettings, optional
        Defaults to the user-scope INI settings of organisation ``imgcluster``.
    """

    def __init__(self, settings: Optional[QSettings] = None) -> None:
        self._settings = (
            settings
            if settings is not None
            else QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION)
        )

    @property
    def qsettings(self) -> QSettings:
        return self._settings

    def file_name(self) -> str:
        return self._settings.fileName()

    def sync(self) -> None:
        self._settings.sync()

    # ---------------------------------------------------------------- recent folders
    def recent_folders(self) -> list[str]:
        """Most recent first, at most :data:`MAX_RECENT_FOLDERS`."""
        return [str(p) for p in self._json("recent/folders", []) if isinstance(p, str)][:MAX_RECENT_FOLDERS]

    def add_recent_folder(self, folder: str) -> list[str]:
        """Move ``folder`` to the top of the recent list and return the new list."""
        # Absolute and resolved: a relative path (``make run``'s resources/...) means nothing from elsewhere.
        folder = str(Path(folder).expanduser().resolve())
        folders = [folder] + [f for f in self.recent_folders() if f != folder]
        folders = folders[:MAX_RECENT_FOLDERS]
        self._set_json("recent/folders", folders)
        return folders

    def clear_recent_folders(self) -> None:
        self._set_json("recent/folders", [])

    # ---------------------------------------------------------------- generic values
    def panel_state(self) -> dict[str, Any]:
        """The side panel's last choices (backbones, algorithm, parameters, K...)."""
        state = self._json("panel/state", {})
        return state if isinstance(state, dict) else {}

    def set_panel_state(self, state: dict[str, Any]) -> None:
        self._set_json("panel/state", state)

    def window_geometry(self) -> Optional[QByteArray]:
        value = self._settings.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    def window_state(self) -> Optional[QByteArray]:
        value = self._settings.value("window/state")
        return value if isinstance(value, QByteArray) else None

    def set_window_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        self._settings.setValue("window/geometry", geometry)
        self._settings.setValue("window/state", state)

    def view_state(self) -> dict[str, Any]:
        """The grid's view choices (thumbnail size, captions, sort order)."""
        state = self._json("view/state", {})
        return state if isinstance(state, dict) else {}

    def set_view_state(self, state: dict[str, Any]) -> None:
        self._set_json("view/state", state)

    def autosave_minutes(self) -> float:
        try:
            minutes = float(self._settings.value("autosave/minutes", DEFAULT_AUTOSAVE_MINUTES))
        except (TypeError, ValueError):
            minutes = DEFAULT_AUTOSAVE_MINUTES
        return minutes if minutes > 0 else DEFAULT_AUTOSAVE_MINUTES

    def last_directory(self, kind: str) -> str:
        """Last folder used by a file dialog of ``kind`` ('session', 'export'...)."""
        return str(self._settings.value(f"dirs/{kind}", "") or "")

    def set_last_directory(self, kind: str, folder: str) -> None:
        self._settings.setValue(f"dirs/{kind}", str(folder))

    def proposed_directory(self, kind: str) -> str:
        """Where a file dialog of ``kind`` opens: the last folder used for that kind while it exists,
        else the documents folder (never the photo folder unasked, never the bare home folder)."""
        last = self.last_directory(kind)
        # A file once saved in the bare home folder does not make it the place to propose again.
        if last and Path(last).is_dir() and Path(last).resolve() != Path.home().resolve():
            return last
        return default_documents_dir()

    def last_export_manifest(self) -> str:
        """The manifest of the last folder export not undone yet ('' when none), kept across launches."""
        return str(self._settings.value("export/last_manifest", "") or "")

    def set_last_export_manifest(self, path: str) -> None:
        self._settings.setValue("export/last_manifest", str(path or ""))
        self._settings.sync()

    # ---------------------------------------------------------------- the last session (offered at the next start)
    def last_session(self) -> tuple[str, bool]:
        """``(file, is_autosave)`` of the work open when the app last closed ('' when none).

        ``is_autosave``: the work was never saved (or its changes were discarded without a file), so
        the autosave copy is what reopens, as unsaved work.
        """
        path = str(self._settings.value("session/last_file", "") or "")
        return path, str(self._settings.value("session/last_is_autosave", "false")).lower() == "true"

    def set_last_session(self, path: str, is_autosave: bool = False) -> None:
        self._settings.setValue("session/last_file", str(path or ""))
        self._settings.setValue("session/last_is_autosave", "true" if is_autosave else "false")
        self._settings.sync()

    # ---------------------------------------------------------------- crash detection
    def mark_started(self) -> None:
        """Record that the app is running (cleared by :meth:`mark_clean_exit`)."""
        self._settings.setValue("session/running", True)
        self._settings.sync()

    def mark_clean_exit(self) -> None:
        """Record a normal close: an autosave older than this is not offered for restore."""
        self._settings.setValue("session/running", False)
        self._settings.setValue("session/clean_exit_time", time.time())
        self._settings.sync()

    def last_clean_exit_time(self) -> float:
        try:
            return float(self._settings.value("session/clean_exit_time", 0.0))
        except (TypeError, ValueError):
            return 0.0

    def should_offer_restore(self, autosave: Optional[Path] = None) -> bool:
        """True when an autosave exists that is newer than the last clean exit (the app crashed)."""
        autosave = autosave if autosave is not None else autosave_path()
        try:
            modified = autosave.stat().st_mtime
        except OSError:
            return False
        return modified > self.last_clean_exit_time()

    # ---------------------------------------------------------------- helpers
    def _json(self, key: str, default: Any) -> Any:
        # JSON text keeps lists and dicts intact across the INI format's type guessing.
        raw = self._settings.value(key)
        if raw is None:
            return default
        try:
            return json.loads(str(raw))
        except (TypeError, ValueError):
            return default

    def _set_json(self, key: str, value: Any) -> None:
        self._settings.setValue(key, json.dumps(value))
