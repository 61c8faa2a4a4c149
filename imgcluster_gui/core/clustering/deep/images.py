"""Image-side plumbing of the methods that fine-tune the CNN itself (DeepCluster, UCNN).

The backbone comes from the project's registry (:mod:`imgcluster_gui.core.features.backbones`)
by name, or is given as a ready ``torch.nn.Module`` mapping ``(N, 3, H, W)`` to ``(N, D)`` (tests
use a tiny CNN). Features of a network being fine-tuned are computed here, by a private loop,
and never written to the feature cache: the cache holds pretrained features only.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...choices import AUTO, is_auto
from ...features.backbones import Preprocessing, rgb  # the one Preprocessing; these transforms resize bilinearly
from ..registry import ParamSpec
from .common import DEVICE_PARAM, EpochReporter, autocast

DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)

#: The user-facing parameters DeepCluster and UCNN share (defaults: each class's ``__init__``).
IMAGE_TRAINING_PARAMS = (
    ParamSpec("lr", "float", minimum=1e-5, maximum=0.5, help="SGD learning rate of the backbone."),
    ParamSpec("batch_size", "int", minimum=2, maximum=1024, help="Images per training batch."),
    ParamSpec(
        "input_size",
        "int",
        minimum=32,
        maximum=1024,
        help="Crop size the network is trained at; auto = the backbone's own (224 for most). "
        "Smaller is much faster on a CPU.",
    ),
    ParamSpec("augment", "bool", help="Random resized crops and flips while training."),
    DEVICE_PARAM,
)


def build_backbone(
    backbone: Union[str, nn.Module],
    layer: Optional[str],
    weights_path: Optional[str],
    device: torch.device,
    input_size: Any = AUTO,
) -> tuple[nn.Module, Preprocessing, str]:
    """A trainable copy of the feature network, its preprocessing and a name for it.

    Parameters
    ----------
    backbone : str or torch.nn.Module
        A registry name (``core.features.backbones``) or a module giving ``(N, D)`` features.
    input_size : int or 'auto'
        Overrides the crop size; ``'auto'`` (or None): the backbone's own (224 for a module given directly).

    Returns
    -------
    (model, preprocessing, name)
    """
    input_size = None if is_auto(input_size) else int(input_size)
    if isinstance(backbone, nn.Module):
        model = copy.deepcopy(backbone)  # never train the caller's module in place
        size = int(input_size or 224)
        prep = Preprocessing(size, int(round(size * 256 / 224)), DEFAULT_MEAN, DEFAULT_STD)
        name = type(backbone).__name__
    elif isinstance(backbone, str) and backbone:
        from ...features.backbones import build_feature_model, get_backbone

        spec = get_backbone(backbone)
        model = build_feature_model(backbone, layer=layer, weights_path=weights_path, device=str(device))
        size = int(input_size or spec.input_size)
        resize = int(spec.resize_size if input_size is None else round(size * spec.resize_size / spec.input_size))
        prep = Preprocessing(size, resize, rgb(spec.mean), rgb(spec.std))
        name = backbone
    else:
        raise ValueError(
            f"backbone must be a backbone name (see the feature extractor list) or a torch module; got {backbone!r}"
        )
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model.to(device), prep, name


class SobelFilter(nn.Module):
    """Fixed edge filter in front of the network (DeepCluster's option against colour shortcuts).

    Maps an RGB batch to ``(gradient x, gradient y, grey)`` so a 3-channel backbone still fits.
    """

    kernel: torch.Tensor  # a registered buffer

    def __init__(self) -> None:
        super().__init__()
        kernel_x = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("kernel", torch.stack([kernel_x, kernel_x.t()]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(dim=1, keepdim=True)
        edges = nn.functional.conv2d(grey, self.kernel.to(grey.dtype), padding=1)
        return torch.cat([edges, grey], dim=1)


class ImageList(Dataset):
    """Decoded, transformed images of ``paths`` (with their index), for a DataLoader."""

    def __init__(self, paths: Sequence[Union[str, Path]], transform: Callable, draft_size: Optional[int]) -> None:
        self.paths = [str(p) for p in paths]
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from ...dataset import load_image

        draft = (self.draft_size, self.draft_size) if self.draft_size else None
        image = load_image(self.paths[index], draft_size=draft)
        return self.transform(image), index


def missing_requirement() -> str:
    """Why DeepCluster and UCNN cannot run here (their training crops are torchvision transforms); '' when they can.

    The CPU desktop bundle may be built without torchvision (packaging/README.md): the registry lists both
    methods with this reason instead of failing on the first batch.
    """
    from ...features.backbones import torchvision_missing_reason

    return torchvision_missing_reason("fine-tuning the CNN")


def _transforms() -> Any:
    """``torchvision.transforms``, or a :class:`WeightsUnavailableError` that says torchvision is missing."""
    from ...features.backbones import require_torchvision

    require_torchvision("Fine-tuning the CNN (DeepCluster, UCNN)")
    from torchvision import transforms

    return transforms


def eval_transform(prep: Preprocessing):
    transforms = _transforms()

    return transforms.Compose(
        [
            transforms.Resize(prep.resize_size),
            transforms.CenterCrop(prep.input_size),
            transforms.ToTensor(),
            transforms.Normalize(prep.mean, prep.std),
        ]
    )


def train_transform(prep: Preprocessing, augment: bool = True):
    """DeepCluster's augmentation: random resized crop and horizontal flip."""
    transforms = _transforms()

    if not augment:
        return eval_transform(prep)
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(prep.input_size, scale=(0.5, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(prep.mean, prep.std),
        ]
    )


def loader(
    dataset: ImageList,
    batch_size: int,
    num_workers: int,
    indices: Optional[np.ndarray] = None,
    generator: Optional[torch.Generator] = None,
) -> DataLoader:
    """A DataLoader over ``indices`` (in the given order, repeats allowed) or over every item."""
    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order,
        num_workers=int(num_workers),
        generator=generator,
        persistent_workers=False,
    )


