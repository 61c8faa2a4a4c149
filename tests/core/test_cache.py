"""Feature cache: content keys, round trips, isolation by model key, housekeeping, a locked database.

No network; only the locked-database runs build a model (the offline default backbone, on four small images).
"""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from imgcluster_gui.core.features.cache import FeatureCache, default_cache_dir
from imgcluster_gui.core.progress import Cancelled, CancelToken
from imgcluster_gui.core.storage import CACHE_ENV_VAR, cache_dir


def test_env_var_and_argument_choose_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "from-env"))
    assert default_cache_dir() == tmp_path / "from-env" / "features"
    assert FeatureCache().root == tmp_path / "from-env" / "features"
    assert FeatureCache(tmp_path / "given").root == tmp_path / "given"
    monkeypatch.delenv(CACHE_ENV_VAR)
    assert default_cache_dir().name == "features"
    # one resolver: the thumbnails and the features share the app's cache folder on every platform
    assert default_cache_dir().parent == cache_dir()


def test_keys_follow_content_not_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "img001.png", tmp_path / "b" / "img001.png"
    first.write_bytes(b"one picture")
    second.write_bytes(b"another picture")
    copy = tmp_path / "copy.png"
    copy.write_bytes(b"one picture")
    cache = FeatureCache(tmp_path / "cache")
    keys, failures = cache.keys_for([first, second, copy, tmp_path / "gone.png"])
    assert keys[0] != keys[1], "same name in two folders must not share features"
    assert keys[0] == keys[2], "the same bytes under another name are the same image"
    assert keys[3] is None and failures == [(3, "file not found")]
    # A remembered hash is not trusted once the file changes.
    second.write_bytes(b"another picture, edited")
    os.utime(second, ns=(1, 1))
    assert cache.key_for(second) != keys[1]
    assert cache.key_for(first) == keys[0]


def test_put_get_round_trip_is_float32_and_per_model(tmp_path):
    cache = FeatureCache(tmp_path)
    rng = np.random.default_rng(0)
    vectors = {f"k{i}": rng.normal(size=16) for i in range(5)}  # float64 in, float32 out
    cache.put_many("model-A", vectors)
    got = cache.get_many(["k0", "k3", "missing"], "model-A")
    assert set(got) == {"k0", "k3"}
    assert got["k0"].dtype == np.float32
    np.testing.assert_allclose(got["k3"], vectors["k3"].astype(np.float32))
    assert cache.get_many(["k0"], "model-B") == {}
    assert cache.count("model-A") == 5 and cache.count() == 5
    assert cache.model_keys() == ["model-A"]


