"""Nothing lost: Save / Open keep every run with its edits, quitting asks, the next start offers the last session,
and each run keeps its own undo history (the real window, offscreen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from imgcluster_gui.core.session import ClusterSession, RunRecord
from imgcluster_gui.ui.commands import MergeClustersCommand, MoveImagesCommand, RenameClusterCommand
from imgcluster_gui.ui.dialogs import Messages
from imgcluster_gui.ui.main_window import MainWindow
from imgcluster_gui.ui.settings import AppSettings, autosave_path

RUN_TIMEOUT_MS = 240_000  # a hang fails; speed is not asserted


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """Settings, autosave and caches in temporary folders; a question nobody answered fails the test."""
    import torch

    torch.set_num_threads(2)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("IMGCLUSTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(tmp_path / "cache"))

    def unexpected(*args, **kwargs):
        raise AssertionError(f"unexpected question: {args[1:3]}")

    monkeypatch.setattr(QMessageBox, "question", unexpected)
    return tmp_path


def _new_window(qtbot) -> MainWindow:
    window = MainWindow(settings=AppSettings(), autosave=False)
    # pytest-qt closes the test's windows before the fixtures' teardown: unsaved work is discarded then.
    window.messages.ask_save_changes = lambda *_a: "discard"  # type: ignore[method-assign]
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def _close(window: MainWindow) -> None:
    window.messages.ask_save_changes = lambda *_a: "discard"  # type: ignore[method-assign]
    window.close()


@pytest.fixture
def window(qtbot, app_env):
    win = _new_window(qtbot)
    yield win
    _close(win)


def _session(image_folder: list[str], k: int) -> ClusterSession:
    """A result over the fixture's images with ``k`` groups (features from the colours, like the conftest's)."""
    rng = np.random.default_rng(k)
    colours = np.repeat(np.arange(3), len(image_folder) // 3)
    features = (np.eye(3, 6)[colours] * 5 + rng.normal(0, 0.5, size=(colours.size, 6))).astype(np.float32)
    labels = np.arange(len(image_folder)) % k
    session = ClusterSession(
        image_folder,
        labels,
        embedding=features[:, :2],
        features=features,
        settings={"algorithm": "kmeans", "n_clusters": k},
        root=str(Path(image_folder[0]).parent),
    )
    session.recompute_metrics()
    return session


def _add_run(window: MainWindow, session: ClusterSession, algorithm: str = "kmeans") -> RunRecord:
    """What the run controller does with a finished run: a record in the list, then the window shows it."""
    record = RunRecord(
        number=window.run_list.next_number(),
        session=session,
        config={"algorithm": algorithm, "backbones": ["efficientnet_lite0"]},
        seconds=1.0,
    )
    window.run_list.add_run(record)
    session.mark_modified()  # a new result is unsaved work (PipelineResult.to_session does the same)
    window.show_session(session)
    return record


def _select_run(window: MainWindow, number: int) -> None:
    """Click run ``number``'s row in the run list."""
    table = window.run_list.table
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).data(Qt.ItemDataRole.UserRole) == number)
    table.selectRow(row)
    assert window.run_list.current_number() == number


def _three_edited_runs(window: MainWindow, image_folder: list[str]) -> list[ClusterSession]:
    sessions = [_session(image_folder, k) for k in (3, 4, 5)]
    for session, algorithm in zip(sessions, ("kmeans", "leiden", "agglomerative")):
        _add_run(window, session, algorithm)
    _select_run(window, 1)
    window.undo_stack.push(RenameClusterCommand(sessions[0], 1, "Greens"))
    _select_run(window, 2)
    window.undo_stack.push(MoveImagesCommand(sessions[1], [0, 1], 3))
    _select_run(window, 3)
    window.undo_stack.push(MergeClustersCommand(sessions[2], [1, 2], 0))
    _select_run(window, 2)  # run 2 on screen when saving: the bug lost run 1's rename
    return sessions


