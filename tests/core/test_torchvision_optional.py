"""torchvision is optional at run time (the CPU desktop bundle lacks it): the Pillow preprocessing gives torchvision's
pixels, the ImageNet names come from the package, and what needs torchvision says so instead of failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcluster_gui.core.dataset import load_image
from imgcluster_gui.core.features import backbones
from imgcluster_gui.core.features.backbones import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, has_torchvision
from imgcluster_gui.core.features.transform import ResizeCenterCrop, resized_size
from imgcluster_gui.core.naming import imagenet_categories

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO_ROOT / "resources" / "sample_images").rglob("*.png"))
PHOTOS = sorted((REPO_ROOT.parent / "shared" / "datasets" / "imagenette-1k").rglob("*.JPEG"))[::97][:8]
needs_torchvision = pytest.mark.skipif(not has_torchvision(), reason="torchvision is not installed here")


def _prep(input_size: int = 224, resize_size: int = 256, interpolation: str = "bilinear") -> Preprocessing:
    return Preprocessing(input_size, resize_size, IMAGENET_MEAN, IMAGENET_STD, interpolation)


def _torchvision_compose(prep: Preprocessing):
    """What extract.py and distributed.py used before: torchvision's Resize + CenterCrop + PILToTensor."""
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    return transforms.Compose(
        [
            transforms.Resize(prep.resize_size, interpolation=InterpolationMode(prep.interpolation), antialias=True),
            transforms.CenterCrop(prep.input_size),
            transforms.PILToTensor(),
        ]
    )


def _photo_like(width: int, height: int, seed: int) -> Image.Image:
    """A non-square RGB image with edges, gradients and noise (resampling differences would show)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x ^ y) & 255], axis=-1)
    noisy = base + rng.integers(-40, 40, size=base.shape)
    noisy[height // 3 : height // 2, width // 4 : width // 2] = [250, 10, 10]  # a hard-edged block
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def test_resized_size_follows_torchvision_rule_shorter_side_exact_longer_truncated():
    assert resized_size(640, 427, 256) == (383, 256)  # 256 * 640 / 427 = 383.7 -> 383, not rounded to 384
    assert resized_size(427, 640, 256) == (256, 383)
    assert resized_size(96, 96, 232) == (232, 232)


def test_the_pillow_transform_gives_a_uint8_chw_tensor_of_the_crop():
    out = ResizeCenterCrop(_prep(224, 256, "bicubic"))(_photo_like(500, 333, 0))
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, 224, 224)
    gray = ResizeCenterCrop(_prep(64, 72))(Image.new("L", (80, 120), 7))
    assert tuple(gray.shape) == (1, 64, 64) and int(gray.max()) == 7
    with pytest.raises(ValueError, match="unknown interpolation"):
        ResizeCenterCrop(_prep(interpolation="magic"))


def test_a_crop_larger_than_the_resized_image_is_zero_padded_around_it():
    prep = _prep(input_size=40, resize_size=30)  # 30 x 45 after the resize: 5 px of zeros left and right
    out = ResizeCenterCrop(prep)(Image.new("RGB", (20, 30), (9, 9, 9))).numpy()
    assert tuple(out.shape) == (3, 40, 40)
    assert (out[:, :, :5] == 0).all() and (out[:, :, 35:] == 0).all() and (out[:, :, 5:35] == 9).all()


@needs_torchvision
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize(
    "sizes",
    [(224, 256), (224, 232), (299, 342), (240, 272), (260, 292)],  # ResNet, MobileNet, Inception, Lite1, Lite2
)
def test_the_pillow_transform_equals_torchvision_on_sample_images_exactly(interpolation, sizes):
    prep = _prep(*sizes, interpolation=interpolation)
    ours, theirs = ResizeCenterCrop(prep), _torchvision_compose(prep)
    for path in SAMPLES[::30]:  # 5 of the 150, one per class
        image = load_image(path, draft_size=(prep.resize_size, prep.resize_size))
        assert torch.equal(ours(image), theirs(image)), path.name  # tolerance 0: both are Pillow's resize


@needs_torchvision
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_the_pillow_transform_equals_torchvision_on_non_square_and_small_images(interpolation):
    # Landscape and portrait with fractional scale factors, one already at the size, one smaller than the crop.
    for width, height, prep in [
        (640, 427, _prep(224, 256, interpolation)),
        (301, 517, _prep(260, 292, interpolation)),
        (256, 384, _prep(224, 256, interpolation)),
        (21, 33, _prep(40, 30, interpolation)),
        (33, 21, _prep(41, 30, interpolation)),
    ]:
        image = _photo_like(width, height, seed=width)
        ours, theirs = ResizeCenterCrop(prep)(image), _torchvision_compose(prep)(image)
        assert ours.shape == theirs.shape and torch.equal(ours, theirs), (width, height)


@needs_torchvision
def test_the_pillow_transform_equals_torchvision_on_real_photos():
    if not PHOTOS:
        pytest.skip("../shared/datasets/imagenette-1k is not present")
    prep = backbones.resolve_preprocessing("efficientnet_lite2")
    for path in PHOTOS:
        image = load_image(path, draft_size=(prep.resize_size, prep.resize_size))
        assert torch.equal(ResizeCenterCrop(prep)(image), _torchvision_compose(prep)(image)), path.name


def test_the_dataset_uses_the_pillow_transform(tmp_path):
    from imgcluster_gui.core.features.extract import ImageFolderDataset

    path = tmp_path / "wide.jpg"
    _photo_like(400, 250, 3).save(path, quality=95)
    prep = _prep(224, 256, "bicubic")
    index, tensor, reason = ImageFolderDataset([path], prep)[0]
    assert (index, reason) == (0, "") and tensor is not None
    expected = ResizeCenterCrop(prep)(load_image(path, draft_size=(256, 256)))
    assert torch.equal(tensor, expected)


def test_the_packaged_imagenet_names_are_1000_distinct_names_in_class_order():
    names = imagenet_categories()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert (names[0], names[207], names[999]) == ("tench", "golden retriever", "toilet tissue")


@needs_torchvision
def test_the_packaged_imagenet_names_equal_torchvision_list():
    from torchvision.models import ResNet18_Weights

    assert list(imagenet_categories()) == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@needs_torchvision
def test_the_torchvision_layer_widths_kept_for_lists_match_the_networks():
    # The widths an installation without torchvision shows are the ones the real networks have.
    for name, dims in backbones._TORCHVISION_DIMS.items():
        assert backbones._layer_dims(name) == dims, name


# ---------------------------------------------------------------- without torchvision (in a fresh interpreter)
_WITHOUT_TORCHVISION = textwrap.dedent(
    """
    import json, sys
    sys.modules["torchvision"] = None  # `import torchvision` raises ImportError, as where it is not installed
    from PIL import Image
    from imgcluster_gui.core.features import backbones
    from imgcluster_gui.core.features.extract import ImageFolderDataset
    from imgcluster_gui.core.clustering.registry import get_algorithm
    from imgcluster_gui.core.clustering.deep.images import eval_transform
    from imgcluster_gui.core.naming import imagenet_categories

    out = {"has_torchvision": backbones.has_torchvision()}
    specs = {spec.name: spec for spec in backbones.list_backbones()}
    out["specs"] = {
        name: [s.family, s.usable, s.offline, s.group, s.status, s.feature_dims] for name, s in specs.items()
    }
    try:
        backbones.build_feature_model("resnet18")
        out["build"] = "built"
    except backbones.WeightsUnavailableError as exc:
        out["build"] = str(exc)
    out["with_weights_file"] = backbones.get_backbone("resnet50", weights_path=sys.argv[1]).usable
    prep = specs["efficientnet_lite0"].preprocessing
    index, tensor, reason = ImageFolderDataset([sys.argv[1]], prep)[0]
    out["dataset"] = [reason, list(tensor.shape)]
    out["deep"] = {a: get_algorithm(a).unavailable for a in ("deepcluster", "ucnn", "kmeans")}
    try:
        eval_transform(prep)
        out["eval_transform"] = "built"
    except backbones.WeightsUnavailableError as exc:
        out["eval_transform"] = str(exc)
    out["names"] = len(imagenet_categories())
    out["torchvision_loaded"] = sys.modules.get("torchvision") is not None
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def without_torchvision(tmp_path_factory):
    image = tmp_path_factory.mktemp("img") / "photo.jpg"
    _photo_like(320, 200, 5).save(image)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCHVISION, str(image)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_torchvision_the_default_backbones_still_work(without_torchvision):
    out = without_torchvision
    assert out["has_torchvision"] is False and out["torchvision_loaded"] is False
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        family, usable, *_ = out["specs"][name]
        assert family == "efficientnet_lite" and usable is True
    assert out["dataset"] == ["", [3, 224, 224]]  # the Pillow preprocessing, no torchvision import
    assert out["names"] == 1000  # cluster names from the packaged list


