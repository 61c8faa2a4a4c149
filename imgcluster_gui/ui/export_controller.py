"""Exports of the shown session: CSV / JSON tables, folders (copy, symlink, move) and undo of a folder export.

:class:`ExportController` owns the export state: the side job (a folder export or its undo on a
:class:`~imgcluster_gui.ui.worker.BackgroundJob`; one at a time, beside a run) and the last folder
export's manifest (:attr:`ExportController.last_manifest`), remembered in the settings across
launches so that a move can still be undone later.  Tables are written on the GUI thread (they are
quick); the session is only read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog, QFileDialog, QWidget

from .dialogs import FolderExportDialog, Messages
from .log_panel import LogPanel
from .settings import AppSettings
from .worker import BackgroundJob, JobFailure

MANIFEST_FILTER = "imgcluster export manifests (imgcluster-export-*.json);;JSON files (*.json)"


class ExportController(QObject):
    """Writes the exports of the shown session and undoes a folder export.

    Parameters
    ----------
    settings : AppSettings
    messages : Messages
    log_panel : LogPanel
    shown_session : callable
        The session on screen (None before the first).
    parent : QWidget
        Parent of the file dialogs and of the jobs.

    Signals
    -------
    busyChanged()
        A side job started or stopped (the window enables its actions).
    statusMessage(str)
        A line for the status bar.
    """

    busyChanged = Signal()
    statusMessage = Signal(str)

    def __init__(
        self,
        settings: AppSettings,
        messages: Messages,
        log_panel: LogPanel,
        shown_session: Callable[[], Any],
        parent: QWidget,
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self._settings = settings
        self._messages = messages
        self._log = log_panel
        self._shown_session = shown_session
        self._side_job: Optional[BackgroundJob] = None
        manifest = settings.last_export_manifest()
        # The last folder export's manifest (remembered across launches, so a move can be undone later).
        self.last_manifest: Optional[Path] = Path(manifest) if manifest and Path(manifest).is_file() else None

    def side_job(self) -> Optional[BackgroundJob]:
        """The running folder export or undo, or None."""
        return self._side_job

    # ---------------------------------------------------------------- tables
    def _export_path(self, title: str, suffix: str, file_filter: str) -> Optional[str]:
        # The last folder used for this kind of table, else Documents: never inside the photo folder unasked.
        start_dir = self._settings.proposed_directory(_table_kind(suffix))
        chosen, _ = QFileDialog.getSaveFileName(
            self._parent, title, str(Path(start_dir) / f"clusters{suffix}"), file_filter
        )
        return chosen or None

    def _export_table(self, writer_name: str, path: Optional[str], suffix: str, file_filter: str) -> Optional[Path]:
        session = self._shown_session()
        if session is None:
            return None
        if path is None:
            path = self._export_path(f"Export {suffix[1:].upper()}", suffix, file_filter)
            if path is None:
                return None
        from ..core import export

        writer = getattr(export, writer_name)
        try:
            written = writer(
                path,
                session.paths,
                session.labels,
                cluster_names=session.shown_names(),  # custom names, else the suggested ones
                confidence=getattr(session, "confidence", None),
                embedding=getattr(session, "embedding", None),
                root=getattr(session, "root", None),
                photo_meta=getattr(session, "photo_meta", None),
            )
        except Exception as exc:
            self._messages.show_failure(JobFailure.from_exception(exc, "Export failed"))
            return None
        self._settings.set_last_directory(_table_kind(suffix), str(Path(written).resolve().parent))
        self._log.info(f"Exported {len(session.paths)} rows to {written}")
        self.statusMessage.emit(f"Exported to {written}")
        return Path(written)

    def export_csv(self, path: Optional[str] = None) -> Optional[Path]:
        """Write the CSV (with the hand edits); asks for a file name when ``path`` is None."""
        return self._export_table("export_csv", path, ".csv", "CSV files (*.csv);;All files (*)")

    def export_json(self, path: Optional[str] = None) -> Optional[Path]:
        """Write the clusters and images as JSON; asks for a file name when ``path`` is None."""
        return self._export_table("export_json", path, ".json", "JSON files (*.json);;All files (*)")

    # ---------------------------------------------------------------- folders
    def export_folders(self, target: Optional[str] = None, mode: Optional[str] = None) -> Optional[BackgroundJob]:
        """Export the clusters as folders on a worker (copy / symlink; move after a confirmation)."""
        session = self._shown_session()
        if session is None or self._side_job is not None:
            return None
        if target is None or mode is None:
            dialog = FolderExportDialog(self._settings.last_directory("export"), self._parent)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            target, mode = dialog.choice()
        if not target:
            self._messages.show_error("Export failed", "Choose a target folder.")
            return None
        asked_for = target  # pre-filled next time, even when this export goes into a dated sub-folder
        chosen = self._target_for(target)
        if chosen is None:
            return None
        target = chosen
        if mode == "move" and not self._messages.confirm(
            "Move the images?",
            f"This moves {len(session.paths)} images out of their folders into {target}. "
            "A manifest lets you undo it (File ▸ Export ▸ Undo folder export). Move them?",
        ):
            return None
        from ..core.export import export_folders

        paths, labels, names = list(session.paths), session.labels.copy(), session.shown_names()

        def run(progress: Any) -> Any:
            # Only regular image files leave their folders (a session file may name a FIFO, a device, a text
            # file or a path outside its root): checked here, on the worker, since it reads every file's header.
            keep, refused = session.exportable_paths()
            result = export_folders(
                target,
                [paths[i] for i in keep],
                labels[keep],
                cluster_names=names,
                mode=mode,
                allow_move=(mode == "move"),
                progress=progress,
            )
            result.failed[:0] = refused
            return result

        job = BackgroundJob(
            run,
            title="Export failed",
            parent=self,
        )
        job.progressed.connect(lambda info: self.statusMessage.emit(f"Exporting… {int(info.fraction * 100)} %"))
        job.succeeded.connect(self._on_folders_exported)
        job.failed.connect(self._messages.show_failure)
        job.finished.connect(lambda j=job: self._on_side_job_finished(j))
        self._side_job = job
        self._settings.set_last_directory("export", str(asked_for))
        job.start()
        self.busyChanged.emit()
        return job

    def _target_for(self, target: str) -> Optional[str]:
        """Where the export really goes: a folder that already holds files asks first (a second export
        must not silently merge into the first): a new dated sub-folder, a merge, or cancel (None)."""
        from ..core.export import dated_subfolder, folder_has_entries

        if not folder_has_entries(target):
            return target
        dated = dated_subfolder(target)
        answer = self._messages.ask_export_into_non_empty(target, dated.name)
        if answer == "new":
            return str(dated)
        if answer == "merge":
            return target
        return None

    def _on_folders_exported(self, result: Any) -> None:
        self.last_manifest = Path(result.manifest_path)
        self._settings.set_last_export_manifest(str(self.last_manifest))
        self._log.log_skipped(result.failed)
        self._log.info(
            f"Exported {result.n_done} image(s) to {result.target} "
            f"({len(result.failed)} failed); manifest {result.manifest_path}"
        )
        self.statusMessage.emit(f"Exported {result.n_done} image(s) to {result.target}")

    def undo_last_export(self, manifest_path: Optional[str] = None) -> Optional[BackgroundJob]:
        """Reverse a folder export from its manifest (on a worker).

        Uses ``manifest_path``, else the last export's manifest (also one from an earlier launch),
        else asks for a manifest file.
        """
        if self._side_job is not None:
            return None
        if manifest_path is None and self.last_manifest is None:
            manifest_path, _ = QFileDialog.getOpenFileName(
                self._parent,
                "Undo a folder export: choose its manifest",
                self._settings.last_directory("export"),
                MANIFEST_FILTER,
            )
            if not manifest_path:
                return None
        from ..core.export import undo_export

        manifest = Path(manifest_path) if manifest_path else self.last_manifest
        job = BackgroundJob(
            lambda progress: undo_export(manifest, progress=progress), title="Undo export failed", parent=self
        )
        job.succeeded.connect(lambda result, m=manifest: self._on_export_undone(result, m))
        job.failed.connect(self._messages.show_failure)
        job.finished.connect(lambda j=job: self._on_side_job_finished(j))
        self._side_job = job
        job.start()
        self.busyChanged.emit()
        return job

    def _on_export_undone(self, result: Any, manifest: Optional[Path] = None) -> None:
        if manifest is None or manifest == self.last_manifest:
            self.last_manifest = None
            self._settings.set_last_export_manifest("")
        self._log.log_skipped(result.problems)
        for note in getattr(result, "notes", []):  # what an interrupted export left and undo cleaned up
            self._log.info(f"{note.path}: {note.reason}")
        self._log.info(
            f"Export undone: {result.restored} file(s) moved back, {result.removed} removed, "
            f"{len(result.problems)} problem(s)."
        )

    def _on_side_job_finished(self, job: BackgroundJob) -> None:
        if self._side_job is job:
            self._side_job = None
        job.deleteLater()
        self.busyChanged.emit()


def _table_kind(suffix: str) -> str:
    """The settings key of a table's last folder: ``'csv'`` or ``'json'`` (each kind remembers its own)."""
    return suffix.lstrip(".").lower() or "export"
