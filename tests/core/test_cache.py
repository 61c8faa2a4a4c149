"""Feature cache: content keys, round trips, isolation by model key, housekeeping. No network, no model."""

from __future__ import annotations

import os

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
