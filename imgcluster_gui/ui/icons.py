"""The app's icons: ``resources/icons/<name>.svg``, with a standard Qt icon where an SVG is missing.

No state: :func:`app_icon` reads the file (or the style's icon) on every call.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle

ICON_DIR = Path(__file__).resolve().parents[2] / "resources" / "icons"
# Standard icons used where an SVG is missing (a non-editable install without resources/).
_FALLBACK_ICONS = {
    "open-folder": QStyle.StandardPixmap.SP_DirOpenIcon,
    "run": QStyle.StandardPixmap.SP_MediaPlay,
    "cancel": QStyle.StandardPixmap.SP_MediaStop,
    "save": QStyle.StandardPixmap.SP_DialogSaveButton,
    "save-as": QStyle.StandardPixmap.SP_DialogSaveButton,
    "open-session": QStyle.StandardPixmap.SP_DialogOpenButton,
    "export-csv": QStyle.StandardPixmap.SP_FileIcon,
    "export-json": QStyle.StandardPixmap.SP_FileIcon,
    "export-folders": QStyle.StandardPixmap.SP_DirIcon,
    "undo": QStyle.StandardPixmap.SP_ArrowBack,
    "redo": QStyle.StandardPixmap.SP_ArrowForward,
    "app": QStyle.StandardPixmap.SP_DesktopIcon,
}


def app_icon(name: str) -> QIcon:
    """Icon ``name`` from ``resources/icons/<name>.svg``, or a standard icon when it is missing."""
    path = ICON_DIR / f"{name}.svg"
    if path.is_file():
        return QIcon(str(path))
    app = QApplication.instance()
    fallback = _FALLBACK_ICONS.get(name)
    if app is not None and fallback is not None:
        return app.style().standardIcon(fallback)
    return QIcon()
