"""The main window: the side panel runs jobs; the grid, scatter and metrics show and edit the result.

Layout: the cluster grid (under the granularity control: fewer, larger <-> more, smaller groups,
for graph clusterings) and the scatter plot share the centre (a splitter); the run settings
(left), metrics (right), log and run list (bottom) are dock widgets the user can move, float or
close.  Every long job runs on a :class:`~imgcluster_gui.ui.worker.BackgroundJob`; a failure
shows a short message with the traceback under "Show Details…" (never a crash) and goes to the
log.  Work is never lost: sessions save atomically, an autosave runs every few minutes and on
close, and after a crash the next start offers the autosave back.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence, QUndoStack
from PySide6.QtWidgets import (QApplication, QButtonGroup, QDialog, QDialogButtonBox, QDockWidget, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMainWindow, QMessageBox, QPushButton,
                               QRadioButton, QSplitter, QStyle, QVBoxLayout, QWidget)

from .granularity import GranularityBar, groups_text, label_counts
from .log_panel import LogPanel
from .metrics_panel import MetricsPanel, k_origin
from .run_list import RunList, RunRecord
from .scatter import ScatterView
from .settings import AppSettings, autosave_path
from .side_panel import SidePanel
from .worker import BackgroundJob, JobFailure, ProgressInfo, format_duration

ICON_DIR = Path(__file__).resolve().parents[2] / "resources" / "icons"
SESSION_FILTER = "imgcluster sessions (*.imgcluster);;All files (*)"
SESSION_SUFFIX = ".imgcluster"
# Close waits this long for a cancelled job to stop before the window goes.
CLOSE_WAIT_MS = 5000
# Default dock sizes in pixels (the user's own layout is restored from the settings).
SIDE_WIDTH = 320
METRICS_WIDTH = 400
BOTTOM_HEIGHT = 150
# Standard icons used where an SVG is missing (a non-editable install without resources/).
_FALLBACK_ICONS = {
    "open-folder": QStyle.StandardPixmap.SP_DirOpenIcon, "run": QStyle.StandardPixmap.SP_MediaPlay,
    "cancel": QStyle.StandardPixmap.SP_MediaStop, "save": QStyle.StandardPixmap.SP_DialogSaveButton,
    "save-as": QStyle.StandardPixmap.SP_DialogSaveButton, "open-session": QStyle.StandardPixmap.SP_DialogOpenButton,
    "export-csv": QStyle.StandardPixmap.SP_FileIcon, "export-json": QStyle.StandardPixmap.SP_FileIcon,
    "export-folders": QStyle.StandardPixmap.SP_DirIcon, "undo": QStyle.StandardPixmap.SP_ArrowBack,
    "redo": QStyle.StandardPixmap.SP_ArrowForward, "app": QStyle.StandardPixmap.SP_DesktopIcon,
}


def app_icon(name: str) -> QIcon:
    """Icon ``name`` from ``resources/icons/<name>.svg``, or a standard icon when it is missing."""
    path = ICON_DIR / f"{name}.svg"
    if path.is_file():
        return QIcon(str(path))
    app = QApplication.instance()
    fallback = _FALLBACK_ICONS.get(name)
    if app is not None and fallback is not None:
        return app.style().standardIcon(fallback)
    return QIcon()


class FolderExportDialog(QDialog):
    """Asks where to export the clusters as folders and how (copy, symlink, move)."""

    MODES = (("copy", "Copy the images (safe, uses disk space)"),
             ("symlink", "Symbolic links to the images (no copies)"),
             ("move", "Move the images out of their folder (asks again; can be undone)"))

    def __init__(self, start_folder: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export clusters as folders")
        form = QFormLayout(self)
        row = QHBoxLayout()
        self.target_edit = QLineEdit(start_folder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.target_edit, 1)
        row.addWidget(browse)
        form.addRow("Target folder", row)
        self.mode_group = QButtonGroup(self)
        modes = QVBoxLayout()
        for index, (mode, text) in enumerate(self.MODES):
            button = QRadioButton(text)
            button.setProperty("mode", mode)
            button.setChecked(index == 0)
            self.mode_group.addButton(button)
            modes.addWidget(button)
        form.addRow("Mode", modes)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into", self.target_edit.text())
        if folder:
            self.target_edit.setText(folder)

    def choice(self) -> tuple[str, str]:
        """``(target folder, mode)``."""
        return self.target_edit.text().strip(), str(self.mode_group.checkedButton().property("mode"))


class MainWindow(QMainWindow):
    """The imgcluster desktop window.

    Parameters
    ----------
    settings : AppSettings, optional
        Persistent settings (default: the user's).
    autosave : bool
        Run the periodic autosave timer (tests turn it off and call :meth:`autosave_now`).

    Signals
    -------
    runFinished(str)
        ``'succeeded'``, ``'failed'`` or ``'cancelled'`` after each run, once the worker stopped.
    sessionShown(object)
        A session (new run, opened file, selected run) is now on screen.
    """

    runFinished = Signal(str)
    sessionShown = Signal(object)

    def __init__(self, settings: Optional[AppSettings] = None, autosave: bool = True) -> None:
        super().__init__()
        from .cluster_grid import ClusterGridWidget
        from .thumbnails import ThumbnailLoader

        self.settings = settings if settings is not None else AppSettings()
        manifest = self.settings.last_export_manifest()
        self._startup_manifest = Path(manifest) if manifest and Path(manifest).is_file() else None
        self.setWindowTitle("imgcluster")
        self.setWindowIcon(app_icon("app"))
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)

        self.session: Any = None
        self.session_path: Optional[Path] = None
        self.last_error: Optional[tuple[str, str, str]] = None
        # The last folder export's manifest (remembered across launches, so a move can be undone later).
        self.last_manifest: Optional[Path] = self._startup_manifest
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._job: Optional[BackgroundJob] = None
        self._watch: Any = None  # a deep run's _EstimatorWatch (its estimator's live history)
        self._live_epochs = 0
        self._side_job: Optional[BackgroundJob] = None  # exports, undo of an export
        self._message_boxes: list[QMessageBox] = []
        self._run_started = 0.0
        # (uid, revision) of the session the autosave file holds: the periodic autosave skips it unchanged.
        self._autosaved: Optional[tuple[str, int]] = None

        self.undo_stack = QUndoStack(self)
        self.loader = ThumbnailLoader(parent=self)
        self.grid = ClusterGridWidget(None, self.undo_stack, self.loader)
        self.grid.setObjectName("cluster_grid")
        self.granularity_bar = GranularityBar()
        grid_column = QWidget()
        grid_layout = QVBoxLayout(grid_column)
        grid_layout.setContentsMargins(0, 0, 0, 0)
        grid_layout.setSpacing(0)
        grid_layout.addWidget(self.granularity_bar)
        grid_layout.addWidget(self.grid, 1)
        self.scatter = ScatterView(self.loader)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(grid_column)
        self.splitter.addWidget(self.scatter)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.setCentralWidget(self.splitter)

        self.side_panel = SidePanel()
        self.metrics_panel = MetricsPanel()
        self.log_panel = LogPanel()
        self.run_list = RunList()
        self.side_dock = self._dock("Run", "side_dock", self.side_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.metrics_dock = self._dock("Metrics", "metrics_dock", self.metrics_panel,
                                       Qt.DockWidgetArea.RightDockWidgetArea)
        self.runs_dock = self._dock("Runs", "runs_dock", self.run_list, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.log_dock = self._dock("Log", "log_dock", self.log_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(self.runs_dock, self.log_dock)
        self.runs_dock.raise_()

        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self.status_label = QLabel("Choose a folder and press Run.")
        self.statusBar().addWidget(self.status_label, 1)

        self.side_panel.runRequested.connect(self.start_run)
        self.side_panel.cancelRequested.connect(self.cancel_run)
        self.grid.selectionChanged.connect(self.scatter.set_selection)
        self.scatter.selectionChanged.connect(self.grid.select_indices)
        # The grid opens its own preview on double-click; the scatter's double-click opens ours.
        self.scatter.imageActivated.connect(self.show_preview)
        # Bound methods, not lambdas: Qt drops these connections when the window is destroyed.
        self.scatter.embeddingFailed.connect(self._on_embedding_failed)
        self.scatter.embeddingChanged.connect(self._on_embedding_changed)
        self.metrics_panel.metricsUpdated.connect(self._on_metrics_updated)
        # The slider and the ladder table switch levels through the same undoable path.
        self.granularity_bar.levelRequested.connect(self.set_granularity_level)
        self.metrics_panel.levelActivated.connect(self.set_granularity_level)
        self.run_list.runActivated.connect(self._on_run_activated)

        self.side_panel.set_recent_folders(self.settings.recent_folders())
        self.side_panel.restore_state(self.settings.panel_state())
        self._rebuild_recent_menu()
        self.resize(1400, 880)
        # Default layout: most of the width for the grid and scatter, a short bottom strip.
        self.resizeDocks([self.side_dock, self.metrics_dock], [SIDE_WIDTH, METRICS_WIDTH], Qt.Orientation.Horizontal)
        self.resizeDocks([self.runs_dock], [BOTTOM_HEIGHT], Qt.Orientation.Vertical)
        self.splitter.setSizes([600, 400])
        geometry, state = self.settings.window_geometry(), self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(int(self.settings.autosave_minutes() * 60_000))
        self._autosave_timer.timeout.connect(self._periodic_autosave)
        if autosave:
            self._autosave_timer.start()
        self.settings.mark_started()
        self._update_actions()

    # ================================================================ construction
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState/restoreState need names
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot: Callable[[], Any], shortcut: Any = None, icon: Optional[str] = None,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        if icon:
            action.setIcon(app_icon(icon))
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(f"{tip} ({action.shortcut().toString()})" if shortcut is not None else tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)  # shortcuts work whatever has the focus
        return action

    def _build_actions(self) -> None:
        self.open_folder_action = self._action("&Open folder…", self.choose_folder, QKeySequence.StandardKey.Open,
                                               "open-folder", "Choose a folder of images")
        self.run_action = self._action("&Run", self.start_run, "Ctrl+R", "run", "Cluster the folder")
        self.cancel_action = self._action("&Cancel run", self.cancel_run, "Esc", "cancel",
                                          "Stop the run and keep the previous result")
        self.save_action = self._action("&Save session", self.save_session, QKeySequence.StandardKey.Save, "save",
                                        "Save the result with your edits")
        self.save_as_action = self._action("Save session &as…", lambda: self.save_session(ask=True),
                                           "Ctrl+Shift+S", "save-as", "Save the session under a new name")
        self.open_session_action = self._action("Open &session…", self.open_session, "Ctrl+Shift+O",
                                                "open-session", "Open a saved session")
        self.restore_autosave_action = self._action("Restore &autosave", self.restore_autosave, None, None,
                                                    "Open the last autosaved session")
        self.export_csv_action = self._action("Export &CSV…", self.export_csv, "Ctrl+E", "export-csv",
                                              "Write one row per image with its cluster")
        self.export_json_action = self._action("Export &JSON…", self.export_json, None, "export-json",
                                               "Write the clusters and images as JSON")
        self.export_folders_action = self._action("Export as &folders…", self.export_folders, None,
                                                  "export-folders", "Copy, link or move images into cluster folders")
        self.undo_export_action = self._action("Undo folder e&xport", self.undo_last_export, None, None,
                                               "Put moved files back and remove the exported copies/links")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, None, "Quit imgcluster")

        self.new_cluster_action = self._action("&New cluster from selection…", self.new_cluster_from_selection,
                                               "Ctrl+G", None, "Put the selected images in a new cluster")
        self.expand_all_action = self._action("&Expand all clusters", lambda: self.grid.set_all_expanded(True),
                                              None, None, "Show every cluster's images")
        self.collapse_all_action = self._action("&Collapse all clusters", lambda: self.grid.set_all_expanded(False),
                                                None, None, "Show only the cluster headers")
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
        self.undo_action.setIcon(app_icon("undo"))
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.redo_action.setIcon(app_icon("redo"))
        self.addAction(self.undo_action)
        self.addAction(self.redo_action)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu("Recent folders")
        file_menu.addSeparator()
        for action in (self.open_session_action, self.save_action, self.save_as_action, self.restore_autosave_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        export_menu = file_menu.addMenu("&Export")
        for action in (self.export_csv_action, self.export_json_action, self.export_folders_action,
                       self.undo_export_action):
            export_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        edit_menu = menu.addMenu("&Edit")
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.new_cluster_action)

        run_menu = menu.addMenu("&Run")
        run_menu.addAction(self.run_action)
        run_menu.addAction(self.cancel_action)

        view_menu = menu.addMenu("&View")
        view_menu.addAction(self.expand_all_action)
        view_menu.addAction(self.collapse_all_action)
        view_menu.addSeparator()
        for dock in (self.side_dock, self.metrics_dock, self.runs_dock, self.log_dock):
            view_menu.addAction(dock.toggleViewAction())

        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self._action("&Keyboard shortcuts", self.show_shortcuts, None, None, ""))
        help_menu.addAction(self._action("&About imgcluster", self.show_about, None, None, ""))

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        toolbar.setIconSize(QSize(22, 22))
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.open_folder_action, self.run_action, self.cancel_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action in (self.open_session_action, self.save_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action in (self.export_csv_action, self.export_folders_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.undo_action)
        toolbar.addAction(self.redo_action)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        folders = self.settings.recent_folders()
        for folder in folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _c=False, f=folder: self.set_folder(f))
        self.recent_menu.setEnabled(bool(folders))

    def _update_actions(self) -> None:
        running = self.is_running()
        has_session = self.session is not None
        self.run_action.setEnabled(not running)
        self.cancel_action.setEnabled(running)
        for action in (self.save_action, self.save_as_action, self.export_csv_action, self.export_json_action,
                       self.export_folders_action, self.new_cluster_action):
            action.setEnabled(has_session)
        self.undo_export_action.setEnabled(self._side_job is None)  # without a last manifest it asks for one
        self.restore_autosave_action.setEnabled(autosave_path().is_file())
        self.side_panel.set_running(running)

    def _update_title(self) -> None:
        parts = ["imgcluster"]
        if self.session is not None:
            root = getattr(self.session, "root", None)
            parts.append(Path(str(root)).name if root else "session")
            if self.session_path is not None:
                parts.append(self.session_path.name)
        title = " — ".join(parts)
        if self.session is not None and self.session.modified:  # the session owns the unsaved flag
            title += " *"
        self.setWindowTitle(title)

    # ================================================================ messages
    def show_error(self, title: str, message: str, details: str = "") -> QMessageBox:
        """Show a short, non-blocking error with the details in an expander; also logged."""
        self.last_error = (title, message, details)
        self.log_panel.error(f"{title}: {message}")
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r, b=box: self._message_boxes.remove(b) if b in self._message_boxes else None)
        self._message_boxes.append(box)
        box.open()  # non-blocking: the event loop (and any running job) keeps going
        return box

    def show_failure(self, failure: JobFailure) -> QMessageBox:
        details = "" if failure.user_error and not failure.details else failure.details
        return self.show_error(failure.title, failure.message, details)

    def confirm(self, title: str, question: str) -> bool:
        """Ask a yes/no question (blocking); tests replace ``QMessageBox.question``."""
        answer = QMessageBox.question(self, title, question,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _status(self, text: str) -> None:
        self.status_label.setText(text)

    # ================================================================ folder and run
    def choose_folder(self) -> None:
        self.side_panel.browse_folder()

    def set_folder(self, folder: str) -> None:
        """Put ``folder`` in the side panel (the next run uses it)."""
        self.side_panel.set_folder(str(folder))

    def is_running(self) -> bool:
        return self._job is not None

    def current_job(self) -> Optional[BackgroundJob]:
        return self._job

    def start_run(self) -> Optional[BackgroundJob]:
        """Run the pipeline with the side panel's settings on a worker thread; returns the job."""
        if self._job is not None:
            return None
        try:
            config = self.side_panel.config(embedding=self.scatter.method())
        except ValueError as exc:
            self.show_error("Cannot run", str(exc))
            return None
        from ..core.pipeline import run_pipeline

        self.settings.set_panel_state(self.side_panel.state())
        # Deep methods: the metrics panel follows the training live (the estimator's history_, polled on
        # each progress tick), and a cancel keeps the last complete epoch (the core's PartialCancelled).
        watch = _EstimatorWatch() if _is_deep(config.algorithm) else None
        self._watch = watch
        job = BackgroundJob(lambda progress: run_pipeline(config, progress, on_estimator=watch),
                            title="The run failed", parent=self)
        self._live_epochs = 0
        job.progressed.connect(self._on_run_progress)
        job.noted.connect(self._on_job_note)
        job.succeeded.connect(lambda result, c=config: self._on_run_succeeded(c, result))
        job.failed.connect(self._on_run_failed)
        job.cancelled.connect(lambda j=job, c=config: self._on_run_cancelled(c, j.partial_result))
        job.finished.connect(lambda j=job: self._on_run_finished(j))
        self._job = job
        self._run_started = time.monotonic()
        backbones = " + ".join(config.backbones)
        k_text = self.side_panel.k_text()
        self.log_panel.info(f"Run {self.run_list.next_number()}: {config.folder} · {backbones} · "
                            f"{config.algorithm} · K {k_text}")
        self._status("Running…")
        job.start()
        self._update_actions()
        return job

    def cancel_run(self) -> None:
        """Ask the running job to stop; the previous result stays on screen."""
        if self._job is None:
            return
        self._job.cancel()
        self.side_panel.show_status("Cancelling…")
        self._status("Cancelling…")

    def _on_job_note(self, level: str, text: str) -> None:
        """A job's notes reach the log as they come (the run keeps its warnings in its record too)."""
        if level == "warning":
            self.log_panel.warning(text)
        else:
            self.log_panel.info(text)

    def _on_run_progress(self, info: ProgressInfo) -> None:
        self.side_panel.show_progress(info)
        self._status(info.describe())
        self._poll_training()

    def _poll_training(self) -> None:
        """Plot a deep method's history as its epochs complete (read from the worker's estimator)."""
        if self._watch is None:
            return
        history = self._watch.history()
        if len(history) != self._live_epochs:
            self._live_epochs = len(history)
            self.metrics_panel.set_history(history, live=True)

    def _on_run_succeeded(self, config: Any, result: Any, partial: bool = False) -> None:
        seconds = time.monotonic() - self._run_started
        session = result.to_session()
        history = list(getattr(result.estimator, "history_", None) or [])
        record = RunRecord(number=self.run_list.next_number(), session=session, config=config.to_dict(),
                           seconds=seconds, source="run", history=history,
                           title="cancelled: best epoch so far" if partial else "")
        self.run_list.add_run(record)
        skipped = self.log_panel.log_skipped(result.skipped)
        n_clusters = len([c for c in session.cluster_ids() if c >= 0])
        origin = k_origin(session)
        levels = session.n_granularity_levels
        steps = f"; {levels} granularity levels to choose from over the grid" if levels >= 2 else ""
        self.log_panel.info(f"Run {record.number} done in {format_duration(seconds)}: {len(session.paths)} images, "
                            f"{n_clusters} clusters, {skipped} skipped. {origin}{steps}.")
        self.settings.add_recent_folder(config.folder)
        self.side_panel.set_recent_folders(self.settings.recent_folders())
        self._rebuild_recent_menu()
        self.show_session(session, history=history, path=None)  # to_session() marked it modified
        if partial:
            self.side_panel.show_status(f"Cancelled after {format_duration(seconds)}: best epoch kept", 0.0)
            self._status(f"Run {record.number} cancelled; its last complete epoch is shown "
                         f"({len(session.paths)} images in {n_clusters} clusters).")
        else:
            self.side_panel.show_status(f"Done in {format_duration(seconds)}", 1.0)
            self._status(f"Run {record.number}: {len(session.paths)} images in {n_clusters} clusters ({origin}).")

    def _on_run_failed(self, failure: JobFailure) -> None:
        self.side_panel.show_status(f"Failed: {failure.message}", 0.0)
        self._status("The run failed; the previous result is still shown.")
        self.show_failure(failure)

    def _on_run_cancelled(self, config: Any = None, partial_result: Any = None) -> None:
        if partial_result is not None and config is not None:
            # A deep method stopped mid-training: its last complete epoch is the best result so far
            # (the run's own note said which epoch).
            try:
                self._on_run_succeeded(config, partial_result, partial=True)
                return
            except Exception as exc:  # never lose the previous result over a partial one
                self.show_failure(JobFailure.from_exception(exc, "Could not show the partial result"))
        self.log_panel.warning("Run cancelled; the previous result is kept.")
        if self._watch is not None:  # the live curve belonged to the cancelled run
            record = self._shown_record()
            self.metrics_panel.set_history(record.history if record is not None else [])
        self.side_panel.show_status("Cancelled", 0.0)
        self._status("Cancelled; the previous result is still shown.")

    def _shown_record(self) -> Optional[RunRecord]:
        for record in self.run_list.records():
            if record.session is self.session:
                return record
        return None

    def _on_run_finished(self, job: BackgroundJob) -> None:
        if self._job is job:
            self._job = None
            self._watch = None
        outcome = job.outcome or "failed"
        job.deleteLater()
        self._update_actions()
        self.runFinished.emit(outcome)

    # ================================================================ showing a session
    def show_session(self, session: Any, history: Optional[list] = None, path: Optional[Path] = None) -> None:
        """Put ``session`` on screen (grid, scatter, metrics); the undo history starts afresh."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.undo_stack.clear()  # commands refer to the session they edited
        self.session = session
        self.session_path = path
        self._autosaved = None
        if session is not None:
            self._unsubscribe = session.subscribe(self._on_session_event)
        self.grid.set_session(session)
        self.granularity_bar.set_session(session)
        self.scatter.set_session(session)
        self.metrics_panel.set_session(session, history=history)
        self._update_title()
        self._update_actions()
        self.sessionShown.emit(session)

    def _on_embedding_failed(self, failure: JobFailure) -> None:
        self.log_panel.error(f"Embedding: {failure.message}")

    def _on_embedding_changed(self, method: str) -> None:
        self.log_panel.info(f"2-D embedding recomputed ({method}).")

    def _on_metrics_updated(self, _metrics: dict) -> None:
        self.run_list.refresh()

    def _on_session_event(self, event: Any) -> None:
        if getattr(event, "kind", "") == "modified":
            self._update_title()

    def new_cluster_from_selection(self, name: Optional[str] = None) -> Optional[int]:
        """Put the grid's selected images in a new cluster (asks for a name when ``name`` is None)."""
        if self.session is None or not self.grid.selected_indices():
            self._status("Select images in the grid or the scatter plot first.")
            return None
        if name is None:
            from PySide6.QtWidgets import QInputDialog

            text, ok = QInputDialog.getText(self, "New cluster", "Name of the new cluster (may be empty):")
            if not ok:
                return None
            name = text or None
        return self.grid.new_cluster_from_selection(name)

    # ================================================================ granularity
    def set_granularity_level(self, level: int, keep_hand_placed: Optional[bool] = None) -> bool:
        """Show granularity level ``level`` of the session (an undoable edit); True when the labels changed.

        With images placed by hand, ``keep_hand_placed=None`` asks (:meth:`ask_keep_hand_placed`)
        whether they stay where they are; cancelling changes nothing.
        """
        from .commands import RegroupCommand

        session = self.session
        if session is None or session.n_granularity_levels < 2 or not 0 <= int(level) < session.n_granularity_levels:
            return False
        if keep_hand_placed is None:
            placed = int(session.hand_placed().size)
            if placed and session.granularity_level() != int(level):
                choice = self.ask_keep_hand_placed(placed)
                if choice is None:
                    self._status("Regrouping cancelled.")
                    return False
                keep_hand_placed = choice
            else:
                keep_hand_placed = True
        command = RegroupCommand(session, int(level), keep_hand_placed=bool(keep_hand_placed))
        if command.edit.is_noop:
            return False
        self.undo_stack.push(command)
        groups, unsorted = label_counts(session.labels)
        self._status(f"{groups_text(groups, unsorted)} (Ctrl+Z goes back).")
        self.log_panel.info(f"{command.text()}: level {int(level) + 1} of {session.n_granularity_levels}, "
                            f"{command.edit.indices.size} image(s) changed group.")
        return True

    def ask_keep_hand_placed(self, count: int) -> Optional[bool]:
        """Ask whether the ``count`` images placed by hand keep their place: True keep, False replace, None cancel."""
        images = f"{count} hand-placed image" + ("" if count == 1 else "s")
        box = QMessageBox(QMessageBox.Icon.Question, "Regroup the images",
                          f"You placed {images} by hand. Keep them where they are, or regroup them too?",
                          QMessageBox.StandardButton.NoButton, self)
        box.setObjectName("hand_placed_box")
        keep = box.addButton(f"Keep my {images} where they are", QMessageBox.ButtonRole.AcceptRole)
        replace = box.addButton("Replace them too", QMessageBox.ButtonRole.DestructiveRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.setEscapeButton(cancel)
        box.exec()
        clicked = box.clickedButton()
        box.deleteLater()
        if clicked is keep:
            return True
        if clicked is replace:
            return False
        return None

    def _on_run_activated(self, number: int) -> None:
        record = self.run_list.record(number)
        if record.session is not self.session:
            self.show_session(record.session, history=record.history, path=None)

    def show_preview(self, index: int) -> Optional[QDialog]:
        """Open the larger preview of image ``index`` of the shown session."""
        if self.session is None or not 0 <= index < len(self.session.paths):
            return None
        from .preview import PreviewDialog

        cluster = int(self.session.labels[index])
        try:
            dialog = PreviewDialog(self.session.paths[index], caption=self.session.name_of(cluster), parent=self)
        except Exception as exc:  # a preview problem must never take the window down
            self.show_failure(JobFailure.from_exception(exc, "Preview failed"))
            return None
        dialog.show()  # non-modal: the user can keep working beside it
        self.preview_dialog = dialog
        return dialog

    # ================================================================ sessions
    def save_session(self, path: Optional[str] = None, ask: bool = False) -> bool:
        """Save the shown session (atomically); asks for a file name when needed. True when saved."""
        if self.session is None:
            return False
        target = Path(path) if path else (None if ask else self.session_path)
        if target is None:
            start = str(Path(self.settings.last_directory("session") or Path.home()) / f"clusters{SESSION_SUFFIX}")
            chosen, _ = QFileDialog.getSaveFileName(self, "Save session", start, SESSION_FILTER)
            if not chosen:
                return False
            target = Path(chosen)
            if not target.suffix:
                target = target.with_suffix(SESSION_SUFFIX)
        self._sync_session_settings()
        try:
            self.session.save(target)
        except Exception as exc:
            self.show_failure(JobFailure.from_exception(exc, "Could not save the session"))
            return False
        self.session_path = target
        self.settings.set_last_directory("session", str(target.parent))
        self.log_panel.info(f"Session saved to {target}")
        self._log_model_warning(self.session)
        self._update_title()
        return True

    def _sync_session_settings(self) -> None:
        self.session.set_setting("embedding", self.scatter.method(), overwrite=False)

    def open_session(self, path: Optional[str] = None) -> bool:
        """Open a saved session file (a corrupt one gives a message); True when opened."""
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(self, "Open session", self.settings.last_directory("session"),
                                                    SESSION_FILTER)
            if not chosen:
                return False
            path = chosen
        from ..core.session import ClusterSession

        try:
            session = ClusterSession.load(path)
        except Exception as exc:
            self.show_failure(JobFailure.from_exception(exc, "Could not open the session"))
            return False
        settings = getattr(session, "settings", None) or {}
        record = RunRecord(number=self.run_list.next_number(), session=session, config=dict(settings),
                           source="file", title=Path(path).name)
        self.run_list.add_run(record)
        self.show_session(session, path=Path(path))
        if settings.get("folder"):
            self.side_panel.set_folder(str(settings["folder"]))
        self.settings.set_last_directory("session", str(Path(path).parent))
        self.log_panel.info(f"Opened session {path}")
        self._log_model_warning(session)
        return True

    def _log_model_warning(self, session: Any) -> None:
        """Say when a deep run's trained network could not be saved or read back (the session itself is fine)."""
        warning = getattr(session, "model_warning", None)
        if warning:
            self.log_panel.warning(warning)

    def autosave_now(self, force: bool = True) -> Optional[Path]:
        """Write the shown session to the autosave file; returns the path (None when nothing was written).

        ``force=False`` (the periodic timer) skips a session unchanged since the last autosave, so
        a large idle session does not hit the disk every few minutes.
        """
        session = self.session
        if session is None or (not force and self._autosaved == (session.uid, session.revision)):
            return None
        target = autosave_path()
        self._sync_session_settings()
        try:
            session.save(target, mark_saved=False)  # a copy: the work still counts as unsaved
        except Exception as exc:  # the autosave must never interrupt the user; say it in the log
            self.log_panel.warning(f"Autosave failed: {exc}")
            return None
        self._autosaved = (session.uid, session.revision)
        self.restore_autosave_action.setEnabled(True)
        return target

    def _periodic_autosave(self) -> None:
        self.autosave_now(force=False)

    def restore_autosave(self) -> bool:
        path = autosave_path()
        if not path.is_file():
            self.show_error("Nothing to restore", "There is no autosaved session.")
            return False
        opened = self.open_session(str(path))
        if opened:
            self.session_path = None  # saving must not overwrite the autosave by default
            self.session.mark_modified()
            self._update_title()
        return opened

    def offer_restore(self) -> bool:
        """After a crash (autosave newer than the last clean exit), offer to restore it."""
        if not self.settings.should_offer_restore():
            return False
        if not self.confirm("Restore your work?",
                            "imgcluster did not close normally last time. Restore the autosaved session?"):
            return False
        return self.restore_autosave()

    # ================================================================ export
    def _export_path(self, title: str, suffix: str, file_filter: str) -> Optional[str]:
        root = getattr(self.session, "root", None)
        start_dir = self.settings.last_directory("export") or (str(root) if root else str(Path.home()))
        chosen, _ = QFileDialog.getSaveFileName(self, title, str(Path(start_dir) / f"clusters{suffix}"), file_filter)
        return chosen or None

    def _export_table(self, writer_name: str, path: Optional[str], suffix: str, file_filter: str) -> Optional[Path]:
        if self.session is None:
            return None
        if path is None:
            path = self._export_path(f"Export {suffix[1:].upper()}", suffix, file_filter)
            if path is None:
                return None
        from ..core import export

        writer = getattr(export, writer_name)
        session = self.session
        try:
            written = writer(path, session.paths, session.labels, cluster_names=dict(session.cluster_names),
                             confidence=getattr(session, "confidence", None),
                             embedding=getattr(session, "embedding", None), root=getattr(session, "root", None))
        except Exception as exc:
            self.show_failure(JobFailure.from_exception(exc, "Export failed"))
            return None
        self.settings.set_last_directory("export", str(Path(path).parent))
        self.log_panel.info(f"Exported {len(session.paths)} rows to {written}")
        self._status(f"Exported to {written}")
        return Path(written)

    def export_csv(self, path: Optional[str] = None) -> Optional[Path]:
        """Write the CSV (with the hand edits); asks for a file name when ``path`` is None."""
        return self._export_table("export_csv", path, ".csv", "CSV files (*.csv);;All files (*)")

    def export_json(self, path: Optional[str] = None) -> Optional[Path]:
        return self._export_table("export_json", path, ".json", "JSON files (*.json);;All files (*)")

    def export_folders(self, target: Optional[str] = None, mode: Optional[str] = None) -> Optional[BackgroundJob]:
        """Export the clusters as folders on a worker (copy / symlink; move after a confirmation)."""
        if self.session is None or self._side_job is not None:
            return None
        if target is None or mode is None:
            dialog = FolderExportDialog(self.settings.last_directory("export"), self)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            target, mode = dialog.choice()
        if not target:
            self.show_error("Export failed", "Choose a target folder.")
            return None
        if mode == "move" and not self.confirm(
                "Move the images?",
                f"This moves {len(self.session.paths)} images out of their folders into {target}. "
                "A manifest lets you undo it (File ▸ Export ▸ Undo folder export). Move them?"):
            return None
        from ..core.export import export_folders

        session = self.session
        paths, labels, names = list(session.paths), session.labels.copy(), dict(session.cluster_names)
        job = BackgroundJob(lambda progress: export_folders(target, paths, labels, cluster_names=names, mode=mode,
                                                            allow_move=(mode == "move"), progress=progress),
                            title="Export failed", parent=self)
        job.progressed.connect(lambda info: self._status(f"Exporting… {int(info.fraction * 100)} %"))
        job.succeeded.connect(self._on_folders_exported)
        job.failed.connect(self.show_failure)
        job.finished.connect(lambda j=job: self._on_side_job_finished(j))
        self._side_job = job
        self.settings.set_last_directory("export", str(target))
        job.start()
        self._update_actions()
        return job

    def _on_folders_exported(self, result: Any) -> None:
        self.last_manifest = Path(result.manifest_path)
        self.settings.set_last_export_manifest(str(self.last_manifest))
        self.log_panel.log_skipped(result.failed)
        self.log_panel.info(f"Exported {result.n_done} image(s) to {result.target} "
                            f"({len(result.failed)} failed); manifest {result.manifest_path}")
        self._status(f"Exported {result.n_done} image(s) to {result.target}")

    def undo_last_export(self, manifest_path: Optional[str] = None) -> Optional[BackgroundJob]:
        """Reverse a folder export from its manifest (on a worker).

        Uses ``manifest_path``, else the last export's manifest (also one from an earlier launch),
        else asks for a manifest file.
        """
        if self._side_job is not None:
            return None
        if manifest_path is None and self.last_manifest is None:
            manifest_path, _ = QFileDialog.getOpenFileName(
                self, "Undo a folder export: choose its manifest", self.settings.last_directory("export"),
                "imgcluster export manifests (imgcluster-export-*.json);;JSON files (*.json)")
            if not manifest_path:
                return None
        from ..core.export import undo_export

        manifest = Path(manifest_path) if manifest_path else self.last_manifest
        job = BackgroundJob(lambda progress: undo_export(manifest, progress=progress), title="Undo export failed",
                            parent=self)
        job.succeeded.connect(lambda result, m=manifest: self._on_export_undone(result, m))
        job.failed.connect(self.show_failure)
        job.finished.connect(lambda j=job: self._on_side_job_finished(j))
        self._side_job = job
        job.start()
        self._update_actions()
        return job

    def _on_export_undone(self, result: Any, manifest: Optional[Path] = None) -> None:
        if manifest is None or manifest == self.last_manifest:
            self.last_manifest = None
            self.settings.set_last_export_manifest("")
        self.log_panel.log_skipped(result.problems)
        self.log_panel.info(f"Export undone: {result.restored} file(s) moved back, {result.removed} removed, "
                            f"{len(result.problems)} problem(s).")

    def _on_side_job_finished(self, job: BackgroundJob) -> None:
        if self._side_job is job:
            self._side_job = None
        job.deleteLater()
        self._update_actions()

    def side_job(self) -> Optional[BackgroundJob]:
        return self._side_job

    # ================================================================ help
    def show_shortcuts(self) -> None:
        lines = [f"{a.text().replace('&', '')}: {a.shortcut().toString()}" for a in
                 (self.open_folder_action, self.run_action, self.cancel_action, self.save_action,
                  self.open_session_action, self.export_csv_action, self.undo_action, self.redo_action)]
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", "\n".join(lines),
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def show_about(self) -> None:
        from .. import __version__ as version

        QMessageBox.about(self, "About imgcluster",
                          f"imgcluster {version}\nSort a folder of images into groups with pretrained CNN features.")

    # ================================================================ closing
    def shutdown(self, wait_ms: int = CLOSE_WAIT_MS) -> None:
        """Stop every background job and the thumbnail loader (waits up to ``wait_ms`` each)."""
        for job in (self._job, self._side_job, self.scatter.running_job()):
            if job is not None:
                job.cancel()
                job.wait(wait_ms)
        self.metrics_panel.wait_idle(wait_ms)
        if hasattr(self.loader, "shutdown"):
            self.loader.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's hook
        if self._side_job is not None and not self.confirm(
                "Export running", "A folder export is still running. Stop it and quit?"):
            event.ignore()
            return
        self.shutdown()
        self.autosave_now()
        self.settings.set_panel_state(self.side_panel.state())
        self.settings.set_window_layout(self.saveGeometry(), self.saveState())
        self.settings.mark_clean_exit()
        # The session may outlive the window (the run list, a test): stop listening to it.
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.scatter.set_session(None)
        self.granularity_bar.set_session(None)
        self.metrics_panel.set_session(None)
        event.accept()


def _is_deep(algorithm: str) -> bool:
    """Whether a registry algorithm trains a network (its history is plotted live)."""
    from ..core.clustering.registry import get_algorithm

    try:
        return get_algorithm(algorithm).category == "deep"
    except KeyError:  # an unknown id fails later with the core's own message
        return False


class _EstimatorWatch:
    """Given the estimator by the worker thread (``on_estimator``); the GUI thread reads its history."""

    def __init__(self) -> None:
        self.estimator: Any = None

    def __call__(self, estimator: Any) -> None:
        self.estimator = estimator

    def history(self) -> list[dict]:
        """A copy of the running estimator's per-epoch history so far (empty before training)."""
        rows = getattr(self.estimator, "history_", None) if self.estimator is not None else None
        return [dict(row) for row in list(rows or [])]
