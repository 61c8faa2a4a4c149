"""Run control: one clustering run at a time on a :class:`~imgcluster_gui.ui.worker.BackgroundJob`.

:class:`RunController` owns the run's state: the running job (``None`` when idle), when it
started, and a deep run's :class:`_EstimatorWatch` (the worker's estimator, whose ``history_`` the
metrics panel plots live as epochs complete).  It reads the settings from the side panel, shows the
progress there, turns a finished run (or a deep run's last complete epoch after a cancel) into a
:class:`~imgcluster_gui.core.session.RunRecord` in the run list, and asks the window to show its
session through :attr:`RunController.resultReady`.  A failure or a cancel keeps the previous
result on screen.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal

from .dialogs import Messages
from .log_panel import LogPanel
from .metrics_panel import MetricsPanel, k_origin
from .run_list import RunList, RunRecord
from .settings import AppSettings
from .side_panel import SidePanel
from .status_bar import skipped_pairs
from .worker import BackgroundJob, JobFailure, ProgressInfo, format_duration


class RunController(QObject):
    """Starts, follows and cancels the pipeline run.

    Parameters
    ----------
    side_panel, metrics_panel, run_list, log_panel
        The views a run reads its settings from and reports to.
    settings : AppSettings
    messages : Messages
    embedding_method : callable
        The 2-D embedding the scatter shows (the run computes the same one).
    shown_session : callable
        The session on screen (a cancelled deep run puts its training curve back).
    parent : QObject, optional

    Signals
    -------
    runningChanged(bool)
        A run started or stopped (the window enables its actions).
    resultReady(object, object)
        ``(session, history)`` of a finished run, to be shown.
    recentFoldersChanged()
        A run's folder went to the top of the recent folders.
    statusMessage(str)
        A line for the status bar.
    finished(str)
        ``'succeeded'``, ``'failed'`` or ``'cancelled'``, once the worker stopped.
    skippedFiles(object)
        The ``(path, reason)`` pairs of the files the shown run left out (an empty list when none),
        for the status bar's :class:`~imgcluster_gui.ui.status_bar.SkippedFilesIndicator`.
    """

    runningChanged = Signal(bool)
    resultReady = Signal(object, object)  # object: the history list goes through unconverted
    recentFoldersChanged = Signal()
    statusMessage = Signal(str)
    finished = Signal(str)
    skippedFiles = Signal(object)

    def __init__(
        self,
        side_panel: SidePanel,
        metrics_panel: MetricsPanel,
        run_list: RunList,
        log_panel: LogPanel,
        settings: AppSettings,
        messages: Messages,
        embedding_method: Callable[[], str],
        shown_session: Callable[[], Any],
        parent: Optional[QObject] = None,
    ) -> None:
        super().__init__(parent)
        self._side_panel = side_panel
        self._metrics_panel = metrics_panel
        self._run_list = run_list
        self._log = log_panel
        self._settings = settings
        self._messages = messages
        self._embedding_method = embedding_method
        self._shown_session = shown_session
        self._job: Optional[BackgroundJob] = None
        self._watch: Optional[_EstimatorWatch] = None
        self._live_epochs = 0
        self._run_started = 0.0

    def is_running(self) -> bool:
        return self._job is not None

    def current_job(self) -> Optional[BackgroundJob]:
        return self._job

    def start_run(self) -> Optional[BackgroundJob]:
        """Run the pipeline with the side panel's settings on a worker thread; returns the job."""
        if self._job is not None:
            return None
        try:
            config = self._side_panel.config(embedding=self._embedding_method())
        except ValueError as exc:
            self._messages.show_error("Cannot run", str(exc))
            return None
        problem = folder_problem(config)
        if problem is not None:
            self._messages.show_error("Cannot run", problem)
            self._side_panel.show_status(problem, 0.0)
            return None
        from ..core.pipeline import run_pipeline

        self._settings.set_panel_state(self._side_panel.state())
        # Deep methods: the metrics panel follows the training live (the estimator's history_, polled on
        # each progress tick), and a cancel keeps the last complete epoch (the core's PartialCancelled).
        watch = _EstimatorWatch() if _is_deep(config.algorithm) else None
        self._watch = watch
        job = BackgroundJob(
            lambda progress: run_pipeline(config, progress, on_estimator=watch), title="The run failed", parent=self
        )
        self._live_epochs = 0
        job.progressed.connect(self._on_progress)
        job.noted.connect(self._on_note)
        job.succeeded.connect(lambda result, c=config: self._on_succeeded(c, result))
        job.failed.connect(self._on_failed)
        job.cancelled.connect(lambda j=job, c=config: self._on_cancelled(c, j.partial_result))
        job.finished.connect(lambda j=job: self._on_finished(j))
        self._job = job
        self._run_started = time.monotonic()
        backbones = " + ".join(config.backbones)
        self._log.info(
            f"Run {self._run_list.next_number()}: {config.folder} · {backbones} · "
            f"{config.algorithm} · K {self._side_panel.k_text()}"
        )
        self.statusMessage.emit("Running…")
        job.start()
        self.runningChanged.emit(True)
        return job

    def cancel_run(self) -> None:
        """Ask the running job to stop; the previous result stays on screen."""
        if self._job is None:
            return
        self._job.cancel()
        self._side_panel.show_status("Cancelling…")
        self.statusMessage.emit("Cancelling…")

    def _on_note(self, level: str, text: str) -> None:
        """A job's notes reach the log as they come (the run keeps its warnings in its record too)."""
        if level == "warning":
            self._log.warning(text)
        else:
            self._log.info(text)

    def _on_progress(self, info: ProgressInfo) -> None:
        self._side_panel.show_progress(info)
        self.statusMessage.emit(info.describe())
        self._poll_training()

    def _poll_training(self) -> None:
        """Plot a deep method's history as its epochs complete (read from the worker's estimator)."""
        if self._watch is None:
            return
        history = self._watch.history()
        if len(history) != self._live_epochs:
            self._live_epochs = len(history)
            self._metrics_panel.set_history(history, live=True)

    def _on_succeeded(self, config: Any, result: Any, partial: bool = False) -> None:
        seconds = time.monotonic() - self._run_started
        session = result.to_session()
        # Same images as the run on screen: its groups keep their numbers and colours in the new run.
        from ..core.compare import align_session

        align_session(self._shown_session(), session)
        history = list(getattr(result.estimator, "history_", None) or [])
        record = RunRecord(
            number=self._run_list.next_number(),
            session=session,
            config=config.to_dict(),
            seconds=seconds,
            source="run",
            history=history,
            title="cancelled: best epoch so far" if partial else "",
        )
        self._run_list.add_run(record)
        skipped = self._log.log_skipped(result.skipped)
        self.skippedFiles.emit(skipped_pairs(result.skipped))
        n_clusters = len([c for c in session.cluster_ids() if c >= 0])
        origin = k_origin(session)
        levels = session.n_granularity_levels
        steps = f"; {levels} granularity levels to choose from over the grid" if levels >= 2 else ""
        self._log.info(
            f"Run {record.number} done in {format_duration(seconds)}: {len(session.paths)} images, "
            f"{n_clusters} clusters, {skipped} skipped. {origin}{steps}."
        )
        self._settings.add_recent_folder(config.folder)
        self.recentFoldersChanged.emit()
        self.resultReady.emit(session, history)  # to_session() marked it modified
        if partial:
            self._side_panel.show_status(f"Cancelled after {format_duration(seconds)}: best epoch kept", 0.0)
            self.statusMessage.emit(
                f"Run {record.number} cancelled; its last complete epoch is shown "
                f"({len(session.paths)} images in {n_clusters} clusters)."
            )
        else:
            self._side_panel.show_status(f"Done in {format_duration(seconds)}", 1.0)
            # The permanent summary beside it says what is on screen; this says how the run went.
            self.statusMessage.emit(f"Run {record.number} done in {format_duration(seconds)} ({origin}).")

    def _on_failed(self, failure: JobFailure) -> None:
        self._side_panel.show_status(f"Failed: {failure.message}", 0.0)
        self.statusMessage.emit("The run failed; the previous result is still shown.")
        self._messages.show_failure(failure)

    def _on_cancelled(self, config: Any = None, partial_result: Any = None) -> None:
        if partial_result is not None and config is not None:
            # A deep method stopped mid-training: its last complete epoch is the best result so far
            # (the run's own note said which epoch).
            try:
                self._on_succeeded(config, partial_result, partial=True)
                return
            except Exception as exc:  # never lose the previous result over a partial one
                self._messages.show_failure(JobFailure.from_exception(exc, "Could not show the partial result"))
        self._log.warning("Run cancelled; the previous result is kept.")
        if self._watch is not None:  # the live curve belonged to the cancelled run
            record = self._run_list.runs.record_of(self._shown_session())
            self._metrics_panel.set_history(record.history if record is not None else [])
        self._side_panel.show_status("Cancelled", 0.0)
        self.statusMessage.emit("Cancelled; the previous result is still shown.")

    def _on_finished(self, job: BackgroundJob) -> None:
        if self._job is job:
            self._job = None
            self._watch = None
        outcome = job.outcome or "failed"
        job.deleteLater()
        self.runningChanged.emit(False)
        self.finished.emit(outcome)


def folder_problem(config: Any) -> Optional[str]:
    """Why ``config``'s folder cannot give the run it asks for, found before any extraction; None when it can.

    The scan only looks at file names (cheap, even for thousands of images): more groups asked for
    (K) than there are images is refused in one line instead of failing minutes later, after the
    features were extracted.  A missing or empty folder is left to the run, whose scan says so.
    """
    if config.n_clusters is None:
        return None
    from ..core.dataset import DatasetError, scan_folder

    try:
        scan = scan_folder(config.folder, recursive=config.recursive, check_content=False)
    except DatasetError:
        return None  # the run's own scan reports it, with the same one-line message
    n_images = len(scan.paths)
    k = config.n_clusters
    if n_images and k > n_images:  # no image at all: the run's scan names the problem
        # Names only (nothing decoded yet): "image files", since some may turn out unreadable.
        images = f"{n_images:,} image file" + ("" if n_images == 1 else "s")
        return (
            f"{k} groups were asked for, but {config.folder} holds only {images}. Lower K (Clusters) or tick Automatic."
        )
    return None


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
