"""The main window's dock layout: the grid first, a reset to that default, and a check of a restored layout.

The thumbnail grid is the central widget and gets most of the width; everything else is a dock the
person can move, tab, float or close: the run settings on the left, the cluster overview above the
scatter and metrics (tabbed) on the right, the run list and log (tabbed) at the bottom.  A layout
saved at the last exit is restored only if it still fits: a dock narrower or lower than its content
needs, a floating dock off every screen or a squeezed grid brings back the default (the person saw a
clipped metrics dock restored at every start before this check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QDockWidget

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PySide6.QtWidgets import QMainWindow

# saveState/restoreState version: layouts saved before the grid-first layout (scatter beside the grid
# in a splitter, metrics dock 400 px wide) are not restored.
LAYOUT_VERSION = 2
# Default dock sizes in pixels: at 1400x880 the grid keeps ~56 % of the width (5+ columns of 128 px).
SIDE_WIDTH = 280
RIGHT_WIDTH = 330
BOTTOM_HEIGHT = 150
# The cluster overview's share of the right column's height (the scatter / metrics tabs get the rest).
OVERVIEW_HEIGHT_SHARE = 0.5
# A restored grid narrower than this is a trap, not a choice; so is a docked panel below these sizes.
MIN_GRID_WIDTH = 240
MIN_PANEL_WIDTH = 120
MIN_PANEL_HEIGHT = 80
# Slack for rounding in dock sizes.
TOLERANCE_PX = 2


@dataclass(frozen=True)
class DockPlace:
    """Where a dock goes in the default layout."""

    attribute: str  # the window attribute holding the dock
    area: Qt.DockWidgetArea
    tab_with: str = ""  # tabified with this dock (attribute name), or split below it when ``below``
    below: str = ""


LEFT = Qt.DockWidgetArea.LeftDockWidgetArea
RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea

DEFAULT_PLACES: tuple[DockPlace, ...] = (
    DockPlace("side_dock", LEFT),
    DockPlace("clusters_dock", RIGHT),
    DockPlace("scatter_dock", RIGHT, below="clusters_dock"),
    DockPlace("metrics_dock", RIGHT, tab_with="scatter_dock"),
    DockPlace("runs_dock", BOTTOM),
    DockPlace("log_dock", BOTTOM, tab_with="runs_dock"),
)
# Raised (in front) in their tab groups by the default layout.
FRONT_DOCKS = ("scatter_dock", "runs_dock")


def layout_docks(window: "QMainWindow") -> dict[str, QDockWidget]:
    """The window's docks by attribute name, in default-layout order (docks the window lacks are left out)."""
    docks = {}
    for place in DEFAULT_PLACES:
        dock = getattr(window, place.attribute, None)
        if isinstance(dock, QDockWidget):
            docks[place.attribute] = dock
    return docks


def apply_default_layout(window: "QMainWindow") -> None:
    """Put every dock back where the default layout has it, shown, docked, at its default size."""
    docks = layout_docks(window)
    for dock in docks.values():
        dock.setFloating(False)
        window.removeDockWidget(dock)
    for place in DEFAULT_PLACES:
        dock = docks.get(place.attribute)
        if dock is None:
            continue
        window.addDockWidget(place.area, dock)
        if place.tab_with in docks:
            window.tabifyDockWidget(docks[place.tab_with], dock)
        elif place.below in docks:
            window.splitDockWidget(docks[place.below], dock, Qt.Orientation.Vertical)
        dock.show()
    for name in FRONT_DOCKS:
        if name in docks:
            docks[name].raise_()
    resize_to_defaults(window)


def resize_to_defaults(window: "QMainWindow") -> None:
    """Give the docks their default sizes (the grid, the central widget, takes what is left)."""
    docks = layout_docks(window)
    right = next((docks[n] for n in ("clusters_dock", "scatter_dock", "metrics_dock") if n in docks), None)
    horizontal = [(d, w) for d, w in ((docks.get("side_dock"), SIDE_WIDTH), (right, RIGHT_WIDTH)) if d is not None]
    if horizontal:
        window.resizeDocks([d for d, _ in horizontal], [w for _, w in horizontal], Qt.Orientation.Horizontal)
    if "runs_dock" in docks:
        window.resizeDocks([docks["runs_dock"]], [BOTTOM_HEIGHT], Qt.Orientation.Vertical)
    if "clusters_dock" in docks and "scatter_dock" in docks:
        column = max(window.height() - BOTTOM_HEIGHT - 120, 300)  # minus menus, toolbar, status bar
        top = int(column * OVERVIEW_HEIGHT_SHARE)
        window.resizeDocks(
            [docks["clusters_dock"], docks["scatter_dock"]], [top, column - top], Qt.Orientation.Vertical
        )


def layout_problems(window: "QMainWindow") -> list[str]:
    """What is wrong with the layout on screen: clipped or zero-size docks, docks off screen, a squeezed grid.

    Call it once the window is shown (sizes are only real then).  Hidden docks are fine (the person
    closed them; the View menu brings them back); docks behind another in a tab group are not checked.
    """
    problems = []
    for name, dock in layout_docks(window).items():
        if not dock.isVisible():
            continue
        title = dock.windowTitle() or name
        if dock.isFloating():
            if QGuiApplication.screenAt(dock.geometry().center()) is None:
                problems.append(f"the {title} panel is off screen")
            continue
        if dock.visibleRegion().isEmpty():
            continue  # behind another dock in a tab group
        content = dock.widget()
        hint = content.minimumSizeHint() if content is not None else dock.minimumSizeHint()
        need_width, need_height = max(hint.width(), MIN_PANEL_WIDTH), max(hint.height(), MIN_PANEL_HEIGHT)
        if dock.width() + TOLERANCE_PX < need_width:
            problems.append(f"the {title} panel is clipped ({dock.width()} of {need_width} px wide)")
        elif dock.height() + TOLERANCE_PX < need_height:
            problems.append(f"the {title} panel is clipped ({dock.height()} of {need_height} px high)")
    central = window.centralWidget()
    if central is not None and central.width() < min(MIN_GRID_WIDTH, window.width() // 3):
        problems.append(f"the thumbnail grid is only {central.width()} px wide")
    return problems


def panel_action(dock: QDockWidget, parent: "QMainWindow") -> QAction:
    """A View-menu entry for ``dock`` that brings it to the front.

    Qt's own ``toggleViewAction`` hides a dock that is open behind another in a tab group (it counts
    as shown), so choosing "Metrics" while the Scatter tab is in front closed the metrics. This one
    shows a closed dock, raises one behind a tab, and closes only a dock that is in front.
    """
    action = QAction(dock.windowTitle(), parent)
    action.setCheckable(True)
    action.setChecked(not dock.isHidden())
    action.setObjectName(f"show_{dock.objectName()}")
    # Closed from its title bar, or shown by Reset layout: the tick follows.
    dock.toggleViewAction().toggled.connect(action.setChecked)

    def choose(_checked: bool = False) -> None:
        if dock.isHidden():
            dock.show()
            dock.raise_()
        elif not dock.isFloating() and dock.visibleRegion().isEmpty():
            dock.raise_()  # behind another tab: bring it to the front, keep it open
        else:
            dock.hide()
        action.setChecked(not dock.isHidden())

    action.triggered.connect(choose)
    return action
