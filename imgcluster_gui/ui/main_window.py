"""The main window: the side panel runs jobs; the grid, scatter and metrics show and edit the result.

Layout: the cluster grid (under the granularity control: fewer, larger <-> more, smaller groups,
for graph clusterings) and the scatter plot share the centre (a splitter); the run settings
(left), metrics (right), log and run list (bottom) are dock widgets the user can move, float or
close.  This module builds the window (docks, actions, menus, toolbar, title, status bar) and wires
the views to the objects that own the state and the work: ``run_controller.RunController`` (the
run job), ``export_controller.ExportController`` (exports and their undo),
``edit_controller.EditController`` (regroup, new cluster), ``session_controller.SessionController``
(the shown session, its file, the autosave) and ``dialogs.Messages`` (errors, never a crash, and
questions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent, QUndoStack
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import dialogs, layout
from .actions import add_groups, make_action
from .dialogs import FolderExportDialog, Messages
from .edit_controller import EditController, RunUndoStacks
from .export_controller import ExportController
from .granularity import GranularityBar
from .icons import app_icon
from .log_panel import LogPanel
from .metrics_panel import MetricsPanel
from .run_controller import RunController
from .run_list import RunList
from .scatter import ScatterView
from .session_controller import SESSION_FILTER, SESSION_SUFFIX, SessionController
from .settings import AppSettings, autosave_path
from .side_panel import SidePanel
from .status_bar import SkippedFilesIndicator, describe_session
from .view_controls import ViewControls
from .worker import BackgroundJob, JobFailure

__all__ = ["CLOSE_WAIT_MS", "FolderExportDialog", "MainWindow", "SESSION_FILTER", "SESSION_SUFFIX", "app_icon"]

# Close waits this long for a cancelled job to stop before the window goes.
CLOSE_WAIT_MS = 5000
_SUGGEST_NAMES_KEY = "view/suggest_names"  # View -> Suggest names from ImageNet classes (default on)


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
        from .cluster_overview import ClusterOverview
        from .thumbnails import ThumbnailLoader

        self.settings = settings if settings is not None else AppSettings()
        self.setWindowTitle("imgcluster")
        self.setWindowIcon(app_icon("app"))
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)

        # One undo stack per run, the shown run's active (undo_stack); run_list is read lazily, built below.
        self.undo_stacks = RunUndoStacks(self, runs=lambda: self.run_list.records())
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
        self.setCentralWidget(grid_column)  # the grid first: everything else is a dock beside it
        self.scatter = ScatterView(self.loader)

        self.side_panel = SidePanel()
        self.metrics_panel = MetricsPanel()
        self.log_panel = LogPanel()
        self.run_list = RunList()
        # Every cluster as a drop target (and a place to jump to) without scrolling the grid.
        self.cluster_overview = ClusterOverview(self.loader)
        self.cluster_overview.setObjectName("cluster_overview")
        self.side_dock = self._dock("Run", "side_dock", self.side_panel)
        self.clusters_dock = self._dock("Clusters", "clusters_dock", self.cluster_overview)
        self.scatter_dock = self._dock("Scatter", "scatter_dock", self.scatter)
        self.metrics_dock = self._dock("Metrics", "metrics_dock", self.metrics_panel)
        self.runs_dock = self._dock("Runs", "runs_dock", self.run_list)
        self.log_dock = self._dock("Log", "log_dock", self.log_panel)

        # The controllers own the work; the window only shows what they report.
        self.messages = Messages(self, self.log_panel)
        self.session_controller = SessionController(
            self.settings, self.messages, self.log_panel, self.run_list, self.side_panel, self.scatter.method, self
        )
        shown = self.session_controller.current  # the session on screen, for the other controllers
        self.run_controller = RunController(
            self.side_panel,
            self.metrics_panel,
            self.run_list,
            self.log_panel,
            self.settings,
            self.messages,
            self.scatter.method,
            shown,
            self,
        )
        self.export_controller = ExportController(self.settings, self.messages, self.log_panel, shown, self)
        # Looked up on each question, so a test can replace the window's ask_keep_hand_placed.
        self.edit_controller = EditController(
            self.undo_stacks, self.grid, self.log_panel, shown, lambda count: self.ask_keep_hand_placed(count), self
        )

        self._build_actions()
        self.view_controls = ViewControls(self.grid, self.reset_layout, self)
        self._build_menus()
        self._build_toolbar()
        self.status_label = QLabel("Choose a folder and press Run.")
        self.statusBar().addWidget(self.status_label, 1)
        self.selection_label = QLabel("")
        self.selection_label.setObjectName("selection_count")
        self.statusBar().addPermanentWidget(self.selection_label)
        # What is on screen (run, images, groups, file); status_label keeps the transient messages.
        self.session_label = QLabel("")
        self.session_label.setObjectName("session_summary")
        self.statusBar().addPermanentWidget(self.session_label)
        self.skipped_indicator = SkippedFilesIndicator()
        self.statusBar().addPermanentWidget(self.skipped_indicator)
        self._connect()

        self.side_panel.set_recent_folders(self.settings.recent_folders())
        self.side_panel.restore_state(self.settings.panel_state())
        self._rebuild_recent_menu()
        self.resize(1400, 880)
        layout.apply_default_layout(self)
        # The last exit's layout, checked once shown (sizes are only real then): see _check_restored_layout.
        geometry, state = self.settings.window_geometry(), self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        self._layout_restored = state is not None and self.restoreState(state, layout.LAYOUT_VERSION)
        self._restore_view_state()

        if autosave:
            self.session_controller.autosave_timer.start()
        self.settings.mark_started()
        self._update_actions()

    # ================================================================ construction
    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        """A dock for ``widget``; ui/layout.py puts it in its place."""
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState/restoreState need names
        dock.setWidget(widget)
        return dock

    def _action(
        self, text: str, slot: Callable[[], Any], shortcut: Any = None, icon: Optional[str] = None, tip: str = ""
    ) -> QAction:
        return make_action(self, text, slot, shortcut, icon, tip)

    def _build_actions(self) -> None:
        self.open_folder_action = self._action(
            "&Open folder…",
            self.side_panel.browse_folder,
            QKeySequence.StandardKey.Open,
            "open-folder",
            "Choose a folder of images",
        )
        self.run_action = self._action("&Run", self.start_run, "Ctrl+R", "run", "Cluster the folder")
        self.cancel_action = self._action(
            "&Cancel run", self.cancel_run, "Esc", "cancel", "Stop the run and keep the previous result"
        )
        self.save_action = self._action(
            "&Save session", self.save_session, QKeySequence.StandardKey.Save, "save", "Save the result with your edits"
        )
        self.save_as_action = self._action(
            "Save session &as…",
            lambda: self.save_session(ask=True),
            "Ctrl+Shift+S",
            "save-as",
            "Save the session under a new name",
        )
        self.open_session_action = self._action(
            "Open &session…", self.open_session, "Ctrl+Shift+O", "open-session", "Open a saved session"
        )
        self.restore_autosave_action = self._action(
            "Restore &autosave", self.session_controller.restore_autosave, None, None, "Open the last autosaved session"
        )
        self.export_csv_action = self._action(
            "Export &CSV…", self.export_csv, "Ctrl+E", "export-csv", "Write one row per image with its cluster"
        )
        self.export_json_action = self._action(
            "Export &JSON…", self.export_json, None, "export-json", "Write the clusters and images as JSON"
        )
        self.export_folders_action = self._action(
            "Export as &folders…",
            self.export_folders,
            None,
            "export-folders",
            "Copy, link or move images into cluster folders",
        )
        self.undo_export_action = self._action(
            "Undo folder e&xport",
            self.undo_last_export,
            None,
            None,
            "Put moved files back and remove the exported copies/links",
        )
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, None, "Quit imgcluster")

        self.new_cluster_action = self._action(
            "&New cluster from selection…",
            self.new_cluster_from_selection,
            "Ctrl+G",
            None,
            "Put the selected images in a new cluster",
        )
        self.recluster_action = self._action(
            "Re-cluster with my &corrections",
            lambda: self.edit_controller.recluster_with_corrections(),
            "Ctrl+Shift+R",
            None,
            "Re-assign every image you did not place by hand; your corrections stay where you put them",
        )
        self.finetune_action = self._action(
            "&Fine-tune on my corrections and re-cluster",
            lambda: self.edit_controller.finetune_with_corrections(),
            None,
            None,
            "Train a small projection head on the corrected clusters (background), then re-cluster in its space",
        )
        self.suggest_names_action = self._action(
            "Suggest &names from ImageNet classes",
            self._apply_suggest_names,
            None,
            None,
            "Name clusters without a custom name from the ImageNet classes their images agree on",
        )
        self.suggest_names_action.setCheckable(True)
        self.suggest_names_action.setChecked(bool(self.settings.qsettings.value(_SUGGEST_NAMES_KEY, True, type=bool)))
        self.expand_all_action = self._action(
            "&Expand all clusters", lambda: self.grid.set_all_expanded(True), None, None, "Show every cluster's images"
        )
        self.collapse_all_action = self._action(
            "&Collapse all clusters",
            lambda: self.grid.set_all_expanded(False),
            None,
            None,
            "Show only the cluster headers",
        )
        self.undo_action = self.undo_stacks.group.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
        self.undo_action.setIcon(app_icon("undo"))
        self.redo_action = self.undo_stacks.group.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.redo_action.setIcon(app_icon("redo"))
        self.addAction(self.undo_action)
        self.addAction(self.redo_action)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu("Recent folders")
        export_menu = QMenu("&Export", file_menu)
        export_menu.addActions(
            [self.export_csv_action, self.export_json_action, self.export_folders_action, self.undo_export_action]
        )
        add_groups(
            file_menu,
            [self.open_session_action, self.save_action, self.save_as_action, self.restore_autosave_action],
            [export_menu.menuAction()],
            [self.quit_action],
        )
        add_groups(
            menu.addMenu("&Edit"),
            [self.undo_action, self.redo_action],
            [self.new_cluster_action],
            [self.recluster_action, self.finetune_action],
        )
        add_groups(menu.addMenu("&Run"), [self.run_action, self.cancel_action])
        self.view_menu = menu.addMenu("&View")
        self.view_controls.populate(
            self.view_menu,
            [layout.panel_action(dock, self) for dock in layout.layout_docks(self).values()],
            [self.expand_all_action, self.collapse_all_action],
        )
        self.view_menu.addSeparator()
        self.view_menu.addAction(self.suggest_names_action)
        add_groups(
            menu.addMenu("&Help"),
            [
                self._action("&Keyboard shortcuts", self.show_shortcuts),
                self._action("&About imgcluster", lambda: dialogs.show_about(self)),
            ],
        )

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        toolbar.setIconSize(QSize(22, 22))
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        add_groups(
            toolbar,
            [self.open_folder_action, self.run_action, self.cancel_action],
            [self.open_session_action, self.save_action],
            [self.export_csv_action, self.export_folders_action],
            [self.undo_action, self.redo_action],
        )
        for action in (self.undo_action, self.redo_action):
            # Their text names the edit ("Undo Rename … to …"): as text it pushed the size slider into the overflow.
            button = toolbar.widgetForAction(action)
            if isinstance(button, QToolButton):
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        toolbar.addWidget(spacer)  # the size slider sits at the right end, as in photo organisers
        toolbar.addWidget(self.view_controls.slider_widget)

    def _connect(self) -> None:
        """Views to each other and the controllers' reports to the views (bound methods: Qt drops them with us)."""
        self.side_panel.runRequested.connect(self.start_run)
        self.side_panel.cancelRequested.connect(self.cancel_run)
        self.grid.selectionChanged.connect(self.scatter.set_selection)
        self.grid.selectionChanged.connect(self._show_selection_count)
        self.scatter.selectionChanged.connect(self._show_selection_count)  # a lasso selects without the grid's signal
        self.scatter.selectionChanged.connect(self.grid.select_indices)
        # Double-click / Enter in the grid opens its preview (stepping through the cluster); Space = quick look, the
        # same viewer; a double-click on the scatter opens it too.
        self.grid.quickLookRequested.connect(self.show_preview)
        self.scatter.imageActivated.connect(self.show_preview)
        self.cluster_overview.clusterActivated.connect(self.jump_to_cluster)
        self.cluster_overview.dropRequested.connect(self.grid.move_indices)  # the undoable move
        self.cluster_overview.renameRequested.connect(self.grid.rename_cluster)  # the undoable rename
        self.grid.statusMessage.connect(self._status)
        self.scatter.embeddingFailed.connect(self._on_embedding_failed)
        self.scatter.embeddingChanged.connect(self._on_embedding_changed)
        self.metrics_panel.metricsUpdated.connect(self._on_metrics_updated)
        # The slider and the ladder table switch levels through the same undoable path.
        self.granularity_bar.levelRequested.connect(self.set_granularity_level)
        self.metrics_panel.levelActivated.connect(self.set_granularity_level)
        self.run_list.runActivated.connect(self._on_run_activated)
        # "Show images that moved" in a comparison of two runs selects them everywhere.
        self.run_list.showImages.connect(self.grid.select_indices)
        self.run_list.showImages.connect(self.scatter.set_selection)
        self.run_list.showImages.connect(self._show_selection_count)

        runs = self.run_controller
        runs.statusMessage.connect(self._status)
        runs.runningChanged.connect(self._update_actions)
        runs.recentFoldersChanged.connect(self._on_recent_folders_changed)
        runs.resultReady.connect(self.show_session)  # (session, history)
        runs.finished.connect(self.runFinished)
        self.export_controller.statusMessage.connect(self._status)
        self.export_controller.busyChanged.connect(self._update_actions)
        self.edit_controller.statusMessage.connect(self._status)
        self.edit_controller.finetuneRunningChanged.connect(self._update_actions)
        sessions = self.session_controller
        sessions.showRequested.connect(self._show_opened)  # (session, history, path)
        sessions.titleChanged.connect(self._update_title)
        sessions.titleChanged.connect(self._update_session_summary)  # saved under another name
        runs.skippedFiles.connect(self.skipped_indicator.set_skipped)
        self.undo_stacks.group.indexChanged.connect(self._update_session_summary)  # counts follow every edit
        sessions.autosaved.connect(self._on_autosaved)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        folders = self.settings.recent_folders()
        for folder in folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _c=False, f=folder: self.set_folder(f))
        self.recent_menu.setEnabled(bool(folders))

    def _on_recent_folders_changed(self) -> None:
        self.side_panel.set_recent_folders(self.settings.recent_folders())
        self._rebuild_recent_menu()

    def _update_actions(self, *_args: Any) -> None:
        running = self.is_running()
        has_session = self.session is not None
        self.run_action.setEnabled(not running)
        self.cancel_action.setEnabled(running or self.edit_controller.corrections_job is not None)
        for action in (
            self.save_action,
            self.save_as_action,
            self.export_csv_action,
            self.export_json_action,
            self.export_folders_action,
            self.new_cluster_action,
            self.recluster_action,
            self.finetune_action,
        ):
            action.setEnabled(has_session)
        # Without a last manifest the undo asks for one.
        self.undo_export_action.setEnabled(self.export_controller.side_job() is None)
        self.restore_autosave_action.setEnabled(autosave_path().is_file())
        self.side_panel.set_running(running)

    def _update_title(self) -> None:
        self.setWindowTitle(self.session_controller.window_title())

    def _status(self, text: str) -> None:
        self.status_label.setText(text)

    def _show_selection_count(self, indices: list) -> None:
        count = len(indices)
        self.selection_label.setText(f"{count:,} selected" if count else "")

    def _on_autosaved(self, _path: Path) -> None:
        self.restore_autosave_action.setEnabled(True)

    def show_shortcuts(self) -> None:
        dialogs.show_shortcuts(
            self,
            (
                self.open_folder_action,
                self.run_action,
                self.cancel_action,
                self.save_action,
                self.open_session_action,
                self.export_csv_action,
                self.undo_action,
                self.redo_action,
            ),
        )

    # ================================================================ layout
    def reset_layout(self) -> None:
        """View -> Reset layout: every panel back in its default place and size, shown."""
        layout.apply_default_layout(self)

    def layout_problems(self) -> list[str]:
        """What does not fit in the layout on screen (empty when it is fine); see ui/layout.py."""
        return layout.layout_problems(self)

    def view_state(self) -> dict[str, Any]:
        """The grid's view choices (thumbnail size, captions, sort), as saved in the settings."""
        return self.view_controls.state()

    def _restore_view_state(self) -> None:
        self.view_controls.restore(self.settings.view_state())

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's hook
        super().showEvent(event)
        if self._layout_restored:
            self._layout_restored = False
            # After the first layout pass, when the restored dock sizes are real.
            QTimer.singleShot(0, self._check_restored_layout)

    def _check_restored_layout(self) -> None:
        problems = self.layout_problems()
        if problems:
            self.reset_layout()
            self.log_panel.info(
                "The saved window layout did not fit (" + "; ".join(problems) + "): the default layout is back."
            )

    # ================================================================ the public API (tests, scripts, app.py)
    # Thin forwards to the objects that own the state and the work; their docstrings say more.
    @property
    def session(self) -> Any:
        """The session on screen (None before the first run or file)."""
        return self.session_controller.session

    @property
    def undo_stack(self) -> QUndoStack:
        """The shown run's undo stack (each run keeps its own while the app is open)."""
        return self.undo_stacks.active_stack()

    @property
    def session_path(self) -> Optional[Path]:
        """The file the shown session was opened from or saved to (None when never saved)."""
        return self.session_controller.path

    @property
    def last_error(self) -> Optional[tuple[str, str, str]]:
        """``(title, message, details)`` of the last error shown."""
        return self.messages.last_error

    @property
    def last_manifest(self) -> Optional[Path]:
        """The last folder export's manifest (also one from an earlier launch), or None."""
        return self.export_controller.last_manifest

    def show_error(self, title: str, message: str, details: str = "") -> QMessageBox:
        return self.messages.show_error(title, message, details)

    def ask_keep_hand_placed(self, count: int) -> Optional[bool]:
        """Whether the ``count`` hand-placed images keep their place (True), are replaced (False), or cancel (None)."""
        return dialogs.ask_keep_hand_placed(self, count)

    def set_folder(self, folder: str) -> None:
        """Put ``folder`` in the side panel (the next run uses it)."""
        self.side_panel.set_folder(str(folder))

    def is_running(self) -> bool:
        return self.run_controller.is_running()

    def start_run(self) -> Optional[BackgroundJob]:
        return self.run_controller.start_run()

    def cancel_run(self) -> None:
        """Esc / Cancel: stops the run, or a re-cluster / fine-tune on the corrections (nothing of it is applied)."""
        self.run_controller.cancel_run()
        self.edit_controller.cancel_corrections_job()

    def save_session(self, path: Optional[str] = None, ask: bool = False) -> bool:
        return self.session_controller.save(path, ask=ask)

    def open_session(self, path: Optional[str] = None) -> bool:
        return self.session_controller.open(path)

    def autosave_now(self, force: bool = True) -> Optional[Path]:
        return self.session_controller.autosave_now(force=force)

    def offer_restore(self) -> bool:
        return self.session_controller.offer_restore()

    def export_csv(self, path: Optional[str] = None) -> Optional[Path]:
        return self.export_controller.export_csv(path)

    def export_json(self, path: Optional[str] = None) -> Optional[Path]:
        return self.export_controller.export_json(path)

    def export_folders(self, target: Optional[str] = None, mode: Optional[str] = None) -> Optional[BackgroundJob]:
        return self.export_controller.export_folders(target, mode)

    def undo_last_export(self, manifest_path: Optional[str] = None) -> Optional[BackgroundJob]:
        return self.export_controller.undo_last_export(manifest_path)

    def side_job(self) -> Optional[BackgroundJob]:
        return self.export_controller.side_job()

    def new_cluster_from_selection(self, name: Optional[str] = None) -> Optional[int]:
        return self.edit_controller.new_cluster_from_selection(name)

    def set_granularity_level(self, level: int, keep_hand_placed: Optional[bool] = None) -> bool:
        return self.edit_controller.set_granularity_level(level, keep_hand_placed)

    def _apply_suggest_names(self) -> None:
        """View -> Suggest names: on every run's session (the views follow its 'names' event), kept in the settings."""
        on = self.suggest_names_action.isChecked()
        self.settings.qsettings.setValue(_SUGGEST_NAMES_KEY, on)
        for record in self.run_list.records():
            if hasattr(record.session, "set_suggest_names"):
                record.session.set_suggest_names(on)
        if self.session is not None and hasattr(self.session, "set_suggest_names"):
            self.session.set_suggest_names(on)

    # ================================================================ showing a session
    def show_session(self, session: Any, history: Optional[list] = None, path: Optional[Path] = None) -> None:
        """Put ``session`` on screen (grid, scatter, metrics) with its own run's undo history."""
        self.undo_stacks.activate(session, self.grid)  # commands refer to the session they edited
        if session is not None and hasattr(session, "set_suggest_names"):
            session.set_suggest_names(self.suggest_names_action.isChecked())
        self.session_controller.show(session, path)  # stops following the previous one
        self.grid.set_session(session)
        self.cluster_overview.set_session(session)
        self.granularity_bar.set_session(session)
        self.scatter.set_session(session)
        self.metrics_panel.set_session(session, history=history)
        self._update_title()
        self._update_actions()
        self.status_label.setText("")  # an older message ("Choose a folder…", another run's) would be stale
        self._update_session_summary()
        self.sessionShown.emit(session)

    def _show_opened(self, session: Any, history: Optional[list] = None, path: Optional[Path] = None) -> None:
        """A session opened from a file: shown, and the Run panel shows the settings it was made with."""
        self.show_session(session, history=history, path=path)
        if self.side_panel.show_config(dict(getattr(session, "settings", {}) or {})):
            self.side_panel.show_status("Settings of the opened session", 0.0)
        self.skipped_indicator.set_skipped(list(getattr(session, "skipped", [])))  # saved with the session

    def _on_run_activated(self, number: int) -> None:
        record = self.run_list.record(number)
        if record.session is not self.session:
            self.show_session(record.session, history=record.history, path=self.session_path)
            self.skipped_indicator.set_skipped(list(getattr(record.session, "skipped", [])))  # that run's own
            if self.side_panel.show_config(dict(record.session.settings or {})):
                self.side_panel.show_status(f"Settings of run {number}", 0.0)

    def _update_session_summary(self, *_args: Any) -> None:
        session = self.session
        record = self.run_list.runs.record_of(session) if session is not None else None
        self.session_label.setText(describe_session(session, record.number if record else None, self.session_path))

    def _on_embedding_failed(self, failure: JobFailure) -> None:
        self.log_panel.error(f"Embedding: {failure.message}")

    def _on_embedding_changed(self, method: str) -> None:
        self.log_panel.info(f"2-D embedding recomputed ({method}).")

    def _on_metrics_updated(self, _metrics: dict) -> None:
        self.run_list.refresh()

    def show_preview(self, index: int) -> Optional[QDialog]:
        """Open the viewer on image ``index`` of the shown session, stepping through its cluster in grid order."""
        try:
            dialog = self.grid.open_preview(index)
        except Exception as exc:  # a preview problem must never take the window down
            self.messages.show_failure(JobFailure.from_exception(exc, "Preview failed"))
            return None
        if dialog is not None:
            self.preview_dialog = dialog
        return dialog

    def jump_to_cluster(self, cluster: int) -> None:
        """Scroll the grid to ``cluster``'s header (the overview's click)."""
        self.grid.scroll_to_cluster(cluster)

    # ================================================================ closing
    def shutdown(self, wait_ms: int = CLOSE_WAIT_MS) -> None:
        """Stop every background job and the thumbnail loader (waits up to ``wait_ms`` each)."""
        jobs = (
            self.run_controller.current_job(),
            self.export_controller.side_job(),
            self.scatter.running_job(),
            self.edit_controller.corrections_job,
            self.grid.graph_job,
        )
        for job in jobs:
            if job is not None:
                job.cancel()
                job.wait(wait_ms)
        self.metrics_panel.wait_idle(wait_ms)
        if hasattr(self.loader, "shutdown"):
            self.loader.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's hook
        if self.export_controller.side_job() is not None and not self.messages.confirm(
            "Export running", "A folder export is still running. Stop it and quit?"
        ):
            event.ignore()
            return
        if not self.session_controller.confirm_close():  # unsaved runs: Save / Discard / Cancel
            event.ignore()
            return
        self.shutdown()
        self.autosave_now()
        self.settings.set_panel_state(self.side_panel.state())
        self.settings.set_window_layout(self.saveGeometry(), self.saveState(layout.LAYOUT_VERSION))
        self.settings.set_view_state(self.view_state())
        self.settings.mark_clean_exit()
        self.session_controller.detach()  # the session may outlive the window (the run list, a test)
        self.scatter.set_session(None)
        self.cluster_overview.set_session(None)
        self.granularity_bar.set_session(None)
        self.metrics_panel.set_session(None)
        event.accept()
