"""The painter of the grid's cells and the text of their hover cards.

A cell is a thumbnail (a placeholder while it loads, a cross when the file cannot be decoded) over an
optional caption: the file name elided at its end, or the capture date (EXIF; the file's date where
the photo has none).  :class:`CellPainter` asks the
:class:`~imgcluster_gui.ui.thumbnails.ThumbnailLoader` for the thumbnail at a *size bucket* (a few
fixed sizes, so a thumbnail-size slider does not decode the folder again at every pixel) and scales it
to the cell's size when painting; while the bucket's thumbnail is not there yet another bucket's is
shown scaled, if the loader has one.
"""

from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np
from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetrics, QImage, QPainter, QPalette, QPen

from ..core.photo_meta import PhotoMeta, meta_of
from .thumbnails import ThumbnailLoader

CELL_PADDING = 4  # around the thumbnail, in a cell (128 px thumbnails: 5 columns in 680 px)
CAPTION_GAP = 2  # between the thumbnail and its caption
#: Sizes thumbnails are decoded at; a cell of another size scales the next larger one.
SIZE_BUCKETS = (64, 96, 128, 160, 192, 256, 320)
CAPTION_MODES = ("name", "date", "none")
_TEXT_ALIGN = int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
_ELIDE_RIGHT = Qt.TextElideMode.ElideRight
_TEXT_CACHE_LIMIT = 50_000  # captions of a few screens are what matters


def size_bucket(size: int) -> int:
    """The decoded size used for cells of ``size`` pixels: the smallest bucket at least as large."""
    for bucket in SIZE_BUCKETS:
        if bucket >= size:
            return bucket
    return SIZE_BUCKETS[-1]


def file_date(path: str) -> str:
    """The file's modification date (``YYYY-MM-DD``), or ``""`` when it cannot be read.

    The date caption's fallback for a session without capture dates (a hand-built or older one).
    """
    try:
        return time.strftime("%Y-%m-%d", time.localtime(os.stat(path).st_mtime))
    except OSError:
        return ""


