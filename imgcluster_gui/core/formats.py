"""Image formats beyond Pillow's own plug-ins: HEIC/HEIF (pillow-heif), AVIF (Pillow) and camera RAW (rawpy).

Phone photos are HEIC and cameras write RAW, so a family folder is a mix of them and JPEGs; one run takes them all.

- **HEIC / HEIF** open through Pillow once `pillow-heif`'s opener is registered (:func:`register_openers`, called
  when :mod:`~imgcluster_gui.core.dataset` is imported, so the scan, the feature loader, the thumbnails and the
  preview all see it).  libheif applies the file's rotation (its ``irot``/``imir`` boxes, which is where a
  phone's EXIF orientation lives in HEIF) while decoding and sets the EXIF orientation to 1, so nothing is
  turned twice.
- **AVIF** is Pillow's own (Pillow >= 11.2 built with libavif).
- **Camera RAW** (CR2, CR3, NEF, ARW, DNG, RAF, ORF, RW2, PEF, SRW, ...) is read by LibRaw through the optional
  ``raw`` extra (`rawpy`), never by Pillow: most RAW files are TIFF containers whose first image is a small
  preview, which Pillow would take for the photo.  :func:`load_raw` uses the embedded JPEG preview when it is
  large enough for what is asked (fast: no demosaic) and a half-size demosaic otherwise; the camera's
  orientation is applied either way.  Without rawpy a RAW file is skipped with :data:`RAW_MISSING_REASON`.

The safety rules of :mod:`~imgcluster_gui.core.dataset` hold here too: the declared size is checked (the caller's
``size_problem``: pixel limit, :data:`~imgcluster_gui.core.dataset.MAX_ASPECT_RATIO`) from the header before any
pixel is decoded, an embedded preview is checked the same way, and every failure is a :class:`FormatError`
whose text is the reason a person reads (never a black image).
"""

from __future__ import annotations

import ctypes
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

from PIL import ExifTags, Image, features

PathLike = Union[str, os.PathLike]
#: ``size_problem(width, height)``: why an image of this declared size is refused, or None.
SizeProblem = Callable[[int, int], Optional[str]]

HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif", ".hif"})
AVIF_EXTENSIONS: frozenset[str] = frozenset({".avif", ".avifs"})
# LibRaw reads many more; these are the cameras people bring (Canon, Nikon, Sony, Adobe DNG, Fujifilm,
# Olympus/OM, Panasonic, Pentax, Samsung).
RAW_EXTENSIONS: frozenset[str] = frozenset(
    {".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".raf", ".orf", ".rw2", ".pef", ".srw"}
)
#: Edits a raw developer keeps beside the original (darktable ``IMG_1.CR2.xmp``, Lightroom ``IMG_1.xmp``).
SIDECAR_EXTENSIONS: tuple[str, ...] = (".xmp",)

RAW_MISSING_REASON = "camera RAW needs the optional 'raw' extra: pip install imgcluster-gui[raw]"
HEIF_MISSING_REASON = "HEIC/HEIF needs pillow-heif: pip install pillow-heif"
AVIF_MISSING_REASON = "AVIF needs Pillow 11.2 or later built with libavif: pip install --upgrade pillow"

_ORIENTATION_TAG = int(ExifTags.Base.Orientation)
# LibRaw's ``flip`` (0 none, 3 180 degrees, 5 90 counter-clockwise, 6 90 clockwise) as an EXIF orientation.
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
# How to make an image of that EXIF orientation upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class FormatError(Exception):
    """A file of a format this module reads cannot be used; ``str(e)`` is the user-facing reason."""


@dataclass(frozen=True)
class FormatSupport:
    """One family of formats: its extensions, what reads it, and whether that is installed here."""

    name: str
    extensions: frozenset[str]
    needs: str
    available: bool
    missing_reason: str


_REGISTER_LOCK = threading.Lock()
_heif_registered: Optional[bool] = None  # None: not tried yet


def register_openers() -> bool:
    """Register pillow-heif's HEIC/HEIF opener with Pillow (once per process; later calls are free).

    Returns
    -------
    bool
        Whether HEIC/HEIF files can be opened (False when pillow-heif is not installed).
    """
    global _heif_registered
    if _heif_registered is not None:
        return _heif_registered
    with _REGISTER_LOCK:
        if _heif_registered is None:
            try:
                import pillow_heif
            except ImportError:
                _heif_registered = False
            else:
                pillow_heif.register_heif_opener()
                _heif_registered = True
    return bool(_heif_registered)


def _rawpy() -> Any:
    """The rawpy module, or None when the optional ``raw`` extra is not installed."""
    try:
        import rawpy
    except ImportError:
        return None
    return rawpy


_openmp_lock = threading.Lock()
_openmp_libraries: Optional[list[Any]] = None  # rawpy's own OpenMP runtime(s), found once


def _rawpy_openmp(rawpy: Any) -> list[Any]:
    """The OpenMP runtime bundled with rawpy's wheel (``rawpy.libs/libgomp*``, ``.dylibs/libomp*``), loaded."""
    global _openmp_libraries
    if _openmp_libraries is not None:  # no lock once found: a worker forked while a thread held it must not wait
        return _openmp_libraries
    with _openmp_lock:
        if _openmp_libraries is None:
            package = Path(rawpy.__file__).parent
            folders = [package, package.parent / "rawpy.libs", package / ".dylibs"]
            found = []
            for folder in folders:
                for library in sorted(folder.glob("*omp*")) if folder.is_dir() else []:
                    try:
                        runtime = ctypes.CDLL(os.fspath(library))  # already loaded by rawpy: the same handle
                        runtime.omp_set_num_threads  # noqa: B018 - an OpenMP runtime has it
                    except (OSError, AttributeError):
                        continue
                    found.append(runtime)
            _openmp_libraries = found
        return _openmp_libraries


def _single_threaded_libraw(rawpy: Any) -> None:
    """Make LibRaw's OpenMP run on the calling thread alone (a per-thread setting, so set before each develop).

    Measured: after a develop with OpenMP's thread pool on a process's main thread, a child forked from it
    (a DataLoader worker) hangs forever in its own develop. One thread never starts the pool; a half-size
    develop is cheap and the workers already run in parallel.
    """
    for runtime in _rawpy_openmp(rawpy):
        runtime.omp_set_num_threads(1)


def raw_available() -> bool:
    """Whether camera RAW files can be read here (rawpy installed)."""
    return _rawpy() is not None


def avif_available() -> bool:
    """Whether this Pillow reads AVIF."""
    return bool(features.check("avif"))


def supported_formats() -> list[FormatSupport]:
    """The formats beyond Pillow's classic ones, with what each needs and whether it is there.

    Returns
    -------
    list of FormatSupport
        HEIC/HEIF, AVIF and camera RAW, in that order.
    """
    return [
        FormatSupport(
            "HEIC/HEIF", HEIF_EXTENSIONS, "pillow-heif (a default dependency)", register_openers(), HEIF_MISSING_REASON
        ),
        FormatSupport("AVIF", AVIF_EXTENSIONS, "Pillow >= 11.2 with libavif", avif_available(), AVIF_MISSING_REASON),
        FormatSupport(
            "camera RAW", RAW_EXTENSIONS, "rawpy (the optional 'raw' extra)", raw_available(), RAW_MISSING_REASON
        ),
    ]


def is_raw_path(path: PathLike) -> bool:
    """Whether ``path`` is named like a camera RAW file (these are read by LibRaw, never by Pillow)."""
    return os.fsdecode(path).lower().endswith(tuple(RAW_EXTENSIONS))


def missing_support_reason(path: PathLike) -> Optional[str]:
    """Why a file named ``path`` cannot be read *here* for want of a package, or None when nothing is missing."""
    suffix = Path(os.fsdecode(path)).suffix.lower()
    if suffix in HEIF_EXTENSIONS and not register_openers():
        return HEIF_MISSING_REASON
    if suffix in AVIF_EXTENSIONS and not avif_available():
        return AVIF_MISSING_REASON
    if suffix in RAW_EXTENSIONS and not raw_available():
        return RAW_MISSING_REASON
    return None


# ISO-BMFF ``ftyp`` brands of still HEIF images and of AVIF (a file starts with the box size, then b"ftyp", then one).
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def heif_header_problem(fh: BinaryIO) -> Optional[str]:
    """Why a file that starts like HEIF or AVIF cannot be opened, or None when it does not start like one.

    Pillow says only "cannot identify image file"; a phone photo cut short by a failed copy deserves better:
    "corrupt or truncated HEIF file", with libheif's own words where pillow-heif is there.
    """
    fh.seek(0)
    head = fh.read(12)
    if head[4:8] != b"ftyp" or head[8:12] not in _HEIF_BRANDS | _AVIF_BRANDS:
        return None
    if head[8:12] in _AVIF_BRANDS:
        if not avif_available():
            return AVIF_MISSING_REASON
        kind, detail = "AVIF", ""
    else:
        if not register_openers():
            return HEIF_MISSING_REASON
        kind, detail = "HEIF", ""
        try:
            import pillow_heif

            fh.seek(0)
            pillow_heif.open_heif(fh)
        except Exception as exc:  # libheif's reason ("Unexpected end of file", "No 'meta' box")
            detail = str(exc).strip()
    size = fh.seek(0, io.SEEK_END)
    return f"corrupt or truncated {kind} file ({size} bytes)" + (f": {detail}" if detail else "")


def sidecar_paths(path: PathLike) -> list[Path]:
    """The sidecar files (``.xmp``) that exist beside ``path``: ``IMG_1.CR2.xmp`` and ``IMG_1.xmp`` styles.

    Parameters
    ----------
    path : path-like
        An image file.

    Returns
    -------
    list of Path
        Existing regular files, each once, in the order above (both spellings of the suffix's case).
    """
    image = Path(os.fsdecode(path))
    found: list[Path] = []
    for extension in SIDECAR_EXTENSIONS:
        for candidate in (
            image.with_name(image.name + extension),
            image.with_name(image.name + extension.upper()),
            image.with_suffix(extension),
            image.with_suffix(extension.upper()),
        ):
            if candidate != image and candidate not in found and candidate.is_file():
                found.append(candidate)
    return found


def sidecar_name(sidecar: Path, image_name: str, new_image_name: str) -> str:
    """The name ``sidecar`` (of the image once named ``image_name``) takes beside the image renamed ``new_image_name``.

    ``IMG_1.CR2.xmp`` follows the whole name (``IMG_1_1.CR2.xmp``), ``IMG_1.xmp`` the stem (``IMG_1_1.xmp``), so
    a raw developer still finds the edits of the exported copy.
    """
    if sidecar.name.casefold().startswith(image_name.casefold() + "."):
        return new_image_name + sidecar.name[len(image_name) :]
    return Path(new_image_name).stem + sidecar.suffix


# --------------------------------------------------------------------------------------------
# Camera RAW
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawHeader:
    """What LibRaw reads from a RAW file's header: the developed image's size and the camera's orientation."""

    width: int
    height: int
    orientation: int  # EXIF convention, 1 = upright

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as the photo is shown."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def _libraw_words(exc: BaseException) -> str:
    """LibRaw's message without Python's ``b'...'`` around it (rawpy passes the C string as bytes)."""
    words = exc.args[0] if len(exc.args) == 1 else str(exc)
    if isinstance(words, bytes):
        words = words.decode("utf-8", "replace")
    return str(words).strip() or type(exc).__name__


def _utf8_name(name: str) -> bool:
    """Whether rawpy's ``name.encode('UTF-8')`` gives the file's real name (bytes) on this system."""
    try:
        return name.encode("utf-8") == os.fsencode(name)
    except UnicodeEncodeError:  # undecodable bytes kept as surrogate escapes
        return False


def _open_raw(rawpy: Any, source: Union[BinaryIO, str]) -> Any:
    # RawPy().open_* rather than rawpy.imread: imread warns from the caller's line about forked workers, which
    # _single_threaded_libraw makes safe (LibRaw's OpenMP never starts a thread pool here).
    raw = rawpy.RawPy()
    try:
        if isinstance(source, str) and _utf8_name(source):
            raw.open_file(source)  # LibRaw reads only what it needs of the file
        elif isinstance(source, str):  # rawpy passes names as UTF-8: read a Latin-1 (or other) name ourselves
            with open(source, "rb") as fh:
                raw.open_buffer(fh)
        else:
            raw.open_buffer(source)
    except rawpy.LibRawFileUnsupportedError:
        raw.close()
        raise FormatError("not a camera RAW file LibRaw can read (unknown or damaged header)") from None
    except (rawpy.LibRawError, OSError) as exc:
        raw.close()
        raise FormatError(f"corrupt camera RAW header ({_libraw_words(exc)})") from None
    return raw


def _header_of(raw: Any) -> RawHeader:
    sizes = raw.sizes
    return RawHeader(int(sizes.width), int(sizes.height), _FLIP_TO_ORIENTATION.get(int(sizes.flip), 1))


def read_raw_header(path: PathLike) -> RawHeader:
    """Read a RAW file's size and orientation from its header (no pixel is unpacked).

    Raises
    ------
    FormatError
        rawpy is missing, or LibRaw cannot parse the file.
    """
    rawpy = _rawpy()
    if rawpy is None:
        raise FormatError(RAW_MISSING_REASON)
    name = os.fsdecode(path)
    with open(name, "rb"):  # an unreadable file is "permission denied", not a LibRaw I/O error
        pass
    raw = _open_raw(rawpy, name)
    try:
        return _header_of(raw)
    finally:
        raw.close()


def identify_raw(path: PathLike, size_problem: SizeProblem) -> Optional[str]:
    """The scan's check of a RAW file: None when it can be read, else the reason (never raises).

    Parameters
    ----------
    path : path-like
        A file named like a RAW file (:func:`is_raw_path`), already known to be a regular file.
    size_problem : callable
        ``(width, height) -> reason or None``: the caller's size rules (pixel limit, aspect ratio).
    """
    try:
        header = read_raw_header(path)
    except FormatError as exc:
        return str(exc)
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    except Exception as exc:  # LibRaw on a crafted header: whatever it raises is a reason, not a crash
        return f"corrupt camera RAW header ({type(exc).__name__}: {exc})"
    return size_problem(header.width, header.height)


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    method = _UPRIGHT.get(orientation)
    return image if method is None else image.transpose(method)


def _preview_is_enough(preview_size: tuple[int, int], header: RawHeader, draft_size: Optional[tuple[int, int]]) -> bool:
    """Whether an embedded preview of ``preview_size`` serves the request as well as a demosaic would."""
    if draft_size is not None:
        # The callers resize to fit or to a short side of draft_size: the preview must not need enlarging.
        return min(preview_size) >= min(int(v) for v in draft_size)
    # A full decode: at least the pixels of the half-size demosaic it replaces.
    return preview_size[0] * preview_size[1] * 4 >= header.width * header.height


def _embedded_preview(
    rawpy: Any, raw: Any, header: RawHeader, draft_size: Optional[tuple[int, int]], size_problem: SizeProblem
) -> Optional[Image.Image]:
    """The camera's embedded preview, decoded and upright, when it is large enough; None otherwise."""
    try:
        thumb = raw.extract_thumb()
    except Exception:  # LibRawNoThumbnailError, an unsupported or damaged preview: demosaic instead
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            preview = Image.open(io.BytesIO(thumb.data))
            if preview.format != "JPEG" or size_problem(*preview.size) is not None:
                return None
            if not _preview_is_enough(preview.size, header, draft_size):
                return None
            orientation = int(preview.getexif().get(_ORIENTATION_TAG, 1))  # a JPEG's EXIF is in its header
            if orientation == 1:
                orientation = header.orientation  # previews are stored as the sensor saw them
            if draft_size is not None:
                want = tuple(int(v) for v in draft_size)
                preview.draft("RGB", (want[1], want[0]) if orientation in (5, 6, 7, 8) else (want[0], want[1]))
            preview.load()  # decoded here, inside the caller's error handling
        except Exception:  # a damaged preview is no reason to lose the photo: the sensor data may be fine
            return None
        return _upright(preview.convert("RGB"), orientation)
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        pixels = thumb.data
        if pixels.ndim != 3 or pixels.shape[2] != 3 or size_problem(pixels.shape[1], pixels.shape[0]) is not None:
            return None
        if not _preview_is_enough((pixels.shape[1], pixels.shape[0]), header, draft_size):
            return None
        return _upright(Image.fromarray(pixels.astype("uint8"), mode="RGB"), header.orientation)
    return None


def load_raw(fh: BinaryIO, draft_size: Optional[tuple[int, int]], size_problem: SizeProblem) -> Image.Image:
    """Decode an open camera RAW file to an upright 8-bit RGB image.

    Parameters
    ----------
    fh : binary file
        The RAW file, opened by the caller (who checked it is a regular file).
    draft_size : (width, height), optional
        The size the caller will resize to; the embedded JPEG preview is used when it is at least this large,
        or, without a draft size, when it has at least the pixels of a half-size demosaic.
    size_problem : callable
        ``(width, height) -> reason or None``, checked on the header's size before anything is decoded.

    Returns
    -------
    PIL.Image.Image
        Mode ``'RGB'``, the camera's orientation applied.

    Raises
    ------
    FormatError
        rawpy is missing, the file is not a RAW file LibRaw reads, its declared size is refused, or its data
        is corrupt; ``str(error)`` says which.
    """
    rawpy = _rawpy()
    if rawpy is None:
        raise FormatError(RAW_MISSING_REASON)
    raw = _open_raw(rawpy, fh)
    try:
        header = _header_of(raw)
        problem = size_problem(header.width, header.height)
        if problem is not None:
            raise FormatError(problem)
        preview = _embedded_preview(rawpy, raw, header, draft_size, size_problem)
        if preview is not None:
            return preview
        try:
            _single_threaded_libraw(rawpy)
            raw.unpack()
            # Half size: each 2x2 Bayer block becomes one pixel, 4x less work than a full demosaic and still
            # far more than a thumbnail or the network needs; the camera's white balance, LibRaw's flip.
            pixels = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
        except rawpy.LibRawError as exc:
            raise FormatError(f"truncated or corrupt camera RAW data ({_libraw_words(exc)})") from None
        except MemoryError:
            raise FormatError("camera RAW data too large to decode in the memory available") from None
        return Image.fromarray(pixels, mode="RGB")
    finally:
        raw.close()
