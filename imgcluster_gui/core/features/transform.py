"""Resize + centre-crop a PIL image to a backbone's uint8 input tensor, with Pillow alone (no torchvision).

The CPU path of every extraction (:class:`.extract.ImageFolderDataset`, the Ray path in :mod:`.distributed`) used
``torchvision.transforms``' ``Resize(resize_size) + CenterCrop(input_size) + PILToTensor()``. On a PIL image those
transforms call Pillow themselves, so doing the same arithmetic here gives the same pixels (tests/core/
test_torchvision_optional.py compares both, tolerance 0) and lets the desktop bundle run its default backbones where
torchvision is not installed (a CPU-only torch without a matching CPU torchvision).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .backbones import Preprocessing

# torchvision's InterpolationMode values -> Pillow's resampling filters (its ``pil_modes_mapping``).
_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side ``shorter`` and the longer one scaled and truncated.

    torchvision's ``Resize(int)`` rule: ``int(shorter * long / short)``, not rounded.
    """
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def _crop_offset(size: int, crop: int) -> int:
    """Where a centre crop of ``crop`` starts in ``size`` pixels (negative: zero padding before the image)."""
    if crop > size:  # torchvision pads (crop - size) // 2 zeros before, the rest after
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


class ResizeCenterCrop:
    """``Resize(resize_size)`` + ``CenterCrop(input_size)`` + ``PILToTensor()`` of a PIL image, torchvision-free.

    Parameters
    ----------
    preprocessing : Preprocessing
        ``resize_size`` (the shorter side), ``input_size`` (the square crop) and ``interpolation`` (a torchvision
        ``InterpolationMode`` value: ``"bilinear"``, ``"bicubic"``...). Pillow's filters are antialiased when
        shrinking, as torchvision's ``antialias=True`` asks.

    Calling it on a PIL image returns a ``uint8`` tensor ``(C, input_size, input_size)``, C the image's bands
    (3 for the RGB images :func:`..dataset.load_image` gives).
    """

    def __init__(self, preprocessing: Preprocessing) -> None:
        try:
            self.resample = _PIL_FILTERS[preprocessing.interpolation]
        except KeyError:
            raise ValueError(
                f"unknown interpolation {preprocessing.interpolation!r}; expected one of {sorted(_PIL_FILTERS)}"
            ) from None
        self.resize_size = int(preprocessing.resize_size)
        self.input_size = int(preprocessing.input_size)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        size = resized_size(image.width, image.height, self.resize_size)
        if size != image.size:  # torchvision returns the image itself when the size already fits
            image = image.resize(size, resample=self.resample)
        crop = self.input_size
        left, top = _crop_offset(image.width, crop), _crop_offset(image.height, crop)
        if (left, top, image.width, image.height) != (0, 0, crop, crop):
            image = image.crop((left, top, left + crop, top + crop))  # outside the image: zeros, as the padding
        pixels = np.array(image, dtype=np.uint8, copy=True)
        if pixels.ndim == 2:  # a single-band image: one channel, as PILToTensor gives
            pixels = pixels[:, :, None]
        return torch.from_numpy(pixels).permute(2, 0, 1)
