"""Find the images in a folder, decode them safely, and read ground-truth labels.

Scanning keeps a file when Pillow recognises its *content* (a header parse, no pixel decode),
whatever its extension: a ``.jpg`` that is really text is skipped, a PNG without an extension
is kept.  Every file left out is reported in :attr:`ScanResult.skipped` with a reason a person
can act on; nothing aborts a scan except a root folder that cannot be scanned at all
(:class:`DatasetError`).

Full decoding happens later, in :func:`load_image`, which turns any mode Pillow reads
(palette, alpha, CMYK, 16-bit, greyscale) into an EXIF-upright RGB image, or raises
:class:`ImageLoadError` whose message is the reason.  The pixels are decoded before anything else
is read from them (EXIF included), so broken pixel data is always an error, never a black image.

Images more than :data:`MAX_ASPECT_RATIO` times longer than wide (or wider than tall) are refused
by both, from the header: resizing a 1x60000 strip so its short side fits a network input makes a
picture of gigabytes, and such a strip (a separator line, a spacer, a crafted file) is no photo.

Pillow's warnings (a decompression-bomb warning, corrupt EXIF) are passed on with the file's name
in front, so a person knows which file they are about.

Pillow's global settings (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) are
read, never changed: the decompression-bomb limit is the one Pillow enforces, so an application
that raises it on purpose gets what it asked for.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence, TextIO, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from . import formats
from .progress import ProgressLike, check, ensure
from .text import printable_path

PathLike = Union[str, os.PathLike]

# Extensions used when ``check_content=False`` and to explain why a known image type could not be read.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".dib",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".ico",
        ".jp2",
        ".j2k",
        ".jpx",
        ".pcx",
        ".sgi",
        ".dds",
        ".heic",
        ".heif",
        ".avif",
        ".psd",
        ".qoi",
    }
)
IMAGE_EXTENSIONS |= formats.HEIF_EXTENSIONS | formats.AVIF_EXTENSIONS | formats.RAW_EXTENSIONS

# HEIC/HEIF open through Pillow from here on (scan, feature loader, thumbnails, preview): phone photos are HEIC.
formats.register_openers()

# Formats Pillow can shrink while decoding (JPEG DCT scaling), so a huge photo is still cheap.
_DRAFT_FORMATS = frozenset({"JPEG", "MPO"})

# How many directory entries between two cancel checks while walking.
_HEARTBEAT_EVERY = 500

# The longest side may be at most this many times the shortest (see the module docstring): a
# 50:1 panorama resized to a 256-pixel short side is still only 256x12800 pixels.
MAX_ASPECT_RATIO = 50

# Formats with a distinctive signature (3 bytes or more; not BMP's "BM"): a file that starts like one
# of them but that Pillow cannot open has a corrupt header (it is not "some other kind of file").
_SIGNATURE_FORMATS = ("PNG", "JPEG", "GIF", "TIFF", "WEBP", "JPEG2000", "ICO", "PSD", "QOI")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class DatasetError(Exception):
    """The folder (or labels file) cannot be used at all; ``str(e)`` is a one-line explanation."""


class ImageLoadError(Exception):
    """One image cannot be decoded; ``str(e)`` is the user-facing reason."""


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a run and why (``path`` is a str so it serialises as-is)."""

    path: str
    reason: str


@dataclass
class ScanResult:
    """The images found under ``root`` (sorted) and every file left out, with its reason."""

    root: Path
    paths: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


# --------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------


def pixel_limit() -> Optional[int]:
    """The largest image (in pixels) Pillow agrees to open, or ``None`` when the limit is off.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` and refuses above twice that; we use the refusal
    threshold, read at call time, so a user who changes Pillow's limit changes ours.
    """
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else int(2 * limit)


def _too_large_reason(width: int, height: int, limit: int) -> str:
    return (
        f"image too large: {width}x{height} = {width * height / 1e6:.0f} MP exceeds the "
        f"{limit / 1e6:.0f} MP safety limit (decompression-bomb protection)"
    )