def test_save_and_open_keep_every_run_with_its_edits(qtbot, window, image_folder, tmp_path):
    sessions = _three_edited_runs(window, image_folder)
    assert window.windowTitle().endswith("*")
    path = tmp_path / "sitting.imgcluster"
    assert window.save_session(str(path))
    assert not window.windowTitle().endswith("*") and not any(s.modified for s in sessions)

    other = _new_window(qtbot)
    try:
        assert other.open_session(str(path))
        records = other.run_list.records()
        assert [r.number for r in records] == [1, 2, 3] and other.run_list.table.rowCount() == 3
        assert other.run_list.current_number() == 2 and other.session is records[1].session
        assert [r.config["algorithm"] for r in records] == ["kmeans", "leiden", "agglomerative"]
        for saved, record in zip(sessions, records):
            np.testing.assert_array_equal(record.session.labels, saved.labels)
            assert record.session.cluster_names == saved.cluster_names
            assert [e.description for e in record.session.history] == [e.description for e in saved.history]
        assert records[0].session.name_of(1) == "Greens"
        assert records[1].session.labels[:2].tolist() == [3, 3]
        assert set(records[2].session.cluster_ids()) == {0, 3, 4}
        assert len(other.scatter.point_colours()) == len(image_folder)  # the shown run is on screen
        assert other.session_path == path and not other.windowTitle().endswith("*")
        # The autosave holds every run too.
        _select_run(other, 1)
        other.undo_stack.push(RenameClusterCommand(other.session, 2, "Blues"))
        assert other.windowTitle().endswith("*")
        assert other.autosave_now() == autosave_path()
        assert len(other.run_list.records()) == 3
        # Opening a file replaces the runs: with unsaved changes it asks first, and Cancel keeps them.
        asked: list[str] = []
        other.messages.ask_save_changes = lambda title, text: (asked.append(title), "cancel")[1]
        assert not other.open_session(str(path))
        assert asked == ["Open another session"] and other.session.name_of(2) == "Blues"
    finally:
        _close(other)
    again = _new_window(qtbot)
    try:
        assert again.session_controller.restore_autosave()
        assert [r.session.name_of(2) for r in again.run_list.records()][0] == "Blues"
        assert len(again.run_list.records()) == 3 and again.session_path is None
        assert again.windowTitle().endswith("*")  # restored work is unsaved
    finally:
        _close(again)


def test_quit_with_unsaved_edits_asks_save_discard_or_cancel(qtbot, window, image_folder, tmp_path, monkeypatch):
    session = _session(image_folder, 3)
    _add_run(window, session)
    path = tmp_path / "work.imgcluster"
    assert window.save_session(str(path))
    assert window.close()  # nothing unsaved: no question
    assert AppSettings().last_session() == (str(path), False)

    again = _new_window(qtbot)
    questions: list[str] = []
    answer = ["cancel"]
    again.messages.ask_save_changes = lambda title, text: (questions.append(title), answer[0])[1]
    assert again.open_session(str(path))
    again.undo_stack.push(MoveImagesCommand(again.session, [0], 2))
    assert again.windowTitle().endswith("*")
    assert not again.close() and again.isVisible() and questions == ["Quit imgcluster"]
    # Save with no file name to save to, and the file dialog cancelled: the window stays.
    again.session_controller.path = None
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    answer[0] = "save"
    assert not again.close() and again.isVisible()
    # Save into the file: saved, then closed.
    again.session_controller.path = path
    assert again.close() and not again.isVisible()
    assert ClusterSession.load(path).labels[0] == 2

    last = _new_window(qtbot)
    last.messages.ask_save_changes = lambda title, text: "discard"
    last.open_session(str(path))
    last.undo_stack.push(MoveImagesCommand(last.session, [1], 2))
    assert last.close() and not last.isVisible()
    assert ClusterSession.load(path).labels[1] != 2  # discarded: the file is as saved
    assert ClusterSession.load(autosave_path()).labels[1] == 2  # the autosave keeps it for recovery


