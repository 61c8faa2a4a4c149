"""Building blocks for the window's commands: a :class:`QAction` with its icon, shortcut and tip, and
groups of actions added to a menu or a toolbar.  No state: the window keeps the actions it makes.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar, QWidget

from .icons import app_icon


def make_action(
    parent: QWidget, text: str, slot: Callable[[], Any], shortcut: Any = None, icon: Optional[str] = None, tip: str = ""
) -> QAction:
    """An action of ``parent`` that calls ``slot()``; its shortcut works whatever has the focus in ``parent``."""
    action = QAction(text, parent)
    if icon:
        action.setIcon(app_icon(icon))
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(f"{tip} ({action.shortcut().toString()})" if shortcut is not None else tip)
    action.triggered.connect(lambda _checked=False: slot())
    parent.addAction(action)
    return action


def add_groups(widget: Union[QMenu, QToolBar], *groups: Sequence[QAction]) -> None:
    """Add each group of actions to a menu or toolbar, a separator before a group that follows others."""
    for group in groups:
        if widget.actions():
            widget.addSeparator()
        widget.addActions(list(group))