@torch.no_grad()
def compute_features(
    network: nn.Module, data: DataLoader, device: torch.device, reporter: EpochReporter, stage: str, n_samples: int
) -> np.ndarray:
    """Features of every image in ``data`` with the network in eval mode: ``(n_samples, D)`` float32."""
    network.eval()
    out: Optional[np.ndarray] = None
    for images, index in data:
        with autocast(device):
            feats = network(images.to(device, non_blocking=True)).float()
        feats = feats.reshape(feats.shape[0], -1).cpu().numpy()
        if out is None:
            out = np.empty((n_samples, feats.shape[1]), np.float32)
        out[index.numpy()] = feats
        reporter.step(stage)
    assert out is not None
    return out


def uniform_over_clusters(labels: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn so every non-empty cluster appears about equally often (DeepCluster).

    Why: large pseudo-classes would otherwise dominate the classifier and collapse the clustering.
    """
    clusters = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    per_cluster = int(np.ceil(n_draws / len(clusters)))
    drawn = [rng.choice(members, per_cluster, replace=len(members) < per_cluster) for members in clusters]
    indices = np.concatenate(drawn)
    rng.shuffle(indices)
    return indices[:n_draws]


def feature_dim(network: nn.Module, prep: Preprocessing, device: torch.device) -> int:
    """Width of the network's output for one dummy image."""
    network.eval()
    with torch.no_grad():
        dummy = torch.zeros(2, 3, prep.input_size, prep.input_size, device=device)
        return int(network(dummy).reshape(2, -1).shape[1])


def check_paths(paths: Any, n_rows: Optional[int]) -> list[str]:
    if paths is None or len(paths) == 0:
        raise ValueError("this method fine-tunes the CNN on the images: pass fit(..., paths=[image files])")
    paths = [str(p) for p in paths]
    if n_rows is not None and n_rows != len(paths):
        raise ValueError(f"X has {n_rows} rows but {len(paths)} image paths were given: they must be aligned")
    return paths


def state_of(module: nn.Module) -> dict[str, Any]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------- saved fine-tuned networks


def preprocessing_to_dict(prep: Preprocessing) -> dict[str, Any]:
    return {
        "input_size": int(prep.input_size),
        "resize_size": int(prep.resize_size),
        "mean": [float(v) for v in prep.mean],
        "std": [float(v) for v in prep.std],
    }


def preprocessing_from_dict(data: dict[str, Any]) -> Preprocessing:
    return Preprocessing(int(data["input_size"]), int(data["resize_size"]), rgb(data["mean"]), rgb(data["std"]))


def untrained_backbone(name: str, layer: Optional[str], backbone: Optional[nn.Module]) -> nn.Module:
    """The architecture a saved fine-tuned network had, without downloading or reading any weights.

    ``backbone`` (a module of the same architecture) is used when given, and is needed when the
    network was trained from a module passed directly rather than a registry name.
    """
    if backbone is not None:
        return copy.deepcopy(backbone)
    from ...features import backbones

    try:
        entry = backbones._entry(name)  # noqa: SLF001 - the registry's own architecture builder, no weights
    except KeyError:
        raise ValueError(
            f"the network was trained from a {name!r} module, not a registered backbone: "
            "pass backbone=<a module of the same architecture> to load it"
        ) from None
    net = backbones._architecture(entry)  # noqa: SLF001
    net.eval()
    return entry.layers[backbones.resolve_layer(name, layer)].make(net)


@torch.no_grad()
def features_of_images(
    network: nn.Module,
    paths: Sequence[Union[str, Path]],
    prep: Preprocessing,
    batch_size: int = 32,
    num_workers: int = 0,
) -> np.ndarray:
    """Features ``(n, D)`` float32 of image files with a (fine-tuned) network, as the fit computed them.

    Never reads or writes the feature cache.
    """
    device = next(network.parameters()).device
    data = loader(ImageList([str(p) for p in paths], eval_transform(prep), prep.resize_size), batch_size, num_workers)
    network.eval()
    out = np.empty((len(paths), 0), np.float32)
    parts = []
    for images, _ in data:
        with autocast(device):
            feats = network(images.to(device)).float()
        parts.append(feats.reshape(feats.shape[0], -1).cpu().numpy())
    return np.concatenate(parts) if parts else out