def test_switching_runs_keeps_each_runs_undo_history(window, image_folder):
    first, second = _session(image_folder, 3), _session(image_folder, 4)
    _add_run(window, first)
    _add_run(window, second)
    window.undo_stack.push(MoveImagesCommand(second, [0], 3))
    _select_run(window, 1)
    assert window.session is first and not window.undo_action.isEnabled()
    window.undo_stack.push(RenameClusterCommand(first, 0, "Reds"))
    _select_run(window, 2)
    assert window.undo_action.isEnabled()
    window.undo_action.trigger()  # undoes run 2's own last edit
    assert second.labels[0] == 0 and first.name_of(0) == "Reds"
    window.redo_action.trigger()
    assert second.labels[0] == 3
    _select_run(window, 1)
    window.undo_action.trigger()
    assert first.name_of(0) == "Cluster 0" and second.labels[0] == 3


def test_a_new_run_does_not_clear_the_undo_history_of_run_1(qtbot, window, image_folder):
    first = _session(image_folder, 3)
    _add_run(window, first)
    window.undo_stack.push(MoveImagesCommand(first, [0, 1], 2))
    window.set_folder(str(Path(image_folder[0]).parent))
    window.side_panel.set_algorithm("kmeans")
    window.side_panel.set_k(3)
    with qtbot.waitSignal(window.runFinished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run() is not None
    assert finished.args[0] == "succeeded", window.last_error
    assert window.run_list.current_number() == 2 and window.session is not first
    assert not window.undo_action.isEnabled()  # the new run's own history is empty
    _select_run(window, 1)
    window.undo_action.trigger()
    assert first.labels[:2].tolist() == [0, 1]
    qtbot.waitUntil(lambda: not window.metrics_panel.is_refreshing(), timeout=RUN_TIMEOUT_MS)


def test_the_next_start_offers_the_last_session(qtbot, app_env, image_folder, tmp_path, monkeypatch):
    from imgcluster_gui.ui.app import open_main_window

    first = _new_window(qtbot)
    _add_run(first, _session(image_folder, 3))
    _add_run(first, _session(image_folder, 4))
    path = tmp_path / "last.imgcluster"
    assert first.save_session(str(path))
    assert first.close()

    asked: list[str] = []
    monkeypatch.setattr(Messages, "confirm", lambda self, title, text: (asked.append(text), True)[1])
    built = _new_window(qtbot)  # the constructor asks nothing
    assert asked == [] and built.session is None
    _close(built)

    window = open_main_window(run=False)
    window.messages.ask_save_changes = lambda *_a: "discard"
    qtbot.addWidget(window)
    try:
        assert asked == ["Reopen last.imgcluster?"]
        assert len(window.run_list.records()) == 2 and window.session_path == path
        assert window.run_list.current_number() == 2 and not window.windowTitle().endswith("*")
        window.undo_stack.push(RenameClusterCommand(window.session, 0, "Kept"))
        window.session_controller.path = None  # work without a file: the autosave is what reopens
    finally:
        _close(window)
    assert AppSettings().last_session() == (str(autosave_path()), True)

    window = open_main_window(run=False)
    window.messages.ask_save_changes = lambda *_a: "discard"
    qtbot.addWidget(window)
    try:
        assert asked[-1] == "Reopen your unsaved work from last time?"
        assert window.session.name_of(0) == "Kept" and window.session_path is None
        assert window.windowTitle().endswith("*")
    finally:
        _close(window)
    # Started on a folder: the person came for that folder, nothing is offered.
    window = open_main_window(str(Path(image_folder[0]).parent), run=False)
    window.messages.ask_save_changes = lambda *_a: "discard"
    qtbot.addWidget(window)
    try:
        assert len(asked) == 2 and window.session is None
    finally:
        _close(window)
