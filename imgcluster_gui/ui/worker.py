"""Background jobs on a ``QThread`` through the core's progress/cancel protocol.

A job is any function ``function(progress) -> result`` from the core (``run_pipeline``,
``embed_2d``...).  :class:`BackgroundJob` runs it on its own thread with a
:class:`~imgcluster_gui.core.progress.CancelToken` callback (throttled, so the GUI thread is not
flooded), and reports back on the GUI thread through signals: ``progressed`` with a
:class:`ProgressInfo` (the core's :class:`~imgcluster_gui.core.progress.ProgressEvent` plus the time
left), ``noted`` for each note the job sends, then exactly one of ``succeeded``,
``failed`` (a :class:`JobFailure`, never an exception escaping into Qt) or ``cancelled``.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..core.progress import Cancelled, CancelToken, Progress, ProgressEvent

# The GUI needs no more than ~10 progress updates a second.
PROGRESS_INTERVAL_S = 0.1
# Below this fraction the time-left estimate is noise.
MIN_FRACTION_FOR_ETA = 0.03


@dataclass(frozen=True)
class ProgressInfo:
    """One progress report as the GUI shows it: the core's event plus timing.

    Attributes
    ----------
    event : ProgressEvent
        What the core reported (overall fraction, stage, done/total, unit, rate).
    seconds_left : float or None
        Linear extrapolation of the elapsed time; None until enough progress is made.
    elapsed : float
        Seconds since the job started.
    """

    event: ProgressEvent
    seconds_left: Optional[float]
    elapsed: float

    @property
    def fraction(self) -> float:
        """Overall progress in ``[0, 1]``."""
        return min(max(float(self.event.fraction or 0.0), 0.0), 1.0)

    @property
    def stage(self) -> str:
        return self.event.stage

    @property
    def images_per_second(self) -> Optional[float]:
        """The rate the core measured, when it counts images."""
        return self.event.rate if self.event.unit == "images" else None

    def describe(self) -> str:
        """Short status text: stage, count, rate and time left when known."""
        parts = [self.event.describe() or "Working"]
        if self.seconds_left is not None:
            parts.append(f"{format_duration(self.seconds_left)} left")
        return " · ".join(parts)


def format_duration(seconds: float) -> str:
    """``75`` -> ``'1 min 15 s'``; ``4`` -> ``'4 s'``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass(frozen=True)
class JobFailure:
    """A failed job, ready to show: a short message and the details (traceback) for the expander.

    Attributes
    ----------
    title : str
        Dialog title ("Run failed").
    message : str
        One line for people: the exception's own message for user-facing errors.
    details : str
        The full traceback, for the "details" expander and bug reports.
    user_error : bool
        True when the message alone explains it (missing folder, weights unavailable...).
    exception_type : str
    """

    title: str
    message: str
    details: str
    user_error: bool
    exception_type: str

    @classmethod
    def from_exception(cls, exc: BaseException, title: str = "The job failed") -> "JobFailure":
        from ..core.errors import is_user_error

        user = is_user_error(exc)
        text = str(exc).strip() or type(exc).__name__
        message = text if user else f"Unexpected error ({type(exc).__name__}): {text}"
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(title=title, message=message, details=details, user_error=user, exception_type=type(exc).__name__)


class _JobObject(QObject):
    """Lives on the worker thread and calls the function there."""

    progressed = Signal(object)  # ProgressEvent
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal(object)  # the partial result a cancelled function handed over, or None

    def __init__(self, function: Callable[[Progress], Any], token: CancelToken, title: str) -> None:
        super().__init__()
        self._function = function
        self._token = token
        self._title = title

    @Slot()
    def run(self) -> None:
        # The function gets the producer side: it may report itself or hand it to the core.
        progress = Progress(self._token.callback(self._forward, min_interval=PROGRESS_INTERVAL_S))
        try:
            result = self._function(progress)
        except Cancelled as exc:
            # A function may keep what it had (a deep method's last complete epoch) on the exception.
            self.cancelled.emit(getattr(exc, "result", None))
        except BaseException as exc:  # every failure becomes a message; nothing escapes into Qt
            self.failed.emit(JobFailure.from_exception(exc, self._title))
        else:
            if self._token.cancelled:
                # Cancel pressed after the last progress call: the user asked to keep the old result.
                self.cancelled.emit(None)
            else:
                self.succeeded.emit(result)
        finally:
            # The thread ends itself once the function returned: a GUI thread blocked in wait() (closing the
            # window) would never run the queued slot that used to call quit(), and the wait timed out with the
            # thread still alive ("QThread: Destroyed while thread is still running", then abort).
            thread = QThread.currentThread()
            if thread is not None:
                thread.quit()

    def _forward(self, event: ProgressEvent) -> None:
        self.progressed.emit(event)


