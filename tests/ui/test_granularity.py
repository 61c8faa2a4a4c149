"""The granularity control, the ladder table and the K defaults, driven through the real window (offscreen).

Sessions are built by hand (3 colour groups of 8 real image files, ``conftest.image_folder``) with
three granularity levels, so no run is needed: 2 groups (the first two colours together), the
3 groups the "clustering" chose, and 6 groups with 2 images unsorted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.commands import MoveImagesCommand
from imgcluster_gui.ui.main_window import MainWindow
from imgcluster_gui.ui.scatter import cluster_colour

from .conftest import N_CLUSTERS, PER_CLUSTER


def _ladder() -> tuple[np.ndarray, list[dict]]:
    chosen = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    fewer = np.where(chosen == 1, 0, chosen)  # colours 0 and 1 together: 2 groups
    half = np.tile(np.repeat([0, 1], PER_CLUSTER // 2), N_CLUSTERS).astype(bool)
    more = np.where(half, chosen + 3, chosen)  # each colour split in two: 6 groups
    more[[3, 11]] = -1  # ... and 2 images fit none
    summaries = [
        {
            "n_clusters": 2,
            "n_unsorted": 0,
            "resolution": 0.1,
            "modularity": 0.31,
            "silhouette": 0.42,
            "selected": False,
        },
        {"n_clusters": 3, "n_unsorted": 0, "resolution": 1.0, "modularity": 0.55, "silhouette": 0.71, "selected": True},
        {
            "n_clusters": 6,
            "n_unsorted": 2,
            "resolution": 3.0,
            "modularity": 0.40,
            "silhouette": 0.22,
            "selected": False,
        },
    ]
    return np.stack([fewer, chosen, more], axis=1), summaries


@pytest.fixture
def leveled_session(image_folder: list[str]) -> ClusterSession:
    rng = np.random.default_rng(1)
    levels, summaries = _ladder()
    labels = levels[:, 1].copy()
    features = (np.eye(N_CLUSTERS, 6)[labels] * 5 + rng.normal(0, 0.5, size=(labels.size, 6))).astype(np.float32)
    session = ClusterSession(
        image_folder,
        labels,
        embedding=features[:, :2],
        features=features,
        settings={"algorithm": "leiden", "n_clusters": None, "embedding": "pca"},
        root=str(Path(image_folder[0]).parent),
        granularity_labels=levels,
        granularity=summaries,
    )
    session.recompute_metrics()
    return session


@pytest.fixture
def window(isolated_window):
    return isolated_window


def _groups_in_grid(window: MainWindow) -> int:
    """Cluster blocks the grid shows, Unassigned not counted."""
    return len([c for c in window.grid.cluster_order() if c >= 0])


def _colours_follow_labels(window: MainWindow) -> bool:
    return window.scatter.point_colours() == [cluster_colour(int(c)).name() for c in window.session.labels]


def test_control_is_enabled_with_levels_and_disabled_without(window, leveled_session, session):
    bar = window.granularity_bar
    assert not bar.is_active()  # nothing shown yet
    window.show_session(leveled_session)
    assert bar.is_active() and bar.slider.isEnabled()
    assert (bar.slider.minimum(), bar.slider.maximum(), bar.level()) == (0, 2, 1)  # the chosen level
    assert bar.text() == "3 groups"
    assert bar.fewer_label.text() == "Fewer, larger groups" and bar.more_label.text() == "More, smaller groups"
    # The ladder: one row per level, the shown one highlighted.
    panel = window.metrics_panel
    assert panel.ladder_box.isVisibleTo(panel)
    assert [row[:2] for row in panel.ladder_rows()] == [["2", "0"], ["3", "0"], ["6", "2"]]
    assert panel.ladder_rows()[1][2:] == ["1", "0.55", "0.71"]
    assert panel.current_ladder_row() == 1
    assert panel.ladder_table.item(1, 0).font().bold() and not panel.ladder_table.item(0, 0).font().bold()

    window.show_session(session)  # a k-means result: one grouping only
    assert not bar.is_active() and not bar.slider.isEnabled()
    assert bar.text() == "3 groups"
    assert not panel.ladder_box.isVisibleTo(panel)


def test_slider_regroups_grid_and_scatter_and_undo_restores(qtbot, window, leveled_session):
    window.show_session(leveled_session)
    session = leveled_session
    before = session.labels.copy()
    levels = session.granularity_labels
    bar = window.granularity_bar
    bar.slider.setFocus()
    qtbot.keyClick(bar.slider, Qt.Key.Key_Right)  # one step towards more, smaller groups

    np.testing.assert_array_equal(session.labels, levels[:, 2])
    assert session.granularity_level() == 2 and bar.level() == 2
    assert _groups_in_grid(window) == 6 and -1 in window.grid.cluster_order()
    assert len(window.grid.indices_of(-1)) == 2
    assert _colours_follow_labels(window)
    # The larger part of the split group keeps its colour (ids are matched to the groups shown before).
    assert window.scatter.point_colours()[4] == cluster_colour(0).name()
    assert bar.text() == "6 groups · 2 unsorted"
    assert window.metrics_panel.current_ladder_row() == 2
    assert window.undo_stack.undoText() == "Regroup into 6 groups"
    assert window.windowTitle().endswith("*")

    window.undo_action.trigger()  # Ctrl+Z
    np.testing.assert_array_equal(session.labels, before)
    assert bar.level() == 1 and bar.text() == "3 groups"  # the slider follows the undo
    assert _groups_in_grid(window) == 3 and -1 not in window.grid.cluster_order()
    assert _colours_follow_labels(window)
    assert window.metrics_panel.current_ladder_row() == 1

    window.redo_action.trigger()
    assert bar.level() == 2 and session.granularity_level() == 2
    bar.slider.setValue(0)  # all the way to fewer, larger groups
    np.testing.assert_array_equal(session.labels, levels[:, 0])
    assert _groups_in_grid(window) == 2 and bar.text() == "2 groups"
    assert window.undo_stack.count() == 2
    assert "Regroup into 2 groups" in window.log_panel.text()


def test_undo_shortcut_is_ctrl_z(window):
    assert window.undo_action.shortcut().toString() == "Ctrl+Z"


def test_hand_placed_images_ask_keep_replace_or_cancel(qtbot, window, leveled_session, monkeypatch):
    window.show_session(leveled_session)
    session = leveled_session
    levels = session.granularity_labels
    window.undo_stack.push(MoveImagesCommand(session, [0], 2))  # one image placed by hand
    assert session.hand_placed().tolist() == [0]
    asked: list[int] = []
    answers: list = [None, True, False]  # cancel, keep, replace
    monkeypatch.setattr(window, "ask_keep_hand_placed", lambda count: (asked.append(count), answers.pop(0))[1])
    bar = window.granularity_bar

    edited = session.labels.copy()
    bar.slider.setValue(0)
    assert asked == [1]  # asked once for the change
    np.testing.assert_array_equal(session.labels, edited)  # cancel: nothing changed...
    assert bar.level() == 1  # ... and the slider is back
    assert window.undo_stack.undoText().startswith("Move")

    bar.slider.setValue(0)  # keep
    assert asked == [1, 1]
    assert int(session.labels[0]) == 2  # the hand-placed image stayed where it was put
    np.testing.assert_array_equal(session.labels[1:], levels[1:, 0])
    assert bar.level() == 0 and session.granularity_level() == 0
    assert "keeping 1 hand-placed image" in window.undo_stack.undoText()

    window.undo_action.trigger()
    np.testing.assert_array_equal(session.labels, edited)
    assert bar.level() == 1
    bar.slider.setValue(2)  # replace them too
    assert asked == [1, 1, 1]
    np.testing.assert_array_equal(session.labels, levels[:, 2])
    assert int(session.labels[0]) == int(levels[0, 2])


def test_hand_placed_question_is_a_real_message_box(qtbot, window, leveled_session):
    window.show_session(leveled_session)
    session = leveled_session
    window.undo_stack.push(MoveImagesCommand(session, [9], 0))
    seen: list[str] = []

    def answer() -> None:
        box = next(
            w
            for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.objectName() == "hand_placed_box" and w.isVisible()
        )
        seen.append(box.text())
        keep = next(b for b in box.buttons() if b.text().startswith("Keep my 1 hand-placed image"))
        keep.click()

    QTimer.singleShot(50, answer)
    assert window.set_granularity_level(2)
    assert seen and "1 hand-placed image" in seen[0]
    assert int(session.labels[9]) == 0  # kept
    assert session.granularity_level() == 2


def test_ladder_table_switches_level(qtbot, window, leveled_session):
    window.show_session(leveled_session)
    table = window.metrics_panel.ladder_table
    window.metrics_dock.raise_()
    rect = table.visualItemRect(table.item(0, 0))
    # A user's double-click is a click then a double-click (QTest's alone lacks the first press).
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert leveled_session.granularity_level() == 1  # a single click only selects
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert leveled_session.granularity_level() == 0
    assert window.granularity_bar.level() == 0 and _groups_in_grid(window) == 2
    assert window.metrics_panel.current_ladder_row() == 0
    assert window.undo_stack.undoText() == "Regroup into 2 groups"
    window.undo_action.trigger()
    assert window.metrics_panel.current_ladder_row() == 1 and window.granularity_bar.level() == 1


def test_levels_survive_save_and_reopen(qtbot, window, leveled_session, tmp_path):
    window.show_session(leveled_session)
    window.granularity_bar.slider.setValue(2)
    path = tmp_path / "levels.imgcluster"
    assert window.save_session(str(path))

    assert window.open_session(str(path))
    reopened = window.session
    assert reopened is not leveled_session and reopened.n_granularity_levels == 3
    bar = window.granularity_bar
    assert bar.is_active() and bar.level() == 2 and bar.text() == "6 groups · 2 unsorted"
    assert len(window.metrics_panel.ladder_rows()) == 3 and window.metrics_panel.current_ladder_row() == 2
    bar.slider.setValue(0)
    assert reopened.granularity_level() == 0 and _groups_in_grid(window) == 2
    # Switching runs: the slider follows the shown session.
    window.show_session(leveled_session)
    assert bar.level() == 2


def test_regroup_is_quick_on_1500_images(qtbot, window, tmp_path):
    """1,500 images, 20 <-> 40 groups: one step of the slider redraws in well under a second."""
    import time

    n = 1500
    rng = np.random.default_rng(0)
    chosen = np.arange(n) % 20
    more = np.where(np.arange(n) % 40 >= 20, chosen + 20, chosen)
    paths = [str(tmp_path / f"img{i:04d}.png") for i in range(n)]  # never read: no thumbnails in the test
    session = ClusterSession(
        paths,
        chosen,
        embedding=rng.normal(size=(n, 2)),
        granularity_labels=np.stack([chosen, more], axis=1),
        granularity=[{"n_clusters": 20, "n_unsorted": 0, "selected": True}, {"n_clusters": 40, "n_unsorted": 0}],
    )
    window.show_session(session)
    started = time.perf_counter()
    window.granularity_bar.slider.setValue(1)
    QApplication.processEvents()
    seconds = time.perf_counter() - started
    assert _groups_in_grid(window) == 40 and _colours_follow_labels(window)
    assert seconds < 5.0, f"regroup took {seconds:.2f} s"  # loose: a shared CI machine, not a benchmark


def test_side_panel_defaults_follow_the_core(qtbot, tmp_path):
    from imgcluster_gui.core.pipeline import PipelineConfig
    from imgcluster_gui.ui.side_panel import SidePanel

    panel = SidePanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_folder(str(tmp_path))
    assert panel.algorithm_combo.currentData() == PipelineConfig.__dataclass_fields__["algorithm"].default == "leiden"
    assert panel.auto_k_check.isChecked() and "graph" in panel.auto_k_check.text()
    assert not panel.k_spin.isEnabled()
    assert not panel.k_selection_combo.isVisibleTo(panel)  # Leiden finds its count: no 'K from'
    config = panel.config()
    assert config.algorithm == "leiden" and config.n_clusters is None
    assert panel.k_text() == "automatic (found by the graph)"

    panel.set_algorithm("kmeans")  # needs K: automatic means K from the neighbour graph
    assert panel.auto_k_check.text() == "Automatic"
    assert panel.k_selection_combo.isVisibleTo(panel) and panel.k_selection_combo.currentData() == "graph"
    assert not panel.k_min_spin.isVisibleTo(panel)
    config = panel.config()
    assert (config.algorithm, config.n_clusters, config.k_selection) == ("kmeans", None, "graph")
    assert panel.k_text() == "from the neighbour graph"

    panel.set_k(None, (3, 9), k_selection="silhouette")  # the sweep is still there
    assert panel.k_min_spin.isVisibleTo(panel) and panel.k_min_spin.isEnabled()
    config = panel.config()
    assert (config.k_selection, config.k_min, config.k_max) == ("silhouette", 3, 9)
    state = panel.state()

    panel.set_k(7)
    assert not panel.k_selection_combo.isVisibleTo(panel) and panel.config().n_clusters == 7
    other = SidePanel()
    qtbot.addWidget(other)
    other.restore_state(state)
    assert other.algorithm_combo.currentData() == "kmeans" and other.auto_k_check.isChecked()
    assert other.k_selection_combo.currentData() == "silhouette"
    with pytest.raises(ValueError):
        panel.set_k(None, k_selection="elbow")


def test_how_k_came_about_reads_in_words(leveled_session, session):
    from imgcluster_gui.ui.metrics_panel import k_origin

    assert k_origin(leveled_session) == "Leiden found 3 groups"
    assert k_origin(session) == "K = 3 was given"
    graph = {"method": "graph", "best_k": 15, "resolution": 1.0, "modularity": 0.5, "n_unsorted": 0}
    assert k_origin(session, graph) == "K = 15 from the neighbour graph"
    sweep = {"method": "silhouette", "best_k": 4, "ks": [2, 3, 4]}
    assert k_origin(session, sweep) == "K = 4 from the silhouette sweep"
