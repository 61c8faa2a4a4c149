"""Thumbnails decoded off the GUI thread, newest requests first, with memory and disk caches.

The pattern of calibre's cover grid: a view's delegate calls :meth:`ThumbnailLoader.request`
while painting; a cache hit returns a ``QImage`` at once, a miss returns ``None`` (the delegate
paints a placeholder) and queues the image.  Worker threads take the *newest* request first
(what is on screen now), decode with ``load_image`` (JPEG draft mode; HEIC through pillow-heif; camera RAW
through its embedded preview, see ``core/formats.py``), scale, and hand a ``QImage`` back
to the GUI thread (``QPixmap`` must never be made off it); :attr:`ThumbnailLoader.thumbnailReady`
then tells the views to repaint that path.

Disk cache: ``$IMGCLUSTER_CACHE_DIR/thumbnails`` or the platform user cache dir
(``platformdirs.user_cache_dir("imgcluster")/thumbnails``), one JPEG per (path, file size,
mtime, thumbnail size), so an edited file gets a new thumbnail and two folders with the same
file names never share one.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional

from PIL import Image
from PySide6.QtCore import QObject, QRunnable, Qt, QThread, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage

from ..core.dataset import ImageLoadError, load_image
from ..core.storage import atomic_write, cache_dir

DEFAULT_THUMBNAIL_SIZE = 96
DEFAULT_MEMORY_BYTES = 96 * 1024 * 1024  # ~2,500 thumbnails of 96 px: several screens of a grid
DEFAULT_MAX_PENDING = 4096  # older requests are forgotten; a view re-requests what it still shows
_DISK_FORMAT_VERSION = "1"
_DISK_QUALITY = 90

Decoder = Callable[[str, int], Image.Image]


def thumbnail_cache_dir() -> Path:
    """The disk thumbnail cache folder (the app's cache folder, see :mod:`~imgcluster_gui.core.storage`)."""
    return cache_dir("thumbnails")


def decode_thumbnail(path: str, size: int) -> Image.Image:
    """Decode ``path`` to an RGB image whose longer side is ``size`` pixels.

    Large JPEGs are decoded at a reduced DCT scale (draft mode); small images are enlarged so a
    grid cell is filled without scaling at paint time.

    Raises
    ------
    ImageLoadError
        The file cannot be decoded (``str(error)`` says why).
    """
    image = load_image(path, draft_size=(size, size))
    width, height = image.size
    scale = size / max(width, height, 1)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if target != image.size:
        # reducing_gap: Pillow first shrinks by an integer factor (fast), then resamples.
        resample = Image.Resampling.BICUBIC if scale < 1 else Image.Resampling.BILINEAR
        image = image.resize(target, resample, reducing_gap=2.0 if scale < 1 else None)
    return image


def pil_to_qimage(image: Image.Image) -> QImage:
    """A Pillow image as a ``QImage`` (``Format_RGB32``, painted without conversion) owning its pixels.

    The pixels are copied into the QImage's own buffer, so no Python object has to outlive it
    (it is made on a worker thread and freed on the GUI thread).
    """
    rgbx = image.convert("RGBX")  # 4 bytes a pixel: rows need no padding
    width, height = rgbx.size
    qimage = QImage(width, height, QImage.Format.Format_RGBX8888)
    memoryview(qimage.bits())[:] = rgbx.tobytes()
    return qimage.convertToFormat(QImage.Format.Format_RGB32)


class ThumbnailLoader(QObject):
    """Asynchronous thumbnail source for the cluster grid.

    Parameters
    ----------
    parent : QObject, optional
    memory_bytes : int
        Size of the in-memory LRU cache of decoded ``QImage`` s.
    disk_cache : bool
        Keep JPEG thumbnails under :func:`thumbnail_cache_dir` (or ``cache_dir``).
    cache_dir : path-like, optional
        The disk cache folder (default :func:`thumbnail_cache_dir`, read when first needed).
    threads : int, optional
        Decoding threads; default leaves one core to the GUI (at least 1, at most 4).
    max_pending : int
        Queue length; beyond it the oldest requests are dropped.
    decoder : callable(path, size) -> PIL.Image, optional
        Replaces :func:`decode_thumbnail` (tests use it to watch the decoding thread).

    Signals
    -------
    thumbnailReady(str)
        A requested thumbnail of this path is now in the memory cache (or failed: see
        :meth:`error_of`).  Emitted on the GUI thread.
    """

    thumbnailReady = Signal(str)
    # generation, path, size, QImage (null on failure), error text ("" = none), from a worker thread.
    # Typed arguments (no Python objects) cross the thread boundary by Qt's own copying.
    _decoded = Signal(int, str, int, QImage, str)

    def __init__(
        self,
        parent: Optional[QObject] = None,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        disk_cache: bool = True,
        cache_dir: Optional[os.PathLike] = None,
        threads: Optional[int] = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        decoder: Optional[Decoder] = None,
    ) -> None:
        super().__init__(parent)
        self._memory: OrderedDict[tuple[str, int], QImage] = OrderedDict()
        self._memory_bytes = 0
        self._memory_limit = int(memory_bytes)
        self._failed: dict[tuple[str, int], str] = {}
        self._disk_cache = bool(disk_cache)
        self._cache_dir = None if cache_dir is None else Path(cache_dir)
        self._decoder: Decoder = decoder or decode_thumbnail
        self._max_pending = max(1, int(max_pending))
        # Shared with the workers, guarded by _lock.
        self._lock = threading.Lock()
        self._pending: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._in_flight: dict[tuple[str, int], int] = {}
        self._generation = 0
        self._active_workers = 0
        self._stopping = False
        self._pool = QThreadPool(self)
        ideal = max(1, QThread.idealThreadCount())
        self._max_workers = int(threads) if threads else min(4, max(1, ideal - 1))
        self._pool.setMaxThreadCount(self._max_workers)
        self._decoded.connect(self._on_decoded, Qt.ConnectionType.QueuedConnection)

    # ------------------------------------------------------------------ GUI-thread API
    @property
    def generation(self) -> int:
        """Results of requests made before the last :meth:`set_generation` are dropped."""
        return self._generation

    def request(self, path: str, size: int = DEFAULT_THUMBNAIL_SIZE) -> Optional[QImage]:
        """The cached thumbnail of ``path`` (longer side ``size``), or ``None`` after queueing it.

        Requesting again moves the path to the front of the queue (newest first).
        """
        key = (str(path), int(size))
        image = self._memory.get(key)
        if image is not None:
            self._memory.move_to_end(key)
            return image
        if key in self._failed:
            return None
        with self._lock:
            if self._stopping or key in self._in_flight:
                return None
            self._pending[key] = None
            self._pending.move_to_end(key)
            while len(self._pending) > self._max_pending:
                self._pending.popitem(last=False)
            start_worker = self._active_workers < self._max_workers
            if start_worker:
                self._active_workers += 1
        if start_worker:
            self._pool.start(_DecodeTask(self))
        return None

    def cached(self, path: str, size: int = DEFAULT_THUMBNAIL_SIZE) -> Optional[QImage]:
        """The memory-cached thumbnail, without queueing anything."""
        return self._memory.get((str(path), int(size)))

    def error_of(self, path: str, size: int = DEFAULT_THUMBNAIL_SIZE) -> Optional[str]:
        """Why the thumbnail could not be made, or ``None``."""
        return self._failed.get((str(path), int(size)))

    def pending_count(self) -> int:
        """Requests queued or being decoded."""
        with self._lock:
            return len(self._pending) + len(self._in_flight)

    def clear_pending(self) -> None:
        """Forget queued requests (those being decoded still finish and are cached)."""
        with self._lock:
            self._pending.clear()

    def set_generation(self) -> int:
        """Start a new generation: queued work is dropped and results still in flight are ignored.

        Call it when the shown folder or session changes.  Returns the new generation number.
        """
        with self._lock:
            self._generation += 1
            self._pending.clear()
            self._in_flight.clear()
            self._failed.clear()  # a file may have been fixed meanwhile
            return self._generation

    def clear_memory(self) -> None:
        """Empty the in-memory cache (the disk cache stays)."""
        self._memory.clear()
        self._memory_bytes = 0

    def memory_usage(self) -> int:
        """Bytes held by the in-memory cache."""
        return self._memory_bytes

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop taking work, drop the queue and wait for the workers; True if they all ended."""
        with self._lock:
            self._stopping = True
            self._pending.clear()
        return self._pool.waitForDone(int(timeout_ms))

    # ------------------------------------------------------------------ results (GUI thread)
    @Slot(int, str, int, QImage, str)
    def _on_decoded(self, generation: int, path: str, size: int, image: QImage, error: str) -> None:
        key = (path, size)
        with self._lock:
            if generation != self._generation or self._stopping:
                return  # stale: the folder changed while this was decoding
            if self._in_flight.get(key) == generation:
                del self._in_flight[key]
        if image.isNull():
            self._failed[key] = error or "cannot be decoded"
        else:
            self._remember(key, image)
        self.thumbnailReady.emit(path)

    def _remember(self, key: tuple[str, int], image: QImage) -> None:
        previous = self._memory.pop(key, None)
        if previous is not None:
            self._memory_bytes -= previous.sizeInBytes()
        self._memory[key] = image
        self._memory_bytes += image.sizeInBytes()
        while self._memory_bytes > self._memory_limit and len(self._memory) > 1:
            _, evicted = self._memory.popitem(last=False)
            self._memory_bytes -= evicted.sizeInBytes()

    # ------------------------------------------------------------------ worker threads
    def _work(self) -> None:
        """Runs on a pool thread: decode the newest request until the queue is empty."""
        while True:
            with self._lock:
                if self._stopping or not self._pending:
                    self._active_workers -= 1
                    return
                key, _ = self._pending.popitem(last=True)  # LIFO: what was painted last
                generation = self._generation
                self._in_flight[key] = generation
            image = QImage()
            error = ""
            try:
                image = self._load(*key)
            except ImageLoadError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a broken file must not kill the worker
                error = f"{type(exc).__name__}: {exc}"
            try:
                self._decoded.emit(generation, key[0], key[1], image, error)
            except RuntimeError:  # the loader was deleted without shutdown(): nobody is waiting
                return

    def _disk_path(self, path: str, size: int) -> Optional[Path]:
        if not self._disk_cache:
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None  # the decoder reports the real reason
        digest = hashlib.sha1(
            b"|".join(
                [
                    _DISK_FORMAT_VERSION.encode(),
                    os.fsencode(os.path.abspath(path)),
                    str(info.st_size).encode(),
                    str(info.st_mtime_ns).encode(),
                    str(size).encode(),
                ]
            )
        ).hexdigest()
        root = self._cache_dir if self._cache_dir is not None else thumbnail_cache_dir()
        return root / digest[:2] / f"{digest}.jpg"

    def _load(self, path: str, size: int) -> QImage:
        cache_file = self._disk_path(path, size)
        if cache_file is not None and cache_file.is_file():
            try:
                with Image.open(cache_file) as cached:
                    cached.load()
                    return pil_to_qimage(cached)
            except Exception:  # noqa: BLE001 - a damaged cache entry is decoded again
                pass
        image = self._decoder(path, size)
        if cache_file is not None:
            _write_disk_thumbnail(cache_file, image)
        return pil_to_qimage(image)


class _DecodeTask(QRunnable):
    """One worker: runs :meth:`ThumbnailLoader._work` on a pool thread."""

    def __init__(self, loader: ThumbnailLoader) -> None:
        super().__init__()
        self._loader = loader
        self.setAutoDelete(True)

    def run(self) -> None:
        self._loader._work()


def _write_disk_thumbnail(cache_file: Path, image: Image.Image) -> None:
    """Best effort: a read-only or full cache must not stop the thumbnails from showing."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(cache_file, "wb") as fh:  # readers see a whole file or none
            image.convert("RGB").save(fh, "JPEG", quality=_DISK_QUALITY)
    except OSError:
        return
