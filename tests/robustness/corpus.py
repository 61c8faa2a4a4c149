"""A corpus of bad and unusual inputs for the scanner, the decoder and the CLI (issue 10).

:func:`build_corpus` writes, in a folder of the caller's choice, well over 80 kinds of file a real
photo folder (or a hostile one) can hold: valid images in every mode Pillow reads, EXIF rotations,
truncations at several points, crafted headers (bombs, zero width, bad checksums, extreme aspect
ratios), files whose name lies about their content, odd names (bytes that are not UTF-8, terminal
escapes, newlines, 250-byte names, NFC/NFD twins), links of every kind, FIFOs, sockets, unreadable
files and hidden entries.  Each file comes with a :class:`Case` saying what the app must do with it:
use it, or skip it (at scan time or at decode time) with a reason that names what is wrong.

A name holding a NUL byte cannot exist on Linux (or any system Python runs on), so it is not in the
corpus; a NUL in a path that comes from a crafted session file is covered by ``test_corpus.py``.
A file whose extension lies about a valid content (a PNG named ``.jpg``, one with no extension) is
*used*: the scan identifies images by their content, as documented in ``core/dataset.py``.

Every image is at most 64 pixels a side, so the whole corpus is a few hundred kilobytes and the
CLI clusters it in seconds.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image, features

# What the app must do with a file.
USE = "use"  # scanned, decoded to RGB, listed in the CSV
SKIP_SCAN = "skip-scan"  # left out by scan_folder, with ``reason`` in its ScanResult.skipped entry
SKIP_LOAD = "skip-load"  # kept by the (header-only) scan, refused by load_image with ``reason``
IGNORED = "ignored"  # not an image candidate at all (a hidden non-image, a file inside a skipped folder)
UNCHECKED = "unchecked"  # depends on the account running the test (a chmod 000 file read by root)


@dataclass(frozen=True)
class Case:
    """One entry of the corpus.

    Attributes
    ----------
    path : str
        Relative to the corpus folder, as Python spells the name (undecodable bytes as surrogate escapes).
    kind : str
        A short unique name for the kind of input ("png-truncated-in-idat", "symlink-dangling", ...).
    expect : str
        :data:`USE`, :data:`SKIP_SCAN`, :data:`SKIP_LOAD`, :data:`IGNORED` or :data:`UNCHECKED`.
    reason : str
        For a skip: a substring the reason must hold (specific to what is wrong with the file).
    size : (width, height), optional
        For a used image whose upright size is known (EXIF rotations swap it): what ``load_image`` gives.
    """

    path: str
    kind: str
    expect: str
    reason: str = ""
    size: Optional[tuple[int, int]] = None

    @property
    def used(self) -> bool:
        return self.expect == USE


# ---------------------------------------------------------------------------- file makers


def _encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def _picture(size: tuple[int, int] = (24, 16), mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A small picture with structure (a gradient and a square), so images differ and JPEG has real data."""
    width, height = size
    image = Image.new("RGB", size)
    pixels = [
        ((x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1), (seed * 53) % 256)
        for y in range(height)
        for x in range(width)
    ]
    image.putdata(pixels)
    if width > 4 and height > 4:
        image.paste((255 - (seed * 31) % 256, 40, 200), (width // 4, height // 4, width // 2, height // 2))
    return image.convert(mode) if mode != "RGB" else image


def _chunk(kind: bytes, data: bytes, crc: Optional[int] = None) -> bytes:
    checksum = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum & 0xFFFFFFFF)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def crafted_png(width: int, height: int, idat: Optional[bytes] = None, ihdr_crc: Optional[int] = None) -> bytes:
    """A PNG made byte by byte: any declared size (no pixels need exist), optionally a wrong IHDR checksum."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr, ihdr_crc)
    if idat is not None:
        body += _chunk(b"IDAT", idat)
    return _PNG_SIGNATURE + body + _chunk(b"IEND", b"")


def _jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``."""
    data = bytearray(_encode(_picture((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(_picture((24, 12), seed=orientation), "JPEG", exif=exif.tobytes())


def _broken_exif_jpeg() -> bytes:
    """A JPEG whose APP1 EXIF block is garbage: the picture must survive it."""
    clean = _encode(_picture((20, 20), seed=7), "JPEG")
    garbage = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0" + b"\x13" * 40
    app1 = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return clean[:2] + app1 + clean[2:]


def _animated_gif() -> bytes:
    frames = [_picture((20, 20), seed=i).convert("P") for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _multipage_tiff() -> bytes:
    pages = [_picture((20, 20), seed=i) for i in range(3)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    image = _picture((20, 20), seed=3).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _encode(image, "PNG", transparency=0)


def _sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (20, 20))
    image.putdata([(x * 3000 + y * 200) % 65536 for y in range(20) for x in range(20)])
    return _encode(image, "PNG")


def _float_tiff() -> bytes:
    image = Image.new("F", (20, 20))
    image.putdata([x / 20.0 + y / 40.0 for y in range(20) for x in range(20)])
    return _encode(image, "TIFF")


def _int32_tiff() -> bytes:
    image = Image.new("I", (20, 20))
    image.putdata([x * 100_000 + y for y in range(20) for x in range(20)])
    return _encode(image, "TIFF")


def _heif_encoder() -> bool:
    """Whether HEIC can be written here (pillow-heif, a default dependency, registers Pillow's HEIF writer)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _heic_rotated() -> bytes:
    """A 24x16 HEIC whose EXIF says "rotate 90 degrees clockwise" (as a phone held upright writes it)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_picture(seed=70), "HEIF", exif=exif.tobytes())


_TIFF_FORMATS = {1: "B", 3: "H", 4: "I"}  # BYTE, SHORT, LONG


def _tiff_ifd(entries: list[tuple[int, int, Any]], at: int) -> bytes:
    """One little-endian TIFF IFD written at offset ``at``, its out-of-line values right after it."""
    data_at = at + 2 + 12 * len(entries) + 4
    head, extra = struct.pack("<H", len(entries)), b""
    for tag, kind, values in sorted(entries, key=lambda e: e[0]):
        if kind == 2:  # ASCII
            payload = str(values).encode() + b"\0"
            count = len(payload)
        elif kind == 10:  # SRATIONAL pairs
            pairs = list(values)
            payload, count = b"".join(struct.pack("<ii", a, b) for a, b in pairs), len(pairs)
        else:
            numbers = list(values)
            payload, count = struct.pack("<" + _TIFF_FORMATS[kind] * len(numbers), *numbers), len(numbers)
        if len(payload) <= 4:
            field = payload.ljust(4, b"\0")
        else:
            field = struct.pack("<I", data_at + len(extra))
            extra += payload + b"\0" * (len(payload) % 2)
        head += struct.pack("<HHI", tag, kind, count) + field
    return head + struct.pack("<I", 0) + extra


def minimal_dng(
    width: int = 48,
    height: int = 32,
    orientation: int = 1,
    preview: Optional[Image.Image] = None,
    declared: Optional[tuple[int, int]] = None,
    seed: int = 0,
) -> bytes:
    """A real Adobe DNG that LibRaw develops: a 16-bit RGGB Bayer mosaic of a left-to-right ramp, uncompressed.

    Parameters
    ----------
    width, height : int
        The sensor's pixels (the half-size demosaic is ``width // 2`` x ``height // 2``).
    orientation : int
        The TIFF/EXIF orientation tag (6: the camera was turned 90 degrees clockwise).
    preview : PIL image, optional
        Embedded as the JPEG preview in IFD0 (the mosaic then lives in a SubIFD, as cameras write DNGs).
    declared : (width, height), optional
        The size the header claims, whatever pixels follow (crafted files).
    """
    rng = np.random.default_rng(seed)
    ramp = np.arange(width)[None, :].repeat(height, axis=0)
    mosaic = 2000 + 50000 * ramp / max(width - 1, 1) + rng.integers(0, 800, size=(height, width))
    raw = mosaic.astype("<u2").tobytes()
    jpeg = _encode(preview, "JPEG", quality=90) if preview is not None else b""
    declared_w, declared_h = declared or (width, height)
    identity = [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]
    common: list[tuple[int, int, Any]] = [
        (50706, 1, [1, 4, 0, 0]),  # DNGVersion
        (50708, 2, "imgcluster synthetic"),  # UniqueCameraModel
        (271, 2, "imgcluster"),
        (272, 2, "synthetic"),
        (274, 3, [orientation]),
        (50721, 10, identity),  # ColorMatrix1
        (50778, 3, [21]),  # CalibrationIlluminant1: D65
    ]

    def ifds(raw_at: int, jpeg_at: int, sub_at: int) -> list[list[tuple[int, int, Any]]]:
        mosaic_ifd: list[tuple[int, int, Any]] = [
            (254, 4, [0]), (256, 4, [declared_w]), (257, 4, [declared_h]), (258, 3, [16]), (259, 3, [1]),
            (262, 3, [32803]), (273, 4, [raw_at]), (277, 3, [1]), (278, 4, [declared_h]), (279, 4, [len(raw)]),
            (284, 3, [1]), (33421, 3, [2, 2]), (33422, 1, [0, 1, 1, 2]), (50717, 4, [65535]),
        ]  # fmt: skip
        if preview is None:
            return [mosaic_ifd + common]
        preview_ifd: list[tuple[int, int, Any]] = [
            (254, 4, [1]), (256, 4, [preview.width]), (257, 4, [preview.height]), (258, 3, [8, 8, 8]),
            (259, 3, [7]), (262, 3, [6]), (273, 4, [jpeg_at]), (277, 3, [3]), (278, 4, [preview.height]),
            (279, 4, [len(jpeg)]), (284, 3, [1]), (330, 4, [sub_at]),
        ]  # fmt: skip
        return [common + preview_ifd, mosaic_ifd]

    def assemble(raw_at: int, jpeg_at: int, sub_at: int) -> tuple[bytes, int, int, int]:
        out = bytearray(b"II*\0" + struct.pack("<I", 8))
        first, *rest = ifds(raw_at, jpeg_at, sub_at)
        out += _tiff_ifd(first, 8)
        for ifd in rest:
            out += b"\0" * (len(out) % 2)
            sub_at = len(out)
            out += _tiff_ifd(ifd, sub_at)
        out += b"\0" * (len(out) % 2)
        jpeg_at = len(out)
        out += jpeg + b"\0" * (len(jpeg) % 2)
        raw_at = len(out)  # the pixels last: a truncation cuts them, not the header
        return bytes(out + raw), raw_at, jpeg_at, sub_at

    _, raw_at, jpeg_at, sub_at = assemble(0, 0, 0)  # the IFDs' sizes do not depend on the offsets in them
    return assemble(raw_at, jpeg_at, sub_at)[0]


def _rawpy_installed() -> bool:
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------- the corpus


class _Builder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []
        self.kinds: set[str] = set()

    def add(
        self,
        relative: str,
        kind: str,
        expect: str,
        reason: str = "",
        data: Optional[bytes] = None,
        make: Optional[Callable[[Path], None]] = None,
        size: Optional[tuple[int, int]] = None,
    ) -> Optional[Case]:
        """Create ``relative`` (from ``data`` or by ``make``) and record what must happen to it."""
        assert kind not in self.kinds, f"duplicate kind {kind}"
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if make is not None:
                make(path)
            else:
                path.write_bytes(data if data is not None else b"")
        except (OSError, NotImplementedError):
            return None  # this system cannot make it (a socket path too long, no symlinks): not in the corpus
        case = Case(relative, kind, expect, reason, size)
        self.kinds.add(kind)
        self.cases.append(case)
        return case


def _make_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))  # leaves the socket file behind once closed
    finally:
        sock.close()


def build_corpus(folder: Path) -> list[Case]:
    """Write the corpus into ``folder`` (created if missing) and return one :class:`Case` per entry.

    Parameters
    ----------
    folder : Path
        An empty (or missing) folder; nothing is written outside it.

    Returns
    -------
    list of Case
        At least 80 distinct kinds; entries this system cannot make (a socket whose path is too
        long, a FIFO on Windows) are left out rather than faked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    b = _Builder(folder)
    photo = _encode(_picture(), "PNG")
    jpeg = _encode(_picture((32, 24), seed=1), "JPEG", quality=90)

    # --- valid images in every mode and container Pillow reads
    b.add("valid/rgb.png", "png-rgb", USE, data=photo, size=(24, 16))
    b.add("valid/rgba.png", "png-rgba", USE, data=_encode(_picture(mode="RGBA", seed=2), "PNG"))
    b.add("valid/la.png", "png-la", USE, data=_encode(_picture(mode="LA", seed=3), "PNG"))
    b.add("valid/l.png", "png-greyscale", USE, data=_encode(_picture(mode="L", seed=4), "PNG"))
    b.add("valid/one-bit.png", "png-1bit", USE, data=_encode(_picture(mode="1", seed=5), "PNG"))
    b.add("valid/palette-transparent.png", "png-palette-transparency", USE, data=_palette_with_transparency())
    b.add("valid/sixteen-bit.png", "png-i16", USE, data=_sixteen_bit_png(), size=(20, 20))
    b.add("valid/tiny.png", "png-1x1", USE, data=_encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"), size=(1, 1))
    b.add("valid/tiny.jpg", "jpeg-1x1", USE, data=_encode(Image.new("RGB", (1, 1), (200, 9, 9)), "JPEG"))
    b.add("valid/strip-50to1.png", "png-aspect-50", USE, data=_encode(_picture((50, 1), seed=6), "PNG"), size=(50, 1))
    b.add("valid/tall-1to50.png", "png-aspect-1-50", USE, data=_encode(_picture((1, 50), seed=7), "PNG"))
    b.add("valid/photo.jpg", "jpeg-baseline", USE, data=jpeg, size=(32, 24))
    b.add("valid/progressive.jpg", "jpeg-progressive", USE, data=_encode(_picture(seed=8), "JPEG", progressive=True))
    b.add("valid/grey.jpg", "jpeg-greyscale", USE, data=_encode(_picture(mode="L", seed=9), "JPEG"))
    b.add("valid/cmyk.jpg", "jpeg-cmyk", USE, data=_encode(_picture(mode="CMYK", seed=10), "JPEG"))
    b.add("valid/broken-exif.jpg", "jpeg-garbage-exif", USE, data=_broken_exif_jpeg(), size=(20, 20))
    for orientation in range(1, 9):
        upright = (12, 24) if orientation in (5, 6, 7, 8) else (24, 12)
        b.add(f"exif/orientation-{orientation}.jpg", f"jpeg-exif-orientation-{orientation}", USE,
              data=_exif_jpeg(orientation), size=upright)  # fmt: skip
    b.add("valid/palette.gif", "gif-palette", USE, data=_encode(_picture(seed=11).convert("P"), "GIF"))
    b.add("valid/animated.gif", "gif-animated", USE, data=_animated_gif(), size=(20, 20))
    b.add("valid/multipage.tif", "tiff-multipage", USE, data=_multipage_tiff(), size=(20, 20))
    b.add("valid/float.tif", "tiff-float", USE, data=_float_tiff())
    b.add("valid/int32.tif", "tiff-int32", USE, data=_int32_tiff())
    b.add("valid/cmyk.tif", "tiff-cmyk", USE, data=_encode(_picture(mode="CMYK", seed=12), "TIFF"))
    b.add("valid/picture.bmp", "bmp", USE, data=_encode(_picture(seed=13), "BMP"))
    b.add("valid/picture.ppm", "ppm", USE, data=_encode(_picture(seed=14), "PPM"))
    b.add("valid/picture.tga", "tga", USE, data=_encode(_picture(seed=15), "TGA"))
    b.add("valid/icon.ico", "ico", USE, data=_encode(_picture((32, 32), seed=16), "ICO"))
    if features.check("webp"):
        b.add("valid/lossy.webp", "webp-lossy", USE, data=_encode(_picture(seed=17), "WEBP"))
        b.add("valid/lossless.webp", "webp-lossless-alpha", USE,
              data=_encode(_picture(mode="RGBA", seed=18), "WEBP", lossless=True))  # fmt: skip
    b.add("valid/trailing-garbage.png", "png-garbage-after-iend", USE, data=photo + b"\x00garbage" * 20)

    # --- phone and camera formats (core/formats.py): HEIC through pillow-heif, AVIF, camera RAW through rawpy
    if _heif_encoder():
        heic = _heic_rotated()
        b.add("phone/IMG_0001.HEIC", "heic-exif-rotated", USE, data=heic, size=(16, 24))
        b.add("phone/header-only.heic", "heic-truncated-in-header", SKIP_SCAN, "corrupt or truncated HEIF file",
              heic[:60])  # fmt: skip
        b.add("phone/half.heic", "heic-truncated-half", SKIP_SCAN, "corrupt or truncated HEIF file",
              heic[: len(heic) // 2])  # fmt: skip
        b.add("phone/ftyp-only.heic", "heic-ftyp-box-only", SKIP_SCAN, "corrupt or truncated HEIF file",
              b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")  # fmt: skip
    if features.check("avif"):
        b.add("phone/picture.avif", "avif", USE, data=_encode(_picture(seed=71), "AVIF"), size=(24, 16))
    raw_missing = "camera RAW needs the optional 'raw' extra"
    if _rawpy_installed():
        dng = minimal_dng()
        b.add("camera/IMG_0002.DNG", "dng-demosaic", USE, data=dng, size=(24, 16))
        b.add("camera/with-preview.dng", "dng-embedded-jpeg-rotated", USE,
              data=minimal_dng(orientation=6, preview=_picture((64, 48), seed=72)), size=(48, 64))  # fmt: skip
        b.add("camera/random.cr2", "random-bytes-named-cr2", SKIP_SCAN, "not a camera RAW file LibRaw can read",
              bytes(range(256)) * 8)  # fmt: skip
        b.add("camera/text.nef", "text-named-nef", SKIP_SCAN, "not a camera RAW file LibRaw can read",
              b"not a raw file\n" * 40)  # fmt: skip
        b.add("camera/truncated.dng", "dng-truncated-in-pixels", SKIP_LOAD, "truncated or corrupt camera RAW data",
              dng[:-1500])  # fmt: skip
        b.add("camera/strip.dng", "dng-aspect-100", SKIP_SCAN, "extreme aspect ratio",
              minimal_dng(declared=(4000, 40)))  # fmt: skip
        b.add("camera/bomb.dng", "dng-decompression-bomb", SKIP_SCAN, "decompression-bomb",
              minimal_dng(declared=(60_000, 60_000)))  # fmt: skip
    else:
        b.add("camera/IMG_0002.DNG", "dng-without-rawpy", SKIP_SCAN, raw_missing, data=minimal_dng())
        b.add("camera/random.cr2", "random-bytes-named-cr2", SKIP_SCAN, raw_missing, bytes(range(256)) * 8)

    # --- the content decides, not the name (documented in core/dataset.py): a lying extension is used
    b.add("named/really-a-png.jpg", "png-named-jpg", USE, data=_encode(_picture(seed=19), "PNG"))
    b.add("named/no-extension", "png-without-extension", USE, data=_encode(_picture(seed=20), "PNG"))
    b.add("named/UPPER.JPEG", "jpeg-uppercase-extension", USE, data=_encode(_picture(seed=21), "JPEG"))
    b.add("named/photo.png.txt", "png-named-txt", USE, data=_encode(_picture(seed=22), "PNG"))

    # --- not images at all, whatever the name says
    not_image = "not an image Pillow can read (content does not match"
    b.add("fake/notes.jpg", "text-named-jpg", SKIP_SCAN, f"{not_image} '.jpg'", b"just some notes\n" * 10)
    b.add("fake/page.png", "html-named-png", SKIP_SCAN, f"{not_image} '.png'", b"<!doctype html><html></html>\n")
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    b.add("fake/document.jpg", "pdf-named-jpg", SKIP_SCAN, f"{not_image} '.jpg'", pdf)
    b.add("fake/archive.gif", "zip-named-gif", SKIP_SCAN, f"{not_image} '.gif'", b"PK\x03\x04" + b"\x00" * 40)
    b.add("fake/script.sh", "shell-script", SKIP_SCAN, "not an image", b"#!/bin/sh\necho hi\n")
    b.add("fake/random.dat", "random-bytes", SKIP_SCAN, "not an image", bytes(range(256)) * 4)
    b.add("fake/empty.png", "empty-png", SKIP_SCAN, "empty file (0 bytes)", b"")
    b.add("fake/empty.jpg", "empty-jpg", SKIP_SCAN, "empty file (0 bytes)", b"")
    b.add("fake/empty-name", "empty-no-extension", SKIP_SCAN, "empty file (0 bytes)", b"")

    # --- truncations: inside the header they are refused by the scan, inside the pixels by the decoder
    b.add("truncated/png-signature-only.png", "png-signature-only", SKIP_SCAN, "truncated PNG header", photo[:8])
    b.add("truncated/png-in-ihdr.png", "png-truncated-in-ihdr", SKIP_SCAN, "truncated image header", photo[:20])
    idat_at = photo.index(b"IDAT")
    b.add("truncated/png-before-idat.png", "png-truncated-before-idat", SKIP_SCAN, "truncated PNG header",
          photo[: idat_at - 4])  # fmt: skip
    b.add("truncated/png-in-idat.png", "png-truncated-in-idat", SKIP_LOAD, "truncated", photo[: idat_at + 30])
    b.add("truncated/png-half.png", "png-truncated-half", SKIP_LOAD, "truncated", photo[: len(photo) // 2])
    # Two bytes are no signature Pillow knows (it needs FF D8 FF): "not an image", named by its extension.
    b.add("truncated/jpeg-soi-only.jpg", "jpeg-soi-only", SKIP_SCAN, f"{not_image} '.jpg'", jpeg[:2])
    b.add("truncated/jpeg-3-bytes.jpg", "jpeg-signature-only", SKIP_SCAN, "truncated JPEG header", jpeg[:3])
    b.add("truncated/jpeg-in-tables.jpg", "jpeg-truncated-in-tables", SKIP_SCAN, "truncated image header", jpeg[:100])
    sos = jpeg.index(b"\xff\xda")
    b.add("truncated/jpeg-after-sos.jpg", "jpeg-truncated-after-sos", SKIP_LOAD, "truncated", jpeg[: sos + 20])
    b.add("truncated/jpeg-no-eoi.jpg", "jpeg-missing-eoi", SKIP_LOAD, "truncated", jpeg[:-2])
    b.add("truncated/jpeg-half.jpg", "jpeg-truncated-half", SKIP_LOAD, "truncated", jpeg[: (sos + len(jpeg)) // 2])
    gif = _encode(_picture(seed=23).convert("P"), "GIF")
    b.add("truncated/gif-half.gif", "gif-truncated", SKIP_SCAN, "truncated GIF header", gif[: len(gif) // 2])
    tiff = _encode(_picture(seed=24), "TIFF")
    b.add("truncated/tiff-half.tif", "tiff-truncated", SKIP_LOAD, "truncated", tiff[: len(tiff) // 2])
    bmp = _encode(_picture(seed=25), "BMP")
    b.add("truncated/bmp-half.bmp", "bmp-truncated", SKIP_LOAD, "truncated", bmp[: len(bmp) // 2])

    # --- crafted headers
    # A PNG's pixels lost past the end are "truncated"; present but not a deflate stream, "corrupt".
    b.add("truncated/png-no-iend.png", "png-missing-iend", USE, data=photo[:-12])  # every pixel is there
    garbage_pixels = b"\x78\x9c" + b"\x17garbage pixel data" * 4
    b.add("crafted/garbage-after-header.png", "png-garbage-idat", SKIP_LOAD, "corrupt image data",
          crafted_png(16, 16, idat=garbage_pixels))  # fmt: skip
    # JPEG entropy data has no checksum: zeros after a valid header decode to a (flat) picture in Pillow, as in
    # every viewer, so the app cannot tell it from a real one and uses it (documented, not a silent failure).
    b.add("crafted/jpeg-garbage-after-header.jpg", "jpeg-zeros-after-header", USE,
          data=jpeg[: sos + 12] + bytes(200) + b"\xff\xd9")  # fmt: skip
    b.add("crafted/bad-ihdr-crc.png", "png-bad-ihdr-crc", SKIP_SCAN, "corrupt PNG header",
          crafted_png(16, 16, idat=zlib.compress(bytes(16 * 49)), ihdr_crc=0x12345678))  # fmt: skip
    b.add("crafted/zero-width.png", "png-zero-width", SKIP_SCAN, "image has no pixels (0x16)", crafted_png(0, 16))
    b.add("crafted/zero-height.png", "png-zero-height", SKIP_SCAN, "image has no pixels (16x0)", crafted_png(16, 0))
    b.add("crafted/bomb.png", "png-decompression-bomb", SKIP_SCAN, "decompression-bomb",
          crafted_png(40_000, 40_000, idat=zlib.compress(bytes(120_001) * 4)))  # fmt: skip
    b.add("crafted/strip-1x60000.png", "png-1x60000", SKIP_SCAN, "extreme aspect ratio", crafted_png(1, 60_000))
    b.add("crafted/strip-2x65000.png", "png-2x65000", SKIP_SCAN, "extreme aspect ratio", crafted_png(2, 65_000))
    b.add("crafted/strip-51to1.png", "png-aspect-51", SKIP_SCAN, "extreme aspect ratio",
          _encode(_picture((51, 1)), "PNG"))  # fmt: skip
    b.add("crafted/strip-1x60000.jpg", "jpeg-1x60000", SKIP_SCAN, "extreme aspect ratio", _jpeg_with_size(1, 60_000))
    b.add("crafted/jpeg-bomb.jpg", "jpeg-65000x65000", SKIP_SCAN, "decompression-bomb", _jpeg_with_size(65_000, 65_000))

    # --- odd names: every one a valid image that must be used (and printed escaped)
    odd_names = {
        "name-not-utf8": os.fsdecode(b"caf\xe9-latin1.png"),
        "name-ansi-escape": "ansi\x1b[31mred\x1b[0m.png",
        "name-osc-title": "osc\x1b]0;pwned\x07.png",
        "name-newline": "line\nImages:      999 used.png",
        "name-carriage-return": "carriage\rreturn.png",
        "name-tab": "tab\tname.png",
        "name-leading-dash": "-rf.png",
        "name-leading-equals": "=HYPERLINK(1).png",
        "name-spaces": " spaced  name .png",
        "name-250-bytes": "L" * 246 + ".png",
        "name-nfc": "caf\u00e9-unicode.png",
        "name-nfd": "cafe\u0301-unicode.png",
        "name-emoji": "\U0001f600 smile.png",
        "name-rtl-override": "gpj\u202e.png",
        "name-backslash": "back\\slash.png",
        "name-quotes": "quote\"and'apostrophe.png",
        "name-glob-chars": "glob[*?].png",
    }
    for i, (kind, name) in enumerate(odd_names.items()):
        b.add(f"names/{name}", kind, USE, data=_encode(_picture(seed=30 + i), "PNG"))
    b.add(os.fsdecode(b"names/folder-\xff/inside.png"), "folder-not-utf8", USE, data=_encode(_picture(seed=50), "PNG"))
    b.add("names/ansi\x1b[2J-folder/inside.png", "folder-ansi-escape", USE, data=_encode(_picture(seed=51), "PNG"))
    b.add("names/" + "/".join(f"d{i}" for i in range(30)) + "/deep.png", "deep-folders", USE,
          data=_encode(_picture(seed=52), "PNG"))  # fmt: skip
    b.add("names/looks-like.png/inside.png", "folder-named-png", USE, data=_encode(_picture(seed=53), "PNG"))

    # --- links
    target = folder / "valid" / "rgb.png"
    b.add("links/to-image.png", "symlink-absolute-to-image", USE, make=lambda p: p.symlink_to(target))
    b.add("links/relative.png", "symlink-relative-to-image", USE, make=lambda p: p.symlink_to("../valid/photo.jpg"))
    b.add("links/chain.png", "symlink-chain", USE, make=lambda p: p.symlink_to("to-image.png"))
    b.add("links/hard.png", "hard-link", USE, make=lambda p: os.link(folder / "valid" / "la.png", p))
    b.add("links/to-folder", "symlink-to-folder", SKIP_SCAN, "symbolic link to a folder (not followed)",
          make=lambda p: p.symlink_to(folder / "valid", target_is_directory=True))  # fmt: skip
    b.add("links/up-loop", "symlink-to-parent-folder", SKIP_SCAN, "symbolic link to a folder (not followed)",
          make=lambda p: p.symlink_to("..", target_is_directory=True))  # fmt: skip
    b.add("links/dangling.png", "symlink-dangling", SKIP_SCAN, "broken symbolic link",
          make=lambda p: p.symlink_to("no-such-file.png"))  # fmt: skip
    b.add("links/self-loop.png", "symlink-to-itself", SKIP_SCAN, "symbolic link cannot be followed",
          make=lambda p: p.symlink_to("self-loop.png"))  # fmt: skip
    b.add("links/ping.png", "symlink-pair-loop", SKIP_SCAN, "symbolic link cannot be followed",
          make=lambda p: (p.symlink_to("pong.png"), (p.parent / "pong.png").symlink_to("ping.png")))  # fmt: skip
    b.cases.append(Case("links/pong.png", "symlink-pair-loop-other", SKIP_SCAN, "symbolic link cannot be followed"))
    b.add("links/to-text.jpg", "symlink-to-non-image", SKIP_SCAN, f"{not_image} '.jpg'",
          make=lambda p: p.symlink_to("../fake/notes.jpg"))  # fmt: skip
    b.add("links/to-empty.png", "symlink-to-empty-file", SKIP_SCAN, "empty file (0 bytes)",
          make=lambda p: p.symlink_to("../fake/empty.png"))  # fmt: skip
    if hasattr(os, "mkfifo"):
        b.add("special/pipe.png", "fifo", SKIP_SCAN, "not a regular file", make=lambda p: os.mkfifo(p))
        b.add("links/to-fifo.png", "symlink-to-fifo", SKIP_SCAN, "symbolic link to a FIFO (named pipe)",
              make=lambda p: p.symlink_to("../special/pipe.png"))  # fmt: skip
    if hasattr(socket, "AF_UNIX"):
        b.add("special/socket.png", "socket", SKIP_SCAN, "not a regular file", make=_make_socket)
    b.add("links/to-dev-null.png", "symlink-to-device", SKIP_SCAN, "symbolic link to a device",
          make=lambda p: p.symlink_to(os.devnull))  # fmt: skip

    # --- permissions (root reads everything: there the outcome is not checked)
    root_account = hasattr(os, "geteuid") and os.geteuid() == 0

    def unreadable(p: Path) -> None:
        p.write_bytes(_encode(_picture(seed=60), "PNG"))
        p.chmod(0)

    def closed_folder(p: Path) -> None:
        p.mkdir()
        (p / "inside.png").write_bytes(_encode(_picture(seed=61), "PNG"))
        p.chmod(0)

    b.add("perm/unreadable.png", "unreadable-file", UNCHECKED if root_account else SKIP_SCAN, "permission denied",
          make=unreadable)  # fmt: skip
    b.add("perm/closed", "unreadable-folder", UNCHECKED if root_account else SKIP_SCAN,
          "permission denied (folder not scanned)", make=closed_folder)  # fmt: skip

    # --- hidden entries: never used; an image-named one and a dot-folder get one line each
    b.add(".hidden.png", "hidden-image", SKIP_SCAN, "hidden file (name starts with '.')",
          data=_encode(_picture(seed=62), "PNG"))  # fmt: skip
    b.add("valid/._IMG_0001.jpg", "appledouble", SKIP_SCAN, "hidden file (name starts with '.')", b"\x00\x05\x16\x07")
    b.add(".DS_Store", "hidden-non-image", IGNORED, data=b"\x00\x00\x00\x01Bud1")
    b.add(".thumbnails/thumb.png", "hidden-folder-content", IGNORED, data=_encode(_picture(seed=63), "PNG"))
    b.cases.append(Case(".thumbnails", "hidden-folder", SKIP_SCAN, "hidden folder (not scanned)"))
    b.add("empty-folder/.keep", "folder-without-images", IGNORED)
    return b.cases
