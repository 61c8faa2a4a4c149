"""ThumbnailLoader: decoding off the GUI thread, LIFO order, generations, caches, failures."""

from __future__ import annotations

import os
import threading
import time

import pytest
from PIL import Image

from imgcluster_gui.ui.thumbnails import ThumbnailLoader, decode_thumbnail, thumbnail_cache_dir

SIZE = 48


class RecordingDecoder:
    """Wraps the real decoder; records the thread and order, and can hold the first decode."""

    def __init__(self, hold_first: bool = False):
        self.threads: set[int] = set()
        self.order: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, path: str, size: int) -> Image.Image:
        with self._lock:
            self.threads.add(threading.get_ident())
            self.order.append(os.path.basename(path))
        self.started.set()
        assert self.release.wait(10), "test never released the decoder"
        return decode_thumbnail(path, size)


@pytest.fixture
def make_loader(qtbot):
    loaders = []

    def make(**kwargs) -> ThumbnailLoader:
        loader = ThumbnailLoader(**kwargs)
        loaders.append(loader)
        return loader

    yield make
    for loader in loaders:
        loader.shutdown()


def test_many_images_decode_off_the_gui_thread(qtbot, make_loader, image_folder):
    decoder = RecordingDecoder()
    loader = make_loader(decoder=decoder, threads=2)
    ready: list[str] = []
    loader.thumbnailReady.connect(ready.append)
    for path in image_folder:
        assert loader.request(path, SIZE) is None  # a miss: queued
    qtbot.waitUntil(lambda: len(ready) == len(image_folder), timeout=10000)
    assert threading.get_ident() not in decoder.threads
    assert sorted(ready) == sorted(image_folder)
    for path in image_folder:
        image = loader.request(path, SIZE)
        assert image is not None and not image.isNull()
        assert max(image.width(), image.height()) == SIZE  # 40x30 images are enlarged to fill the cell
    assert loader.pending_count() == 0


def test_newest_request_is_decoded_first(qtbot, make_loader, image_folder):
    decoder = RecordingDecoder(hold_first=True)
    loader = make_loader(decoder=decoder, threads=1)
    loader.request(image_folder[0], SIZE)
    assert decoder.started.wait(5)  # the only worker is now busy with image 0
    for path in image_folder[1:5]:
        loader.request(path, SIZE)
    loader.request(image_folder[2], SIZE)  # asked again (scrolled back): jumps to the front
    decoder.release.set()
    qtbot.waitUntil(lambda: loader.pending_count() == 0, timeout=10000)
    names = [os.path.basename(p) for p in image_folder[:5]]
    assert decoder.order == [names[0], names[2], names[4], names[3], names[1]]


def test_generation_change_drops_stale_results(qtbot, make_loader, image_folder):
    decoder = RecordingDecoder(hold_first=True)
    loader = make_loader(decoder=decoder, threads=1)
    ready: list[str] = []
    loader.thumbnailReady.connect(ready.append)
    stale, queued = image_folder[0], image_folder[1:6]
    loader.request(stale, SIZE)
    assert decoder.started.wait(5)
    for path in queued:
        loader.request(path, SIZE)
    loader.set_generation()  # e.g. another folder is shown now
    fresh = image_folder[-1]
    loader.request(fresh, SIZE)
    decoder.release.set()
    qtbot.waitUntil(lambda: fresh in ready, timeout=10000)
    qtbot.wait(50)  # let the stale decode's queued result arrive too
    assert loader.cached(stale, SIZE) is None and stale not in ready
    assert not any(path in ready for path in queued)  # dropped before decoding
    assert [os.path.basename(fresh)] == decoder.order[1:]


def test_disk_cache_serves_a_second_loader_and_follows_file_changes(qtbot, make_loader, image_folder, tmp_path):
    cache = tmp_path / "thumbs"
    first = make_loader(cache_dir=cache)
    path = image_folder[0]
    first.request(path, SIZE)
    qtbot.waitUntil(lambda: first.cached(path, SIZE) is not None, timeout=10000)
    assert len(list(cache.rglob("*.jpg"))) == 1

    def must_not_decode(p, size):
        raise AssertionError("should have come from the disk cache")

    second = make_loader(cache_dir=cache, decoder=must_not_decode)
    second.request(path, SIZE)
    qtbot.waitUntil(lambda: second.cached(path, SIZE) is not None or second.error_of(path, SIZE), timeout=10000)
    assert second.error_of(path, SIZE) is None

    # The file changes: a new key, so it is decoded again (and reported, since decoding fails here).
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third = make_loader(cache_dir=cache, decoder=must_not_decode)
    third.request(path, SIZE)
    qtbot.waitUntil(lambda: third.error_of(path, SIZE) is not None, timeout=10000)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(tmp_path))
    assert thumbnail_cache_dir() == tmp_path / "thumbnails"


def test_broken_file_reports_its_reason(qtbot, make_loader, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    loader = make_loader(disk_cache=False)
    with qtbot.waitSignal(loader.thumbnailReady, timeout=10000) as signal:
        loader.request(str(broken), SIZE)
    assert signal.args == [str(broken)]
    assert loader.request(str(broken), SIZE) is None and loader.error_of(str(broken), SIZE)
    assert loader.pending_count() == 0  # a failure is not queued again


def test_memory_cache_is_bounded(qtbot, make_loader, image_folder):
    one_thumbnail = SIZE * SIZE * 4
    loader = make_loader(disk_cache=False, memory_bytes=3 * one_thumbnail)
    ready: list[str] = []
    loader.thumbnailReady.connect(ready.append)
    for path in image_folder[:8]:
        loader.request(path, SIZE)
    qtbot.waitUntil(lambda: len(ready) == 8, timeout=10000)
    assert loader.memory_usage() <= 3 * one_thumbnail
    assert loader.cached(ready[-1], SIZE) is not None  # the newest stays


def test_shutdown_stops_taking_work(qtbot, make_loader, image_folder):
    loader = make_loader()
    assert loader.shutdown()
    assert loader.request(image_folder[0], SIZE) is None
    time.sleep(0.05)
    assert loader.pending_count() == 0
