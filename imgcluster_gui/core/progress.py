"""One progress/cancel protocol for the CLI, the tests and the GUI worker.

Two sides, one event:

* A **consumer** (the CLI's tqdm bar, a test, the GUI worker) is any callable
  ``sink(event: ProgressEvent) -> None``.  Cancelling is done by the consumer: it raises
  :class:`Cancelled`, so the core knows nothing of threads, Qt or terminals (the same idea as
  Orange3's ``progress_callback``).
* A **producer** (a long core function) takes ``progress: ProgressLike = None`` and turns it into a
  :class:`Progress` with :func:`ensure`.  It then calls ``progress(fraction, stage, done=, total=,
  rate=)`` for a new position, :meth:`Progress.heartbeat` in loops that have no new position (a
  cancel point), :meth:`Progress.note` for a remark or warning the user should read, and
  :meth:`Progress.sub` to give a sub-step a slice of its bar.

Every event a consumer receives carries the *overall* fraction of the job (``None`` for a
heartbeat or a note), the full stage text (prefixes of the enclosing steps included), the counts
and rate as numbers (never parsed back from text), and notes.  The fraction a consumer sees never
goes back: a sub-step that restarts its own count cannot move the bar backwards.
"""

from __future__ import annotations

import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional, Union

__all__ = [
    "Cancelled",
    "CancelToken",
    "Progress",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressLike",
    "TqdmProgress",
    "check",
    "ensure",
    "notes_from_warnings",
    "wrap_callback",
]

NOTE_LEVELS = ("info", "warning")


class Cancelled(Exception):
    """Raised (by a progress consumer) to stop a running job cleanly.

    A job may put what it kept on ``exc.result`` (a deep method's last complete epoch).
    """


@dataclass(frozen=True)
class ProgressEvent:
    """One report from a running job.

    Attributes
    ----------
    fraction : float or None
        Overall progress of the job in ``[0, 1]``, never lower than an earlier event's; None for a
        heartbeat or a note (nothing new to show on the bar).
    stage : str
        What is being done, e.g. ``"Features: efficientnet_lite0"``; no numbers baked in.
    done, total : int or None
        Units of the current stage finished so far, and how many there are.
    unit : str
        What ``done``/``total``/``rate`` count (``"images"``, ``"files"``, ``"epochs"``).
    rate : float or None
        Units per second in the current stage, as measured by the producer.
    note : str or None
        A message for the person (written to the log or the terminal), with its ``level``.
    level : {'info', 'warning'}
    """

    fraction: Optional[float]
    stage: str = ""
    done: Optional[int] = None
    total: Optional[int] = None
    unit: str = ""
    rate: Optional[float] = None
    note: Optional[str] = None
    level: str = "info"

    @property
    def is_heartbeat(self) -> bool:
        """True when the event carries no new position (a cancel point or a note)."""
        return self.fraction is None

    def describe(self) -> str:
        """Stage with its count and rate: ``"Features: lite0 · 32/160 images · 30.1 images/s"``."""
        parts = [self.stage] if self.stage else []
        if self.done is not None and self.total is not None:
            parts.append(f"{self.done}/{self.total} {self.unit}".rstrip())
        elif self.done is not None:
            parts.append(f"{self.done} {self.unit}".rstrip())
        if self.rate is not None and self.rate > 0:
            parts.append(f"{self.rate:.1f} {self.unit or 'items'}/s")
        return " · ".join(parts)


ProgressCallback = Callable[[ProgressEvent], None]


class _Root:
    """State shared by a :class:`Progress` and all its slices: the sink and the high-water mark."""

    __slots__ = ("sink", "high")

    def __init__(self, sink: Optional[ProgressCallback]) -> None:
        self.sink = sink
        self.high = 0.0


class Progress:
    """The producer side of the protocol: a slice ``[start, end]`` of one job's bar.

    Build one with :func:`ensure` (or :meth:`sub` for a sub-step); do not share one between two
    jobs.  Calling it reports a new position; every call is also a cancel point, because the
    consumer may raise :class:`Cancelled` from it.
    """

    __slots__ = ("_root", "_start", "_span", "_prefix")

    def __init__(
        self,
        sink: Optional[ProgressCallback] = None,
        start: float = 0.0,
        end: float = 1.0,
        prefix: str = "",
        _root: Optional[_Root] = None,
    ) -> None:
        self._root = _root if _root is not None else _Root(sink)
        self._start = float(start)
        self._span = float(end) - float(start)
        self._prefix = prefix

    # ------------------------------------------------------------------ reporting
    def __call__(
        self,
        fraction: float,
        stage: str = "",
        *,
        done: Optional[int] = None,
        total: Optional[int] = None,
        unit: str = "",
        rate: Optional[float] = None,
    ) -> None:
        """Report that this step is ``fraction`` (of its own ``[0, 1]``, clamped) done."""
        overall = self._start + self._span * min(max(float(fraction), 0.0), 1.0)
        root = self._root
        root.high = max(root.high, overall)
        self._send(
            ProgressEvent(
                fraction=min(root.high, 1.0), stage=self._stage(stage), done=done, total=total, unit=unit, rate=rate
            )
        )

    def heartbeat(self, stage: str = "") -> None:
        """A cancel point with no new position (long loops call this between reports)."""
        self._send(ProgressEvent(fraction=None, stage=self._stage(stage)))

    def note(self, text: str, level: str = "info") -> None:
        """A remark the person should read (a capped parameter, a fallback, a partial result)."""
        if level not in NOTE_LEVELS:
            raise ValueError(f"note level must be one of {NOTE_LEVELS}, got {level!r}")
        self._send(ProgressEvent(fraction=None, stage=self._stage(""), note=str(text), level=level))

    def warn(self, text: str) -> None:
        """Shortcut for ``note(text, 'warning')``."""
        self.note(text, "warning")

    def sub(self, start: float, end: float, prefix: str = "") -> "Progress":
        """The slice ``[start, end]`` of this step's bar, for a sub-step; its stages get ``prefix``."""
        return Progress(
            start=self._start + self._span * start,
            end=self._start + self._span * end,
            prefix=self._prefix + prefix,
            _root=self._root,
        )

    def emit(self, event: ProgressEvent) -> None:
        """Forward an event from a nested job that reports on its own ``[0, 1]`` into this slice."""
        if event.fraction is None:
            self._send(replace(event, stage=self._stage(event.stage)))
        else:
            self(event.fraction, event.stage, done=event.done, total=event.total, unit=event.unit, rate=event.rate)

    # ------------------------------------------------------------------ helpers
    @property
    def position(self) -> float:
        """The highest overall fraction reported so far (what the consumer's bar shows)."""
        return self._root.high

    def _stage(self, stage: str) -> str:
        return f"{self._prefix}{stage}" if self._prefix else stage

    def _send(self, event: ProgressEvent) -> None:
        sink = self._root.sink
        if sink is not None:
            sink(event)


