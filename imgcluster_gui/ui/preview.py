"""Quick look: the photos of a cluster one at a time, large, stepped with the arrow keys.

Opened by Space or a double-click on a thumbnail (the window passes the cluster's images in grid
order and the one to start at).  The image fits the window by default (small images are scaled
*up*, smoothly; the aspect ratio is kept; it re-fits on resize); ``1`` or ``Z`` (or the "100 %"
button, or a double-click on the image) toggles one image pixel per screen pixel, with the image
dragged to pan.  Left/Right and Up/Down step through the sequence, Home/End jump to its ends,
Space and Esc close (quick-look style: Space opens from the grid and Space closes), Enter toggles
full screen.

Decoding: files up to :data:`SYNC_DECODE_MAX_BYTES` are decoded at once (a few milliseconds, and
the dialog never flashes a placeholder); larger ones on a worker thread of the global
``QThreadPool``, while the grid's cached thumbnail (``loader``) stands in.  The neighbours of the
shown image are decoded ahead so stepping is instant.  A file that cannot be decoded shows the
reason (``core.dataset.load_image``'s :class:`~imgcluster_gui.core.dataset.ImageLoadError`).
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from PIL import Image
from PySide6.QtCore import QEvent, QObject, QPoint, QRunnable, QSize, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QGuiApplication, QImage, QKeyEvent, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core import formats
from ..core.dataset import ImageLoadError, load_image
from ..core.photo_meta import PhotoMeta, read_photo_meta
from . import file_actions
from .thumbnails import DEFAULT_THUMBNAIL_SIZE, ThumbnailLoader, pil_to_qimage

#: Longest side decoded for the fitted view (JPEG draft mode keeps big photos fast); the 100 % view
#: decodes the full image when the original is larger.
PREVIEW_MAX_SIDE = 2048
#: Files up to this size decode on the GUI thread (a few ms); larger ones on a worker thread.
SYNC_DECODE_MAX_BYTES = 256 * 1024
#: Decoded images kept for stepping back and forth (the full-resolution one counts as one).
CACHE_ENTRIES = 8
CACHE_BYTES = 384 * 1024 * 1024
#: The 100 % view refuses images above this many pixels (about 0.5 GB of pixels in memory).
FULL_DECODE_MAX_PIXELS = 120_000_000
#: The default size is this share of the screen's available area, at least MIN_DEFAULT_SIZE.
SCREEN_SHARE = 0.8
MIN_DEFAULT_SIZE = QSize(720, 640)

_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # rotated by 90 degrees: width and height swap


@dataclass(frozen=True)
class DecodedImage:
    """One decoded file: the image (null on failure), the original upright size, the reason of a failure."""

    image: QImage
    original: QSize
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.image.isNull()


def original_size(path: str) -> Optional[tuple[int, int]]:
    """The upright pixel size of ``path`` from its header (no decode), or None when unreadable."""
    if formats.is_raw_path(path):  # the sensor's size (Pillow would read the small TIFF preview of a CR2 or DNG)
        try:
            return formats.read_raw_header(path).upright_size
        except Exception:  # noqa: BLE001 - load_image reports the reason of an unreadable file
            return None
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - load_image reports the reason of an unreadable file
        return None
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def decode_preview(path: str, full: bool = False) -> DecodedImage:
    """Decode ``path`` for the preview: at most :data:`PREVIEW_MAX_SIDE` on a side, or whole when ``full``.

    Never raises: a file that cannot be decoded gives a null image and ``error`` says why.
    """
    try:
        # load_image first: it refuses a FIFO or a device without opening it, where the header
        # read of original_size would block (the GUI thread decodes small files itself).
        if full:
            image = load_image(path, max_pixels=FULL_DECODE_MAX_PIXELS)
        else:
            image = load_image(path, draft_size=(PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
            if max(image.size) > PREVIEW_MAX_SIDE:
                image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.LANCZOS)
        size = original_size(path)
        width, height = size if size is not None else image.size
        return DecodedImage(pil_to_qimage(image), QSize(width, height))
    except ImageLoadError as exc:
        return DecodedImage(QImage(), QSize(), str(exc))
    except Exception as exc:  # noqa: BLE001 - a broken file must never take the window down
        return DecodedImage(QImage(), QSize(), f"{type(exc).__name__}: {exc}")


class _DecodeHub(QObject):
    """Lives as long as the application, so a worker never emits on an object a closed dialog deleted."""

    # request id, image (null on failure), original width, height, error text
    decoded = Signal(int, QImage, int, int, str)


_hub: Optional[_DecodeHub] = None
_request_ids = itertools.count(1)


def _decode_hub() -> _DecodeHub:
    global _hub
    if _hub is None:
        _hub = _DecodeHub()  # first used on the GUI thread: that is where its signal is delivered
    return _hub


class _Ticket:
    """A queued decode; the dialog sets ``cancelled`` when it no longer needs it (stepped on, closed)."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False  # written on the GUI thread, read by the worker: a plain bool is enough


