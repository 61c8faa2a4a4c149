"""Quick look: fitted (small images scaled up), 100 %, stepping with the keys, Space closes, decode failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSize, Qt

from imgcluster_gui.ui import file_actions, preview
from imgcluster_gui.ui.preview import PreviewDialog
from imgcluster_gui.ui.thumbnails import ThumbnailLoader


@pytest.fixture
def photos(tmp_path: Path) -> list[str]:
    """A 32x32 red square, a 300x150 green landscape, a 20x60 blue portrait."""
    paths = []
    for name, size, colour in (
        ("a.png", (32, 32), (220, 0, 0)),
        ("b.png", (300, 150), (0, 200, 0)),
        ("c.jpg", (20, 60), (0, 0, 220)),
    ):
        path = tmp_path / name
        Image.new("RGB", size, colour).save(path)
        paths.append(str(path))
    return paths


def _open(qtbot, paths, start=0, size=(600, 600), **kwargs) -> PreviewDialog:
    dialog = PreviewDialog(paths, start, **kwargs)
    qtbot.addWidget(dialog)
    dialog.resize(*size)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.image() is not None or dialog.error is not None, timeout=5000)
    return dialog


def _fills(dialog: PreviewDialog) -> bool:
    """The shown image touches the viewport's edges in its limiting direction."""
    area = dialog.scroll_area.viewport().size()
    shown = dialog.displayed_size()
    return (
        shown.width() <= area.width()
        and shown.height() <= area.height()
        and (abs(shown.width() - area.width()) <= 1 or abs(shown.height() - area.height()) <= 1)
    )


def test_a_small_image_is_scaled_up_to_fill_the_dialog(qtbot, photos):
    dialog = _open(qtbot, photos)
    shown = dialog.displayed_size()
    assert shown.width() == shown.height() > 300  # 32 px scaled up, square kept
    assert _fills(dialog)
    assert "1 of 3" in dialog.info_label.text() and "32 × 32 px" in dialog.info_label.text()
    assert dialog.windowTitle() == "a.png (1 of 3)"
    # Re-fits on resize.
    dialog.resize(900, 450)  # now the height limits it
    qtbot.waitUntil(lambda: _fills(dialog) and dialog.displayed_size().width() < shown.width(), timeout=2000)


def test_right_steps_to_the_next_path_and_signals_it(qtbot, photos):
    dialog = _open(qtbot, photos, names=["Reds", "Greens", "Blues"])
    with qtbot.waitSignal(dialog.currentChanged, timeout=1000) as signal:
        qtbot.keyClick(dialog, Qt.Key.Key_Right)
    assert signal.args == [1] and dialog.path == photos[1] and dialog.current() == 1
    qtbot.waitUntil(lambda: dialog.image() is not None and dialog.image().width() == 300, timeout=5000)
    assert "2 of 3" in dialog.info_label.text() and "Greens" in dialog.info_label.text()
    assert _fills(dialog)
    qtbot.keyClick(dialog, Qt.Key.Key_End)
    assert dialog.current() == 2
    qtbot.keyClick(dialog, Qt.Key.Key_Right)  # stays at the end
    assert dialog.current() == 2
    qtbot.keyClick(dialog, Qt.Key.Key_Up)
    assert dialog.current() == 1
    qtbot.keyClick(dialog, Qt.Key.Key_Home)
    assert dialog.current() == 0 and dialog.path_label.text() == photos[0]


def test_space_closes(qtbot, photos):
    dialog = _open(qtbot, photos)
    with qtbot.waitSignal(dialog.finished, timeout=1000):
        qtbot.keyClick(dialog, Qt.Key.Key_Space)
    assert not dialog.isVisible()


def test_escape_closes_and_no_button_takes_space(qtbot, photos):
    dialog = _open(qtbot, photos)
    assert all(b.focusPolicy() == Qt.FocusPolicy.NoFocus for b in (dialog.zoom_button, dialog.close_button))
    with qtbot.waitSignal(dialog.finished, timeout=1000):
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)