class BackgroundJob(QObject):
    """Run ``function(progress)`` on a new ``QThread`` and report on the GUI thread.

    Parameters
    ----------
    function : callable
        ``function(progress) -> result``; must call ``progress`` regularly (the core's protocol),
        which raises :class:`Cancelled` once :meth:`cancel` was called.
    title : str
        Used as the failure dialog's title.
    parent : QObject, optional

    Signals
    -------
    progressed(ProgressInfo), noted(str level, str text), succeeded(object), failed(JobFailure),
    cancelled(), finished()
        ``noted`` carries the job's notes (``'info'`` or ``'warning'``) as they come; ``finished``
        comes last, after the thread has stopped.  After ``cancelled``,
        :attr:`partial_result` holds what the function kept (``Cancelled.result``), or None.
    """

    progressed = Signal(object)
    noted = Signal(str, str)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    finished = Signal()

    def __init__(
        self, function: Callable[[Progress], Any], title: str = "The job failed", parent: Optional[QObject] = None
    ) -> None:
        super().__init__(parent)
        self._token = CancelToken()
        self._thread: Optional[QThread] = None
        self._job: Optional[_JobObject] = None
        self._function = function
        self._title = title
        self._started_at = 0.0
        self._running = False
        self.outcome: Optional[str] = None  # 'succeeded' | 'failed' | 'cancelled'
        # Set before ``cancelled`` when the function kept a partial result (``exc.result`` of its Cancelled).
        self.partial_result: Any = None

    # ---------------------------------------------------------------- control
    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            raise RuntimeError("a BackgroundJob runs once; create a new one")
        self._thread = QThread()
        self._thread.setObjectName(f"imgcluster-job-{self._title}")
        self._job = _JobObject(self._function, self._token, self._title)
        self._job.moveToThread(self._thread)
        self._thread.started.connect(self._job.run)
        # Queued connections: these slots run on the GUI thread that owns self.
        self._job.progressed.connect(self._on_progress)
        self._job.succeeded.connect(self._on_succeeded)
        self._job.failed.connect(self._on_failed)
        self._job.cancelled.connect(self._on_cancelled)
        self._thread.finished.connect(self._on_thread_finished)
        self._started_at = time.monotonic()
        self._running = True
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop at its next progress call (thread-safe, returns at once)."""
        self._token.cancel()

    @property
    def cancel_requested(self) -> bool:
        return self._token.cancelled

    def is_running(self) -> bool:
        """True from :meth:`start` until ``finished`` was emitted."""
        return self._running

    def wait(self, milliseconds: int = 5000) -> bool:
        """Block until the thread ends (used on close); True when it did."""
        if self._thread is None:
            return True
        return self._thread.wait(milliseconds)

    # ---------------------------------------------------------------- thread -> GUI
    @Slot(object)
    def _on_progress(self, event: ProgressEvent) -> None:
        if event.note is not None:
            self.noted.emit(event.level, event.note)
            return
        if event.fraction is None:  # heartbeat: nothing new to show
            return
        elapsed = time.monotonic() - self._started_at
        fraction = min(max(float(event.fraction), 0.0), 1.0)
        seconds_left = None
        if fraction >= MIN_FRACTION_FOR_ETA:
            seconds_left = elapsed * (1.0 - fraction) / fraction
        self.progressed.emit(ProgressInfo(event=event, seconds_left=seconds_left, elapsed=elapsed))

    @Slot(object)
    def _on_succeeded(self, result: Any) -> None:
        self.outcome = "succeeded"
        self._finish_thread()
        self.succeeded.emit(result)

    @Slot(object)
    def _on_failed(self, failure: JobFailure) -> None:
        self.outcome = "failed"
        self._finish_thread()
        self.failed.emit(failure)

    @Slot(object)
    def _on_cancelled(self, partial: Any = None) -> None:
        self.outcome = "cancelled"
        self.partial_result = partial
        self._finish_thread()
        self.cancelled.emit()

    def _finish_thread(self) -> None:
        if self._thread is not None:
            self._thread.quit()

    @Slot()
    def _on_thread_finished(self) -> None:
        self._running = False
        if self._job is not None:
            self._job.deleteLater()
            self._job = None
        self.finished.emit()