class _DecodeTask(QRunnable):
    def __init__(self, request: int, path: str, full: bool, ticket: _Ticket) -> None:
        super().__init__()
        self.request, self.path, self.full, self.ticket = request, path, full, ticket
        self.setAutoDelete(True)

    def run(self) -> None:
        if self.ticket.cancelled:
            return  # stepped past quickly: skip the decode nobody will see
        result = decode_preview(self.path, self.full)
        try:
            _decode_hub().decoded.emit(
                self.request, result.image, result.original.width(), result.original.height(), result.error
            )
        except RuntimeError:  # the application is shutting down: nobody is waiting
            return


# The viewer's share of the main window it opens over (when that is smaller than the screen share).
WINDOW_SHARE = 0.9


def _default_size(parent: Optional[QWidget]) -> QSize:
    """About :data:`SCREEN_SHARE` of the available screen, at least :data:`MIN_DEFAULT_SIZE`, never above the screen."""
    screen = parent.screen() if parent is not None else QGuiApplication.primaryScreen()
    if screen is None:
        return QSize(MIN_DEFAULT_SIZE)
    available = screen.availableGeometry().size()
    width = max(MIN_DEFAULT_SIZE.width(), round(available.width() * SCREEN_SHARE))
    height = max(MIN_DEFAULT_SIZE.height(), round(available.height() * SCREEN_SHARE))
    window = parent.window() if parent is not None else None
    if window is not None and window.isVisible():
        # Over the app's window, not bigger than it (a 1536x960 viewer covering a 1400x880 window hides it).
        width = min(width, max(MIN_DEFAULT_SIZE.width(), round(window.width() * WINDOW_SHARE)))
        height = min(height, max(MIN_DEFAULT_SIZE.height(), round(window.height() * WINDOW_SHARE)))
    return QSize(min(width, available.width()), min(height, available.height()))


