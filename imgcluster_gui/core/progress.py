"""One progress/cancel protocol for the CLI, the tests and the GUI worker.

A long-running core function takes ``progress: ProgressCallback | None``.  It calls
``progress(fraction, stage)`` with ``fraction`` in ``[0, 1]`` (of *its own* work) and a
short human-readable stage text.  Cancelling is done by the *callback*: it raises
:class:`Cancelled`, so the core knows nothing of threads, Qt or terminals (the same
idea as Orange3's ``progress_callback``).  Core code that loops without calling the
callback for a while should call :func:`check` so a cancel is seen promptly.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

ProgressCallback = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised (by a progress callback) to stop a running job cleanly."""


def _noop(fraction: float, stage: str) -> None:  # pragma: no cover - trivial
    return None


def ensure(progress: Optional[ProgressCallback]) -> ProgressCallback:
    """Return ``progress`` or a callback that does nothing."""
    return progress if progress is not None else _noop


def wrap_callback(progress: Optional[ProgressCallback], start: float, end: float,
                  prefix: str = "") -> ProgressCallback:
    """Map a sub-step's ``[0, 1]`` onto ``[start, end]`` of the parent's bar.

    Parameters
    ----------
    progress : callable or None
        The parent callback.
    start, end : float
        The slice of the parent's range this sub-step covers.
    prefix : str
        Text put before the sub-step's stage text (e.g. ``"Features: "``).
    """
    parent = ensure(progress)
    span = end - start

    def child(fraction: float, stage: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        parent(start + span * fraction, f"{prefix}{stage}" if prefix else stage)

    return child


def check(progress: Optional[ProgressCallback], stage: str = "") -> None:
    """Give the callback a chance to cancel without moving the bar.

    Calls ``progress(-1, stage)``; a callback must treat a negative fraction as
    "no new fraction" (a heartbeat) and may raise :class:`Cancelled`.
    """
    if progress is not None:
        progress(-1.0, stage)


class CancelToken:
    """A thread-safe cancel flag that turns into a progress callback.

    ``token.callback(on_progress)`` returns a callback that forwards to ``on_progress``
    (if given) and raises :class:`Cancelled` once :meth:`cancel` has been called from any
    thread.  The GUI worker and the tests use it.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def callback(self, on_progress: Optional[ProgressCallback] = None,
                 min_interval: float = 0.0) -> ProgressCallback:
        """Build a callback that raises :class:`Cancelled` after :meth:`cancel`.

        ``min_interval`` throttles forwarding to ``on_progress`` (seconds), so a GUI is not
        flooded; stage changes and the final 1.0 are always forwarded.
        """
        last = [0.0, ""]

        def cb(fraction: float, stage: str) -> None:
            if self._event.is_set():
                raise Cancelled("cancelled by user")
            if on_progress is None or fraction < 0:
                return
            now = time.monotonic()
            if (min_interval <= 0 or stage != last[1] or fraction >= 1.0
                    or now - last[0] >= min_interval):
                last[0], last[1] = now, stage
                on_progress(fraction, stage)

        return cb


class TqdmProgress:
    """A progress callback that draws a tqdm bar in a terminal (used by the CLI)."""

    def __init__(self, disable: bool = False) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, disable=disable, bar_format="{desc:<40.40}|{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")
        self._stage = ""

    def __call__(self, fraction: float, stage: str) -> None:
        if stage and stage != self._stage:
            self._stage = stage
            self._bar.set_description_str(stage)
        if fraction >= 0:
            self._bar.n = int(round(min(fraction, 1.0) * 1000))
            self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
