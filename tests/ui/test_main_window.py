"""The real main window, driven end to end on a small folder of real images (offline backbone, CPU).

The first run extracts features into a module-wide cache; later runs read them from it, so the
whole file stays fast.  Message boxes never block: errors are non-modal (``window.last_error``)
and questions go through ``QMessageBox.question``, replaced here.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QMessageBox

from imgcluster_gui.ui.main_window import MainWindow
from imgcluster_gui.ui.scatter import cluster_colour
from imgcluster_gui.ui.settings import AppSettings, autosave_path

SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "resources" / "sample_images"
CLASSES = ("bag", "sneaker", "trouser")
PER_CLASS = 12
# Safety net for a run on a slow shared CI machine (a hang fails, speed is not asserted).
RUN_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """36 real images in 3 sub-folders (the sub-folder names are the ground truth)."""
    root = tmp_path_factory.mktemp("images")
    for name in CLASSES:
        (root / name).mkdir()
        for source in sorted((SAMPLE_IMAGES / name).glob("*.png"))[:PER_CLASS]:
            shutil.copy(source, root / name / source.name)
    return root


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture
def app_env(tmp_path, shared_cache, monkeypatch):
    """Settings, autosave and caches in temporary folders; no question ever blocks."""
    import torch

    torch.set_num_threads(2)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("IMGCLUSTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(shared_cache))
    answers: list[str] = []
    monkeypatch.setattr(
        QMessageBox,
        "question",
        lambda *a, **k: (answers.append(a[1] if len(a) > 1 else ""), QMessageBox.StandardButton.Yes)[1],
    )
    return answers


def _new_window(qtbot) -> MainWindow:
    window = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def window(qtbot, app_env):
    win = _new_window(qtbot)
    yield win
    win.close()


def _run(qtbot, window: MainWindow, expect: str = "succeeded") -> str:
    """Start a run, wait for the worker, and check its outcome (the shown error explains a failure)."""
    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run() is not None
    outcome = finished.args[0]
    assert outcome == expect, f"run {outcome}; last error: {window.last_error}"
    return outcome


def _configure(window: MainWindow, folder: Path, k: int = 3) -> None:
    window.set_folder(str(folder))
    window.side_panel.set_algorithm("kmeans")
    window.side_panel.set_k(k)


def _wait_metrics_settled(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.metrics_panel.is_refreshing(), timeout=RUN_TIMEOUT_MS)


def test_run_shows_grid_scatter_metrics_and_keeps_the_gui_responsive(qtbot, window, image_folder):
    _configure(window, image_folder)
    ticks_while_running = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks_while_running.append(1) if window.is_running() else None)
    timer.start()
    assert _run(qtbot, window) == "succeeded"
    timer.stop()
    # A frozen event loop would coalesce all ticks into at most one.
    assert len(ticks_while_running) >= 3

    session = window.session
    assert session is not None and len(session.paths) == len(CLASSES) * PER_CLASS
    assert len([c for c in session.cluster_ids() if c >= 0]) == 3
    # Grid: one block per cluster, headed by its name and size.
    assert _grid_cluster_count(window) == 3
    for cluster in session.cluster_ids():
        name, details = window.grid.header_text(cluster)
        assert name == session.name_of(cluster)
        assert details.startswith(f"{session.size_of(cluster)} image")
    # Scatter: every image drawn, coloured by its cluster.
    colours = window.scatter.point_colours()
    assert len(colours) == len(session.paths)
    assert colours == [cluster_colour(int(c)).name() for c in session.labels]
    # Metrics the user reads: internal and (sub-folders are classes) external.
    assert float(window.metrics_panel.value_text("silhouette")) > 0
    assert window.metrics_panel.external_box.isVisible()
    assert float(window.metrics_panel.value_text("nmi")) > 0.5
    assert len(window.metrics_panel.bar_heights()) == 3
    # Run list and log.
    assert len(window.run_list.records()) == 1
    assert window.run_list.table.rowCount() == 1
    assert "Run 1 done" in window.log_panel.text()
    assert "Done" in window.side_panel.progress_label.text()
    assert window.run_action.isEnabled() and not window.cancel_action.isEnabled()


def test_hand_edit_recolours_refreshes_metrics_exports_and_undoes(qtbot, window, image_folder, tmp_path):
    from imgcluster_gui.ui.commands import MoveImagesCommand

    _configure(window, image_folder)
    assert _run(qtbot, window) == "succeeded"
    session = window.session
    _wait_metrics_settled(qtbot, window)
    before_labels = session.labels.copy()
    before_silhouette = window.metrics_panel.value_text("silhouette")
    source, target = int(session.labels[0]), next(c for c in session.cluster_ids() if c != int(session.labels[0]))
    moved = [int(i) for i in session.indices_of(source)[:5]]

    with qtbot.waitSignal(window.metrics_panel.metricsUpdated, timeout=RUN_TIMEOUT_MS):
        window.undo_stack.push(MoveImagesCommand(session, moved, target))
    assert window.scatter.point_colours()[moved[0]] == cluster_colour(target).name()
    assert window.metrics_panel.value_text("silhouette") != before_silhouette
    assert window.windowTitle().endswith("*")

    exported = window.export_csv(str(tmp_path / "labels.csv"))
    with open(exported, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_path = {row["path"]: int(row["cluster_id"]) for row in rows}
    assert all(by_path[session.paths[i]] == target for i in moved)

    window.undo_action.trigger()
    np.testing.assert_array_equal(session.labels, before_labels)
    assert window.scatter.point_colours()[moved[0]] == cluster_colour(source).name()
    window.redo_action.trigger()
    assert all(int(session.labels[i]) == target for i in moved)


def test_grid_and_scatter_selections_are_linked(qtbot, window, image_folder):
    _configure(window, image_folder)
    assert _run(qtbot, window) == "succeeded"
    session = window.session
    cluster = session.cluster_ids()[0]
    members = [int(i) for i in session.indices_of(cluster)]
    # Grid -> scatter: a user selection in the grid (a click on a cell) shows in the scatter plot.
    window.grid.scroll_to_index(members[0])
    with qtbot.waitSignal(window.grid.selectionChanged, timeout=5000):
        cell = window.grid.cell_rect(members[0]).center()
        qtbot.mouseClick(window.grid.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    assert window.scatter.selected_indices() == [members[0]]
    # Scatter -> grid.
    x, y = session.embedding[members[4]]
    window.scatter.select_at(float(x), float(y))
    assert window.scatter.selected_indices() == [members[4]]
    assert window.grid.selected_indices() == [members[4]]
    # New cluster from that selection, through the window's action.
    new_id = window.new_cluster_from_selection("Picked")
    assert session.name_of(new_id) == "Picked" and session.indices_of(new_id).tolist() == [members[4]]
    assert window.scatter.point_colours()[members[4]] == cluster_colour(new_id).name()


def test_cancel_mid_run_keeps_the_previous_result(qtbot, window, image_folder, tmp_path, monkeypatch):
    _configure(window, image_folder)
    assert _run(qtbot, window) == "succeeded"
    previous = window.session
    previous_colours = window.scatter.point_colours()
    # An empty cache makes the next run extract again, so there is a run to cancel.
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(tmp_path / "cold-cache"))
    window.side_panel.set_k(4)
    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        job = window.start_run()
        job.progressed.connect(lambda _info: window.cancel_action.trigger())
    assert finished.args == ["cancelled"]
    assert window.session is previous
    assert window.scatter.point_colours() == previous_colours
    assert len(window.run_list.records()) == 1
    assert "cancelled" in window.log_panel.text().lower()
    assert window.run_action.isEnabled()


@pytest.mark.parametrize("problem", ["empty", "missing"])
def test_bad_folder_shows_a_message_and_the_app_stays_usable(qtbot, window, image_folder, tmp_path, problem):
    bad = tmp_path / "empty"
    if problem == "empty":
        bad.mkdir()
        (bad / "notes.txt").write_text("not an image")
    else:
        bad = tmp_path / "does-not-exist"
    _configure(window, bad)
    _run(qtbot, window, expect="failed")
    title, message, _details = window.last_error
    assert str(bad) in message or "does-not-exist" in message or "No readable image" in message
    assert "Unexpected" not in message  # a known problem reads as one line, not a crash
    assert window.session is None and window.run_action.isEnabled()
    # Still usable: a good folder runs.
    _configure(window, image_folder)
    assert _run(qtbot, window) == "succeeded"


def test_no_folder_is_a_message_not_a_run(window):
    window.set_folder("")
    assert window.start_run() is None
    assert "folder" in window.last_error[1].lower()


def test_session_round_trip_in_a_fresh_window(qtbot, window, image_folder, tmp_path, app_env):
    from imgcluster_gui.ui.commands import MoveImagesCommand, RenameClusterCommand

    _configure(window, image_folder)
    assert _run(qtbot, window) == "succeeded"
    session = window.session
    first, second = session.cluster_ids()[:2]
    window.undo_stack.push(RenameClusterCommand(session, first, "Handbags"))
    window.undo_stack.push(MoveImagesCommand(session, [int(session.indices_of(first)[0])], second))
    _wait_metrics_settled(qtbot, window)
    path = tmp_path / "work.imgcluster"
    assert window.save_session(str(path))
    assert not window.windowTitle().endswith("*")

    other = _new_window(qtbot)
    try:
        assert other.open_session(str(path))
        reopened = other.session
        assert reopened.paths == session.paths
        np.testing.assert_array_equal(reopened.labels, session.labels)
        assert reopened.name_of(first) == "Handbags"
        np.testing.assert_allclose(reopened.embedding, session.embedding)
        assert other.scatter.point_colours() == window.scatter.point_colours()
        assert other.metrics_panel.value_text("silhouette") == window.metrics_panel.value_text("silhouette")
        assert _grid_cluster_count(other) == _grid_cluster_count(window)

        broken = tmp_path / "broken.imgcluster"
        broken.write_bytes(b"this is not a session")
        assert not other.open_session(str(broken))
        assert other.last_error is not None and other.session is reopened
    finally:
        other.close()


def test_folder_export_move_needs_consent_and_can_be_undone(qtbot, window, image_folder, tmp_path, app_env):
    # Move real files: work on a copy so the module's folder stays intact.
    folder = tmp_path / "copy"
    shutil.copytree(image_folder, folder)
    _configure(window, folder)
    assert _run(qtbot, window) == "succeeded"
    target = tmp_path / "export"
    job = window.export_folders(str(target), "move")
    assert job is not None
    assert any("Move" in question for question in app_env)  # consent was asked first
    qtbot.waitUntil(lambda: window.side_job() is None, timeout=RUN_TIMEOUT_MS)
    moved_files = list(target.rglob("*.png"))
    assert len(moved_files) == len(window.session.paths)
    assert not list(folder.rglob("*.png"))
    assert window.undo_export_action.isEnabled()
    # The manifest outlives the window: a later launch can still put the files back.
    manifest = window.last_manifest
    later = _new_window(qtbot)
    try:
        assert later.last_manifest == manifest and later.undo_export_action.isEnabled()
        later.undo_last_export()
        qtbot.waitUntil(lambda: later.side_job() is None, timeout=RUN_TIMEOUT_MS)
        assert later.last_manifest is None and later.settings.last_export_manifest() == ""
    finally:
        later.close()
    assert len(list(folder.rglob("*.png"))) == len(window.session.paths)


def test_export_to_an_unwritable_target_says_so(qtbot, window, image_folder, tmp_path):
    _configure(window, image_folder)
    assert _run(qtbot, window) == "succeeded"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert window.export_csv(str(blocker / "labels.csv")) is None
    assert window.last_error is not None and window.last_error[0] == "Export failed"
    job = window.export_folders(str(blocker / "clusters"), "copy")
    qtbot.waitUntil(lambda: window.side_job() is None, timeout=RUN_TIMEOUT_MS)
    assert job is not None and job.outcome == "failed"
    assert "Unexpected" not in window.last_error[1]


def test_settings_persist_and_a_crash_offers_the_autosave(qtbot, window, image_folder, app_env):
    _configure(window, image_folder, k=4)
    window.side_panel.pca_spin.setValue(16)
    assert _run(qtbot, window) == "succeeded"
    assert window.autosave_now() == autosave_path()
    assert window.autosave_now(force=False) is None  # the timer skips an unchanged session
    window.session.rename(window.session.cluster_ids()[0], "Edited")
    assert window.autosave_now(force=False) == autosave_path()
    window.settings.set_panel_state(window.side_panel.state())
    # Simulate a crash: the window goes without a clean exit being recorded.
    window.settings.sync()
    assert window.settings.should_offer_restore()

    other = _new_window(qtbot)
    try:
        assert other.side_panel.folder() == str(image_folder)
        assert other.side_panel.k_spin.value() == 4 and other.side_panel.pca_spin.value() == 16
        assert str(image_folder) in other.settings.recent_folders()
        assert other.offer_restore()
        assert any("Restore" in question for question in app_env)
        np.testing.assert_array_equal(other.session.labels, window.session.labels)
    finally:
        other.close()
    # A clean close writes the autosave and records the exit: nothing to offer next time.
    assert not AppSettings().should_offer_restore()


def _grid_cluster_count(window: MainWindow) -> int:
    """Cluster blocks the grid shows."""
    return len(window.grid.cluster_order())


def test_run_list_keeps_each_run_and_compares_them(qtbot, window, image_folder):
    _configure(window, image_folder, k=3)
    _run(qtbot, window)
    first = window.session
    window.side_panel.set_k(4)
    _run(qtbot, window)
    records = window.run_list.records()
    assert [len([c for c in r.session.cluster_ids() if c >= 0]) for r in records] == [3, 4]
    assert window.session is records[1].session
    # Selecting the first row shows that run again.
    window.run_list.table.selectRow(0)
    assert window.session is first
    assert len(window.scatter.point_colours()) == len(first.paths)
    table = window.run_list.comparison_table()
    assert table.columnCount() == 2
    k_row = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())].index("K")
    assert [table.item(k_row, c).text() for c in range(2)] == ["3", "4"]


def test_entry_point_falls_back_to_the_cli_without_a_display(monkeypatch, capsys, tmp_path):
    import imgcluster_gui.cli
    from imgcluster_gui.__main__ import main, qt_unavailable_reason

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert "no display" in qt_unavailable_reason()
    calls = []
    monkeypatch.setattr(imgcluster_gui.cli, "main", lambda argv: calls.append(argv) or 0)
    assert main([str(tmp_path)]) == 0
    assert calls == [["cluster", str(tmp_path)]]
    assert "cannot open the window" in capsys.readouterr().err
    assert main([]) == 1  # nothing to cluster: say how, do not pretend
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert qt_unavailable_reason() is None


def test_metrics_panel_plots_a_training_history_and_hides_what_is_missing(qtbot):
    from imgcluster_gui.core.session import ClusterSession
    from imgcluster_gui.ui.metrics_panel import MetricsPanel

    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(0, 0.3, (10, 4)), rng.normal(3, 0.3, (10, 4))]).astype(np.float32)
    session = ClusterSession([f"/x/{i}.png" for i in range(20)], np.repeat([0, 1], 10), features=features)
    session.recompute_metrics()
    panel = MetricsPanel()
    qtbot.addWidget(panel)
    history = [
        {"epoch": 0, "loss": 2.0, "nmi_change": None},
        {"epoch": 1, "loss": 1.0, "nmi_change": 0.8, "nmi_true": 0.5},
        {"epoch": 2, "loss": 0.5, "nmi_change": 0.95, "nmi_true": 0.6},
    ]
    panel.set_session(session, history=history)
    assert float(panel.value_text("silhouette")) > 0.5
    assert not panel.external_box.isVisibleTo(panel)  # no ground truth: no NMI/ARI box
    assert "not used" in panel.auto_k_plot.getPlotItem().titleLabel.text
    assert panel.training_plot.isVisibleTo(panel)
    assert len(panel.training_plot.getPlotItem().listDataItems()) == 3  # loss, NMI change, NMI truth
    panel.set_session(session, history=[])
    assert not panel.training_plot.isVisibleTo(panel)


def test_open_main_window_puts_the_folder_in_the_panel(qtbot, app_env, image_folder):
    from imgcluster_gui.ui.app import open_main_window

    window = open_main_window(str(image_folder), run=False, offer_restore=False)
    qtbot.addWidget(window)
    try:
        assert window.isVisible() and window.side_panel.folder() == str(image_folder)
        assert not window.is_running()
    finally:
        window.close()


def test_deep_method_run_plots_its_training_curve(qtbot, window, image_folder):
    _configure(window, image_folder)
    window.side_panel.set_algorithm("dec")
    refused = window.side_panel.param_form.set_values({"pretrain_steps": 20, "max_epochs": 3, "device": "cpu"})
    assert refused == []
    _run(qtbot, window)
    record = window.run_list.records()[-1]
    assert record.config["algorithm"] == "dec" and record.history
    assert window.metrics_panel.training_plot.isVisibleTo(window.metrics_panel)
    assert window.metrics_panel.history() == record.history


def test_deep_run_shows_epochs_live_and_cancel_keeps_the_last_epoch(qtbot, window, image_folder):
    import time

    _configure(window, image_folder)
    assert _run(qtbot, window) == "succeeded"  # a previous result (k-means)
    previous = window.session
    window.side_panel.set_algorithm("dec")
    # tol 0: never converges, so only the cancel ends the training.
    refused = window.side_panel.param_form.set_values(
        {"pretrain_steps": 20, "max_epochs": 2000, "tol": 0.0, "device": "cpu"}
    )
    assert refused == []
    live_titles: list[str] = []
    cancelled_at: list[float] = []

    def on_progress(_info) -> None:
        # The metrics panel follows the training while it runs (the shown session is still the old one).
        epochs = [r for r in window.metrics_panel.history() if r.get("phase", "cluster") != "pretrain"]
        if window.session is previous and len(epochs) >= 3:
            live_titles.append(window.metrics_panel.training_title())
            if not cancelled_at:
                cancelled_at.append(time.monotonic())
                window.cancel_action.trigger()

    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        job = window.start_run()
        job.progressed.connect(on_progress)
    assert finished.args == ["cancelled"]
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 10  # stops promptly, not at max_epochs
    assert live_titles and "live" in live_titles[0] and "epoch" in live_titles[0]
    # The best result so far is kept as a new run and shown; the previous run stays in the list.
    records = window.run_list.records()
    assert len(records) == 2 and records[0].session is previous, window.log_panel.text()
    kept = records[1]
    assert window.session is kept.session and kept.config["algorithm"] == "dec"
    assert len([r for r in kept.history if r.get("phase", "cluster") != "pretrain"]) >= 3
    assert window.metrics_panel.history() == kept.history
    assert "nmi_true" in kept.history[-1]  # sub-folders are the truth: NMI per epoch
    assert len(kept.session.paths) == len(CLASSES) * PER_CLASS
    assert _grid_cluster_count(window) == len([c for c in kept.session.cluster_ids() if c >= 0])
    assert window.scatter.point_colours() == [cluster_colour(int(c)).name() for c in kept.session.labels]
    assert "Cancelled during training: the result of epoch" in window.log_panel.text()  # the run's own note
    assert window.run_action.isEnabled() and not window.is_running()


def test_deep_cancel_before_any_epoch_keeps_the_previous_result(qtbot, window, image_folder):
    _configure(window, image_folder)
    assert _run(qtbot, window) == "succeeded"
    previous = window.session
    window.side_panel.set_algorithm("dec")
    assert window.side_panel.param_form.set_values({"pretrain_steps": 100000, "device": "cpu"}) == []
    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        job = window.start_run()
        # Cancel during the autoencoder pre-training: no assignment exists yet.
        job.progressed.connect(lambda info: window.cancel_action.trigger() if "Pre-training" in info.stage else None)
    assert finished.args == ["cancelled"]
    assert window.session is previous and len(window.run_list.records()) == 1
    assert not window.metrics_panel.training_plot.isVisibleTo(window.metrics_panel)


def test_unreadable_files_are_skipped_with_their_reason_in_the_log(qtbot, window, image_folder, tmp_path):
    folder = tmp_path / "mixed"
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for source in sorted((image_folder / name).glob("*.png"))[:3]:
            shutil.copy(source, folder / name / source.name)
    broken = folder / "bag" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _configure(window, folder)
    assert _run(qtbot, window) == "succeeded"
    assert len(window.session.paths) == 9 and str(broken) not in window.session.paths
    lines = [line for line in window.log_panel.text().splitlines() if "broken.png" in line]
    assert lines and lines[0].startswith("[warning] Skipped") and ":" in lines[0].split("broken.png", 1)[1]
    assert "1 skipped" in window.log_panel.text()


def test_default_run_is_leiden_and_the_granularity_control_regroups_it(qtbot, window, image_folder):
    window.set_folder(str(image_folder))
    panel = window.side_panel
    assert panel.algorithm_combo.currentData() == "leiden" and panel.auto_k_check.isChecked()
    assert _run(qtbot, window) == "succeeded"
    session = window.session
    groups = len([c for c in session.cluster_ids() if c >= 0])
    # How K came about is said in the log and the status bar.
    assert f"Leiden found {groups} group" in window.log_panel.text()
    assert f"Leiden found {groups} group" in window.status_label.text()
    assert "K automatic (found by the graph)" in window.log_panel.text()
    assert session.n_granularity_levels >= 2, session.granularity
    bar = window.granularity_bar
    assert bar.is_active() and bar.level() == session.granularity_level()
    assert len(window.metrics_panel.ladder_rows()) == session.n_granularity_levels
    before = session.labels.copy()
    other = 0 if bar.level() != 0 else session.n_granularity_levels - 1
    bar.slider.setValue(other)
    expected = session.granularity[other]["n_clusters"]
    assert _grid_cluster_count(window) - (1 if -1 in window.grid.cluster_order() else 0) == expected
    assert window.scatter.point_colours() == [cluster_colour(int(c)).name() for c in session.labels]
    window.undo_action.trigger()
    np.testing.assert_array_equal(session.labels, before)
    assert bar.level() == session.granularity_level() != other


def test_the_default_window_shows_the_grid_in_five_or_more_columns(qtbot, window):
    from imgcluster_gui.core.session import ClusterSession

    window.show_session(ClusterSession([f"/nonexistent/img_{i:02d}.png" for i in range(40)], np.repeat([0, 1], 20)))
    qtbot.wait(50)  # the first layout pass
    assert window.grid.thumbnail_size() == 128 and window.grid.columns() >= 5
    assert window.grid.horizontalScrollBar().maximum() == 0  # and it never scrolls sideways