def _size_problem(width: int, height: int, max_pixels: Optional[int]) -> Optional[str]:
    """Why an image of this declared size is refused (shape, then the pixel limit), or ``None``."""
    limit = max_pixels if max_pixels is not None else pixel_limit()
    if limit is not None and width * height > limit:
        return _shape_reason(width, height) or _too_large_reason(width, height, limit)
    return _shape_reason(width, height)


def _shape_reason(width: int, height: int) -> Optional[str]:
    """Why an image of this declared size is refused (no pixels, extreme aspect ratio), or ``None``."""
    if width <= 0 or height <= 0:
        return f"image has no pixels ({width}x{height})"
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        return (
            f"extreme aspect ratio: {width}x{height} is {ratio:.0f}:1, above the {MAX_ASPECT_RATIO}:1 limit "
            "(resizing it for the network would take gigabytes of memory)"
        )
    return None


# ``warnings.showwarning`` is process-wide: one thread at a time swaps it.
_WARNINGS_LOCK = threading.Lock()
_PILLOW_FOLDER = os.path.dirname(Image.__file__)


def _fresh_warnings_lock() -> None:
    # A DataLoader worker forked while a thumbnail thread held the lock would otherwise wait for it forever.
    global _WARNINGS_LOCK
    _WARNINGS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_warnings_lock)


@contextmanager
def _pillow_warnings_named(path: Path) -> Iterator[None]:
    """Show the warnings Pillow gives inside the block (in this thread) with the file's name in front.

    The display hook is wrapped rather than ``warnings.catch_warnings`` used: that one resets every
    warning's "shown once" memory on each call, so other code's warnings would repeat for each image.
    Filters apply as usual (a warning is still Pillow's, from Pillow's line).  Only cheap steps run
    inside (header parse, EXIF, conversion), never the pixel decode, so the lock does not serialise
    the thumbnail threads.
    """
    name = printable_path(path)
    with _WARNINGS_LOCK:
        previous = warnings.showwarning
        owner = threading.get_ident()
        active = [True]

        def show(
            message: Union[Warning, str],
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Optional[TextIO] = None,
            line: Optional[str] = None,
        ) -> None:
            if active[0] and threading.get_ident() == owner and os.path.dirname(filename) == _PILLOW_FOLDER:
                message = f"{name}: {message}"
            previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            yield
        finally:
            active[0] = False
            if warnings.showwarning is show:  # unless another thread's catch_warnings put its own in meanwhile
                warnings.showwarning = previous


def _corrupt_header_reason(fh: BinaryIO) -> Optional[str]:
    """Why Pillow cannot open a file that starts like an image format it knows, or ``None``.

    ``Image.open`` says only "cannot identify image file" whatever went wrong; a PNG whose header
    checksum is bad is not "some other kind of file", so the matching plug-in is asked again for
    its own error.
    """
    fh.seek(0)
    head = fh.read(32)
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if width == 0 or height == 0:
            return f"image has no pixels ({width}x{height})"
    Image.init()
    for image_format in _SIGNATURE_FORMATS:
        factory, accept = Image.OPEN.get(image_format, (None, None))
        if factory is None or accept is None or not accept(head[:16]):
            continue
        fh.seek(0)
        try:
            factory(fh, "").close()
        except Exception as exc:  # the plug-in's own reason (SyntaxError, struct.error, ...)
            # A plug-in that read up to the end of the file failed for want of bytes: its own words for
            # that ("unpack_from requires a buffer of at least 4 bytes") say nothing to a person.
            stopped_at = fh.tell()
            size = fh.seek(0, io.SEEK_END)
            if stopped_at >= size:
                return f"truncated {image_format} header: the file ends after {size} bytes"
            detail = str(exc)
            if not detail or detail == "not identified by this driver":
                detail = "its header gives no usable size or mode"
            return f"corrupt {image_format} header: {detail}"
        return f"corrupt {image_format} header"
    return None


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _display(path: Union[str, Path]) -> str:
    """A path as text, with undecodable bytes kept as escapes (not lost, not crashing a print)."""
    return os.fspath(path)


