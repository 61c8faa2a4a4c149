"""HEIC and camera RAW in the window: thumbnails, the preview viewer, and one run over a folder of mixed formats
whose skipped files (a RAW without the optional extra) show with the reason the core gives."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from imgcluster_gui.core import formats
from imgcluster_gui.ui.preview import PreviewDialog
from imgcluster_gui.ui.thumbnails import ThumbnailLoader
from tests.robustness.corpus import minimal_dng

pytest.importorskip("pillow_heif")
pytest.importorskip("rawpy")

SIZE = 64
JOB_TIMEOUT_MS = 120_000


def _heic(path: Path, colour: tuple[int, int, int], orientation: int = 1, size=(60, 40)) -> str:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", size, colour).save(path, "HEIF", exif=exif.tobytes())
    return str(path)


def _dng(path: Path, **kwargs) -> str:
    path.write_bytes(minimal_dng(**kwargs))
    return str(path)


def test_thumbnails_of_heic_and_raw_files_are_decoded(qtbot, tmp_path):
    paths = [
        _heic(tmp_path / "phone.HEIC", (200, 0, 0), orientation=6),
        _dng(tmp_path / "sensor.dng", width=96, height=64),
        _dng(tmp_path / "preview.nef.dng", width=96, height=64, preview=Image.new("RGB", (120, 90), (0, 0, 200))),
    ]
    loader = ThumbnailLoader(disk_cache=False)
    try:
        ready: list[str] = []
        loader.thumbnailReady.connect(ready.append)
        for path in paths:
            assert loader.request(path, SIZE) is None
        qtbot.waitUntil(lambda: len(set(ready)) == len(paths), timeout=20_000)
        shapes = {}
        for path in paths:
            image = loader.request(path, SIZE)
            assert image is not None and not image.isNull(), loader.error_of(path, SIZE)
            shapes[Path(path).name] = (image.width(), image.height())
        assert shapes["phone.HEIC"] == (43, 64)  # turned upright: portrait
        assert shapes["sensor.dng"] == (64, 43)
        preview = loader.request(paths[2], SIZE)
        assert preview is not None and (preview.width(), preview.height()) == (64, 48)  # the JPEG preview (4:3)
        assert preview.pixelColor(5, 5).blue() > 150
    finally:
        loader.shutdown()


def test_the_preview_shows_a_raw_file_with_its_sensor_size(qtbot, tmp_path):
    paths = [
        _dng(tmp_path / "IMG_0001.CR2.dng", width=96, height=64, orientation=6),
        _heic(tmp_path / "b.heic", (0, 150, 0)),
    ]
    dialog = PreviewDialog(paths, 0)
    qtbot.addWidget(dialog)
    dialog.resize(500, 500)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.image() is not None or dialog.error is not None, timeout=10_000)
    assert dialog.error is None
    assert "64 × 96 px" in dialog.info_label.text()  # the sensor's pixels, upright (not the TIFF preview's)
    assert dialog.image().height() > dialog.image().width()
    dialog.step(1)
    qtbot.waitUntil(lambda: dialog.path == paths[1] and dialog.image() is not None, timeout=10_000)
    assert "60 × 40 px" in dialog.info_label.text()
    dialog.close()


@pytest.fixture
def fresh_settings(tmp_path, monkeypatch):
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    config = tmp_path / "xdg-config"
    config.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)


@pytest.mark.slow  # a real backbone on a dozen images
def test_a_mixed_folder_is_one_run_and_raw_without_the_extra_is_listed_with_its_reason(
    qtbot, fresh_settings, tmp_path, monkeypatch
):
    from imgcluster_gui.ui.main_window import MainWindow
    from imgcluster_gui.ui.settings import AppSettings

    folder = tmp_path / "card"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, colour in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)] * 2):
        pixels = np.clip(np.array(colour) + rng.normal(0, 10, (40, 60, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"jpeg_{i}.jpg")
        _heic(folder / f"phone_{i}.heic", colour)
    _dng(folder / "DSC_0001.NEF")
    monkeypatch.setitem(sys.modules, "rawpy", None)  # a default install: no 'raw' extra
    window = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(window)
    window.set_folder(str(folder))
    window.side_panel.set_algorithm("kmeans")
    window.side_panel.set_k(3)
    with qtbot.waitSignal(window.run_controller.resultReady, timeout=JOB_TIMEOUT_MS):
        assert window.start_run() is not None
    qtbot.waitUntil(lambda: not window.is_running(), timeout=JOB_TIMEOUT_MS)
    names = sorted(Path(p).name for p in window.session.paths)
    assert names == sorted([f"jpeg_{i}.jpg" for i in range(6)] + [f"phone_{i}.heic" for i in range(6)])
    assert [(Path(p).name, reason) for p, reason in window.skipped_indicator.skipped()] == [
        ("DSC_0001.NEF", formats.RAW_MISSING_REASON)
    ]
    assert window.skipped_indicator.isVisible() or not window.isVisible()
    # Saved and opened again (here, in a new window): it still says what was left out and why.
    saved = tmp_path / "card.imgcluster"
    assert window.save_session(str(saved))
    window.close()
    reopened = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(reopened)
    assert reopened.open_session(str(saved))
    assert [(Path(p).name, reason) for p, reason in reopened.skipped_indicator.skipped()] == [
        ("DSC_0001.NEF", formats.RAW_MISSING_REASON)
    ]
    reopened.close()
