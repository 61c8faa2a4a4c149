"""The log panel: what happened during runs, one line per event, skipped files with their reason."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Iterable, Optional

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTextBrowser, QVBoxLayout, QWidget

LEVEL_COLOURS = {"info": "#202020", "warning": "#9a6700", "error": "#b3261e"}
# Beyond this many skipped files per run, one summary line replaces the rest (the CSV has them all).
MAX_SKIPPED_LINES = 500


@dataclass(frozen=True)
class LogEntry:
    """One line of the log."""

    level: str  # 'info' | 'warning' | 'error'
    message: str
    time: float


class LogPanel(QWidget):
    """A read-only, append-only log with levels and a Clear button."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._entries: list[LogEntry] = []
        self.view = QTextBrowser()
        self.view.setObjectName("log_view")
        self.view.setOpenLinks(False)
        self.summary = QLabel("")
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)
        bar = QHBoxLayout()
        bar.addWidget(self.summary, 1)
        bar.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.view, 1)
        layout.addLayout(bar)
        self._update_summary()

    def entries(self) -> list[LogEntry]:
        return list(self._entries)

    def text(self) -> str:
        """Everything logged, one line per entry (what tests and bug reports read)."""
        return "\n".join(f"[{e.level}] {e.message}" for e in self._entries)

    def log(self, message: str, level: str = "info") -> None:
        entry = LogEntry(level if level in LEVEL_COLOURS else "info", str(message), time.time())
        self._entries.append(entry)
        stamp = time.strftime("%H:%M:%S", time.localtime(entry.time))
        colour = LEVEL_COLOURS[entry.level]
        self.view.append(
            f'<span style="color:#777">{stamp}</span> <span style="color:{colour}">{html.escape(entry.message)}</span>'
        )
        self._update_summary()

    def info(self, message: str) -> None:
        self.log(message, "info")

    def warning(self, message: str) -> None:
        self.log(message, "warning")

    def error(self, message: str) -> None:
        self.log(message, "error")

    def log_skipped(self, skipped: Iterable[object]) -> int:
        """One warning line per skipped file (``SkippedFile.path`` and ``.reason``); returns the count."""
        skipped = list(skipped)
        for item in skipped[:MAX_SKIPPED_LINES]:
            path = getattr(item, "path", item)
            reason = getattr(item, "reason", "")
            self.warning(f"Skipped {path}: {reason}" if reason else f"Skipped {path}")
        if len(skipped) > MAX_SKIPPED_LINES:
            self.warning(f"… and {len(skipped) - MAX_SKIPPED_LINES} more skipped file(s).")
        return len(skipped)

    def clear(self) -> None:
        self._entries.clear()
        self.view.clear()
        self._update_summary()

    def _update_summary(self) -> None:
        warnings = sum(1 for e in self._entries if e.level == "warning")
        errors = sum(1 for e in self._entries if e.level == "error")
        self.summary.setText(f"{len(self._entries)} message(s), {warnings} warning(s), {errors} error(s)")