def test_100_percent_shows_the_image_at_its_own_size(qtbot, photos):
    dialog = _open(qtbot, photos)
    ratio = dialog.devicePixelRatioF()
    qtbot.keyClick(dialog, Qt.Key.Key_1)
    assert dialog.is_actual_size() and dialog.zoom_button.isChecked()
    assert dialog.displayed_size() == QSize(round(32 / ratio), round(32 / ratio))
    assert dialog.zoom_factor() == pytest.approx(1.0)
    qtbot.keyClick(dialog, Qt.Key.Key_Right)  # stepping keeps the zoom
    qtbot.waitUntil(lambda: dialog.image() is not None and dialog.image().width() == 300, timeout=5000)
    assert dialog.displayed_size() == QSize(round(300 / ratio), round(150 / ratio))
    dialog.zoom_button.click()  # the button toggles back to fitting the window
    assert not dialog.is_actual_size() and _fills(dialog)
    qtbot.keyClick(dialog, Qt.Key.Key_Z)
    assert dialog.is_actual_size()


def test_100_percent_decodes_the_whole_of_a_large_image(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(preview, "PREVIEW_MAX_SIDE", 100)  # the fitted decode is then smaller than the file
    path = tmp_path / "big.png"
    Image.new("RGB", (400, 200), (10, 20, 30)).save(path)
    dialog = _open(qtbot, [str(path)])
    assert dialog.image().width() == 100 and "400 × 200 px" in dialog.info_label.text()
    dialog.set_actual_size(True)
    qtbot.waitUntil(lambda: dialog.image().width() == 400, timeout=5000)
    assert dialog.zoom_factor() == pytest.approx(1.0)


def test_a_corrupt_file_shows_the_reason(qtbot, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 4)
    dialog = _open(qtbot, [photos[0], str(broken)], start=1)
    assert dialog.image() is None and dialog.error
    assert "Cannot show this image" in dialog.image_label.text() and dialog.error in dialog.image_label.text()
    qtbot.keyClick(dialog, Qt.Key.Key_Left)  # the dialog still works
    assert dialog.image() is not None and dialog.error is None


def test_large_files_decode_off_the_gui_thread_with_the_thumbnail_standing_in(qtbot, photos, monkeypatch):
    monkeypatch.setattr(preview, "SYNC_DECODE_MAX_BYTES", 0)  # every file counts as large
    loader = ThumbnailLoader(disk_cache=False, threads=1)
    assert loader.request(photos[1]) is None
    qtbot.waitUntil(lambda: loader.cached(photos[1]) is not None, timeout=5000)
    dialog = PreviewDialog(photos, 1, loader=loader)
    qtbot.addWidget(dialog)
    dialog.resize(600, 600)
    dialog.show()
    assert dialog.image() is None  # queued, not decoded here
    assert not dialog.displayed_size().isEmpty()  # the grid's thumbnail, scaled to fit, meanwhile
    qtbot.waitUntil(lambda: dialog.image() is not None, timeout=5000)
    assert dialog.image().width() == 300 and _fills(dialog)
    # The neighbours were decoded ahead: stepping shows them at once.
    qtbot.waitUntil(lambda: len(dialog._cache) == 3, timeout=5000)
    dialog.step(1)
    assert dialog.image() is not None and dialog.image().width() == 20
    loader.shutdown()


def test_the_one_image_signature_still_works(qtbot, photos):
    dialog = PreviewDialog(photos[0], "Reds", None)
    qtbot.addWidget(dialog)
    assert dialog.paths == [photos[0]] and "Reds" in dialog.info_label.text()
    assert dialog.image() is not None and dialog.path_label.text() == photos[0]


def test_the_default_size_fits_the_screen(qtbot, photos):
    dialog = PreviewDialog(photos, 0)
    qtbot.addWidget(dialog)
    available = dialog.screen().availableGeometry().size()
    assert dialog.width() <= available.width() and dialog.height() <= available.height()
    assert dialog.width() >= min(720, available.width()) and dialog.height() >= min(640, available.height())


def test_open_file_location_reports_a_failure_under_the_path(qtbot, photos, monkeypatch):
    calls = []
    monkeypatch.setattr(
        file_actions,
        "open_file_location",
        lambda path: calls.append(path) or file_actions.FileActionResult(False, "no file manager"),
    )
    dialog = _open(qtbot, photos)
    dialog.location_button.click()
    assert calls == [photos[0]]
    assert not dialog.message_label.isHidden() and "no file manager" in dialog.message_label.text()
    dialog.step(1)  # the message was about the previous file
    assert dialog.message_label.isHidden()