ProgressLike = Union[Progress, ProgressCallback, None]


def ensure(progress: ProgressLike) -> Progress:
    """The :class:`Progress` to report through: ``progress`` itself, one around a consumer, or a silent one."""
    if isinstance(progress, Progress):
        return progress
    return Progress(progress)


def wrap_callback(progress: ProgressLike, start: float, end: float, prefix: str = "") -> Progress:
    """Map a sub-step's ``[0, 1]`` onto ``[start, end]`` of the parent's bar.

    Parameters
    ----------
    progress : Progress, consumer callable or None
        The parent.
    start, end : float
        The slice of the parent's range this sub-step covers.
    prefix : str
        Text put before the sub-step's stage text (e.g. ``"Features: "``).

    Heartbeats and notes of the sub-step stay heartbeats and notes: they never move the bar.
    """
    return ensure(progress).sub(start, end, prefix)


def check(progress: ProgressLike, stage: str = "") -> None:
    """Give the consumer a chance to cancel without moving the bar (a heartbeat)."""
    if progress is not None:
        ensure(progress).heartbeat(stage)


@contextmanager
def notes_from_warnings(progress: ProgressLike, category: type = UserWarning) -> Iterator[None]:
    """Turn ``warnings.warn`` calls inside the block into warning notes on ``progress``.

    The estimators warn the scikit-learn way (for people who use them as a library); a job that
    runs them for the app passes those warnings on in the one progress channel instead.
    ``warnings.catch_warnings`` changes process-wide state, so warnings issued by another thread
    during the block are collected too (and reported, not lost).
    """
    reporter = ensure(progress)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        try:
            yield
        finally:
            seen: set[str] = set()
            for item in caught:
                text = str(item.message)
                if issubclass(item.category, category) and text not in seen:
                    seen.add(text)
                    reporter.warn(text)
                elif not issubclass(item.category, category):
                    warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


class CancelToken:
    """A thread-safe cancel flag that turns into a progress consumer.

    ``token.callback(on_event)`` returns a consumer that forwards events to ``on_event`` (if given)
    and raises :class:`Cancelled` once :meth:`cancel` has been called from any thread.  The GUI
    worker and the tests use it.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def callback(self, on_event: Optional[ProgressCallback] = None, min_interval: float = 0.0) -> ProgressCallback:
        """Build a consumer that raises :class:`Cancelled` after :meth:`cancel`.

        Heartbeats are not forwarded (they only give the cancel a chance); notes are always
        forwarded and never raise, so a job's last words survive its cancel.  ``min_interval``
        throttles position events (seconds), so a GUI is not flooded; stage changes, notes and the
        final 1.0 are always forwarded.
        """
        last_time = [0.0]
        last_stage = [""]

        def consume(event: ProgressEvent) -> None:
            if event.note is not None:
                # A note is not a cancel point: what a job says while it stops still reaches the person.
                if on_event is not None:
                    on_event(event)
                return
            if self._event.is_set():
                raise Cancelled("cancelled by user")
            if on_event is None:
                return
            if event.fraction is None:
                return
            now = time.monotonic()
            if (
                min_interval <= 0
                or event.stage != last_stage[0]
                or event.fraction >= 1.0
                or now - last_time[0] >= min_interval
            ):
                last_time[0], last_stage[0] = now, event.stage
                on_event(event)

        return consume


class TqdmProgress:
    """A progress consumer that draws a tqdm bar in a terminal (used by the CLI).

    Notes are printed above the bar (on the bar's stream, stderr) as they arrive.
    """

    def __init__(self, disable: bool = False) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._disable = disable
        self._bar = tqdm(
            total=1000, disable=disable, bar_format="{desc:<56.56}|{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]"
        )
        self._description = ""
        self.notes: list[tuple[str, str]] = []

    def __call__(self, event: ProgressEvent) -> None:
        if event.note is not None:
            self.notes.append((event.level, event.note))
            if not self._disable:
                self._tqdm.write(f"{event.level}: {event.note}", file=self._bar.fp)
            return
        if event.fraction is None:
            return
        description = event.describe()
        if description and description != self._description:
            self._description = description
            self._bar.set_description_str(description, refresh=False)
        self._bar.n = int(round(min(event.fraction, 1.0) * 1000))
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