class CellPainter:
    """Paints one cell of the grid: thumbnail from the loader, placeholder or error cross, caption.

    ``paint`` runs for every visible cell of every frame, in Python: colours are taken from the
    palette once (:meth:`set_palette`) and captions are cached per (path, width).

    Parameters
    ----------
    loader : ThumbnailLoader
    thumb_size : int
        Side of a cell's thumbnail square, in pixels.
    caption_mode : {"name", "date", "none"}
    """

    def __init__(self, loader: ThumbnailLoader, thumb_size: int, caption_mode: str = "name") -> None:
        self.loader = loader
        self.thumb_size = int(thumb_size)
        self.caption_mode = caption_mode
        self._captions: dict[tuple[str, int], str] = {}
        self._dates: dict[str, str] = {}
        self._meta_table: Optional[np.ndarray] = None  # the session's photo_meta (capture time, GPS)
        self._meta_rows: dict[str, int] = {}
        self.colours: dict[str, QColor] = {}
        self._placeholder_pen = QPen()
        self._current_pen = QPen()
        self.set_palette(QPalette())  # the application's palette until the grid passes its own
        self._failed_fill = QColor(235, 225, 225)
        self._cross_pen = QPen(QColor(180, 60, 60), 2)

    # ---- geometry
    def set_thumb_size(self, size: int) -> None:
        """Paint thumbnails ``size`` pixels square."""
        self.thumb_size = int(size)

    def set_caption_mode(self, mode: str) -> None:
        """Captions: ``"name"`` (file name elided at its end), ``"date"`` (file date) or ``"none"``."""
        if mode not in CAPTION_MODES:
            raise ValueError(f"unknown caption mode {mode!r} (expected one of {', '.join(CAPTION_MODES)})")
        self.caption_mode = mode
        self._captions.clear()

    def min_cell_width(self) -> int:
        """The narrowest a cell may be: the thumbnail and its padding (cells are widened to fill a row)."""
        return self.thumb_size + 2 * CELL_PADDING

    def cell_height(self, metrics: QFontMetrics) -> int:
        """A cell's height: the thumbnail, its padding and (unless ``"none"``) a line of caption."""
        caption = metrics.height() + CAPTION_GAP if self.caption_mode != "none" else 0
        return self.thumb_size + 2 * CELL_PADDING + caption

    def bucket(self) -> int:
        """The size thumbnails are requested at (see :func:`size_bucket`)."""
        return size_bucket(self.thumb_size)

    # ---- colours
    def set_palette(self, palette: QPalette) -> None:
        """Take the colours from ``palette`` (the grid calls this at start and on a palette change)."""
        self.colours = {
            name: QColor(palette.color(role))
            for name, role in (
                ("base", QPalette.ColorRole.Base),
                ("highlight", QPalette.ColorRole.Highlight),
                ("highlighted_text", QPalette.ColorRole.HighlightedText),
                ("text", QPalette.ColorRole.Text),
                ("placeholder", QPalette.ColorRole.Midlight),
                ("frame", QPalette.ColorRole.Mid),
                ("header", QPalette.ColorRole.Window),
                ("header_text", QPalette.ColorRole.WindowText),
            )
        }
        self._placeholder_pen = QPen(self.colours["frame"], 1)
        self._current_pen = QPen(self.colours["highlight"], 2, Qt.PenStyle.DotLine)

    # ---- content
    def thumbnail(self, path: str) -> Optional[QImage]:
        """The thumbnail to show for ``path`` now (requested at the bucket size), or None while it loads."""
        bucket = self.bucket()
        image = self.loader.request(path, bucket)
        if image is not None:
            return image
        for other in SIZE_BUCKETS:  # meanwhile, any size already in memory (scaled when painted)
            if other != bucket:
                image = self.loader.cached(path, other)
                if image is not None:
                    return image
        return None

    def set_photo_meta(self, paths: Optional[list[str]], table: Optional[np.ndarray]) -> None:
        """Capture dates and places of the shown session (``ClusterSession.photo_meta``, aligned with ``paths``)."""
        self._meta_table = table
        self._meta_rows = {} if table is None or paths is None else {p: i for i, p in enumerate(paths)}
        self._dates.clear()
        self._captions.clear()

    def photo_meta(self, path: str) -> Optional[PhotoMeta]:
        """The capture time and place of ``path`` from the session, or None when the session has none."""
        row = self._meta_rows.get(path)
        return None if row is None else meta_of(self._meta_table, row)

    def date_of(self, path: str) -> str:
        """``YYYY-MM-DD``: the capture date, else the file's date (cached)."""
        date = self._dates.get(path)
        if date is None:
            meta = self.photo_meta(path)
            date = meta.date_text() if meta is not None and meta.wall is not None else file_date(path)
            self._dates[path] = date
        return date

    def caption(self, path: str, width: int, metrics: QFontMetrics) -> str:
        """The caption of ``path`` in ``width`` pixels: the file name elided at its end, or its date."""
        if self.caption_mode == "none":
            return ""
        key = (path, width)
        text = self._captions.get(key)
        if text is None:
            if len(self._captions) > _TEXT_CACHE_LIMIT:
                self._captions.clear()
            if self.caption_mode == "date":
                full = self.date_of(path)
            else:
                full = os.path.basename(path)
            text = metrics.elidedText(full, _ELIDE_RIGHT, width)
            self._captions[key] = text
        return text

    def paint(
        self,
        painter: QPainter,
        rect: QRect,
        path: str,
        selected: bool,
        current: bool,
        metrics: QFontMetrics,
    ) -> None:
        """Paint the cell of ``path`` in ``rect`` (the painter's state is left as it was)."""
        colours = self.colours
        side = self.thumb_size
        x0, y0, width, height = rect.x(), rect.y(), rect.width(), rect.height()
        box_x, box_y = x0 + (width - side) // 2, y0 + CELL_PADDING
        if selected:
            painter.fillRect(x0 + 2, y0 + 2, width - 4, height - 4, colours["highlight"])
        image = self.thumbnail(path)
        if image is not None:
            w, h = image.width(), image.height()
            longer = max(w, h, 1)
            if longer == side:
                painter.drawImage(box_x + (side - w) // 2, box_y + (side - h) // 2, image)
            else:  # another bucket: scaled to the cell (the grid turned smooth scaling on)
                sw, sh = w * side / longer, h * side / longer
                painter.drawImage(QRectF(box_x + (side - sw) / 2, box_y + (side - sh) / 2, sw, sh), image)
        else:
            failed = self.loader.error_of(path, self.bucket()) is not None
            painter.fillRect(box_x, box_y, side, side, self._failed_fill if failed else colours["placeholder"])
            painter.setPen(self._placeholder_pen)
            painter.drawRect(box_x, box_y, side - 1, side - 1)
            if failed:  # a cross: this file could not be decoded (the hover card says why)
                third = side // 3
                painter.setPen(self._cross_pen)
                painter.drawLine(box_x + third, box_y + third, box_x + side - third, box_y + side - third)
                painter.drawLine(box_x + side - third, box_y + third, box_x + third, box_y + side - third)
        if self.caption_mode != "none":
            text_top = box_y + side + CAPTION_GAP
            text_rect = QRect(x0 + 4, text_top, width - 8, y0 + height - text_top)
            painter.setPen(colours["highlighted_text" if selected else "text"])
            painter.drawText(text_rect, _TEXT_ALIGN, self.caption(path, width - 8, metrics))
        if current:
            painter.setPen(self._current_pen)
            painter.drawRect(x0 + 1, y0 + 1, width - 3, height - 3)

    # ---- near-duplicate stacks (core/duplicates.py): the cover's count badge
    def stack_badge_rect(self, rect: QRect, count: int) -> QRect:
        """Where the "x5" badge of a stack cover sits in the cell ``rect``: the thumbnail's top right."""
        width = 16 + 7 * len(str(count))
        box_x = rect.x() + (rect.width() - self.thumb_size) // 2
        return QRect(box_x + self.thumb_size - width - 3, rect.y() + CELL_PADDING + 3, width, 18)

    def paint_stack_badge(self, painter: QPainter, rect: QRect, count: int, expanded: bool) -> None:
        """A stack's look: paper edges behind a closed stack, and the count badge (outlined when open)."""
        side = self.thumb_size
        box_x, box_y = rect.x() + (rect.width() - side) // 2, rect.y() + CELL_PADDING
        if not expanded:  # two edges peeking out at the bottom right: more photos lie underneath
            painter.setPen(self._placeholder_pen)
            for step in (2, 4):
                right, bottom = box_x + side + step - 1, box_y + side + step - 1
                painter.drawLine(box_x + step, bottom, right, bottom)
                painter.drawLine(right, box_y + step, right, bottom)
        badge = self.stack_badge_rect(rect, count)
        highlight = self.colours["highlight"]
        if expanded:
            painter.fillRect(badge, self.colours["base"])
            painter.setPen(QPen(highlight, 1))
            painter.drawRect(badge.adjusted(0, 0, -1, -1))
            painter.setPen(highlight)
        else:
            painter.fillRect(badge, highlight)
            painter.setPen(self.colours["highlighted_text"])
        painter.drawText(badge, int(Qt.AlignmentFlag.AlignCenter), f"\u00d7{count}")

    def hover_card(self, path: str, cluster_name: str) -> str:
        """The tooltip of a cell: file name, folder, cluster, capture time and place, why it cannot be shown if so."""
        lines = [f"<b>{_escape(os.path.basename(path))}</b>", _escape(os.path.dirname(path))]
        details = [f"in {_escape(cluster_name)}"]
        meta = self.photo_meta(path)
        when = meta.time_text() if meta is not None else ""
        date = when or self.date_of(path)
        if date:
            details.append(_escape(date))
        lines.append(" · ".join(details))
        place = meta.place_text() if meta is not None else ""
        if place:
            lines.append(_escape(place))
        error = self.loader.error_of(path, self.bucket())
        if error:
            lines.append(f"<span style='color:#b43c3c'>Cannot show: {_escape(error)}</span>")
        return "<br>".join(lines)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
