"""The painter of the grid's cells: a thumbnail (a placeholder while it loads, a cross when it
cannot be decoded) and the file name.

It reads the row's file straight from :class:`~imgcluster_gui.ui.cluster_model.ClusterImagesModel`
(no ``index.data`` round trips) and asks the :class:`~imgcluster_gui.ui.thumbnails.ThumbnailLoader`
for the thumbnail, which decodes missing ones in the background.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from .cluster_model import ClusterImagesModel, PathRole
from .thumbnails import ThumbnailLoader

CELL_PADDING = 6  # around the thumbnail, in a cell
# Computed once: enum arithmetic is slow in Python and paint() runs for every visible cell.
_TEXT_ALIGN = int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
_STATE_SELECTED = QStyle.StateFlag.State_Selected
_ELIDE_MIDDLE = Qt.TextElideMode.ElideMiddle


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a thumbnail from the loader, a placeholder while it loads, and the file name.

    ``paint`` runs for every visible cell of every frame, in Python: it reads the model's arrays
    directly (no ``index.data`` round trips through C++), keeps enum arithmetic and colours
    out of the loop and caches the elided file names.
    """

    def __init__(self, loader: ThumbnailLoader, thumb_size: int, parent: Optional[Any] = None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.thumb_size = int(thumb_size)
        self._elided: dict[tuple[str, int], str] = {}
        self._colours: dict[str, QColor] = {}
        self._placeholder_pen = QPen()
        self.set_palette(QPalette())  # the application's palette until the grid passes its own
        self._failed_fill = QColor(235, 225, 225)
        self._cross_pen = QPen(QColor(180, 60, 60), 2)

    def cell_size(self, option_font: QFont) -> QSize:
        side = self.thumb_size + 2 * CELL_PADDING
        return QSize(side, side + QFontMetrics(option_font).height())

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt API
        return self.cell_size(option.font)

    def clear_text_cache(self) -> None:
        self._elided.clear()

    def set_palette(self, palette: QPalette) -> None:
        """Take the colours from ``palette`` (the grid calls this at start and on a palette change)."""
        self._colours = {
            name: QColor(palette.color(role))
            for name, role in (
                ("highlight", QPalette.ColorRole.Highlight),
                ("highlighted_text", QPalette.ColorRole.HighlightedText),
                ("text", QPalette.ColorRole.Text),
                ("placeholder", QPalette.ColorRole.Midlight),
                ("frame", QPalette.ColorRole.Mid),
            )
        }
        self._placeholder_pen = QPen(self._colours["frame"], 1)

    def _elided_name(self, path: str, width: int, option: QStyleOptionViewItem) -> str:
        key = (path, width)
        text = self._elided.get(key)
        if text is None:
            if len(self._elided) > 50_000:  # bounded: names of a few screens are what matters
                self._elided.clear()
            text = option.fontMetrics.elidedText(os.path.basename(path), _ELIDE_MIDDLE, width)
            self._elided[key] = text
        return text

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        model = index.model()
        if not isinstance(model, ClusterImagesModel):
            return
        path = model.path_at(index.row())
        colours = self._colours
        rect: QRect = option.rect
        selected = bool(option.state & _STATE_SELECTED)
        side = self.thumb_size
        x0, y0, width = rect.x(), rect.y(), rect.width()
        box_x, box_y = x0 + (width - side) // 2, y0 + CELL_PADDING
        painter.save()
        if selected:
            painter.fillRect(x0 + 1, y0 + 1, width - 2, rect.height() - 2, colours["highlight"])
        image = self.loader.request(path, side)
        if image is not None:
            painter.drawImage(box_x + (side - image.width()) // 2, box_y + (side - image.height()) // 2, image)
        else:
            failed = self.loader.error_of(path, side) is not None
            painter.fillRect(box_x, box_y, side, side, self._failed_fill if failed else colours["placeholder"])
            painter.setPen(self._placeholder_pen)
            painter.drawRect(box_x, box_y, side - 1, side - 1)
            if failed:  # a cross: this file could not be decoded (the tooltip says why)
                third = side // 3
                painter.setPen(self._cross_pen)
                painter.drawLine(box_x + third, box_y + third, box_x + side - third, box_y + side - third)
                painter.drawLine(box_x + side - third, box_y + third, box_x + third, box_y + side - third)
        text_top = box_y + side + 2
        text_rect = QRect(x0 + 2, text_top, width - 4, rect.bottom() - text_top)
        painter.setPen(colours["highlighted_text" if selected else "text"])
        painter.drawText(text_rect, _TEXT_ALIGN, self._elided_name(path, width - 4, option))
        painter.restore()

    def helpEvent(self, event, view, option, index) -> bool:  # noqa: N802 - Qt API
        # The tooltip names the decoding error when there is one.
        path = index.data(PathRole)
        error = self.loader.error_of(path, self.thumb_size) if path else None
        if error and event.type() == event.Type.ToolTip:
            from PySide6.QtWidgets import QToolTip

            QToolTip.showText(event.globalPos(), f"{path}\nCannot show: {error}", view)
            return True
        return super().helpEvent(event, view, option, index)