class PreviewDialog(QDialog):
    """Quick look over ``paths``, starting at ``start`` (see the module docstring for the keys).

    Parameters
    ----------
    paths : sequence of str, or str
        The images to step through (a cluster's photos in grid order), or one image.
    start : int
        Position of the first image shown.
    loader : ThumbnailLoader, optional
        The grid's thumbnail loader: its cached thumbnail stands in while a large file decodes.
    parent : QWidget, optional
    names : sequence of str, or str, optional
        The cluster name of each image (shown in the caption), or one name for all.
    caption : str, optional
        Same as a single ``names`` (the keyword of the one-image preview).
    thumbnail_size : int
        The size the grid requests thumbnails at (the stand-in is looked up at that size).
    photo_meta : sequence of PhotoMeta, optional
        The capture time and place of each image (the session's, read at scan time), shown in the info
        line; without it they are read from each file's header when it is shown.

    Signals
    -------
    currentChanged(int)
        The shown position in ``paths`` changed (so the grid can follow).

    Notes
    -----
    The one-image call ``PreviewDialog(path, caption, parent)`` of earlier versions still works.
    """

    currentChanged = Signal(int)

    def __init__(
        self,
        paths: Union[Sequence[str], str, "os.PathLike[str]"],
        start: Union[int, str, None] = 0,
        loader: Union[ThumbnailLoader, QWidget, None] = None,
        parent: Optional[QWidget] = None,
        names: Union[Sequence[str], str, None] = None,
        caption: Optional[str] = None,
        thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
        photo_meta: Optional[Sequence[Optional[PhotoMeta]]] = None,
    ) -> None:
        # The one-image signature PreviewDialog(path, caption, parent), positionally.
        if isinstance(start, str) or start is None:
            caption, start = (start if caption is None else caption), 0
        if isinstance(loader, QWidget) and parent is None:
            loader, parent = None, loader
        super().__init__(parent)
        self.paths: list[str] = [os.fsdecode(paths)] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not self.paths:
            raise ValueError("the preview needs at least one image")
        if names is None:
            names = caption
        if isinstance(names, str):
            self._names: list[str] = [names] * len(self.paths)
        else:
            self._names = [str(n) for n in names] if names is not None else [""] * len(self.paths)
            if len(self._names) != len(self.paths):
                raise ValueError(f"{len(self._names)} names for {len(self.paths)} images")
        self.loader: Optional[ThumbnailLoader] = loader  # anything with ThumbnailLoader.cached(path, size)
        if photo_meta is not None and len(photo_meta) != len(self.paths):
            raise ValueError(f"{len(photo_meta)} capture records for {len(self.paths)} images")
        self._photo_meta: list[Optional[PhotoMeta]] = (
            list(photo_meta) if photo_meta is not None else [None] * len(self.paths)
        )
        self.thumbnail_size = int(thumbnail_size)
        self._current = min(max(int(start), 0), len(self.paths) - 1)
        self._actual_size = False
        self._cache: OrderedDict[tuple[str, bool], DecodedImage] = OrderedDict()
        self._requests: dict[int, tuple[str, bool]] = {}
        self._tickets: dict[int, _Ticket] = {}
        self._shown: Optional[DecodedImage] = None  # what the view paints now (None: placeholder or nothing)
        self.error: Optional[str] = None
        self.action_message = ""  # the last "Open file location" / "Open with" failure
        self._zoom_error = ""  # why the 100 % view could not decode the whole image
        self._pan_origin: Optional[QPoint] = None

        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the dialog takes every key (no child has focus)
        self._build()
        self._connected = False
        self._connect_hub()
        self.resize(_default_size(parent))
        self._show_current()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        self.image_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.image_label.setObjectName("preview_image")
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image_label.setWordWrap(True)
        self.image_label.installEventFilter(self)  # double-click toggles 100 %, drag pans
        self.scroll_area = QScrollArea()
        self.scroll_area.setObjectName("preview_scroll")
        self.scroll_area.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scroll_area.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrows step, they do not scroll
        self.scroll_area.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll_area.setStyleSheet("QScrollArea, QScrollArea > QWidget > QWidget { background: #202020; }")
        self.scroll_area.setWidget(self.image_label)
        self.scroll_area.setWidgetResizable(True)  # fitted: the label fills the viewport
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll_area.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll_area.setMinimumSize(200, 200)
        self.scroll_area.viewport().installEventFilter(self)  # re-fit when the viewport changes size

        self.name_label = QLabel()
        self.name_label.setObjectName("preview_name")
        font = self.name_label.font()
        font.setBold(True)
        self.name_label.setFont(font)
        self.info_label = QLabel()
        self.info_label.setObjectName("preview_info")
        self.path_label = QLabel()
        self.path_label.setObjectName("preview_path")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setWordWrap(True)
        self.path_label.setStyleSheet("color: #666")
        self.message_label = QLabel()
        self.message_label.setObjectName("preview_message")
        self.message_label.setStyleSheet("color: #a00000")
        self.message_label.setWordWrap(True)
        self.message_label.hide()

        self.previous_button = self._button("◀", "Previous image (Left)", lambda: self.step(-1))
        self.next_button = self._button("▶", "Next image (Right)", lambda: self.step(1))
        self.zoom_button = self._button("100 %", "One image pixel per screen pixel (1 or Z)", self.toggle_actual_size)
        self.zoom_button.setCheckable(True)
        self.location_button = self._button(
            "Open file location", "Show the file in the file manager", self.open_file_location
        )
        self.open_button = self._button("Open in app", "Open the file in its default app", self.open_file)
        self.close_button = self._button("Close", "Close (Space or Esc)", self.reject)

        for label in (self.name_label, self.info_label, self.path_label, self.message_label):
            # A long path or name must not widen the dialog: the text wraps or is cut instead.
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar = QHBoxLayout()
        bar.addWidget(self.previous_button)
        bar.addWidget(self.next_button)
        bar.addWidget(self.zoom_button)
        bar.addStretch(1)
        for button in (self.location_button, self.open_button, self.close_button):
            bar.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(2)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self.name_label)
        layout.addWidget(self.info_label)
        layout.addWidget(self.path_label)
        layout.addWidget(self.message_label)
        layout.addLayout(bar)

    def _button(self, text: str, tip: str, slot) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.setAutoDefault(False)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space closes the preview, it never clicks a button
        button.clicked.connect(slot)
        return button

    # ------------------------------------------------------------------ reading
    @property
    def path(self) -> str:
        """The file shown now."""
        return self.paths[self._current]

    def current(self) -> int:
        """Position of the shown image in :attr:`paths`."""
        return self._current

    def count(self) -> int:
        return len(self.paths)

    def image(self) -> Optional[QImage]:
        """The decoded image shown now, or None while it decodes or when it could not be read (see :attr:`error`)."""
        return self._shown.image if self._shown is not None and self._shown.ok else None

    def original_size(self) -> Optional[QSize]:
        """The shown file's pixel size (upright), or None while unknown."""
        return QSize(self._shown.original) if self._shown is not None and self._shown.ok else None

    def is_actual_size(self) -> bool:
        """True in the 100 % view, False when the image fits the window."""
        return self._actual_size

    def displayed_size(self) -> QSize:
        """The size, in device-independent pixels, the image is painted at now (empty when none is)."""
        pixmap = self.image_label.pixmap()
        if pixmap.isNull():
            return QSize()
        return QSize(
            round(pixmap.width() / pixmap.devicePixelRatio()), round(pixmap.height() / pixmap.devicePixelRatio())
        )

    def zoom_factor(self) -> Optional[float]:
        """Shown size / original size (1.0 in the 100 % view on a standard screen), or None without an image."""
        original = self.original_size()
        shown = self.displayed_size()
        if original is None or shown.isEmpty() or original.width() <= 0:
            return None
        return shown.width() * self.devicePixelRatioF() / original.width()

    # ------------------------------------------------------------------ stepping
    def set_current(self, position: int) -> None:
        """Show the image at ``position`` (clamped to the sequence); emits :attr:`currentChanged` when it moves."""
        position = min(max(int(position), 0), len(self.paths) - 1)
        if position == self._current:
            return
        self._current = position
        self.action_message = ""  # it was about the previous file
        self._show_current()
        self.currentChanged.emit(position)

    def step(self, delta: int) -> None:
        """Show the image ``delta`` positions on (negative: back); stops at the ends."""
        self.set_current(self._current + int(delta))

    def set_actual_size(self, actual: bool) -> None:
        """Switch between the 100 % view (``True``) and fitting the window."""
        self._actual_size = bool(actual)
        self.zoom_button.setChecked(self._actual_size)
        self.scroll_area.setWidgetResizable(not self._actual_size)
        policy = Qt.ScrollBarPolicy.ScrollBarAsNeeded if self._actual_size else Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        self.scroll_area.setHorizontalScrollBarPolicy(policy)
        self.scroll_area.setVerticalScrollBarPolicy(policy)
        self.image_label.setCursor(Qt.CursorShape.OpenHandCursor if self._actual_size else Qt.CursorShape.ArrowCursor)
        self._show_current()
        if self._actual_size:
            self._centre_scroll()

    def toggle_actual_size(self) -> None:
        self.set_actual_size(not self._actual_size)

    def toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()

    # ------------------------------------------------------------------ file actions
    def open_file_location(self) -> bool:
        """Reveal the shown file in the file manager; a failure is shown under the path."""
        return self._report(file_actions.open_file_location(self.path))

    def open_file(self) -> bool:
        """Open the shown file in its default app; a failure is shown under the path."""
        return self._report(file_actions.open_with_default_app(self.path))

    def _report(self, result: file_actions.FileActionResult) -> bool:
        self.action_message = "" if result.ok else result.message
        self._update_message()
        return result.ok

    # ------------------------------------------------------------------ keys and mouse
    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        key = event.key()
        if event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            super().keyPressEvent(event)  # Ctrl+C in the path and the like
            return
        if key in (Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_PageDown):
            self.step(1)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_PageUp):
            self.step(-1)
        elif key == Qt.Key.Key_Home:
            self.set_current(0)
        elif key == Qt.Key.Key_End:
            self.set_current(len(self.paths) - 1)
        elif key in (Qt.Key.Key_Space, Qt.Key.Key_Escape):
            self.reject()
        elif key in (Qt.Key.Key_1, Qt.Key.Key_Z):
            self.toggle_actual_size()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_F11):
            self.toggle_full_screen()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if watched is self.scroll_area.viewport() and event.type() == QEvent.Type.Resize:
            if not self._actual_size:
                self._paint()
            return False
        if watched is self.image_label:
            kind = event.type()
            if kind == QEvent.Type.MouseButtonDblClick:
                self.toggle_actual_size()
                return True
            if self._actual_size and isinstance(event, QMouseEvent):
                # Drag to pan the 100 % view (the hand tool of every photo viewer).
                if kind == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
                    self._pan_origin = event.globalPosition().toPoint()
                    self.image_label.setCursor(Qt.CursorShape.ClosedHandCursor)
                    return True
                if kind == QEvent.Type.MouseMove and self._pan_origin is not None:
                    position = event.globalPosition().toPoint()
                    delta = position - self._pan_origin
                    self._pan_origin = position
                    horizontal = self.scroll_area.horizontalScrollBar()
                    vertical = self.scroll_area.verticalScrollBar()
                    horizontal.setValue(horizontal.value() - delta.x())
                    vertical.setValue(vertical.value() - delta.y())
                    return True
                if kind == QEvent.Type.MouseButtonRelease and self._pan_origin is not None:
                    self._pan_origin = None
                    self.image_label.setCursor(Qt.CursorShape.OpenHandCursor)
                    return True
        return super().eventFilter(watched, event)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._connect_hub()  # shown again after done()
        super().showEvent(event)

    def done(self, result: int) -> None:
        # Closed: results still decoding are of no use (the hub outlives this dialog, so workers stay safe).
        if self._connected:
            _decode_hub().decoded.disconnect(self._on_decoded)
            self._connected = False
        self._cancel_requests(keep=())
        super().done(result)

    def _connect_hub(self) -> None:
        if not self._connected:
            _decode_hub().decoded.connect(self._on_decoded)
            self._connected = True

    # ------------------------------------------------------------------ showing
    def _show_current(self) -> None:
        path = self.path
        self._update_text(None)
        decoded = self._decoded_for(path)
        if decoded is None:
            self._shown = None
            self._show_placeholder(path)
        else:
            self._shown = decoded
            self.error = None if decoded.ok else decoded.error
            self._update_text(decoded)
            self._paint()
        self._prefetch()

    def _decoded_for(self, path: str) -> Optional[DecodedImage]:
        """The best decoded image of ``path`` for the current view, decoding or queueing what is missing."""
        fitted = self._cached(path, False)
        full = self._cached(path, True)
        if fitted is None and full is None:
            fitted = self._decode(path)
            if fitted is None:
                return None  # queued
        if full is not None and (full.ok or fitted is None):
            base = full
        else:
            assert fitted is not None
            base = fitted
        self._zoom_error = full.error if full is not None and not full.ok and base.ok else ""
        if self._actual_size and base.ok and base.image.size() != base.original and full is None:
            # The fitted decode is smaller than the file: the 100 % view needs the whole image (queued).
            self._queue(path, True)
        return base

    def _cached(self, path: str, full: bool) -> Optional[DecodedImage]:
        decoded = self._cache.get((path, full))
        if decoded is not None:
            self._cache.move_to_end((path, full))
        return decoded

    def _decode(self, path: str) -> Optional[DecodedImage]:
        """The fitted decode of ``path``: now when the file is small, else queued (None until it arrives)."""
        try:
            small = os.path.getsize(path) <= SYNC_DECODE_MAX_BYTES
        except OSError:
            small = True  # missing or unreadable: load_image says why at once
        if small:
            decoded = decode_preview(path)
            self._remember(path, False, decoded)
            return decoded
        self._queue(path, False)
        return None

    def _queue(self, path: str, full: bool) -> None:
        if (path, full) in self._cache or (path, full) in self._requests.values():
            return
        request = next(_request_ids)
        self._requests[request] = (path, full)
        ticket = self._tickets[request] = _Ticket()
        QThreadPool.globalInstance().start(_DecodeTask(request, path, full, ticket))

    def _cancel_requests(self, keep: Sequence[str]) -> None:
        """Forget the queued decodes of every path not in ``keep`` (those not started yet are skipped)."""
        for request, (path, _full) in list(self._requests.items()):
            if path not in keep:
                self._tickets.pop(request).cancelled = True
                del self._requests[request]

    def _prefetch(self) -> None:
        # The neighbours decode ahead on worker threads (never on this one): stepping is then instant.
        around = [p for p in (self._current + 1, self._current - 1) if 0 <= p < len(self.paths)]
        self._cancel_requests(keep=[self.path] + [self.paths[p] for p in around])
        for position in around:
            path = self.paths[position]
            if (path, False) not in self._cache and (path, True) not in self._cache:
                self._queue(path, False)

    def _remember(self, path: str, full: bool, decoded: DecodedImage) -> None:
        if full:  # one full-resolution image at a time: they are large
            for key in [k for k in self._cache if k[1]]:
                del self._cache[key]
        self._cache[(path, full)] = decoded
        self._cache.move_to_end((path, full))
        while len(self._cache) > CACHE_ENTRIES or (
            len(self._cache) > 1 and sum(d.image.sizeInBytes() for d in self._cache.values()) > CACHE_BYTES
        ):
            self._cache.popitem(last=False)

    @Slot(int, QImage, int, int, str)
    def _on_decoded(self, request: int, image: QImage, width: int, height: int, error: str) -> None:
        key = self._requests.pop(request, None)
        if key is None:
            return  # another dialog's request, or one this dialog no longer waits for
        self._tickets.pop(request, None)
        path, full = key
        self._remember(path, full, DecodedImage(image, QSize(width, height), error))
        if path == self.path:
            self._show_current()

    def _show_placeholder(self, path: str) -> None:
        self.error = None
        thumbnail = None if self.loader is None else self.loader.cached(path, self.thumbnail_size)
        if thumbnail is not None and not thumbnail.isNull():
            self._paint_image(thumbnail, fit=True)  # blurry for a moment, then sharp
        else:
            self.image_label.setPixmap(QPixmap())
            self.image_label.setText("Loading…")
            self.image_label.setStyleSheet("color: #ddd")

    def _paint(self) -> None:
        decoded = self._shown
        if decoded is None:
            self._show_placeholder(self.path)  # the stand-in thumbnail re-fits too
            return
        if not decoded.ok:
            self.image_label.setPixmap(QPixmap())
            self.image_label.setText(f"Cannot show this image:\n{decoded.error}")
            self.image_label.setStyleSheet("color: #ffb0b0")
            return
        self._paint_image(decoded.image, fit=not self._actual_size)

    def _paint_image(self, image: QImage, fit: bool) -> None:
        ratio = self.devicePixelRatioF()
        if fit:
            area = self.scroll_area.viewport().size()
            target = QSize(max(1, round(area.width() * ratio)), max(1, round(area.height() * ratio)))
            # Scaled up or down to fill the window, aspect kept: small images are never left tiny.
            scaled = image.scaled(
                target, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
            pixmap = QPixmap.fromImage(scaled)  # GUI thread: QPixmap is allowed here
        else:
            pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(ratio)  # 100 % = one image pixel per device pixel
        self.image_label.setStyleSheet("")
        self.image_label.setText("")
        self.image_label.setPixmap(pixmap)
        if not fit:
            self.image_label.resize(round(pixmap.width() / ratio), round(pixmap.height() / ratio))
        self._update_zoom_text()

    def _centre_scroll(self) -> None:
        for bar in (self.scroll_area.horizontalScrollBar(), self.scroll_area.verticalScrollBar()):
            bar.setValue((bar.minimum() + bar.maximum()) // 2)

    def _update_text(self, decoded: Optional[DecodedImage], zoom: str = "") -> None:
        name = os.path.basename(self.path) or self.path
        position = f"{self._current + 1} of {len(self.paths)}"
        self.setWindowTitle(f"{name} ({position})")
        self.name_label.setText(name)
        self.path_label.setText(self.path)
        parts = [position]
        if decoded is not None and decoded.ok:
            parts.append(f"{decoded.original.width()} × {decoded.original.height()} px")
        cluster = self._names[self._current]
        if cluster:
            parts.append(cluster)
        meta = self.photo_meta()
        parts.extend(text for text in (meta.time_text(), meta.place_text()) if text)
        if zoom:
            parts.append(zoom)
        self.info_label.setText("  ·  ".join(parts))
        self.previous_button.setEnabled(self._current > 0)
        self.next_button.setEnabled(self._current < len(self.paths) - 1)
        self._update_message()

    def photo_meta(self) -> PhotoMeta:
        """The capture time and place of the shown image (read from its header once when not given)."""
        meta = self._photo_meta[self._current]
        if meta is None:
            meta = self._photo_meta[self._current] = read_photo_meta(self.path)
        return meta

    def _update_zoom_text(self) -> None:
        # The button names what it switches to; the caption says the zoom now.
        self.zoom_button.setText("Fit" if self._actual_size else "100 %")
        factor = self.zoom_factor()
        if factor is not None and self._shown is not None:
            self._update_text(self._shown, f"shown at {round(factor * 100)} %")

    def _update_message(self) -> None:
        zoom = self._zoom_error and f"Cannot show at 100 %: {self._zoom_error}"
        text = "\n".join(m for m in (zoom, self.action_message) if m)
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))
