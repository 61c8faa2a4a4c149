"""Batched extraction on a handful of real COIL-20 images with the offline default backbone."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcluster_gui.core.features.backbones import DEFAULT_BACKBONE, get_backbone, resolve_preprocessing
from imgcluster_gui.core.features.cache import FeatureCache
from imgcluster_gui.core.features.decode import decode_resize_batch, read_jpeg_bytes, resize_crop
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


def test_openvino_engine_gives_the_eager_features(coil_images):
    pytest.importorskip("openvino")
    eager = extract_features(coil_images[:4], device="cpu", num_workers=0, cache=False, engine="eager")
    fast = extract_features(coil_images[:4], device="cpu", num_workers=0, cache=False, engine="openvino")
    assert (eager.engine, fast.engine) == ("eager", "openvino")
    cosine = (eager.features * fast.features).sum(1) / (
        np.linalg.norm(eager.features, axis=1) * np.linalg.norm(fast.features, axis=1)
    )
    assert cosine.min() >= 0.999


def test_extraction_does_not_pay_for_every_layer_width(coil_images, monkeypatch):
    # get_backbone measures every layer's width with a forward pass (~1.5 s); the rows carry their own width.
    from imgcluster_gui.core.features import extract

    def slow_registry_lookup(*args, **kwargs):
        raise AssertionError("extraction looked every layer width up")

    monkeypatch.setattr(extract, "get_backbone", slow_registry_lookup)
    result = extract_features(coil_images[:2], device="cpu", num_workers=0, cache=False)
    assert result.features.shape[0] == 2 and result.engine == "eager"


def _jpeg_copies(images: list[Path], folder: Path) -> list[Path]:
    out = []
    for i, path in enumerate(images):
        target = folder / f"photo_{i}.jpg"
        with Image.open(path) as image:
            image.convert("RGB").resize((320, 240), Image.BICUBIC).save(target, quality=92)
        out.append(target)
    return out


def test_jpegs_decoded_on_the_device_match_pillow(coil_images, tmp_path, monkeypatch):
    """The GPU path (JPEG bytes decoded and resized by torch), run on the CPU: same features, bad files reported."""
    import dataclasses

    from imgcluster_gui.core.features import extract

    photos = _jpeg_copies(coil_images[:4], tmp_path)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 200)
    png = coil_images[4]
    paths = photos[:2] + [corrupt, png] + photos[2:]
    reference = extract_features(paths, device="cpu", num_workers=0, cache=False, engine="eager")

    real_plan = extract.choose_plan
    planned = []

    def device_decoding_plan(*args, **kwargs):
        planned.append(dataclasses.replace(real_plan(*args, **kwargs), decode_on_device=True, batch_size=3))
        return planned[-1]

    monkeypatch.setattr(extract, "choose_plan", device_decoding_plan)
    on_device = extract_features(paths, device="cpu", num_workers=0, cache=False, engine="eager")
    assert planned and planned[0].decode_on_device
    assert on_device.paths == reference.paths == photos[:2] + [png] + photos[2:]
    assert [Path(s.path).name for s in on_device.failed] == ["corrupt.jpg"] and on_device.failed[0].reason
    cosine = (reference.features * on_device.features).sum(1) / (
        np.linalg.norm(reference.features, axis=1) * np.linalg.norm(on_device.features, axis=1)
    )
    assert cosine.min() >= 0.99


# ---------------------------------------------------------------- JPEGs decoded on the device (the GPU path)
def _photo(path: Path, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    Image.fromarray(base).resize(size, Image.BICUBIC).save(path, quality=95)  # smooth, photo-like
    return path


def test_device_decoding_matches_pillow_geometry_and_pixels(tmp_path):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    prep = resolve_preprocessing(DEFAULT_BACKBONE)
    wide = _photo(tmp_path / "wide.jpg", (400, 300))
    tall = _photo(tmp_path / "tall.jpg", (240, 360))
    blobs = [read_jpeg_bytes(wide), read_jpeg_bytes(tall)]
    assert all(b is not None and b.dtype == torch.uint8 and b.ndim == 1 for b in blobs)
    decoded = decode_resize_batch(blobs, prep, "cpu")
    pillow = transforms.Compose(
        [
            transforms.Resize(prep.resize_size, interpolation=InterpolationMode(prep.interpolation), antialias=True),
            transforms.CenterCrop(prep.input_size),
            transforms.PILToTensor(),
        ]
    )
    for path, image in zip([wide, tall], decoded):
        assert image is not None and image.shape == (3, prep.input_size, prep.input_size)
        with Image.open(path) as im:
            expected = pillow(im.convert("RGB"))
        assert (image.float() - expected.float()).abs().mean() < 2.0  # grey levels out of 255


def test_corrupt_blob_is_none_the_others_decode(tmp_path):
    prep = resolve_preprocessing(DEFAULT_BACKBONE)
    good = read_jpeg_bytes(_photo(tmp_path / "good.jpg", (300, 300)))
    assert good is not None
    bad = torch.frombuffer(bytearray(b"\xff\xd8\xff\xe0" + b"\x00" * 64), dtype=torch.uint8)
    out = decode_resize_batch([good, bad], prep, "cpu")
    assert out[0] is not None and out[1] is None
    assert decode_resize_batch([], prep, "cpu") == []


def test_only_jpegs_travel_as_bytes(tmp_path):
    png = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(png)
    assert read_jpeg_bytes(png) is None


def test_resize_crop_keeps_the_shorter_side_exact():
    prep = resolve_preprocessing(DEFAULT_BACKBONE)
    image = torch.randint(0, 255, (3, 100, 700), dtype=torch.uint8)
    out = resize_crop(image, prep)
    assert out.shape == (3, prep.input_size, prep.input_size) and out.dtype == torch.uint8
