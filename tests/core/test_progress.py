import threading
import warnings

import pytest

from imgcluster_gui.core.progress import (
    Cancelled,
    CancelToken,
    Progress,
    ProgressEvent,
    TqdmProgress,
    check,
    ensure,
    notes_from_warnings,
    wrap_callback,
)


def test_wrap_callback_maps_sub_range_and_prefixes_stage():
    seen = []
    child = wrap_callback(lambda e: seen.append((round(e.fraction, 3), e.stage)), 0.5, 0.7, "Features: ")
    child(0.0, "a")
    child(0.5, "b")
    child(2.0, "c")  # clamped to the sub-range's end
    assert seen == [(0.5, "Features: a"), (0.6, "Features: b"), (0.7, "Features: c")]


def test_heartbeats_through_nested_slices_never_move_the_bar_back():
    """Every check() inside wrapped steps used to report the slice start: the bar fell back per batch."""
    events: list[ProgressEvent] = []
    root = ensure(events.append)
    features = wrap_callback(root, 0.05, 0.75, "Features: ")
    view = wrap_callback(features, 0.5, 1.0, "lite0: ")
    view(0.0, "start")
    for batch in range(1, 5):
        check(view, "decoding")  # a cancel point inside the batch loop
        view.heartbeat("still decoding")
        view(batch / 4, "batch", done=batch, total=4, unit="images")
    check(features, "between views")
    later = wrap_callback(root, 0.75, 0.9, "Clustering: ")
    later(0.0, "k-means")
    positions = [e.fraction for e in events if e.fraction is not None]
    assert positions == sorted(positions), positions
    assert positions[0] == pytest.approx(0.4) and positions[-1] == pytest.approx(0.75)
    heartbeats = [e for e in events if e.fraction is None]
    assert len(heartbeats) == 9 and all(e.note is None for e in heartbeats)
    assert heartbeats[0].stage == "Features: lite0: decoding"


def test_a_sub_step_that_restarts_its_count_cannot_move_the_bar_back():
    events = []
    step = ensure(events.append).sub(0.0, 0.5)
    step(0.8, "first try")
    step(0.1, "second try")  # e.g. a restart that counts from zero again
    assert [e.fraction for e in events] == [pytest.approx(0.4), pytest.approx(0.4)]
    assert events[-1].stage == "second try"


def test_counts_and_rate_travel_as_numbers_and_describe_formats_them_once():
    events = []
    wrap_callback(events.append, 0.0, 1.0, "Features: ")(0.5, "lite0", done=8, total=16, unit="images", rate=20.0)
    event = events[0]
    assert (event.done, event.total, event.unit, event.rate) == (8, 16, "images", 20.0)
    assert event.stage == "Features: lite0"
    assert event.describe() == "Features: lite0 · 8/16 images · 20.0 images/s"


def test_notes_travel_through_slices_with_their_level_and_do_not_move_the_bar():
    events = []
    step = wrap_callback(events.append, 0.2, 0.4, "Clustering: ")
    step(0.5, "fit")
    step.note("PCA capped")
    step.warn("fewer clusters than asked")
    assert [(e.fraction, e.note, e.level) for e in events[1:]] == [
        (None, "PCA capped", "info"),
        (None, "fewer clusters than asked", "warning"),
    ]
    with pytest.raises(ValueError):
        step.note("x", level="loud")


def test_emit_forwards_a_nested_jobs_events_into_a_slice():
    events = []
    outer = ensure(events.append).sub(0.5, 1.0, "Outer: ")
    outer.emit(ProgressEvent(fraction=0.5, stage="inner", done=1, total=2, unit="files"))
    outer.emit(ProgressEvent(fraction=None, stage="", note="hello"))
    assert events[0].fraction == pytest.approx(0.75) and events[0].stage == "Outer: inner"
    assert events[0].done == 1 and events[1].note == "hello"


def test_ensure_keeps_a_progress_and_silences_none():
    p = Progress()
    assert ensure(p) is p
    ensure(None)(0.5, "nobody listens")  # no error
    check(None)


def test_warnings_inside_the_block_become_warning_notes_once():
    events = []
    with notes_from_warnings(events.append):
        warnings.warn("found 3 clusters instead of 4", stacklevel=1)
        warnings.warn("found 3 clusters instead of 4", stacklevel=1)
    assert [(e.note, e.level) for e in events] == [("found 3 clusters instead of 4", "warning")]


def test_cancel_token_raises_from_any_thread_and_heartbeat_is_not_forwarded():
    token = CancelToken()
    forwarded = []
    progress = ensure(token.callback(lambda e: forwarded.append(e.fraction)))
    progress(0.1, "x")
    check(progress, "heartbeat")
    assert forwarded == [0.1]
    t = threading.Thread(target=token.cancel)
    t.start()
    t.join()
    with pytest.raises(Cancelled):
        progress(0.2, "x")
    with pytest.raises(Cancelled):
        check(progress)
    progress.warn("a note after the cancel still arrives and does not raise")
    assert forwarded[-1] is None


def test_throttled_callback_still_forwards_stage_changes_and_completion():
    token = CancelToken()
    forwarded = []
    progress = ensure(token.callback(lambda e: forwarded.append((e.fraction, e.stage)), min_interval=3600))
    progress(0.1, "a")
    progress(0.2, "a")  # throttled
    progress(0.3, "b")  # new stage
    progress(1.0, "b")  # completion
    assert forwarded == [(0.1, "a"), (0.3, "b"), (1.0, "b")]


def test_tqdm_bar_shows_the_described_stage_and_keeps_notes(capsys):
    bar = TqdmProgress()
    progress = ensure(bar)
    progress(0.5, "Features", done=2, total=4, unit="images", rate=3.0)
    progress.warn("2 images skipped")
    bar.close()
    err = capsys.readouterr().err
    assert "Features · 2/4 images · 3.0 images/s" in err
    assert "warning: 2 images skipped" in err
    assert bar.notes == [("warning", "2 images skipped")]
