"""Real pretrained weights through the real loading path: the shared Coral MobileNetV2 as a user .pth,
and the packaged EfficientNet-Lite0. Features of real COIL-20 objects must separate classes far better
than the same network with random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from imgcluster_gui.core.features import backbones as B
from imgcluster_gui.core.features.extract import extract_features

pytestmark = pytest.mark.integration
torch.set_num_threads(2)

# Two pairs of COIL-20 objects that look alike to a random network (same grey turntable shots).
CLASS_PAIRS = [("obj001", "obj002"), ("obj010", "obj015")]


@pytest.fixture
def coral(shared_weights) -> Path:
    return shared_weights("mobilenet_v2_imagenet_coral.pth")


def _class_gap(X: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine similarity within classes minus between classes."""
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    similarity = X @ X.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return float(similarity[same & off_diagonal].mean() - similarity[~same].mean())


def _pair_images(folder: Path, pair: tuple[str, str]) -> tuple[list[Path], np.ndarray]:
    paths = [p for name in pair for p in sorted((folder / name).glob("*.png"))[::9]]  # 8 poses each
    return paths, np.array([p.parent.name for p in paths])


def test_coral_file_is_recognised_and_loads_strictly(coral):
    spec = B.get_backbone("mobilenet_v2", weights_path=coral)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)  # not ImageNet's statistics
    assert spec.offline and spec.weights_name == f"file:sha256:{B.weights_file_sha256(coral)}"
    model = B.build_feature_model("mobilenet_v2", weights_path=coral)
    reference = torchvision.models.mobilenet_v2(weights=None)
    reference.load_state_dict(torch.load(coral, map_location="cpu", weights_only=True))
    reference.eval()
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.inference_mode():
        logits = reference.classifier[-1](model(x))  # our penultimate features + the file's classifier
        torch.testing.assert_close(logits, reference(x), rtol=1e-4, atol=1e-4)


def test_real_weights_separate_coil20_classes_better_than_random(coral, shared_dataset, tmp_path):
    folder = shared_dataset("coil20")
    torch.manual_seed(0)
    random_weights = tmp_path / "random_mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), random_weights)
    for pair in CLASS_PAIRS:
        paths, labels = _pair_images(folder, pair)
        gaps = {}
        for label, kwargs in [
            ("lite0", dict(backbone=B.DEFAULT_BACKBONE)),
            ("coral", dict(backbone="mobilenet_v2", weights_path=coral)),
            ("random", dict(backbone="mobilenet_v2", weights_path=random_weights, mean=(0.5,) * 3, std=(0.5,) * 3)),
        ]:
            result = extract_features(paths, device="cpu", num_workers=0, cache=False, **kwargs)
            assert result.paths == paths
            gaps[label] = _class_gap(result.features, labels)
        assert gaps["lite0"] > gaps["random"] + 0.05, (pair, gaps)
        assert gaps["coral"] > gaps["random"] + 0.05, (pair, gaps)
