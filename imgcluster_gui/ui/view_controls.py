"""How the grid is shown: thumbnail size (slider, Ctrl +/-/0), captions, sort order, and the View menu.

The grid owns the state (:meth:`ClusterGridWidget.set_thumbnail_size` and friends); this object
builds the actions and the toolbar slider that drive it, keeps them in step with the grid (Ctrl+wheel
on the grid moves the slider too), and reads/writes the choices as a small dict the settings keep.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMenu, QSlider, QWidget

from ..core.duplicates import THRESHOLD_PRESETS
from .actions import make_action

# Thumbnail sizes the slider offers (pixels of the cell's image square).
MIN_THUMBNAIL = 64
MAX_THUMBNAIL = 320
DEFAULT_THUMBNAIL = 128
# Ctrl +/- steps by this factor (so the steps feel even at any size).
ZOOM_STEP = 1.25

# "date" is the capture date (EXIF), the file's date where the photo has none.
CAPTION_MODES = (("name", "File &name"), ("date", "Capture &date"), ("none", "&No captions"))
SORT_MODES = (
    ("index", "&Folder order"),
    ("name", "By &name"),
    ("distance", "By distance to the &centre (outliers last)"),
    ("distance_desc", "&Outliers first (to review)"),
    ("misplaced", "Likely &misplaced first (to review)"),
    ("time", "By capture &time (oldest first)"),
)
# Which image of a stack of near-duplicates is shown and kept (core/duplicates.py).
STACK_BEST = (("sharpest", "Keep the &sharpest"), ("largest", "Keep the &largest (most pixels)"))
# How alike two photos must be to share a stack; the thresholds are core/duplicates.py's presets.
STACK_SIMILARITY = (
    ("strict", "Only near-&identical copies"),
    ("default", "&Near-duplicates (recommended)"),
    ("loose", "Near-duplicates and &similar shots (may stack a stranger)"),
)


class ViewControls(QObject):
    """The View menu's grid actions and the toolbar's thumbnail-size slider, bound to ``grid``.

    Parameters
    ----------
    grid : ClusterGridWidget
        The grid they drive.
    reset_layout : callable
        Called by "Reset layout".
    parent : QObject
        The window (owns the actions; their shortcuts work anywhere in it).
    """

    def __init__(self, grid: Any, reset_layout: Callable[[], None], parent: QObject) -> None:
        super().__init__(parent)
        self.grid = grid
        self.larger_action = self._action("&Larger thumbnails", self.zoom_in, [QKeySequence.StandardKey.ZoomIn])
        self.larger_action.setShortcuts([QKeySequence("Ctrl++"), QKeySequence("Ctrl+=")])
        self.smaller_action = self._action("&Smaller thumbnails", self.zoom_out, [QKeySequence("Ctrl+-")])
        self.default_size_action = self._action(
            "&Default thumbnail size", lambda: self.set_thumbnail_size(DEFAULT_THUMBNAIL), [QKeySequence("Ctrl+0")]
        )
        self.reset_layout_action = self._action("&Reset layout", reset_layout, [])
        self.reset_layout_action.setToolTip("Put every panel back where it was at the first start")
        self.caption_actions = self._choice_group(CAPTION_MODES, "name", self._on_caption)
        self.sort_actions = self._choice_group(SORT_MODES, "index", self._on_sort)
        self.stack_action = QAction("Stack &near-duplicates", self.parent())
        self.stack_action.setCheckable(True)
        self.stack_action.setToolTip("Show each group of near-identical photos or a burst as one stack with a count")
        self.stack_action.toggled.connect(lambda on: self.grid.set_stacking(on))
        self.stack_best_actions = self._choice_group(STACK_BEST, "sharpest", self._on_stack_best)
        self.stack_similarity_actions = self._choice_group(STACK_SIMILARITY, "default", self._on_stack_similarity)
        for key, action in self.stack_similarity_actions.items():
            action.setToolTip(f"Stack photos whose features agree to a cosine of {dict(THRESHOLD_PRESETS)[key]:.2f}")

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("thumbnail_size_slider")
        self.slider.setRange(MIN_THUMBNAIL, MAX_THUMBNAIL)
        self.slider.setSingleStep(8)
        self.slider.setPageStep(32)
        self.slider.setFixedWidth(140)
        self.slider.setToolTip("Thumbnail size (Ctrl+wheel on the grid, Ctrl+plus / Ctrl+minus)")
        self.slider.setValue(self.thumbnail_size())
        self.slider.valueChanged.connect(self.set_thumbnail_size)
        self.slider_widget = QWidget()
        row = QHBoxLayout(self.slider_widget)
        row.setContentsMargins(8, 0, 8, 0)
        row.addWidget(QLabel("Size"))
        row.addWidget(self.slider)
        grid.thumbnailSizeChanged.connect(self._on_grid_size)

    # ---------------------------------------------------------------- construction
    def _action(self, text: str, slot: Callable[[], Any], shortcuts: list) -> QAction:
        action = make_action(self.parent(), text, slot)  # the window's action: its shortcuts work anywhere in it
        if shortcuts:
            action.setShortcuts(shortcuts)
        return action

    def _choice_group(self, choices: tuple, current: str, slot: Callable[[str], None]) -> dict[str, QAction]:
        group = QActionGroup(self)
        group.setExclusive(True)
        actions = {}
        for key, text in choices:
            action = QAction(text, self.parent())
            action.setCheckable(True)
            action.setChecked(key == current)
            action.setData(key)
            action.triggered.connect(lambda _checked=False, k=key: slot(k))
            group.addAction(action)
            actions[key] = action
        return actions

    def populate(self, menu: QMenu, panel_actions: list[QAction], grid_actions: list[QAction]) -> None:
        """Fill the View menu: grid actions, thumbnail size, captions, sort order, panels, reset layout."""
        menu.addActions(grid_actions)
        menu.addSeparator()
        menu.addActions([self.larger_action, self.smaller_action, self.default_size_action])
        captions = menu.addMenu("&Captions")
        captions.addActions(list(self.caption_actions.values()))
        sort = menu.addMenu("S&ort images")
        sort.addActions(list(self.sort_actions.values()))
        menu.addAction(self.stack_action)
        stack_best = menu.addMenu("&Best of a stack")
        stack_best.addActions(list(self.stack_best_actions.values()))
        stack_similarity = menu.addMenu("Stack s&imilarity")
        stack_similarity.addActions(list(self.stack_similarity_actions.values()))
        menu.addSection("Panels")
        menu.addActions(panel_actions)
        menu.addSeparator()
        menu.addAction(self.reset_layout_action)

    # ---------------------------------------------------------------- thumbnail size
    def thumbnail_size(self) -> int:
        return int(self.grid.thumbnail_size())

    def set_thumbnail_size(self, size: int) -> None:
        size = max(MIN_THUMBNAIL, min(MAX_THUMBNAIL, int(size)))
        if size != self.thumbnail_size():
            self.grid.set_thumbnail_size(size)
        self._on_grid_size(size)

    def zoom_in(self) -> None:
        self.set_thumbnail_size(round(self.thumbnail_size() * ZOOM_STEP))

    def zoom_out(self) -> None:
        self.set_thumbnail_size(round(self.thumbnail_size() / ZOOM_STEP))

    def _on_grid_size(self, size: int) -> None:
        if self.slider.value() != size:
            self.slider.blockSignals(True)  # the grid already has it
            self.slider.setValue(size)
            self.slider.blockSignals(False)
        self.larger_action.setEnabled(size < MAX_THUMBNAIL)
        self.smaller_action.setEnabled(size > MIN_THUMBNAIL)

    # ---------------------------------------------------------------- captions and sort
    def caption_mode(self) -> str:
        return _checked(self.caption_actions, "name")

    def sort_mode(self) -> str:
        return _checked(self.sort_actions, "index")

    def _on_caption(self, mode: str) -> None:
        self.caption_actions[mode].setChecked(True)
        self.grid.set_caption_mode(mode)

    def _on_sort(self, mode: str) -> None:
        self.sort_actions[mode].setChecked(True)
        self.grid.set_sort_mode(mode)

    def _on_stack_best(self, best: str) -> None:
        self.stack_best_actions[best].setChecked(True)
        self.grid.set_stacking(self.stack_action.isChecked(), best=best)

    def _on_stack_similarity(self, key: str) -> None:
        self.stack_similarity_actions[key].setChecked(True)
        self.grid.set_stack_threshold(dict(THRESHOLD_PRESETS)[key])

    # ---------------------------------------------------------------- saved state
    def state(self) -> dict[str, Any]:
        return {
            "thumbnail_size": self.thumbnail_size(),
            "captions": self.caption_mode(),
            "sort": self.sort_mode(),
            "stacks": self.stack_action.isChecked(),
            "stack_best": _checked(self.stack_best_actions, "sharpest"),
            "stack_similarity": _checked(self.stack_similarity_actions, "default"),
        }

    def restore(self, state: Optional[dict[str, Any]]) -> None:
        """Apply saved choices; unknown or out-of-range values keep the defaults."""
        state = state or {}
        size = state.get("thumbnail_size")
        if isinstance(size, (int, float)) and MIN_THUMBNAIL <= size <= MAX_THUMBNAIL:
            self.set_thumbnail_size(int(size))
        if state.get("captions") in self.caption_actions:
            self._on_caption(str(state["captions"]))
        if state.get("sort") in self.sort_actions:
            self._on_sort(str(state["sort"]))
        if state.get("stack_best") in self.stack_best_actions:
            self._on_stack_best(str(state["stack_best"]))
        if state.get("stack_similarity") in self.stack_similarity_actions:
            self._on_stack_similarity(str(state["stack_similarity"]))
        if isinstance(state.get("stacks"), bool):
            self.stack_action.setChecked(state["stacks"])


def _checked(actions: dict[str, QAction], default: str) -> str:
    for key, action in actions.items():
        if action.isChecked():
            return key
    return default
