"""The Compare view of two runs, the run list's Compare button, and a new run keeping the shown run's ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QMessageBox

from imgcluster_gui.core.session import ClusterSession, RunRecord
from imgcluster_gui.ui.compare_view import CompareDialog
from imgcluster_gui.ui.run_list import RunList

SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "resources" / "sample_images"
RUN_TIMEOUT_MS = 240_000


def _two_runs(session: ClusterSession) -> tuple[ClusterSession, ClusterSession]:
    """Run B: run A's groups renumbered (0->2, 1->0, 2->1), and images 0 and 9 moved to other groups."""
    renumber = {0: 2, 1: 0, 2: 1}
    labels = np.array([renumber[int(c)] for c in session.labels])
    labels[0] = 0  # A's "Reds" (0) -> B's 0, the match of A's 1
    labels[9] = 1  # A's 1 -> B's 1, the match of A's 2
    other = ClusterSession(session.paths, labels, cluster_names={1: "Blues?"})
    return session, other


def test_overlap_table_names_groups_highlights_matches_and_summarises(qtbot, session):
    a, b = _two_runs(session)
    dialog = CompareDialog(a, b, ("Run 1", "Run 2"))
    qtbot.addWidget(dialog)
    table = dialog.table
    rows = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    columns = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert rows == ["Reds (8)", "Cluster 1 (8)", "Cluster 2 (8)"]
    # Columns follow the rows' matches, so the matched pairs are the highlighted diagonal.
    assert dialog.column_ids == [2, 0, 1]
    assert columns == ["Cluster 2 (7)", "Cluster 0 (8)", "Blues? (9)"]
    assert [dialog.is_matched(r, c) for r in range(3) for c in range(3)] == [r == c for r in range(3) for c in range(3)]
    assert table.item(0, 0).font().bold() and not table.item(0, 1).font().bold()
    assert [[table.item(r, c).text() for c in range(3)] for r in range(3)] == [
        ["7", "1", ""],
        ["", "7", "1"],
        ["", "", "8"],
    ]
    text = dialog.summary_text()
    assert "NMI" in text and "ARI" in text
    assert "2 of 24 images changed group" in text and "3 of 3 groups matched" in text
    assert dialog.summary.text() == text


def test_show_images_that_moved_and_a_cells_images(qtbot, session):
    a, b = _two_runs(session)
    dialog = CompareDialog(a, b, ("Run 1", "Run 2"))
    qtbot.addWidget(dialog)
    assert dialog.moved_button.isEnabled()
    with qtbot.waitSignal(dialog.showImages) as moved:
        qtbot.mouseClick(dialog.moved_button, Qt.MouseButton.LeftButton)
    assert moved.args[0] == [0, 9]
    with qtbot.waitSignal(dialog.showImages) as cell:
        dialog.table.cellDoubleClicked.emit(0, 1)
    assert cell.args[0] == [0]


def test_runs_over_different_images_compare_the_common_ones(qtbot, session):
    a = session
    b = ClusterSession(session.paths[8:] + ["/elsewhere/x.png"], np.r_[np.zeros(16, dtype=int), 1])
    dialog = CompareDialog(a, b, ("Run 1", "Run 2"), shown_session=lambda: b)
    qtbot.addWidget(dialog)
    assert dialog.comparison.n_images == 16
    assert "compared on the 16 images both runs hold" in dialog.summary_text()
    with qtbot.waitSignal(dialog.showImages) as shown:
        dialog.show_moved()
    # A's clusters 1 and 2 both went to B's 0: one of them is the match, the other's 8 images moved, and
    # they are given as indices into the session on screen (B).
    assert len(shown.args[0]) == 8 and all(0 <= i < 16 for i in shown.args[0])


def test_run_list_compare_button_opens_the_view_for_two_runs_with_the_numbers_tab(qtbot, session):
    a, b = _two_runs(session)
    run_list = RunList()
    qtbot.addWidget(run_list)
    run_list.add_run(RunRecord(1, a, {"algorithm": "kmeans", "backbones": ["x"]}))
    run_list.add_run(RunRecord(2, b, {"algorithm": "leiden", "backbones": ["x"]}))
    run_list.set_current(1)
    run_list.table.selectAll()
    qtbot.mouseClick(run_list.compare_button, Qt.MouseButton.LeftButton)
    dialogs = run_list.findChildren(CompareDialog)
    assert len(dialogs) == 1
    dialog = dialogs[0]
    assert dialog.session_a is a and dialog.session_b is b  # the run shown gives the rows
    assert [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())] == ["Groups", "Numbers"]
    assert dialog.tabs.widget(1).objectName() == "comparison_table"
    with qtbot.waitSignal(run_list.showImages) as relayed:
        dialog.show_moved()
    assert relayed.args[0] == [0, 9]
    dialog.close()


# ---------------------------------------------------------------------------- a real window, two real runs


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """The main window over 24 real images, settings and caches in temporary folders."""
    import torch

    from imgcluster_gui.ui.main_window import MainWindow
    from imgcluster_gui.ui.settings import AppSettings

    torch.set_num_threads(2)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("IMGCLUSTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    folder = tmp_path / "images"
    for name in ("bag", "sneaker", "trouser"):
        (folder / name).mkdir(parents=True)
        for source in sorted((SAMPLE_IMAGES / name).glob("*.png"))[:8]:
            shutil.copy(source, folder / name / source.name)
    win = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.set_folder(str(folder))
    win.side_panel.set_algorithm("kmeans")
    win.side_panel.set_k(3)
    yield win
    win.close()


def _run(qtbot, window) -> None:
    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run() is not None
    assert finished.args[0] == "succeeded", window.last_error


def test_a_new_run_on_the_same_images_keeps_the_shown_runs_numbers_and_colours(qtbot, window):
    _run(qtbot, window)
    first = window.session
    # The person put a whole group into a new cluster (id 3) and named it: the numbering is no longer 0..K-1.
    moved = first.indices_of(0)
    first.new_cluster(moved, "Bags")
    assert first.size_of(0) == 0
    _run(qtbot, window)
    second = window.session
    assert second is not first and second.paths == first.paths
    # Every group of the new run that matches one of the shown run has its id (and so its colour).
    from imgcluster_gui.core.compare import match_clusters

    mapping = match_clusters(first.labels, second.labels)
    assert mapping and all(new == ref for new, ref in mapping.items())
    assert second.size_of(3) == moved.size and second.size_of(0) == 0
    np.testing.assert_array_equal(second.original_labels, second.labels)
    assert set(second.metrics["per_cluster_size"]) == {c for c in second.cluster_ids() if c >= 0}
    assert not second.metrics_stale


def test_runs_without_common_images_say_so(qtbot, session):
    other = ClusterSession(["/elsewhere/a.png", "/elsewhere/b.png"], [0, 1])
    dialog = CompareDialog(session, other, ("Run 1", "Run 2"))
    qtbot.addWidget(dialog)
    assert dialog.summary_text() == "Run 1 and Run 2 have no image in common."
    assert dialog.table.rowCount() == 0 and not dialog.moved_button.isEnabled()
