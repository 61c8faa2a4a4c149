"""Capture dates and places in the window: the grid's time sort and date captions (through the View menu's
actions), the hover card, the viewer's info line, and the Run panel's "Group by time" slider.

The photos are real files with EXIF written by Pillow; the session carries the table the scan reads
(``core.photo_meta.read_photo_metas``), as a run's session does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSettings
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QMainWindow

from imgcluster_gui.core.photo_meta import read_photo_metas
from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.cluster_grid import ClusterGridWidget
from imgcluster_gui.ui.preview import PreviewDialog
from imgcluster_gui.ui.side_panel import SidePanel
from imgcluster_gui.ui.thumbnails import ThumbnailLoader
from imgcluster_gui.ui.view_controls import ViewControls

# Shot order differs from the file-name order: c.jpg first (2019), a.jpg (2021), b.jpg (2023); d.png has no EXIF.
SHOTS = {"a.jpg": "2021:08:14 09:30:00", "b.jpg": "2023:01:02 18:45:10", "c.jpg": "2019:12:24 20:00:00"}
ROME = {1: "N", 2: (41.0, 53.0, 24.0), 3: "E", 4: (12.0, 29.0, 32.0), 5: b"\x00", 6: 21.0}


@pytest.fixture
def dated_session(tmp_path: Path) -> ClusterSession:
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for index, (name, stamp) in enumerate(sorted(SHOTS.items())):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = stamp
        if name == "a.jpg":
            exif.get_ifd(0x8769)[0x9011] = "+02:00"
            exif.get_ifd(0x8825).update(ROME)
        Image.new("RGB", (40, 30), (60 * index, 100, 150)).save(folder / name, exif=exif)
        paths.append(str(folder / name))
    Image.new("RGB", (40, 30), (10, 10, 10)).save(folder / "d.png")
    paths.append(str(folder / "d.png"))
    table = read_photo_metas(paths, cache=False)
    features = np.eye(4, 3, dtype=np.float32)
    return ClusterSession(paths, [0, 0, 0, 0], {0: "Holidays"}, features=features, root=str(folder), photo_meta=table)


@pytest.fixture
def window_grid(qtbot, dated_session):
    """A shown grid over the dated session, with the View menu's controls bound to it."""
    window = QMainWindow()
    qtbot.addWidget(window)
    loader = ThumbnailLoader(disk_cache=False)
    stack = QUndoStack()
    grid = ClusterGridWidget(dated_session, stack, loader)
    grid.preview_on_activate = False
    grid.undo_stack_ref = stack
    window.setCentralWidget(grid)
    controls = ViewControls(grid, lambda: None, window)
    window.resize(600, 500)
    window.show()
    qtbot.waitExposed(window)
    yield grid, controls
    grid.dispose()
    loader.shutdown()


def _names(grid: ClusterGridWidget, session: ClusterSession) -> list[str]:
    return [Path(session.paths[i]).name for i in grid.indices_of(0)]


def test_sort_by_capture_time_puts_the_oldest_first_and_undated_last(window_grid, dated_session):
    grid, controls = window_grid
    assert _names(grid, dated_session) == ["a.jpg", "b.jpg", "c.jpg", "d.png"]
    controls.sort_actions["time"].trigger()  # View > Sort images > By capture time
    assert grid.sort_mode() == "time" and controls.state()["sort"] == "time"
    assert _names(grid, dated_session) == ["c.jpg", "a.jpg", "b.jpg", "d.png"]
    assert "capture" in controls.sort_actions["time"].text().lower()


def test_date_captions_show_the_capture_date_and_the_file_date_without_exif(window_grid, dated_session):
    grid, controls = window_grid
    controls.caption_actions["date"].trigger()
    assert grid.caption_mode() == "date" and "Capture" in controls.caption_actions["date"].text()
    painter, metrics = grid.cell_painter, grid._metrics
    assert painter.caption(dated_session.paths[2], 400, metrics) == "2019-12-24"
    undated = painter.caption(dated_session.paths[3], 400, metrics)
    assert len(undated) == 10 and undated[:2] == "20" and undated != "2019-12-24"  # the file's date


def test_hover_card_shows_capture_time_place_and_marks_a_file_date(window_grid, dated_session):
    grid, _controls = window_grid
    card = grid.tooltip_at(grid.cell_rect(0).center())  # a.jpg
    assert "2021-08-14 09:30" in card and "41.89000° N, 12.49222° E" in card and "Holidays" in card
    undated_card = grid.tooltip_at(grid.cell_rect(3).center())
    assert "(file date)" in undated_card


def test_viewer_info_line_shows_the_capture_time_and_place(qtbot, window_grid, dated_session):
    grid, _controls = window_grid
    dialog = grid.open_preview(0)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.image() is not None or dialog.error is not None, timeout=5000)
    text = dialog.info_label.text()
    assert "2021-08-14 09:30" in text and "41.89000° N" in text and "Holidays" in text
    dialog.step(3)
    assert "(file date)" in dialog.info_label.text()
    dialog.close()
    # Opened on its own (no session): the header of the file is read for it.
    alone = PreviewDialog(dated_session.paths[1], "Alone")
    qtbot.addWidget(alone)
    assert "2023-01-02 18:45" in alone.info_label.text()
    alone.close()


@pytest.fixture
def make_panel(qtbot, tmp_path):
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))

    def make() -> SidePanel:
        widget = SidePanel()
        qtbot.addWidget(widget)
        return widget

    return make


def test_group_by_time_slider_reaches_the_run_is_saved_and_shows_a_runs_value(make_panel, dated_session):
    panel = make_panel()
    panel.set_folder(str(Path(dated_session.paths[0]).parent))
    assert panel.time_slider.value() == 0 and panel.time_label.text() == "Off"
    assert panel.config().time_weight == 0.0  # off by default: grouping by look, as before
    panel.time_slider.setValue(40)
    assert panel.time_label.text() == "40 %" and panel.config().time_weight == pytest.approx(0.4)
    again = make_panel()
    again.restore_state(panel.state())
    assert again.time_slider.value() == 40
    assert again.show_config(dict(panel.config().to_dict(), time_weight=0.75)) and again.time_slider.value() == 75
    index = panel.algorithm_combo.findData("kmeans")
    panel.algorithm_combo.setCurrentIndex(index)
    assert not panel.time_slider.isEnabled() and panel.config().time_weight == 0.0  # only Leiden mixes time in
    panel.algorithm_combo.setCurrentIndex(panel.algorithm_combo.findData("leiden"))
    assert panel.time_slider.isEnabled() and panel.config().time_weight == pytest.approx(0.4)


def test_window_csv_export_writes_the_capture_time_and_place(qtbot, tmp_path, dated_session, monkeypatch):
    """The window's CSV export carries the session's dates and GPS, as the CLI's --out does."""
    import csv

    from imgcluster_gui.ui.main_window import MainWindow
    from imgcluster_gui.ui.settings import AppSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("IMGCLUSTER_DATA_DIR", str(tmp_path / "data"))
    window = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(window)
    window.show_session(dated_session)
    written = window.export_csv(str(tmp_path / "labels.csv"))
    assert written is not None
    with open(written, newline="", encoding="utf-8") as fh:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(fh)}
    assert rows["c.jpg"]["capture_time"].startswith("2019-12-24T20:00:00")
    assert rows["a.jpg"]["capture_time_source"] == "exif"
    assert abs(float(rows["a.jpg"]["latitude"]) - (41 + 53 / 60 + 24 / 3600)) < 1e-4
    assert rows["d.png"]["capture_time_source"] == "file"
    window.close()
