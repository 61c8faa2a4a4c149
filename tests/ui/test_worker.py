"""BackgroundJob: results, failures and cancels come back on the GUI thread; the GUI never waits."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread, QTimer

from imgcluster_gui.core.dataset import DatasetError
from imgcluster_gui.ui.worker import BackgroundJob, JobFailure, ProgressInfo, format_duration

# Generous upper bound for the worker to report back (a safety net, not a speed assertion).
WAIT_MS = 20_000


def _run(qtbot, function):
    job = BackgroundJob(function, title="Test job")
    reports: list[ProgressInfo] = []
    outcome: dict = {}
    job.progressed.connect(reports.append)
    job.succeeded.connect(lambda result: outcome.setdefault("result", result))
    job.failed.connect(lambda failure: outcome.setdefault("failure", failure))
    job.cancelled.connect(lambda: outcome.setdefault("cancelled", True))
    with qtbot.waitSignal(job.finished, timeout=WAIT_MS):
        job.start()
    return job, reports, outcome


def test_result_and_progress_arrive_on_the_gui_thread(qtbot):
    gui_thread = QThread.currentThread()
    seen_threads = []

    def work(progress):
        seen_threads.append(QThread.currentThread())
        progress(0.0, "Features", done=0, total=4, unit="images")
        progress(0.5, "Features", done=2, total=4, unit="images", rate=12.5)
        progress(1.0, "Done")
        return 42

    threads_at_report = []
    job = BackgroundJob(work)
    job.progressed.connect(lambda _info: threads_at_report.append(QThread.currentThread()))
    results = []
    job.succeeded.connect(results.append)
    with qtbot.waitSignal(job.finished, timeout=WAIT_MS):
        job.start()
    assert results == [42]
    assert job.outcome == "succeeded"
    assert not job.is_running()
    assert seen_threads and seen_threads[0] is not gui_thread  # the work ran elsewhere
    assert threads_at_report and all(t is gui_thread for t in threads_at_report)


def test_progress_info_carries_stage_rate_and_eta(qtbot):
    def work(progress):
        progress(0.5, "Features", done=8, total=16, unit="images", rate=20.0)
        progress(1.0, "Done")

    _job, reports, _outcome = _run(qtbot, work)
    first = reports[0]
    assert first.fraction == 0.5
    assert first.images_per_second == 20.0
    assert first.seconds_left is not None and first.seconds_left >= 0
    assert first.describe().startswith("Features · 8/16 images · 20.0 images/s · ")
    assert first.describe().endswith(" left")
    assert reports[-1].fraction == 1.0


def test_heartbeats_are_not_shown_as_progress(qtbot):
    def work(progress):
        progress.heartbeat("still here")
        progress(0.3, "stage")

    _job, reports, _outcome = _run(qtbot, work)
    assert [r.fraction for r in reports] == [0.3]


def test_notes_arrive_as_their_own_signal_even_after_a_cancel(qtbot):
    def work(progress):
        progress.note("PCA capped at 12 dimensions")
        progress(0.2, "stage")
        for _ in range(2000):  # the GUI thread cancels when it sees the first report
            if job.cancel_requested:
                break
            threading.Event().wait(0.005)
        progress.warn("stopping: the last epoch is kept")
        progress(0.4, "stage")  # raises Cancelled
        ran_past_the_cancel.append(True)

    ran_past_the_cancel = []
    job = BackgroundJob(work, title="Test job")
    notes, reports = [], []
    job.noted.connect(lambda level, text: notes.append((level, text)))
    job.progressed.connect(reports.append)
    job.progressed.connect(lambda _info: job.cancel())
    with qtbot.waitSignal(job.finished, timeout=WAIT_MS):
        job.start()
    assert job.outcome == "cancelled"
    # The progress call after the cancel raised (a note never does): the function did not run on.
    assert ran_past_the_cancel == []
    assert [r.fraction for r in reports] == [0.2]
    assert notes == [("info", "PCA capped at 12 dimensions"), ("warning", "stopping: the last epoch is kept")]


def test_user_error_becomes_a_short_message(qtbot):
    def work(progress):
        raise DatasetError("No readable image in /nowhere (0 file(s) skipped).")

    job, _reports, outcome = _run(qtbot, work)
    failure: JobFailure = outcome["failure"]
    assert job.outcome == "failed"
    assert failure.user_error
    assert failure.message == "No readable image in /nowhere (0 file(s) skipped)."
    assert failure.title == "Test job"
    assert "DatasetError" in failure.details  # the traceback goes to the details expander


def test_unexpected_error_names_its_type_and_keeps_the_traceback(qtbot):
    def work(progress):
        raise RuntimeError("boom")

    _job, _reports, outcome = _run(qtbot, work)
    failure = outcome["failure"]
    assert not failure.user_error
    assert "RuntimeError" in failure.message and "boom" in failure.message
    assert "Traceback" in failure.details


def test_cancel_stops_the_function_at_its_next_progress_call(qtbot):
    calls = []
    calls_at_cancel = []
    release = threading.Event()

    def work(progress):
        for step in range(10_000):
            calls.append(step)
            progress(step / 10_000, "looping")
            release.wait(0.005)
        return "finished"

    job = BackgroundJob(work, title="Test job")
    outcome: dict = {}
    job.succeeded.connect(lambda result: outcome.setdefault("result", result))
    job.cancelled.connect(lambda: outcome.setdefault("cancelled", True))

    def cancel(_info):
        job.cancel()
        calls_at_cancel.append(len(calls))  # counted after the cancel: every later step began after it

    job.progressed.connect(cancel)
    with qtbot.waitSignal(job.finished, timeout=WAIT_MS):
        job.start()
    assert outcome == {"cancelled": True}
    assert job.outcome == "cancelled"
    # A job that ignored the cancel would also end 'cancelled' (the cancel is honoured when the function
    # returns), so what shows the stop is the count: at most the one step already past its progress call
    # when the cancel came ran on, and its progress call raised.
    assert calls_at_cancel and len(calls) <= calls_at_cancel[0] + 1, (len(calls), calls_at_cancel[0])


def test_cancel_after_the_last_progress_call_still_counts_as_cancelled(qtbot):
    started = threading.Event()
    proceed = threading.Event()

    def work(progress):
        progress(1.0, "all done")
        started.set()
        proceed.wait(WAIT_MS / 1000)
        return "late result"

    job = BackgroundJob(work)
    outcome = []
    job.succeeded.connect(lambda r: outcome.append(("ok", r)))
    job.cancelled.connect(lambda: outcome.append(("cancelled",)))
    job.start()
    assert started.wait(WAIT_MS / 1000)
    job.cancel()
    proceed.set()
    qtbot.waitUntil(lambda: not job.is_running(), timeout=WAIT_MS)
    # The function returned its result, but the person pressed cancel first: the result is dropped.
    assert outcome == [("cancelled",)]
    assert job.outcome == "cancelled" and job.partial_result is None


def test_event_loop_keeps_turning_while_a_job_runs(qtbot):
    """The job can only finish after the GUI thread's timer ticked N times while it ran."""
    ticks_needed = 5
    ticks = []
    enough_ticks = threading.Event()
    job_running = threading.Event()

    def on_tick():
        if job_running.is_set():
            ticks.append(1)
            if len(ticks) >= ticks_needed:
                enough_ticks.set()

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(on_tick)
    timer.start()

    def work(progress):
        job_running.set()
        while not enough_ticks.wait(0.01):
            progress(-1.0, "waiting for the GUI")
        return len(ticks)

    job, _reports, outcome = _run(qtbot, work)
    timer.stop()
    assert job.outcome == "succeeded"
    assert outcome["result"] >= ticks_needed


def test_a_job_runs_once(qtbot):
    job, _reports, _outcome = _run(qtbot, lambda progress: None)
    with pytest.raises(RuntimeError):
        job.start()


@pytest.mark.parametrize("seconds, text", [(4.2, "4 s"), (75, "1 min 15 s"), (3725, "1 h 02 min"), (-3, "0 s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_wait_returns_once_the_function_ends_without_the_gui_thread_processing_events(qtbot):
    # Closing the window blocks the GUI thread in wait(): the thread must end by itself, or the wait times out
    # and Qt aborts the process ("QThread: Destroyed while thread is still running").
    import time as _time

    from imgcluster_gui.ui.worker import BackgroundJob

    job = BackgroundJob(lambda progress: _time.sleep(0.2) or 42)
    job.start()
    started = _time.monotonic()
    assert job.wait(5000)  # no event processing in between
    assert _time.monotonic() - started < 4.0
    qtbot.waitUntil(lambda: job.outcome == "succeeded", timeout=2000)
