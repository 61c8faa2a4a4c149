"""Batched extraction on a handful of real COIL-20 images with the offline default backbone."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcluster_gui.core.features.backbones import DEFAULT_BACKBONE, get_backbone
from imgcluster_gui.core.features.cache import FeatureCache
from imgcluster_gui.core.features.extract import extract_features, extract_multiview, resolve_device
from imgcluster_gui.core.progress import Cancelled, CancelToken

torch.set_num_threads(2)


@pytest.fixture
def coil_images(shared_dataset) -> list[Path]:
    """Ten real images: one pose from each of the first ten COIL-20 objects."""
    folder = shared_dataset("coil20")
    return [sorted(d.glob("*.png"))[0] for d in sorted(folder.iterdir())[:10]]


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_broken_files_are_reported_not_fatal(coil_images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(coil_images[0].read_bytes()[:60])
    paths = coil_images[:4] + [broken] + coil_images[4:6] + [truncated, tmp_path / "vanished.png"]
    updates = []
    result = extract_features(paths, device="cpu", batch_size=4, num_workers=1, cache=False, progress=updates.append)
    assert result.paths == coil_images[:6]
    assert {Path(s.path).name for s in result.failed} == {"broken.png", "truncated.png", "vanished.png"}
    assert all(s.reason for s in result.failed)
    dim = get_backbone(DEFAULT_BACKBONE).feature_dims["penultimate"]
    assert result.features.shape == (6, dim) and result.features.dtype == np.float32
    assert np.isfinite(result.features).all() and (np.linalg.norm(result.features, axis=1) > 0).all()
    assert result.n_extracted == 6 and result.n_cached == 0 and result.device == "cpu"
    fractions = [e.fraction for e in updates if e.fraction is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    rated = [e for e in updates if e.rate is not None]
    assert rated and all(e.unit == "images" and e.rate > 0 and e.total == len(paths) for e in rated)
    # Batching and workers do not change the numbers.
    single = extract_features(
        coil_images[:2], device="cpu", batch_size=1, num_workers=0, cache=False, channels_last=False
    )
    np.testing.assert_allclose(single.features, result.features[:2], rtol=1e-3, atol=1e-4)


def test_second_run_reads_everything_from_the_cache(coil_images, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    first = extract_features(coil_images[:6], device="cpu", num_workers=0, cache=cache)
    assert (first.n_extracted, first.n_cached) == (6, 0)
    second = extract_features(coil_images[:6], device="cpu", num_workers=0, cache=cache)
    assert (second.n_extracted, second.n_cached) == (0, 6)
    assert second.device == "none"  # the network was not even built
    np.testing.assert_array_equal(second.features, first.features)
    # New images: only they are extracted.
    grown = extract_features(coil_images[:8], device="cpu", num_workers=0, cache=cache)
    assert (grown.n_extracted, grown.n_cached) == (2, 6)
    # Another layer is another model key: nothing shared.
    mid = extract_features(coil_images[:2], layer="mid", device="cpu", num_workers=0, cache=cache)
    assert (mid.n_extracted, mid.n_cached) == (2, 0)


def test_cache_is_keyed_by_content_not_file_name(coil_images, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(coil_images[0], tmp_path / "a" / "img001.png")
    shutil.copy(coil_images[1], tmp_path / "b" / "img001.png")
    shutil.copy(coil_images[0], tmp_path / "b" / "same_bytes.png")
    cache = FeatureCache(tmp_path / "cache")
    first = extract_features([tmp_path / "a" / "img001.png"], device="cpu", num_workers=0, cache=cache)
    other = extract_features(
        [tmp_path / "b" / "img001.png", tmp_path / "b" / "same_bytes.png"], device="cpu", num_workers=0, cache=cache
    )
    assert (other.n_extracted, other.n_cached) == (1, 1)
    np.testing.assert_array_equal(other.features[1], first.features[0])
    assert not np.allclose(other.features[0], first.features[0])


def test_cancel_keeps_only_whole_batches_and_stops_workers(coil_images, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    token = CancelToken()

    def cancel_after_first_batch(event):
        if event.rate is not None:  # the first extracted batch reports its rate
            token.cancel()

    with pytest.raises(Cancelled):
        extract_features(
            coil_images,
            device="cpu",
            batch_size=3,
            num_workers=1,
            cache=cache,
            progress=token.callback(cancel_after_first_batch),
        )
    assert multiprocessing.active_children() == []  # DataLoader workers shut down
    assert cache.count() == 3  # the one finished batch, whole; nothing of the next
    resumed = extract_features(coil_images, device="cpu", batch_size=3, num_workers=0, cache=cache)
    assert (resumed.n_extracted, resumed.n_cached) == (7, 3)
    fresh = extract_features(coil_images[:3], device="cpu", batch_size=3, num_workers=0, cache=False)
    np.testing.assert_allclose(resumed.features[:3], fresh.features, rtol=1e-5, atol=1e-6)


def test_multiview_concatenates_unit_norm_views(coil_images, tmp_path, shared_weights):
    coral = shared_weights("mobilenet_v2_imagenet_coral.pth")
    names = [DEFAULT_BACKBONE, "mobilenet_v2"]
    result = extract_multiview(
        coil_images[:4],
        names,
        device="cpu",
        num_workers=0,
        weights_paths={"mobilenet_v2": coral},
        cache=FeatureCache(tmp_path / "c"),
    )
    dims = [get_backbone(n).feature_dims["penultimate"] for n in names]
    assert result.features.shape == (4, sum(dims))
    assert result.view_slices == [(0, dims[0]), (dims[0], dims[0] + dims[1])]
    assert result.backbones == names and len(result.model_keys) == 2
    for start, stop in result.view_slices:
        np.testing.assert_allclose(np.linalg.norm(result.features[:, start:stop], axis=1), 1.0, rtol=1e-5)
    assert result.n_extracted == 8
    with pytest.raises(ValueError, match="weights_paths"):
        extract_multiview(coil_images[:1], names, weights_path=coral, cache=False)


def test_multiview_drops_an_image_any_view_failed(coil_images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    result = extract_multiview(
        coil_images[:2] + [broken], [DEFAULT_BACKBONE], layer="mid", device="cpu", num_workers=0, cache=False
    )
    assert result.paths == coil_images[:2] and [Path(s.path).name for s in result.failed] == ["broken.jpg"]
    assert result.view_slices == [(0, get_backbone(DEFAULT_BACKBONE).feature_dims["mid"])]
