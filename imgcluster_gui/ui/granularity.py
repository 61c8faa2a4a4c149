"""The granularity control over the grid: "Fewer, larger groups" <-> "More, smaller groups".

A graph clustering (Leiden, FINCH) returns a ladder of groupings, fewest groups first (the
session's ``granularity_labels``); the slider picks one without re-running.  The bar only asks:
:attr:`GranularityBar.levelRequested` goes to the window, which applies the level through the
undo stack (:class:`~imgcluster_gui.ui.commands.RegroupCommand`), and the bar then follows the
session's events like every other view (also after undo / redo), showing
``session.granularity_level()``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSlider, QWidget

from ..core.session import UNASSIGNED
from .cluster_grid import unsubscriber_on_destroy as _unsubscriber

NO_LEVELS_TIP = (
    "This result has a single grouping. Leiden and FINCH runs (automatic number of groups) "
    "give levels to choose from here without re-running."
)


def groups_text(n_groups: int, n_unsorted: int = 0) -> str:
    """``'20 groups · 3 unsorted'`` (the unsorted part only when there are)."""
    text = f"{n_groups} group" + ("" if n_groups == 1 else "s")
    return text + (f" · {n_unsorted} unsorted" if n_unsorted else "")


def label_counts(labels: np.ndarray) -> tuple[int, int]:
    """``(groups, unsorted)`` of a label array (-1 = unsorted)."""
    labels = np.asarray(labels)
    unsorted = labels == UNASSIGNED
    return int(np.unique(labels[~unsorted]).size), int(np.count_nonzero(unsorted))


class GranularityBar(QWidget):
    """A slider over the session's granularity levels, with the number of groups shown.

    Enabled only when the session has at least two levels.  Dragging previews the level's
    counts and asks for it on release; the arrow keys and clicks on the groove ask at once.

    Signals
    -------
    levelRequested(int)
        The user chose level ``i`` (a column of ``session.granularity_labels``).  The bar is not
        changed by this: it follows the session once the window applied (or refused) the level.
    """

    levelRequested = Signal(int)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("granularity_bar")
        self._session: Any = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._updating = False
        self._position = 0  # the slider's value the session agrees with (put back on a cancel)

        self.fewer_label = QLabel("Fewer, larger groups")
        self.more_label = QLabel("More, smaller groups")
        for label in (self.fewer_label, self.more_label):
            label.setStyleSheet("color: #555")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("granularity_slider")
        self.slider.setTracking(False)  # a drag asks once, on release; the text previews meanwhile
        self.slider.setSingleStep(1)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.setMinimumWidth(120)
        self.slider.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.slider.valueChanged.connect(self._on_value_changed)
        self.slider.sliderMoved.connect(self._preview)
        self.slider.sliderReleased.connect(self._on_released)
        self.count_label = QLabel("")
        self.count_label.setObjectName("granularity_count")
        self.count_label.setMinimumWidth(150)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 3, 6, 3)
        layout.addWidget(self.fewer_label)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.more_label)
        layout.addSpacing(10)
        layout.addWidget(self.count_label)
        self.set_session(None)
        self.destroyed.connect(_unsubscriber(self))

    # ---------------------------------------------------------------- session
    def set_session(self, session: Any) -> None:
        """Show ``session``'s levels (or none) and follow its edits."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._session = session
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)
        levels = self.n_levels()
        self._updating = True
        try:
            self.slider.setRange(0, max(0, levels - 1))
        finally:
            self._updating = False
        enabled = levels >= 2
        for widget in (self.slider, self.fewer_label, self.more_label):
            widget.setEnabled(enabled)
        tip = (
            (
                "Regroup the images without re-running: left for fewer, larger groups, right for more, smaller "
                "ones (Ctrl+Z undoes)"
            )
            if enabled
            else NO_LEVELS_TIP
        )
        self.slider.setToolTip(tip)
        self.setToolTip("" if enabled else tip)
        self.sync()

    def _on_session_event(self, event: Any) -> None:
        if getattr(event, "kind", event) in ("labels", "reset"):
            self.sync()

    def session(self) -> Any:
        return self._session

    def n_levels(self) -> int:
        return int(getattr(self._session, "n_granularity_levels", 0) or 0) if self._session is not None else 0

    def is_active(self) -> bool:
        """True when there are levels to choose from (the slider is enabled)."""
        return self.slider.isEnabled()

    # ---------------------------------------------------------------- showing
    def sync(self) -> None:
        """Put the slider on the level the labels show now and say how many groups there are."""
        session = self._session
        if session is None:
            self.count_label.setText("")
            self._position = self.level()
            return
        level = session.granularity_level() if self.n_levels() else None
        if level is not None and level != self.slider.value():
            self._put_slider(level)
        self._position = self.level()
        groups, unsorted = label_counts(session.labels)
        self.count_label.setText(groups_text(groups, unsorted))
        if self.n_levels() >= 2:
            where = f"level {level + 1} of {self.n_levels()}" if level is not None else "edited by hand"
            self.count_label.setToolTip(f"What the grid shows now ({where})")
        else:
            self.count_label.setToolTip("What the grid shows now")

    def _preview(self, position: int) -> None:
        """While dragging: the counts of the level under the handle."""
        summary = self._summary(position)
        if summary is not None:
            self.count_label.setText(
                groups_text(int(summary.get("n_clusters", 0)), int(summary.get("n_unsorted", 0) or 0)) + " …"
            )

    def _on_released(self) -> None:
        # Released where it started: no level is asked for, so the previewed text goes.
        if self.slider.sliderPosition() == self.slider.value():
            self.sync()

    def _summary(self, level: int) -> Optional[dict]:
        levels = list(getattr(self._session, "granularity", None) or []) if self._session is not None else []
        return levels[level] if 0 <= level < len(levels) else None

    def level(self) -> int:
        """The slider's level."""
        return int(self.slider.value())

    def text(self) -> str:
        """The count shown beside the slider ('20 groups · 3 unsorted')."""
        return self.count_label.text()

    def _on_value_changed(self, value: int) -> None:
        if self._updating or self._session is None:
            return
        session = self._session
        edits_before = len(session.history)
        previous = self._position
        self.levelRequested.emit(int(value))
        if self._session is not session:
            return
        if len(session.history) == edits_before and session.granularity_level() is None:
            self._put_slider(previous)  # refused (cancel) between levels: back where it was
        # Applied (the session's event already synced the bar) or refused: show what the session holds.
        self.sync()
        self._position = self.level()

    def _put_slider(self, value: int) -> None:
        self._updating = True
        try:
            self.slider.setValue(int(value))
            self.slider.setSliderPosition(int(value))
        finally:
            self._updating = False