def _identify(path: Path, max_pixels: Optional[int]) -> Optional[str]:
    """Return ``None`` when Pillow can identify ``path`` as an image, else the reason it cannot.

    Only the header is parsed (``Image.open`` is lazy), which keeps a 100k-file scan quick; broken
    pixel data is found later by :func:`load_image`.
    """
    try:
        size = path.stat().st_size
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    if size == 0:
        return "empty file (0 bytes)"
    if formats.is_raw_path(path):  # LibRaw reads the header (Pillow would take a RAW's small TIFF preview)
        return formats.identify_raw(path, lambda w, h: _size_problem(w, h, max_pixels))
    try:
        with open(path, "rb") as fh, _pillow_warnings_named(path):
            try:
                im = Image.open(fh)
            except UnidentifiedImageError:
                corrupt = _corrupt_header_reason(fh) or formats.heif_header_problem(fh)
                corrupt = corrupt or formats.missing_support_reason(path)
                if corrupt is not None:
                    return corrupt
                ext = path.suffix.lower()
                if ext in IMAGE_EXTENSIONS:
                    return (
                        f"not an image Pillow can read (content does not match '{ext}', or the format needs a plug-in)"
                    )
                return "not an image"
            with im:
                width, height = im.size
                image_format = im.format
    except PermissionError:
        return "permission denied"
    except Image.DecompressionBombError as exc:
        return f"image too large (decompression-bomb protection): {exc}"
    except Exception as exc:  # Pillow plug-ins raise many types on malformed headers
        return f"corrupt or truncated image header ({type(exc).__name__}: {exc})"
    shape = _shape_reason(width, height)
    if shape is not None:
        return shape
    limit = max_pixels if max_pixels is not None else pixel_limit()
    if limit is not None and image_format not in _DRAFT_FORMATS and width * height > limit:
        return _too_large_reason(width, height, limit)
    return None


def _walk(
    root: Path, recursive: bool, follow_symlinks: bool, skipped: list[SkippedFile], progress: ProgressLike
) -> list[Path]:
    """Every candidate file under ``root`` (hidden entries left out), depth-first, loop-safe."""
    files: list[Path] = []
    root_stat = root.stat()
    visited_dirs = {(root_stat.st_dev, root_stat.st_ino)}
    stack = [root]
    seen_entries = 0
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            skipped.append(SkippedFile(_display(folder), "permission denied (folder not scanned)"))
            continue
        except OSError as exc:
            skipped.append(SkippedFile(_display(folder), f"folder not scanned: {exc.strerror or exc}"))
            continue
        subfolders = []
        for entry in entries:
            seen_entries += 1
            if seen_entries % _HEARTBEAT_EVERY == 0:
                check(progress, f"listing files ({seen_entries})")
            path = Path(entry.path)
            if _is_hidden(entry.name):
                # Dot-folders (.git, .thumbnails) hold thousands of non-images: one line for the folder,
                # and a line for a hidden file only when its name says "image" (macOS '._IMG.jpg').
                try:
                    hidden_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    hidden_dir = False
                if hidden_dir:
                    skipped.append(SkippedFile(_display(path), "hidden folder (not scanned)"))
                elif path.suffix.lower() in IMAGE_EXTENSIONS:
                    skipped.append(SkippedFile(_display(path), "hidden file (name starts with '.')"))
                continue
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError as exc:
                # A link to itself (ELOOP) fails here, before the link branch below could word it.
                reason = _link_reason(path) if _is_link(entry) else f"cannot read entry: {exc.strerror or exc}"
                skipped.append(SkippedFile(_display(path), reason))
                continue
            if is_dir:
                if not recursive:
                    continue
                if is_link and not follow_symlinks:
                    skipped.append(SkippedFile(_display(path), "symbolic link to a folder (not followed)"))
                    continue
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError as exc:
                    skipped.append(SkippedFile(_display(path), f"folder not scanned: {exc.strerror or exc}"))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in visited_dirs:
                    skipped.append(
                        SkippedFile(_display(path), "folder already scanned (symbolic link loop or duplicate)")
                    )
                    continue
                visited_dirs.add(key)
                subfolders.append(path)
            elif is_file:
                files.append(path)
            elif is_link:
                skipped.append(SkippedFile(_display(path), _link_reason(path)))
            else:
                # Sockets, FIFOs, devices: opening a FIFO would block forever.
                skipped.append(SkippedFile(_display(path), "not a regular file"))
        stack.extend(reversed(subfolders))
    return files


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()  # an lstat: never follows the link, so a loop cannot fail it
    except OSError:
        return False


