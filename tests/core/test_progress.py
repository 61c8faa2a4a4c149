import threading

import pytest

from imgcluster_gui.core.progress import CancelToken, Cancelled, check, wrap_callback


def test_wrap_callback_maps_sub_range_and_prefixes_stage():
    seen = []
    child = wrap_callback(lambda f, s: seen.append((round(f, 3), s)), 0.5, 0.7, "Features: ")
    child(0.0, "a")
    child(0.5, "b")
    child(2.0, "c")  # clamped to the sub-range's end
    assert seen == [(0.5, "Features: a"), (0.6, "Features: b"), (0.7, "Features: c")]


def test_cancel_token_raises_from_any_thread_and_heartbeat_is_not_forwarded():
    token = CancelToken()
    forwarded = []
    cb = token.callback(lambda f, s: forwarded.append(f))
    cb(0.1, "x")
    check(cb, "heartbeat")
    assert forwarded == [0.1]
    t = threading.Thread(target=token.cancel)
    t.start()
    t.join()
    with pytest.raises(Cancelled):
        cb(0.2, "x")
    with pytest.raises(Cancelled):
        check(cb)


def test_throttled_callback_still_forwards_stage_changes_and_completion():
    token = CancelToken()
    forwarded = []
    cb = token.callback(lambda f, s: forwarded.append((f, s)), min_interval=3600)
    cb(0.1, "a")
    cb(0.2, "a")  # throttled
    cb(0.3, "b")  # new stage
    cb(1.0, "b")  # completion
    assert forwarded == [(0.1, "a"), (0.3, "b"), (1.0, "b")]