def test_without_torchvision_its_backbones_are_listed_as_needing_it(without_torchvision):
    torchvision_specs = {n: s for n, s in without_torchvision["specs"].items() if s[0] == "torchvision"}
    assert set(torchvision_specs) == set(backbones._TORCHVISION_DIMS)
    for name, (_family, usable, offline, group, status, dims) in torchvision_specs.items():
        assert usable is False and offline is False and group == "install", name
        assert status == "needs torchvision, which this installation does not have", name
        assert dims == backbones._TORCHVISION_DIMS[name], name
    assert "needs torchvision, which this installation does not have" in without_torchvision["build"]
    assert "'resnet18'" in without_torchvision["build"]
    assert without_torchvision["with_weights_file"] is False  # a weights file cannot replace the library


def test_without_torchvision_deep_image_clustering_says_it_needs_it(without_torchvision):
    deep = without_torchvision["deep"]
    for algorithm in ("deepcluster", "ucnn"):
        assert "needs torchvision, which this installation does not have" in deep[algorithm]
    assert deep["kmeans"] == ""
    assert "needs torchvision, which this installation does not have" in without_torchvision["eval_transform"]


def test_a_run_with_an_unavailable_method_stops_before_extracting(monkeypatch, tmp_path, sample_images):
    from dataclasses import replace

    from imgcluster_gui.core.clustering import registry
    from imgcluster_gui.core.pipeline import PipelineConfig, run_pipeline

    spec = registry.get_algorithm("deepcluster")
    monkeypatch.setitem(registry._REGISTRY, "deepcluster", replace(spec, unavailable="it needs something missing"))
    monkeypatch.setattr(
        "imgcluster_gui.core.pipeline.extract",
        lambda *a, **k: pytest.fail("extraction started"),
    )
    with pytest.raises(backbones.WeightsUnavailableError, match="deepcluster: it needs something missing"):
        run_pipeline(PipelineConfig(folder=str(sample_images), algorithm="deepcluster"))


@needs_torchvision
def test_with_torchvision_everything_stays_available():
    specs = backbones.list_backbones()
    assert all(spec.usable for spec in specs)
    from imgcluster_gui.core.clustering.registry import get_algorithm

    assert get_algorithm("deepcluster").unavailable == "" and get_algorithm("ucnn").unavailable == ""