def _link_reason(path: Path) -> str:
    """Why a symbolic link that leads to neither a file nor a folder is skipped."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link"
    except OSError as exc:  # ELOOP: a link to itself; EACCES: a folder on the way is closed
        return f"symbolic link cannot be followed: {exc.strerror or exc}"
    if stat.S_ISFIFO(mode):
        kind = "a FIFO (named pipe)"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    else:
        kind = "something that is not a regular file"
    return f"symbolic link to {kind}, not a regular file"


def _check_root(folder: PathLike) -> Path:
    try:
        root = Path(os.fsdecode(folder)).expanduser()
    except TypeError:
        raise DatasetError(f"Not a folder path: {folder!r}") from None
    if not root.exists():
        raise DatasetError(f"Folder not found: {_display(root)}")
    if not root.is_dir():
        raise DatasetError(f"Not a folder (it is a file): {_display(root)}")
    try:
        with os.scandir(root) as it:
            next(it, None)
    except PermissionError:
        raise DatasetError(f"Permission denied: cannot list the folder {_display(root)}") from None
    except OSError as exc:
        raise DatasetError(f"Cannot list the folder {_display(root)}: {exc.strerror or exc}") from None
    return root


def scan_folder(
    folder: PathLike,
    recursive: bool = True,
    follow_symlinks: bool = False,
    check_content: bool = True,
    progress: ProgressLike = None,
    max_pixels: Optional[int] = None,
) -> ScanResult:
    """List the images under ``folder`` in a deterministic (sorted) order.

    Parameters
    ----------
    folder : str or path-like
        The folder to scan.
    recursive : bool
        Descend into sub-folders (hidden dot-folders such as ``.git`` are never entered).
    follow_symlinks : bool
        Enter symbolic links to folders.  Even then a folder is entered once, so link loops end.
        Symbolic links to *files* are always kept.
    check_content : bool
        Identify each file from its header with Pillow (no pixel decode).  When ``False`` only
        the extension is looked at (quicker on slow network drives, but trusts the names).
    progress : callable, optional
        a progress consumer (``ProgressEvent`` receiver) or ``Progress``; raising
        :class:`~imgcluster_gui.core.progress.Cancelled` stops the scan.
    max_pixels : int, optional
        Refuse images larger than this; default Pillow's own refusal threshold (see :func:`pixel_limit`).

    Returns
    -------
    ScanResult
        ``paths`` sorted, ``skipped`` with one reason per file left out.

    Raises
    ------
    DatasetError
        ``folder`` does not exist, is a file, cannot be listed, or is empty.
    """
    report = ensure(progress)
    root = _check_root(folder)
    skipped: list[SkippedFile] = []
    report(0.0, "listing files")
    candidates = _walk(root, recursive, follow_symlinks, skipped, progress)
    if not candidates and not skipped:
        raise DatasetError(f"The folder is empty: {_display(root)}")
    candidates.sort()
    kept: list[Path] = []
    n = len(candidates)
    # Report about 100 times over the whole scan, whatever its size.
    step = max(1, n // 100)
    for i, path in enumerate(candidates):
        if i % step == 0:
            report(0.05 + 0.95 * i / max(n, 1), "checking images", done=i, total=n, unit="images")
        if check_content:
            reason = _identify(path, max_pixels)
        else:
            reason = None if path.suffix.lower() in IMAGE_EXTENSIONS else "not an image extension"
        if reason is None:
            kept.append(path)
        else:
            skipped.append(SkippedFile(_display(path), reason))
    skipped.sort(key=lambda s: s.path)
    report(1.0, f"found {len(kept)} images")
    return ScanResult(root=root, paths=kept, skipped=skipped)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

_WHITE = (255, 255, 255)
_ORIENTATION_TAG = int(ExifTags.Base.Orientation)
# EXIF orientations that swap width and height (rotations by 90 or 270 degrees).
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def _composite_on_white(im: Image.Image) -> Image.Image:
    """Flatten transparency onto white: transparent pixels often hold black or garbage colours."""
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _scale_to_uint8(values: np.ndarray, full_scale: Optional[float]) -> np.ndarray:
    """Map high-bit-depth samples to 0..255, by the format's full scale or else by their range."""
    values = values.astype(np.float64)
    if full_scale is None:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    else:
        values = values / full_scale
    return (np.clip(np.nan_to_num(values), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Palette and alpha images are composited on white; 16-bit greyscale is scaled (not clipped)
    to 8 bits; 32-bit integer and float images are scaled by their range unless they already
    fit 16 or 8 bits; CMYK and other colour spaces go through Pillow's conversion.
    """
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette is not None and im.palette.mode == "RGBA"
        return _composite_on_white(im) if has_alpha else im.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composite_on_white(im)
    if mode.startswith("I;16"):
        grey = _scale_to_uint8(np.asarray(im), 65535.0)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in ("I", "F"):
        values = np.asarray(im)
        finite = values[np.isfinite(values)] if mode == "F" else values
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 0.0
        if mode == "F" and low >= 0.0 and high <= 1.0:
            full_scale: Optional[float] = 1.0
        elif low >= 0 and high <= 255:
            full_scale = 255.0
        elif low >= 0 and high <= 65535:
            full_scale = 65535.0  # the common case: a 16-bit PNG/TIFF Pillow opened as 'I'
        else:
            full_scale = None
        return Image.fromarray(_scale_to_uint8(values, full_scale), mode="L").convert("RGB")
    if mode == "1":
        return im.convert("L").convert("RGB")
    return im.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV


def _exif_orientation(im: Image.Image) -> int:
    # Call only on a decoded image or a JPEG (whose EXIF is in the header): for a PNG ``getexif``
    # decodes the pixels itself, and a decode error swallowed here would leave a black image behind.
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not lose the image
        return 1


def _not_regular_reason(mode: int) -> Optional[str]:
    """Why a file of ``mode`` (``st_mode``) is not read as an image, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not an image"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    return "is not a regular file"


def _nonblocking_opener(path: str, flags: int) -> int:
    # Opening a FIFO for reading blocks until a writer comes (forever, on the GUI thread of the
    # preview); non-blocking, it opens at once, and the fstat in _open_regular_file refuses it.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _open_regular_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading when it is a regular file (links followed); never blocks on a FIFO.

    Raises
    ------
    ImageLoadError
        A folder, FIFO, socket or device (checked before opening and again on the open file, so
        a file swapped in between is refused too), or a name with a NUL character.
    OSError
        The file is missing or unreadable (the caller words it).
    """
    try:
        reason = _not_regular_reason(os.stat(path).st_mode)
    except ValueError:  # an embedded NUL character (e.g. a crafted session file)
        raise ImageLoadError("invalid file name (contains a NUL character)") from None
    if reason is not None:
        raise ImageLoadError(reason)
    fh = open(path, "rb", opener=_nonblocking_opener)
    try:
        reason = _not_regular_reason(os.fstat(fh.fileno()).st_mode)
        if reason is not None:
            raise ImageLoadError(reason)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fh.fileno(), True)  # a regular file: reads as usual
    except BaseException:
        fh.close()
        raise
    return fh


def load_image(
    path: PathLike, draft_size: Optional[tuple[int, int]] = None, max_pixels: Optional[int] = None
) -> Image.Image:
    """Decode one image to an upright 8-bit RGB :class:`PIL.Image.Image`.

    Parameters
    ----------
    path : str or path-like
        The image file.
    draft_size : (width, height), optional
        The size the caller will resize to.  JPEGs are then decoded at the smallest DCT scale
        that is still at least this large (``Image.draft``): about 12x faster on 4000x3000
        photos, and a huge JPEG stays within ``max_pixels``.  The size is of the upright image.
    max_pixels : int, optional
        Refuse images larger than this (after draft scaling); default :func:`pixel_limit`.

    Returns
    -------
    PIL.Image.Image
        Mode ``'RGB'``, EXIF orientation applied, transparency composited on white.

    Raises
    ------
    ImageLoadError
        The only exception it raises (for any content of the file): the file is missing,
        unreadable, not a regular file (a folder, FIFO, socket or device: refused without
        reading, so a FIFO never blocks), not an image, truncated, corrupt (``"corrupt image data: ..."``), too large,
        or more than :data:`MAX_ASPECT_RATIO` times longer than wide; ``str(error)`` says which.
        Every pixel Pillow cannot decode is an error: a broken file never comes back as a
        black (or partly black) image, unless ``ImageFile.LOAD_TRUNCATED_IMAGES`` asks for it.
    """
    path = Path(os.fsdecode(path))
    limit = max_pixels if max_pixels is not None else pixel_limit()
    try:
        with _open_regular_file(path) as fh:
            if formats.is_raw_path(path):  # LibRaw: embedded preview or half-size demosaic, upright RGB
                return formats.load_raw(fh, draft_size, lambda w, h: _size_problem(w, h, limit))
            with _pillow_warnings_named(path):
                try:
                    im: Image.Image = Image.open(fh)
                except UnidentifiedImageError:
                    reason = _corrupt_header_reason(fh) or formats.heif_header_problem(fh)
                    raise ImageLoadError(reason or formats.missing_support_reason(path) or "not an image") from None
                shape = _shape_reason(*im.size)
                if shape is not None:
                    raise ImageLoadError(shape)
                orientation = 1
                if draft_size is not None and im.format in _DRAFT_FORMATS:
                    orientation = _exif_orientation(im)  # a JPEG's EXIF is in its header: nothing decoded yet
                    want_w, want_h = (int(v) for v in draft_size)
                    if orientation in _TRANSPOSING_ORIENTATIONS:
                        want_w, want_h = want_h, want_w  # the stored image is rotated relative to the shown one
                    im.draft("RGB", (want_w, want_h))
            width, height = im.size
            if limit is not None and width * height > limit:
                raise ImageLoadError(_too_large_reason(width, height, limit))
            # Decode first, here where its errors are caught: anything that reads the image before
            # (EXIF does, for a PNG) would swallow the error and leave a black image loaded.
            im.load()
            with _pillow_warnings_named(path):
                orientation = _exif_orientation(im)
    except ImageLoadError:
        raise
    except formats.FormatError as exc:
        raise ImageLoadError(str(exc)) from None
    except FileNotFoundError:
        raise ImageLoadError("file not found") from None
    except PermissionError:
        raise ImageLoadError("permission denied") from None
    except IsADirectoryError:
        raise ImageLoadError("is a folder, not an image") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"image too large (decompression-bomb protection): {exc}") from None
    except UnidentifiedImageError:
        raise ImageLoadError("not an image") from None
    except OSError as exc:
        message = str(exc) or type(exc).__name__
        if "truncated" in message.lower():
            raise ImageLoadError(f"truncated image file: {message}") from None
        raise ImageLoadError(f"corrupt image data: {message}") from None
    except Exception as exc:  # Pillow plug-ins raise SyntaxError, ValueError, struct.error, MemoryError, ...
        raise ImageLoadError(f"corrupt image data: {type(exc).__name__}: {exc}") from None

    try:
        if orientation != 1:
            with _pillow_warnings_named(path):  # it parses the EXIF block again (and warns about it)
                im = ImageOps.exif_transpose(im)
        if im.mode in ("P", "PA"):  # where Pillow warns (about palette transparency): small images, cheap
            with _pillow_warnings_named(path):
                return to_rgb(im)
        return to_rgb(im)  # outside the lock: compositing a large RGBA image is real work
    except Exception as exc:
        raise ImageLoadError(f"cannot convert to RGB ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


def _relative_parts(root: Path, path: Path) -> Optional[tuple[str, ...]]:
    try:
        return path.relative_to(root).parts
    except ValueError:
        pass
    try:
        return path.absolute().relative_to(root.absolute()).parts
    except ValueError:
        return None


def labels_from_subfolders(root: PathLike, paths: Sequence[PathLike]) -> Optional[list[Optional[str]]]:
    """Class of each image = its first-level sub-folder under ``root``.

    Parameters
    ----------
    root : str or path-like
        The scanned folder.
    paths : sequence of path-like, length n_images

    Returns
    -------
    list of str or None, length n_images; or None
        ``None`` when no image sits in a sub-folder (there is no ground truth).  Images directly
        in ``root`` or outside it get ``None`` entries (left out of external metrics).
    """
    root_path = Path(os.fsdecode(root))
    labels: list[Optional[str]] = []
    for p in paths:
        parts = _relative_parts(root_path, Path(os.fsdecode(p)))
        labels.append(parts[0] if parts is not None and len(parts) > 1 else None)
    if all(label is None for label in labels):
        return None
    return labels


_PATH_COLUMNS = ("path", "file", "filename", "image")
_LABEL_COLUMNS = ("label", "class", "category")


def _path_key(path: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def labels_from_csv(csv_path: PathLike, paths: Sequence[PathLike]) -> list[Optional[str]]:
    """Read ground-truth labels from a CSV with a header row holding ``path`` and ``label``.

    Paths in the CSV may be absolute or relative to the CSV's folder.  Comma, semicolon and tab
    delimiters are recognised; a UTF-8 byte-order mark (Excel) is accepted.

    Parameters
    ----------
    csv_path : str or path-like
    paths : sequence of path-like, length n_images

    Returns
    -------
    list of str or None, length n_images
        The label of each image; ``None`` where the CSV does not mention it or its label is empty.

    Raises
    ------
    DatasetError
        The file is missing or unreadable, has no ``path``/``label`` columns, a row has no path,
        or one path is given two different labels (the message names the line).
    """
    csv_file = Path(os.fsdecode(csv_path))
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"Labels CSV not found: {_display(csv_file)}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"Labels CSV is not UTF-8 text: {_display(csv_file)}") from None
    except OSError as exc:
        raise DatasetError(f"Cannot read the labels CSV {_display(csv_file)}: {exc.strerror or exc}") from None
    if not text.strip():
        raise DatasetError(f"Labels CSV is empty: {_display(csv_file)}")

    first_line = text.splitlines()[0]
    delimiter = max(",;\t", key=first_line.count) if any(c in first_line for c in ",;\t") else ","
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise DatasetError(f"Labels CSV {_display(csv_file)} is malformed: {exc}") from None
    header = [cell.strip().lower() for cell in rows[0]]
    path_col = next((header.index(c) for c in _PATH_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
    if path_col is None or label_col is None:
        raise DatasetError(
            f"Labels CSV {_display(csv_file)} needs a header row with columns 'path' and "
            f"'label'; found: {', '.join(rows[0]) or '(nothing)'}"
        )

    base = csv_file.parent
    by_path: dict[str, str] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(path_col, label_col):
            raise DatasetError(
                f"Labels CSV {_display(csv_file)}, line {line_number}: expected {len(header)} columns, found {len(row)}"
            )
        raw_path, label = row[path_col].strip(), row[label_col].strip()
        if not raw_path:
            raise DatasetError(f"Labels CSV {_display(csv_file)}, line {line_number}: empty path")
        key = _path_key(os.path.join(base, raw_path))
        if not label:
            continue
        if by_path.get(key, label) != label:
            raise DatasetError(
                f"Labels CSV {_display(csv_file)}, line {line_number}: '{raw_path}' has two "
                f"labels ('{by_path[key]}' and '{label}')"
            )
        by_path[key] = label

    labels: list[Optional[str]] = []
    for p in paths:
        text_path = os.fsdecode(p)
        found = by_path.get(_path_key(text_path))
        if found is None:
            found = by_path.get(_path_key(os.path.realpath(text_path)))
        labels.append(found)
    return labels
