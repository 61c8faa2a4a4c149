"""When and where a photo was taken: EXIF capture time and GPS, read from the header only.

A photo's capture time is, first found: EXIF ``DateTimeOriginal`` (with ``OffsetTimeOriginal``
when the camera wrote one), ``DateTimeDigitized`` (with ``OffsetTimeDigitized``), then IFD0's
``DateTime`` (with ``OffsetTime``); an image without any falls back to the file's modification
time, marked as such (source ``"file"``): a copied folder gives copy times, so the file date is
shown, never used to group by time. GPS gives latitude / longitude in decimal degrees (south and
west negative) and the altitude in metres (below sea level negative) when present.

Pillow's ``Image.open(...).getexif()`` parses the header, never the pixels, so reading 50,000
photos costs their headers only; the values are also remembered by content in the feature cache
(:meth:`~imgcluster_gui.core.features.cache.FeatureCache.get_photo_meta`), so a second scan reads
no EXIF at all. Reading never raises: a damaged header, a tag of the wrong type, a date like
``0000:00:00 00:00:00`` or a GPS rational over zero is just *unknown*.

Times are kept as numbers, one row per image (:data:`META_COLUMNS`, NaN = unknown), the way the
session stores them:

``wall``
    the wall-clock time the camera showed, as POSIX seconds *read as if UTC* (EXIF times carry no
    zone unless an offset tag says it), so it formats back to what the camera wrote;
``offset``
    the UTC offset in minutes when known (the offset tags; the local zone for a file date);
``source``
    :data:`SOURCE_EXIF`, :data:`SOURCE_FILE` or :data:`SOURCE_NONE`;
``latitude``, ``longitude``, ``altitude``.

:func:`instants` turns them into one time line (UTC where the offset is known) for sorting and
for the time-aware grouping of :mod:`imgcluster_gui.core.time_graph`.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import sqlite3
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from .progress import ProgressLike, check, ensure

if TYPE_CHECKING:
    from .features.cache import FeatureCache

PathLike = Union[str, "os.PathLike[str]"]

#: The columns of a metadata table (one row per image; NaN = unknown).
META_COLUMNS = ("wall", "offset", "source", "latitude", "longitude", "altitude")
WALL, OFFSET, SOURCE, LATITUDE, LONGITUDE, ALTITUDE = range(len(META_COLUMNS))
SOURCE_NONE, SOURCE_EXIF, SOURCE_FILE = 0.0, 1.0, 2.0
#: How :func:`source_name` spells each source (the export's ``capture_time_source`` column).
SOURCE_NAMES = {SOURCE_EXIF: "exif", SOURCE_FILE: "file"}
#: Names the EXIF reading in the feature cache: a change to what is read bumps it, so old rows are read again.
READER_VERSION = "exif-1"

# EXIF tag numbers (Pillow's ExifTags names them too; numbers keep this independent of its version).
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_TIME, _OFFSET_TIME = 0x0132, 0x9010
_DATE_ORIGINAL, _DATE_DIGITIZED = 0x9003, 0x9004
_OFFSET_ORIGINAL, _OFFSET_DIGITIZED = 0x9011, 0x9012
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_ALT_REF, _GPS_ALT = 1, 2, 3, 4, 5, 6
# "2024:05:01 14:03:22", also with '-' or '/' between the date's parts and a 'T' (some writers).
_DATE_PATTERN = re.compile(r"\s*(\d{4})[:\-/](\d{1,2})[:\-/](\d{1,2})[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?")
_OFFSET_PATTERN = re.compile(r"\s*([+-])(\d{1,2}):?(\d{2})\s*$")
# Earlier than the first photographs or far in the future: a camera with its clock unset, or garbage.
_FIRST_YEAR, _LAST_YEAR = 1826, 2200
_EPOCH = _dt.datetime(1970, 1, 1)
_CHUNK = 256  # files read between two cancel points


@dataclass(frozen=True)
class PhotoMeta:
    """One image's capture time and place (``None`` = unknown).

    Attributes
    ----------
    wall : float or None
        The capture time as the camera's clock showed it, POSIX seconds read as UTC.
    offset : int or None
        Minutes east of UTC, when known.
    source : str
        ``"exif"``, ``"file"`` (the file's modification time stands in) or ``""`` (no date).
    latitude, longitude : float or None
        Decimal degrees, south and west negative.
    altitude : float or None
        Metres above sea level (negative below).
    """

    wall: Optional[float] = None
    offset: Optional[int] = None
    source: str = ""
    latitude: Optional[float] = None
    longitude: Optional[float] = None
    altitude: Optional[float] = None

    @classmethod
    def from_row(cls, row: np.ndarray) -> "PhotoMeta":
        """The :class:`PhotoMeta` of one row of a metadata table."""
        values = [None if not math.isfinite(float(v)) else float(v) for v in np.asarray(row, dtype=np.float64)]
        wall, offset = values[WALL], values[OFFSET]
        return cls(
            wall=wall,
            offset=None if offset is None else int(offset),
            source=SOURCE_NAMES.get(values[SOURCE] or SOURCE_NONE, "") if wall is not None else "",
            latitude=values[LATITUDE],
            longitude=values[LONGITUDE],
            altitude=values[ALTITUDE],
        )

    def to_row(self) -> np.ndarray:
        """This image's row of a metadata table."""
        source = {"exif": SOURCE_EXIF, "file": SOURCE_FILE}.get(self.source, SOURCE_NONE)
        return np.array(
            [
                _nan(self.wall),
                _nan(self.offset),
                source,
                _nan(self.latitude),
                _nan(self.longitude),
                _nan(self.altitude),
            ],
            dtype=np.float64,
        )

    @property
    def has_place(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def iso(self) -> str:
        """ISO 8601 capture time (with its UTC offset when known), or ``""``."""
        return iso_time(self.wall, self.offset)

    def date_text(self) -> str:
        """``YYYY-MM-DD`` of the capture, or ``""``."""
        return "" if self.wall is None else _wall_datetime(self.wall).strftime("%Y-%m-%d")

    def time_text(self) -> str:
        """What a person reads: ``2024-05-01 14:03`` (``(file date)`` appended when it is the file's), or ``""``."""
        if self.wall is None:
            return ""
        text = _wall_datetime(self.wall).strftime("%Y-%m-%d %H:%M")
        return f"{text} (file date)" if self.source == "file" else text

    def place_text(self) -> str:
        """``48.85837° N, 2.29448° E`` (and the altitude), or ``""``."""
        if self.latitude is None or self.longitude is None:
            return ""
        text = (
            f"{abs(self.latitude):.5f}° {'N' if self.latitude >= 0 else 'S'}, "
            f"{abs(self.longitude):.5f}° {'E' if self.longitude >= 0 else 'W'}"
        )
        if self.altitude is not None:
            text += f", {self.altitude:.0f} m"
        return text


def _nan(value: Optional[float]) -> float:
    return float("nan") if value is None else float(value)


def _wall_datetime(wall: float) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(seconds=float(wall))


def iso_time(wall: Optional[float], offset: Optional[float]) -> str:
    """ISO 8601 text of a wall-clock time (``2024-05-01T14:03:22``, ``+02:00`` appended when the offset is known).

    Parameters
    ----------
    wall : float or None
        POSIX seconds read as UTC (NaN or None: unknown, ``""``).
    offset : float or None
        Minutes east of UTC (NaN or None: unknown).
    """
    if wall is None or not math.isfinite(wall):
        return ""
    moment = _wall_datetime(wall).replace(microsecond=0)
    if offset is None or not math.isfinite(offset):
        return moment.isoformat()
    return moment.replace(tzinfo=_dt.timezone(_dt.timedelta(minutes=int(offset)))).isoformat()


def source_name(source: float) -> str:
    """``"exif"``, ``"file"`` or ``""`` for a table's ``source`` value."""
    return SOURCE_NAMES.get(float(source), "") if math.isfinite(float(source)) else ""


# ---------------------------------------------------------------------------- reading one file


def parse_exif_datetime(value: Any) -> Optional[float]:
    """An EXIF date-time (``"2024:05:01 14:03:22"``) as wall-clock POSIX seconds, or ``None`` when not a date.

    Accepts bytes and stray NULs or spaces; refuses ``0000:00:00 00:00:00``, impossible dates and years
    outside 1826-2200 (a camera with its clock unset).
    """
    text = _text(value)
    if text is None:
        return None
    match = _DATE_PATTERN.match(text)
    if match is None:
        return None
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    if not _FIRST_YEAR <= year <= _LAST_YEAR:
        return None
    try:
        moment = _dt.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return None
    return (moment - _EPOCH).total_seconds()


def parse_exif_offset(value: Any) -> Optional[int]:
    """An EXIF offset (``"+02:00"``) in minutes east of UTC, or ``None``."""
    text = _text(value)
    if text is None:
        return None
    match = _OFFSET_PATTERN.match(text)
    if match is None:
        return None
    hours, minutes = int(match.group(2)), int(match.group(3))
    if hours > 14 or minutes >= 60:  # UTC-12 to UTC+14 are the zones there are
        return None
    total = hours * 60 + minutes
    return -total if match.group(1) == "-" else total


def _text(value: Any) -> Optional[str]:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, (tuple, list)) and value:
        value = value[0]  # a few writers store the string as a one-element array
    if not isinstance(value, str):
        return None
    return value.replace("\x00", " ").strip() or None


def _number(value: Any) -> Optional[float]:
    """A rational / number tag as a finite float (a rational over 0, a string, garbage: ``None``)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            return None  # several values where one was due: not this tag
        value = value[0]
    try:
        number = float(value)  # Pillow's IFDRational gives nan for a zero denominator
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _degrees(value: Any, reference: Any, negative: str, limit: float) -> Optional[float]:
    """GPS degrees / minutes / seconds and their reference letter as signed decimal degrees."""
    if isinstance(value, (tuple, list)) and len(value) == 3:
        parts = [_number(part) for part in value]
        if any(part is None for part in parts):
            return None
        degrees = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0  # type: ignore[operator]
    else:
        degrees = _number(value)  # type: ignore[assignment]
        if degrees is None:
            return None
    letter = (_text(reference) or "").upper()[:1]
    if letter == negative:
        degrees = -abs(degrees)
    if not -limit <= degrees <= limit:
        return None
    return float(degrees)


def _gps(gps: Any) -> tuple[Optional[float], Optional[float], Optional[float]]:
    latitude = _degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "S", 90.0)
    longitude = _degrees(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "W", 180.0)
    if latitude is None or longitude is None or (latitude == 0.0 and longitude == 0.0):
        # 0, 0 is what a camera without a fix writes ("null island"), not a place anyone photographs.
        return None, None, None
    altitude = _number(gps.get(_GPS_ALT))
    if altitude is not None:
        reference = gps.get(_GPS_ALT_REF)
        if isinstance(reference, bytes):
            below = reference[:1] == b"\x01"
        else:
            below = _number(reference) == 1.0
        altitude = -abs(altitude) if below else altitude
        if not -11_000.0 <= altitude <= 100_000.0:  # deeper than the sea or higher than a balloon: garbage
            altitude = None
    return latitude, longitude, altitude


def _ifd(exif: Any, tag: int) -> dict:
    try:
        found = exif.get_ifd(tag)
    except Exception:  # noqa: BLE001 - a damaged sub-IFD is unknown, never an error
        return {}
    return found if isinstance(found, dict) or hasattr(found, "get") else {}


def read_exif_meta(path: PathLike) -> PhotoMeta:
    """The EXIF capture time and GPS of one file, read from its header only (never the pixels).

    Never raises: an unreadable file, a format Pillow does not open, or damaged EXIF gives a
    :class:`PhotoMeta` with the unknown parts ``None`` (``source`` ``"exif"`` only when a date was read).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a decompression-bomb or corrupt-EXIF warning is not this reader's news
            with Image.open(os.fspath(path)) as image:
                exif = image.getexif()
                main = dict(exif.items())
                details = _ifd(exif, _EXIF_IFD)
                gps = _ifd(exif, _GPS_IFD)
    except Exception:  # noqa: BLE001 - any header Pillow cannot parse: nothing known
        return PhotoMeta()
    wall: Optional[float] = None
    offset: Optional[int] = None
    for table, date_tag, offset_tag in (
        (details, _DATE_ORIGINAL, _OFFSET_ORIGINAL),
        (details, _DATE_DIGITIZED, _OFFSET_DIGITIZED),
        (main, _DATE_TIME, _OFFSET_TIME),
    ):
        wall = parse_exif_datetime(table.get(date_tag))
        if wall is not None:
            offset = parse_exif_offset(details.get(offset_tag, main.get(offset_tag)))
            break
    try:
        latitude, longitude, altitude = _gps(gps)
    except Exception:  # noqa: BLE001 - a GPS block of unexpected types is unknown
        latitude = longitude = altitude = None
    return PhotoMeta(
        wall=wall,
        offset=offset,
        source="exif" if wall is not None else "",
        latitude=latitude,
        longitude=longitude,
        altitude=altitude,
    )


def file_time(path: PathLike) -> tuple[Optional[float], Optional[int]]:
    """The file's modification time as (wall-clock POSIX seconds in the local zone, that zone's offset in minutes)."""
    try:
        local = _dt.datetime.fromtimestamp(os.stat(path).st_mtime).astimezone()
    except (OSError, ValueError, OverflowError):
        return None, None
    utc_offset = local.utcoffset()
    naive = local.replace(tzinfo=None)
    return (naive - _EPOCH).total_seconds(), None if utc_offset is None else int(utc_offset.total_seconds() // 60)


def read_photo_meta(path: PathLike) -> PhotoMeta:
    """:func:`read_exif_meta`, with the file's modification time (source ``"file"``) when EXIF has no date."""
    meta = read_exif_meta(path)
    if meta.wall is not None:
        return meta
    wall, offset = file_time(path)
    if wall is None:
        return meta
    return PhotoMeta(wall, offset, "file", meta.latitude, meta.longitude, meta.altitude)


# ---------------------------------------------------------------------------- many files


def empty_table(n: int) -> np.ndarray:
    """A metadata table of ``n`` unknown rows."""
    table = np.full((n, len(META_COLUMNS)), np.nan, dtype=np.float64)
    table[:, SOURCE] = SOURCE_NONE
    return table


def read_photo_metas(
    paths: Sequence[PathLike],
    cache: Union["FeatureCache", bool, None] = True,
    progress: ProgressLike = None,
    n_threads: int = 4,
) -> np.ndarray:
    """The metadata table of ``paths`` (see :data:`META_COLUMNS`), EXIF read once per content.

    Parameters
    ----------
    paths : sequence of path
    cache : FeatureCache, bool or None
        Where the EXIF values are remembered by file content: ``True`` the default feature cache,
        ``False`` / ``None`` none (every header is read).
    progress : callable, optional
        Receives the fraction done; may raise :class:`~imgcluster_gui.core.progress.Cancelled`.
    n_threads : int
        Threads reading headers (file reads release the GIL).

    Returns
    -------
    ndarray of shape (len(paths), 6), float64
        The file's modification time stands in (source ``"file"``) for a row without an EXIF date;
        never raises for a bad file (its row is unknown).
    """
    progress = ensure(progress)
    n = len(paths)
    table = empty_table(n)
    store = _open_cache(cache)
    try:
        return _read_table(paths, table, store, progress, n_threads)
    finally:
        if store is not None and cache is True:
            store.close()  # opened here: closed here (an unclosed SQLite connection warns on Python 3.13)


def _read_table(
    paths: Sequence[PathLike], table: np.ndarray, store: Optional["FeatureCache"], progress: Any, n_threads: int
) -> np.ndarray:
    n = len(paths)
    keys: list[Optional[str]] = [None] * n
    known: dict[str, np.ndarray] = {}
    if store is not None:
        try:
            keys, _failures = store.keys_for(paths, progress=progress.sub(0.0, 0.3))
            known = store.get_photo_meta([k for k in keys if k], READER_VERSION)
        except (sqlite3.Error, OSError):
            keys, known = [None] * n, {}  # the cache is an accelerator: read every header instead
    to_read = [i for i in range(n) if keys[i] is None or keys[i] not in known]
    for index in range(n):
        key = keys[index]
        if key is not None and key in known:
            table[index] = known[key]
    done = n - len(to_read)
    progress(0.3 + 0.7 * done / max(n, 1), "Reading capture dates")
    fresh: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max_workers=max(1, n_threads)) as pool:
        for start in range(0, len(to_read), _CHUNK):
            chunk = to_read[start : start + _CHUNK]
            for index, meta in zip(chunk, pool.map(read_exif_meta, [paths[i] for i in chunk])):
                row = meta.to_row()
                table[index] = row
                key = keys[index]
                if key is not None:
                    fresh[key] = row
            done += len(chunk)
            progress(0.3 + 0.7 * done / max(n, 1), "Reading capture dates")  # a cancel point per chunk
    if store is not None and fresh:
        try:
            store.put_photo_meta(READER_VERSION, fresh)
        except (sqlite3.Error, OSError):
            pass  # read again next time (store.write_error says why)
    for index in np.flatnonzero(np.isnan(table[:, WALL])).tolist():
        if index % _CHUNK == 0:
            check(progress, "Reading file dates")
        wall, offset = file_time(paths[index])
        if wall is not None:
            table[index, WALL], table[index, OFFSET], table[index, SOURCE] = wall, _nan(offset), SOURCE_FILE
    return table


def _open_cache(cache: Union["FeatureCache", bool, None]) -> Optional["FeatureCache"]:
    if cache is None or cache is False:
        return None
    if cache is True:
        from .features.cache import FeatureCache

        return FeatureCache()
    return cache


def instants(table: Optional[np.ndarray], exif_only: bool = False) -> Optional[np.ndarray]:
    """One time line for a metadata table: POSIX seconds (UTC where the offset is known), NaN = unknown.

    Parameters
    ----------
    table : ndarray of shape (N, 6) or None
    exif_only : bool
        Keep only EXIF capture times (file dates become NaN): what the time-aware grouping uses, since a
        copied folder's file dates say when it was copied.
    """
    if table is None:
        return None
    table = np.asarray(table, dtype=np.float64)
    times = table[:, WALL] - np.nan_to_num(table[:, OFFSET], nan=0.0) * 60.0
    if exif_only:
        times = np.where(table[:, SOURCE] == SOURCE_EXIF, times, np.nan)
    return times


def meta_of(table: Optional[np.ndarray], index: int) -> PhotoMeta:
    """The :class:`PhotoMeta` of image ``index`` of ``table`` (all unknown without a table)."""
    if table is None or not 0 <= index < len(table):
        return PhotoMeta()
    return PhotoMeta.from_row(table[index])
