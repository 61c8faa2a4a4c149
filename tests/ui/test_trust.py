"""Defaults, exports, messages and backbones a person can trust (issue 17, items 5-8).

Each test drives the real widgets offscreen: the side panel's defaults against the CLI's, a second
folder export into a filled folder, where the file dialogs open, error boxes without tracebacks, K
refused before any extraction, the skipped-files indicator and the status line, the weights chooser.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox, QStatusBar, QWidget

from imgcluster_gui import cli
from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.dialogs import Messages
from imgcluster_gui.ui.export_controller import ExportController
from imgcluster_gui.ui.log_panel import LogPanel
from imgcluster_gui.ui.settings import AppSettings, default_documents_dir
from imgcluster_gui.ui.side_panel import SidePanel
from imgcluster_gui.ui.status_bar import SkippedFilesIndicator, describe_session
from imgcluster_gui.ui.worker import JobFailure

JOB_TIMEOUT_MS = 60_000


@pytest.fixture
def fresh_env(tmp_path, monkeypatch):
    """A fresh settings file and data folder; the documents folder (XDG user-dirs) is ``tmp_path/Documents``."""
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("IMGCLUSTER_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "xdg-config"
    config.mkdir()
    (config / "user-dirs.dirs").write_text(f'XDG_DOCUMENTS_DIR="{tmp_path / "Documents"}"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    # No question ever blocks (closing a window with a fresh run asks about unsaved work): Yes = discard.
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    return tmp_path


@pytest.fixture
def panel(qtbot, fresh_env) -> SidePanel:
    widget = SidePanel()
    qtbot.addWidget(widget)
    return widget


def _messages(qtbot) -> tuple[Messages, LogPanel, QWidget]:
    parent = QWidget()
    qtbot.addWidget(parent)
    log = LogPanel()
    qtbot.addWidget(log)
    return Messages(parent, log), log, parent


# ============================================================================ A. defaults
def test_a_fresh_settings_file_gives_the_clis_automatic_grouping(panel, fresh_env, image_folder):
    settings = AppSettings()
    assert settings.panel_state() == {}  # really a fresh file
    panel.restore_state(settings.panel_state())
    panel.set_folder(str(Path(image_folder[0]).parent))
    assert panel.auto_k_check.isChecked()
    ours = panel.config()
    theirs = cli._config_from_args(cli.build_parser().parse_args(["cluster", str(Path(image_folder[0]).parent)]))
    # (layer: None in the CLI is the backbone's default, the penultimate layer the panel names)
    for field in ("algorithm", "n_clusters", "k_selection", "k_min", "k_max", "backbones", "device", "embedding"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ours.n_clusters is None  # no 5 mixed groups: the graph finds the number


def test_an_existing_users_saved_choice_still_wins(panel, fresh_env, image_folder):
    settings = AppSettings()
    settings.set_panel_state({"algorithm": "kmeans", "auto_k": False, "k": 7})
    panel.restore_state(AppSettings().panel_state())
    panel.set_folder(str(Path(image_folder[0]).parent))
    config = panel.config()
    assert (config.algorithm, config.n_clusters) == ("kmeans", 7)


# ============================================================================ B. exports
@pytest.fixture
def exporter(qtbot, fresh_env, session):
    messages, log, parent = _messages(qtbot)
    controller = ExportController(AppSettings(), messages, log, lambda: session, parent)
    return controller, messages


def _export(qtbot, controller, target, mode="copy"):
    job = controller.export_folders(str(target), mode)
    if job is not None:
        qtbot.waitUntil(lambda: controller.side_job() is None, timeout=JOB_TIMEOUT_MS)
        assert job.outcome == "succeeded"
    return job


def test_a_second_folder_export_into_a_filled_folder_asks_and_defaults_to_a_dated_sub_folder(
    qtbot, exporter, tmp_path, session
):
    controller, messages = exporter
    questions: list[tuple[str, str]] = []
    answers = iter(["new", None, "merge"])
    messages.ask_export_into_non_empty = lambda target, name: (questions.append((target, name)), next(answers))[1]
    target = tmp_path / "export"
    _export(qtbot, controller, target)
    assert questions == []  # an empty (new) folder needs no question
    first = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())

    _export(qtbot, controller, target)  # the same, pre-filled target again
    assert len(questions) == 1 and questions[0][0] == str(target)
    assert questions[0][1].startswith("clusters-20")  # clusters-YYYY-MM-DD_HHMM
    dated = target / questions[0][1]
    assert len([p for p in dated.rglob("*") if p.suffix in (".png", ".jpg")]) == len(session.paths)
    top_level = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file() and dated not in p.parents)
    assert top_level == first  # nothing merged into the first export
    assert controller._settings.last_directory("export") == str(target)  # still pre-filled with the choice

    assert controller.export_folders(str(target), "copy") is None  # Cancel: nothing happens
    assert len(questions) == 2
    before = len(list(target.rglob("*")))
    _export(qtbot, controller, target)  # Merge into it
    assert len(list(target.rglob("*"))) > before
    assert len([p for p in target.iterdir() if p.name.startswith("clusters-")]) == 1


def test_table_dialogs_propose_documents_then_the_last_folder_of_their_kind(
    qtbot, exporter, fresh_env, session, monkeypatch
):
    controller, _messages_ = exporter
    proposed: list[str] = []
    chosen: list[str] = []
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        lambda parent, title, start, file_filter: (proposed.append(start), (chosen.pop(0) if chosen else "", ""))[1],
    )
    documents = default_documents_dir()
    assert Path(documents) == fresh_env / "Documents"
    controller.export_csv()
    assert Path(proposed[-1]).parent == Path(documents)  # not the photo folder, not the bare home folder
    assert Path(session.root) not in Path(proposed[-1]).parents
    tables = fresh_env / "tables"
    tables.mkdir()
    chosen.append(str(tables / "labels.csv"))
    assert controller.export_csv() is not None
    controller.export_csv()
    assert Path(proposed[-1]).parent == tables  # the last folder used for CSV files
    controller.export_json()
    assert Path(proposed[-1]).parent == Path(documents)  # JSON has its own last folder
    controller._settings.set_last_directory("csv", str(Path.home()))  # a file once saved in the bare home
    controller.export_csv()
    assert Path(proposed[-1]).parent == Path(documents)


def test_the_save_session_dialog_proposes_documents_not_home(qtbot, fresh_env, session, monkeypatch):
    from imgcluster_gui.ui.main_window import MainWindow

    window = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(window)
    proposed: list[str] = []
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda parent, title, start, file_filter: (proposed.append(start), ("", ""))[1]
    )
    window.show_session(session)
    assert window.save_session() is False
    assert Path(proposed[-1]).parent == fresh_env / "Documents"
    window.close()


# ============================================================================ C. messages
def test_an_unexpected_error_box_holds_no_traceback_but_says_where_it_was_written(qtbot, fresh_env):
    messages, _log, _parent = _messages(qtbot)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        failure = JobFailure.from_exception(exc, "The run failed")
    box = messages.show_failure(failure)
    assert box.detailedText() == ""
    assert "Traceback" not in box.text()
    assert "Details were written to" in box.text()
    log_file = Path(box.text().split("Details were written to ", 1)[1].strip())
    assert log_file.is_file() and log_file.parent == fresh_env / "data" / "logs"
    assert "Traceback" in log_file.read_text() and "boom" in log_file.read_text()


def test_a_known_problem_shows_one_line_and_no_details(qtbot, fresh_env):
    from imgcluster_gui.core.dataset import DatasetError

    messages, _log, _parent = _messages(qtbot)
    try:
        raise DatasetError("The folder is empty: /photos")
    except DatasetError as exc:
        failure = JobFailure.from_exception(exc, "The run failed")
    box = messages.show_failure(failure)
    assert box.text() == "The folder is empty: /photos"
    assert box.detailedText() == ""


def test_the_error_log_stays_small(fresh_env, monkeypatch):
    from imgcluster_gui.ui import settings as settings_module

    monkeypatch.setattr(settings_module, "ERROR_LOG_MAX_BYTES", 1000)
    for n in range(20):
        path = settings_module.write_error_details("Failed", f"error {n}", "Traceback\n" + "x" * 200)
    assert path is not None and path.stat().st_size < 2000
    assert path.with_name(path.name + ".1").is_file()  # one backup, no more
    assert not path.with_name(path.name + ".2").exists()


def test_k_above_the_number_of_images_is_refused_before_extraction(qtbot, fresh_env, image_folder, monkeypatch):
    import imgcluster_gui.core.pipeline as pipeline
    from imgcluster_gui.ui.main_window import MainWindow

    monkeypatch.setattr(pipeline, "run_pipeline", lambda *a, **k: pytest.fail("the run must not start"))
    window = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(window)
    window.set_folder(str(Path(image_folder[0]).parent))
    window.side_panel.set_algorithm("kmeans")
    window.side_panel.set_k(50)
    assert window.start_run() is None
    title, message, _details = window.last_error
    assert title == "Cannot run" and "50" in message and "24 image files" in message
    assert window.run_action.isEnabled()
    window.close()


def test_the_cli_refuses_k_above_the_number_of_images_before_extraction(image_folder, monkeypatch, capsys):
    import imgcluster_gui.core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run_pipeline", lambda *a, **k: pytest.fail("extraction must not start"))
    folder = str(Path(image_folder[0]).parent)
    assert cli.main(["cluster", folder, "--algorithm", "kmeans", "--k", "50", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--k 50" in err and "24 image" in err


def test_skipped_files_indicator_counts_and_lists_the_reasons(qtbot):
    bar = QStatusBar()
    qtbot.addWidget(bar)
    indicator = SkippedFilesIndicator()
    bar.addPermanentWidget(indicator)  # where the window puts it
    bar.show()
    assert not indicator.isVisible()  # nothing skipped: nothing to say
    indicator.set_skipped([("/p/a.jpg", "truncated JPEG"), ("/p/b.png", "not an image")])
    assert indicator.isVisible() and indicator.text().startswith("2 files skipped")
    assert "href" in indicator.text()
    indicator.linkActivated.emit("show")
    dialog = indicator.dialog
    assert dialog is not None and dialog.tree.topLevelItemCount() == 2
    assert dialog.tree.topLevelItem(0).text(1) == "truncated JPEG"
    assert dialog.text().splitlines()[1] == "/p/b.png\tnot an image"
    dialog.close()
    indicator.set_skipped([])
    assert not indicator.isVisible()


def test_a_run_reports_its_skipped_files_for_the_status_bar(qtbot, fresh_env, image_folder, tmp_path):
    from imgcluster_gui.ui.main_window import MainWindow

    folder = tmp_path / "with-a-broken-file"
    shutil.copytree(Path(image_folder[0]).parent, folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    window = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(window)
    window.set_folder(str(folder))
    window.side_panel.set_algorithm("kmeans")
    window.side_panel.set_k(3)
    with qtbot.waitSignal(window.run_controller.skippedFiles, timeout=JOB_TIMEOUT_MS * 3) as reported:
        assert window.start_run() is not None
    pairs = reported.args[0]
    assert [Path(path).name for path, _reason in pairs] == ["broken.jpg"]
    assert pairs[0][1]  # with its reason
    qtbot.waitUntil(lambda: not window.is_running(), timeout=JOB_TIMEOUT_MS)
    window.close()


def test_describe_session_says_what_is_on_screen():
    labels = np.repeat(np.arange(10), 99)
    labels = np.concatenate([labels, np.full(10, -1)])
    session = ClusterSession([f"/x/{i}.png" for i in range(1000)], labels)
    assert describe_session(session, 2, "/home/me/session.imgcluster") == (
        "Run 2 · 1,000 images in 10 groups · 10 unsorted · session.imgcluster"
    )
    one = ClusterSession(["/x/0.png"], np.array([0]))
    assert describe_session(one) == "1 image in 1 group"
    assert describe_session(None) == "No result yet"


# ============================================================================ D. backbones
def test_efficientnet_lite1_and_lite2_really_work_offline(panel):
    from imgcluster_gui.core.features.backbones import build_feature_model, get_backbone

    for name in ("efficientnet_lite1", "efficientnet_lite2"):
        assert get_backbone(name).offline
        build_feature_model(name)  # the packaged ImageNet weights load (no "weights not installed")
    texts = [panel.backbone_list.item(row).text() for row in range(panel.backbone_list.count())]
    assert all("needs" not in text for text in texts if text.startswith("EfficientNet-Lite"))


def test_a_backbone_without_its_weights_is_labelled_honestly():
    from types import SimpleNamespace

    from imgcluster_gui.ui.side_panel import _backbone_text

    spec = SimpleNamespace(
        offline=False, display_name="EfficientNet-Lite1 (offline, ImageNet)", family="efficientnet_lite"
    )
    text = _backbone_text(spec)
    assert "offline" not in text and "weights file" in text


def test_the_weights_file_chooser_feeds_the_run_like_the_clis_weights_option(
    panel, fresh_env, image_folder, shared_weights, monkeypatch
):
    weights = shared_weights("mobilenet_v2_imagenet_coral.pth")
    folder = str(Path(image_folder[0]).parent)
    panel.set_folder(folder)
    panel.set_backbones(["mobilenet_v2"])
    assert panel.weights_button.isEnabled()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(weights), ""))
    panel.weights_button.click()
    assert panel.weights_edit.text() == str(weights)
    ours = panel.config()
    theirs = cli._config_from_args(
        cli.build_parser().parse_args(["cluster", folder, "--backbone", "mobilenet_v2", "--weights", str(weights)])
    )
    assert (ours.backbones, ours.weights_path) == (theirs.backbones, theirs.weights_path)

    # Kept in the panel state, per backbone, across launches.
    state = panel.state()
    other = SidePanel()
    other.restore_state(state)
    assert other.weights_file() == str(weights) and other.config().weights_path == str(weights)
    other.set_backbones(["resnet18"])
    assert other.weights_file() == "" and other.config().weights_path is None  # mobilenet's file only
    other.set_backbones(["mobilenet_v2", "resnet18"])  # one file for one backbone: not with two
    assert not other.weights_button.isEnabled() and other.config().weights_path is None
    other.deleteLater()

    panel.set_weights_file(str(fresh_env / "gone.pth"))
    with pytest.raises(ValueError, match="Weights file not found"):
        panel.config()


# ============================================================================ E. start-up
def test_recent_folders_are_stored_absolute_and_resolved(fresh_env, monkeypatch):
    work = fresh_env / "work"
    (work / "resources" / "sample_images").mkdir(parents=True)
    monkeypatch.chdir(work)
    settings = AppSettings()
    folders = settings.add_recent_folder("resources/sample_images")
    assert folders[0] == str((work / "resources" / "sample_images").resolve())
    assert settings.add_recent_folder(str(work / "resources" / "sample_images" / "..")) == [
        str((work / "resources").resolve()),
        str((work / "resources" / "sample_images").resolve()),
    ]


def test_a_relative_folder_runs_as_an_absolute_one(panel, image_folder, monkeypatch):
    folder = Path(image_folder[0]).parent
    monkeypatch.chdir(folder.parent)
    panel.set_folder(folder.name)
    assert panel.config().folder == str(folder)
    assert panel.state()["folder"] == str(folder)


def test_a_folder_export_leaves_what_is_not_a_regular_image_file_where_it_is(qtbot, exporter, session, tmp_path):
    # A crafted session file may name a FIFO or a text file dressed as a photo: neither is copied or moved.
    import os

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    session.paths[0], session.paths[1] = str(fifo), str(text)
    controller, _messages_ = exporter
    results = []
    job = controller.export_folders(str(tmp_path / "out"), "copy")
    job.succeeded.connect(results.append)
    qtbot.waitUntil(lambda: bool(results), timeout=JOB_TIMEOUT_MS)
    result = results[0]
    reasons = {Path(item.path).name: item.reason for item in result.failed}
    assert "FIFO" in reasons["pipe.jpg"] and reasons["notes.jpg"] == "not an image"
    assert fifo.exists() and text.read_text() == "not a photo"  # both left where they were
    assert result.n_done == len(session.paths) - 2
    assert not list((tmp_path / "out").rglob("pipe.jpg")) and not list((tmp_path / "out").rglob("notes.jpg"))