def test_non_finite_vectors_are_never_stored(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put_many("m", {"good": np.ones(4), "bad": np.array([1.0, np.nan, 0.0, 0.0])})
    assert set(cache.get_many(["good", "bad"], "m")) == {"good"}


def test_clear_and_size(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    assert cache.size_bytes() == 0
    cache.put_many("m", {f"k{i}": np.zeros(256) for i in range(200)})
    assert cache.size_bytes() > 200 * 256 * 4
    cache.clear()
    assert cache.count() == 0 and cache.get_many(["k1"], "m") == {}
    cache.put_many("m", {"k1": np.ones(3)})  # usable again after clear
    assert cache.count() == 1


def test_many_entries_stay_float32(tmp_path):
    cache = FeatureCache(tmp_path)
    n, dim = 20_000, 32
    block = np.random.default_rng(1).normal(size=(n, dim)).astype(np.float32)
    cache.put_many("m", {f"{i:08x}": block[i] for i in range(n)})
    got = cache.get_many([f"{i:08x}" for i in range(n)], "m")
    assert len(got) == n
    assert all(v.dtype == np.float32 for v in got.values())
    np.testing.assert_array_equal(got[f"{n - 1:08x}"], block[-1])


def test_hashing_can_be_cancelled(tmp_path):
    files = []
    for i in range(600):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(os.urandom(64))
        files.append(path)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        FeatureCache(tmp_path / "cache").keys_for(files, progress=token.callback())


# ------------------------------------------------------------------ a cache that cannot be written (issue 10)


def _lock_exclusively(cache: FeatureCache) -> sqlite3.Connection:
    """Another process's hold on the database (a second connection behaves the same): no one else may write."""
    other = sqlite3.connect(cache.database_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def _release(other: sqlite3.Connection) -> None:
    other.execute("ROLLBACK")
    other.close()


def test_a_locked_database_fails_writes_quickly_and_keeps_reads(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.put_many("model", {"kept": np.ones(3, dtype=np.float32)})
    (tmp_path / "img.png").write_bytes(b"some bytes")
    other = _lock_exclusively(cache)
    try:
        keys, failures = cache.keys_for([tmp_path / "img.png"])
        assert keys[0] is not None and failures == []  # the key is right, only not remembered
        assert "locked" in cache.write_error
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            cache.put_many("model", {"new": np.ones(3, dtype=np.float32)})
        assert "locked" in cache.write_error
        assert set(cache.get_many(["kept", "new"], "model")) == {"kept"}  # reading still works
    finally:
        _release(other)
    cache.put_many("model", {"new": np.ones(3, dtype=np.float32)})
    assert cache.write_error is None and cache.count("model") == 2


def _extract_with_notes(paths, cache, on_event=None):
    from imgcluster_gui.core.features.extract import extract_features

    notes: list[tuple[str, str]] = []

    def consumer(event):
        if on_event is not None:
            on_event(event)
        if event.note is not None:
            notes.append((event.level, event.note))

    result = extract_features(paths, device="cpu", batch_size=2, num_workers=0, cache=cache, progress=consumer)
    return result, notes


def test_extraction_goes_on_without_storing_when_the_cache_is_locked(tmp_path, sample_images):
    paths = sorted((sample_images / "bag").glob("*.png"))[:4]
    cache = FeatureCache(tmp_path / "cache")
    cache.put_many("another model", {"k": np.ones(3, dtype=np.float32)})  # the database exists
    other = _lock_exclusively(cache)
    try:
        result, notes = _extract_with_notes(paths, cache)
    finally:
        _release(other)
    assert result.paths == paths and result.failed == [] and result.n_extracted == 4
    assert np.isfinite(result.features).all() and result.features.shape[0] == 4
    warnings_given = [text for level, text in notes if level == "warning"]
    assert len(warnings_given) == 1 and "cannot be written" in warnings_given[0] and "locked" in warnings_given[0]
    assert cache.count() == 1  # nothing was stored, nothing was lost


def test_a_lock_taken_during_the_run_stops_storing_not_the_run(tmp_path, sample_images):
    paths = sorted((sample_images / "trouser").glob("*.png"))[:4]
    cache = FeatureCache(tmp_path / "cache")
    held: list[sqlite3.Connection] = []

    def lock_once_the_network_loads(event):
        if not held and "loading the network" in event.stage:
            held.append(_lock_exclusively(cache))  # after the hashes were remembered: the batch write fails

    try:
        result, notes = _extract_with_notes(paths, cache, lock_once_the_network_loads)
    finally:
        for other in held:
            _release(other)
    assert held and result.paths == paths and result.n_extracted == 4
    warnings_given = [text for level, text in notes if level == "warning"]
    assert len(warnings_given) == 1 and "cannot be written" in warnings_given[0]  # once, not once per batch
    assert cache.count() == 0
    again, notes = _extract_with_notes(paths, cache)  # the lock is gone: this run stores its features
    assert again.n_extracted == 4 and cache.count() == 4 and not notes
    np.testing.assert_allclose(again.features, result.features, rtol=1e-5, atol=1e-6)
    other = _lock_exclusively(cache)
    try:
        cached, notes = _extract_with_notes(paths, cache)  # locked again: reading is not writing
    finally:
        _release(other)
    assert (cached.n_cached, cached.n_extracted) == (4, 0) and not notes
    np.testing.assert_array_equal(cached.features, again.features)
