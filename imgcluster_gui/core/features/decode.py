"""Decoding JPEGs on the network's device: file bytes in, resized and centre-cropped uint8 tensors out.

On a GPU, a worker process only reads a JPEG's bytes (:func:`read_jpeg_bytes`); the main process decodes a
whole batch at once with nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``) and resizes it there
(:func:`decode_resize_batch`), so the CPU is not the bottleneck of a GPU run.  The same functions run on the
CPU (torchvision's libjpeg decoder), which is how they are tested without a GPU.

On the CPU the project keeps Pillow with ``Image.draft`` (DCT-domain downscaling): measured on 12 MP JPEGs,
``simplejpeg`` with the same scaling was within noise of it (27-29 vs 25-27 img/s a core: the entropy decoding of
the whole file dominates, and no decoder can skip it), and PyTurboJPEG needs a system ``libturbojpeg``.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .backbones import Preprocessing

PathLike = Union[str, os.PathLike]

JPEG_MAGIC = b"\xff\xd8\xff"
# Past this many bytes a JPEG is decoded on the CPU like any other image (a guard against huge files on the GPU).
MAX_DEVICE_JPEG_BYTES = 64 * 1024 * 1024


def read_jpeg_bytes(path: PathLike) -> Optional[torch.Tensor]:
    """The bytes of ``path`` as a 1-D uint8 tensor when it is a JPEG file, else ``None`` (decode it another way).

    Raises
    ------
    OSError
        The file cannot be read.
    """
    with open(path, "rb") as handle:
        if handle.read(3) != JPEG_MAGIC:
            return None
        handle.seek(0, os.SEEK_END)
        if handle.tell() > MAX_DEVICE_JPEG_BYTES:
            return None
        handle.seek(0)
        data = handle.read()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def resize_crop(image: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """One ``(3, H, W)`` uint8 image: shorter side to ``resize_size`` (antialiased), centre crop, uint8 again.

    The same geometry as torchvision's ``Resize(resize_size)`` + ``CenterCrop(input_size)`` on a PIL image.
    """
    _, height, width = image.shape
    short = min(height, width)
    scale = preprocessing.resize_size / short
    # torchvision's Resize: the shorter side is exactly resize_size, the longer one truncated.
    new_h = preprocessing.resize_size if height == short else int(height * scale)
    new_w = preprocessing.resize_size if width == short else int(width * scale)
    mode = "bicubic" if preprocessing.interpolation == "bicubic" else "bilinear"
    resized = F.interpolate(
        image.unsqueeze(0).float(), size=(new_h, new_w), mode=mode, antialias=True, align_corners=False
    )
    crop = preprocessing.input_size
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    cropped = resized[0, :, top : top + crop, left : left + crop]
    return cropped.round_().clamp_(0, 255).to(torch.uint8)


def decode_resize_batch(
    blobs: Sequence[torch.Tensor], preprocessing: Preprocessing, device: Union[str, torch.device]
) -> list[Optional[torch.Tensor]]:
    """Decode JPEG ``blobs`` on ``device`` in one call, then resize and crop each: ``(3, S, S)`` uint8 or ``None``.

    A blob the batched decoder rejects is retried alone, so one corrupt file costs only its own image
    (``None`` at its place: the caller decodes it with Pillow to say why).  EXIF orientation is applied.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    target = torch.device(device)
    if not blobs:
        return []
    try:
        decoded: list[Optional[torch.Tensor]] = list(
            decode_jpeg(list(blobs), mode=ImageReadMode.RGB, device=target, apply_exif_orientation=True)
        )
    except RuntimeError:
        decoded = []
        for blob in blobs:
            try:
                decoded.append(decode_jpeg(blob, mode=ImageReadMode.RGB, device=target, apply_exif_orientation=True))
            except RuntimeError:
                decoded.append(None)
    return [resize_crop(image, preprocessing) if image is not None else None for image in decoded]
