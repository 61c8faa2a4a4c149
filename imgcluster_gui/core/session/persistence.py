"""Saving and loading a session: the ``.imgcluster`` file format and its versions.

Two kinds of file share the suffix and the ``session.json`` member; its ``version`` tells them apart:

* version 1, **one run** (:meth:`ClusterSession.save`, :func:`save_session`): the layout below;
* version 2, **a workspace** (:func:`save_workspace`, what the app's Save writes): every run of the
  run list with its edits, the run-list rows and which run is current (layout further below).

:func:`load_workspace` reads both (an old one-run file opens as a workspace of one run);
:meth:`ClusterSession.load` of a workspace gives its current run.

One-run file (version 1)
------------------------
One zip archive (stored, not compressed: the arrays are small next to the images), written
atomically (temporary file + ``os.replace``):

``session.json``
    ``{"format": "imgcluster-session", "version": 1, "root", "paths", "cluster_names"
    {id: name}, "settings", "metrics", "metrics_current", "ground_truth", "history": [edit, ...],
    "granularity"}``. Paths keep undecodable bytes as surrogate escapes (JSON ``\\udcxx``).
``labels.npy``, ``original_labels.npy``
    int64 ``(N,)``: the current labels and those the clustering produced (the hand edits are
    the difference, and ``history`` lists them in order).
``embedding.npy`` ``(N, 2)``, ``features.npy`` ``(N, D)``, ``confidence.npy`` ``(N,)``,
``granularity_labels.npy`` ``(N, L)``, ``photo_meta.npy`` ``(N, 6)`` (capture time and GPS)
``imagenet_top_classes.npy`` int16 / ``imagenet_top_probs.npy`` float16 ``(N, k)`` (the top ImageNet classes
    of each image, for suggested cluster names: core/naming.py)
    Present only when the session has them.

``constraints`` in ``session.json`` (optional; absent in older files, which still load)
    The corrections the history says (``core/constraints.py``: ``anchors``, ``anchor_labels``, ``must_link``,
    ``cannot_link``, ``confirmed``), for other tools; loading derives them from ``history`` again.
``trained_model`` in ``session.json`` (optional; absent in older files, which still load)
    ``{"file": "<session name>.models/<method>.pt", "method", "sha256", "bytes"}``: the trained
    network of a deep run, written *beside* the session file, atomically and before it (see
    :mod:`imgcluster_gui.core.session.model_store`). ``file`` is relative to the session's folder,
    so the two move together. A missing or damaged model file never stops the session from
    loading: ``ClusterSession.model_warning`` says why, and ``ClusterSession.load_trained_model``
    raises :class:`SessionFileError` with that reason.

Workspace file (version 2)
--------------------------
The same zip container; ``session.json`` is
``{"format": "imgcluster-session", "version": 2, "current": <run number>, "paths": [[path, ...], ...],
"runs": [run, ...]}`` and each ``run`` is
``{"number", "config", "seconds", "started", "source", "title", "history" (a deep method's epochs),
"paths": <index into the top-level "paths">, "arrays": {name: member}, "session": {...}}`` where
``session`` is a version-1 ``session.json`` without its ``paths`` (``trained_model`` included).
Arrays live in ``arrays/<content hash>.npy``: the runs of one folder share their paths and,
when identical, their features, embedding or labels, so three runs do not triple the file.
The trained networks of deep runs go to ``<file>.models/`` as for one run.

Arrays are read with ``allow_pickle=False``; a damaged, foreign or newer file raises
:class:`SessionFileError` with a one-line message.

Limits
------
A session file is read only within limits scaled by the number of images it declares, checked
before anything is decompressed or allocated, so a small crafted file never becomes gigabytes in
memory (nor a ``MemoryError`` / ``RecursionError``): every bad file is one :class:`SessionFileError`.

* ``session.json`` holds at most :data:`MAX_JSON_BYTES` and nests at most :data:`MAX_JSON_DEPTH`
  deep; the archive at most :data:`MAX_MEMBERS` members;
* no member expands more than :data:`MAX_COMPRESSION_RATIO` times (this app stores, it never
  compresses), and the members' compressed sizes add up to at most the file's size (no overlaps);
* every array's ``.npy`` header is read first: a plain number type (no objects, so nothing to
  unpickle), one row per image of its run, at most :data:`MAX_FEATURE_DIMS` feature columns and
  :data:`MAX_GRANULARITY_LEVELS` granularity levels, and exactly the bytes its shape needs;
* all members together hold at most ``session.json`` plus :data:`MAX_BYTES_PER_IMAGE` per image of
  each run.

Image paths
-----------
Paths are written absolute. On load a relative path (a hand-made or crafted file) is resolved
against the session's ``root`` (itself relative to the session file's folder), or without a root
against the session file's folder, never the working folder; one that leaves the root through
``..`` (or names a NUL character) is refused: its reason goes to ``ClusterSession.missing`` and
its path is the same name inside the root, so nothing outside is ever opened in its place.
Absolute paths stay allowed (the images are wherever the user's photos are). Before copying,
linking or moving images, :func:`image_file_problem` (or ``ClusterSession.exportable_paths``)
tells regular image files from anything else (a FIFO, a device, a folder, a non-image file).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import formats, storage
from ..dataset import ImageLoadError, _not_regular_reason, _open_regular_file, _pillow_warnings_named
from ..export import ExportError, atomic_write
from ..jsonable import to_jsonable as _jsonable
from ..text import printable_text
from .edits import Edit
from .runs import RunHistory, RunRecord

if TYPE_CHECKING:  # the model imports this module, not the other way round
    from .model import ClusterSession

PathLike = Union[str, "os.PathLike[str]"]

SESSION_FORMAT = "imgcluster-session"
# The newest version this module reads and writes (a workspace); one-run files keep version 1 so
# that older apps still read them.
SESSION_VERSION = 2
_ONE_RUN_VERSION = 1
_WORKSPACE_VERSION = 2
SESSION_SUFFIX = ".imgcluster"
_JSON_MEMBER = "session.json"
_OPTIONAL_ARRAYS = (
    "embedding",
    "features",
    "confidence",
    "granularity_labels",
    "photo_meta",
    "imagenet_top_classes",
    "imagenet_top_probs",
)
_MODEL_KEY = "trained_model"

# Limits on what a session file may make this app read (see "Limits" in the module docstring).
MAX_JSON_BYTES = 512 * 2**20
MAX_JSON_DEPTH = 64
MAX_MEMBERS = 100_000
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECKED_ABOVE = 2**20  # a tiny member may compress well without being a bomb
MAX_FEATURE_DIMS = 65_536
MAX_GRANULARITY_LEVELS = 1_024
_MAX_ITEM_BYTES = 8  # int64 / float64: the widest number type a session holds
_NPY_HEADER_BYTES = 65_536  # read for a header (numpy itself refuses headers over 10,000 bytes)
# The shape of each array: (number of dimensions, most columns); one row per image.
_ARRAY_SHAPES = {
    "labels": (1, 1),
    "original_labels": (1, 1),
    "confidence": (1, 1),
    "embedding": (2, 2),
    "features": (2, MAX_FEATURE_DIMS),
    "granularity_labels": (2, MAX_GRANULARITY_LEVELS),
    "photo_meta": (2, 6),  # capture time and GPS (core/photo_meta.py); absent in older files
    # The top ImageNet classes per image (int16) and their probabilities (float16), for suggested cluster
    # names (core/naming.py); absent in older files.
    "imagenet_top_classes": (2, 16),
    "imagenet_top_probs": (2, 16),
}
MAX_BYTES_PER_IMAGE = _MAX_ITEM_BYTES * sum(columns for _ndim, columns in _ARRAY_SHAPES.values())


class SessionFileError(Exception):
    """A session file cannot be read or written; ``str(error)`` is a one-line user-facing reason."""


# ---------------------------------------------------------------------------- (de)serialising


def session_to_dict(session: "ClusterSession") -> dict[str, Any]:
    """Everything except the large arrays, JSON-able (see the module docstring)."""
    metrics = session.metrics
    return {
        "format": SESSION_FORMAT,
        "version": _ONE_RUN_VERSION,
        # Absolute, so a file never depends on the working folder it was saved from.
        "root": None if session.root is None else _absolute(session.root),
        "paths": [_absolute(p) for p in session.paths],
        "cluster_names": {str(c): n for c, n in sorted(session.cluster_names.items())},
        "settings": _jsonable(session.settings),
        "metrics": _jsonable(metrics),
        "metrics_current": not session.metrics_stale if metrics else False,
        "ground_truth": session.ground_truth,
        "history": [edit.to_dict() for edit in session.history],
        "granularity": _jsonable(session.granularity),
        "skipped": [[str(path), str(reason)] for path, reason in getattr(session, "skipped", [])],
        # Derived from the history (core/constraints.py), written out so other tools can read the corrections;
        # a file without it (older versions) opens the same: loading derives them again.
        "constraints": session.constraints().to_dict(),
    }


def session_arrays(session: "ClusterSession") -> dict[str, np.ndarray]:
    """The arrays saved beside :func:`session_to_dict` (only those present)."""
    arrays = {"labels": session.labels, "original_labels": session.original_labels}
    for name in _OPTIONAL_ARRAYS:
        value = getattr(session, name)
        if value is not None:
            arrays[name] = np.asarray(value)
    return arrays


def session_from_dict(cls: type, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "ClusterSession":
    """Rebuild a session (of class ``cls``) from :func:`session_to_dict` and :func:`session_arrays` output.

    Raises
    ------
    SessionFileError
        Not a session, a newer version, or parts missing / inconsistent.
    """
    if not isinstance(data, Mapping) or data.get("format") != SESSION_FORMAT:
        raise SessionFileError("not an imgcluster session file")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise SessionFileError(f"session file has an invalid version: {version!r}")
    if version > SESSION_VERSION:
        raise SessionFileError(
            f"session file version {version} is newer than this app reads ({SESSION_VERSION}): update imgcluster"
        )
    if version == _WORKSPACE_VERSION and "runs" in data:
        raise SessionFileError("this holds several runs (a workspace): read it with load_workspace")
    try:
        paths = data["paths"]
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValueError("paths must be a list of strings")
        if "labels" not in arrays:
            raise ValueError("labels are missing")
        names = {int(c): str(n) for c, n in dict(data.get("cluster_names") or {}).items()}
        metrics = _restore_metrics(data.get("metrics") or {})
        history = [Edit.from_dict(item) for item in data.get("history") or []]
        session = cls(
            paths,
            arrays["labels"],
            names,
            embedding=arrays.get("embedding"),
            features=arrays.get("features"),
            confidence=arrays.get("confidence"),
            ground_truth=data.get("ground_truth"),
            metrics=metrics,
            settings=dict(data.get("settings") or {}),
            root=data.get("root"),
            original_labels=arrays.get("original_labels"),
            history=history,
            granularity_labels=arrays.get("granularity_labels"),
            granularity=list(data.get("granularity") or []) if "granularity_labels" in arrays else None,
            photo_meta=arrays.get("photo_meta"),
            imagenet_top_classes=arrays.get("imagenet_top_classes"),
            imagenet_top_probs=arrays.get("imagenet_top_probs"),
        )
        for edit in history:
            if edit.indices.size and (edit.indices.min() < 0 or edit.indices.max() >= len(paths)):
                raise ValueError("an edit refers to an image that is not in the session")
    except SessionFileError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise SessionFileError(f"damaged session file: {exc}") from None
    if metrics and not data.get("metrics_current", True):
        session._forget_metrics_labels()  # saved metrics predate the saved hand edits
    session.skipped = _skipped_pairs(data.get("skipped"))
    return session


def _skipped_pairs(value: Any) -> list[tuple[str, str]]:
    # Older files have none; a malformed entry is dropped rather than refusing the whole session.
    pairs = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(v, str) for v in item):
            pairs.append((item[0], item[1]))
    return pairs


def _absolute(path: str) -> str:
    return path if os.path.isabs(path) else os.path.abspath(path)


# ---------------------------------------------------------------------------- image paths


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.normcase(os.path.commonpath([path, folder])) == os.path.normcase(folder)
    except ValueError:  # another drive (Windows)
        return False


def _resolve_paths(data: Mapping[str, Any], source: Path) -> tuple[dict[str, Any], dict[int, str]]:
    """``data`` with its root and image paths made absolute (see "Image paths" above), and the refused ones.

    Returns
    -------
    data : dict
        A copy with ``root`` and ``paths`` resolved (unchanged when they are not what a session holds:
        :func:`session_from_dict` says what is wrong).
    missing : dict of int to str
        Image index -> why its path was refused.
    """
    resolved = dict(data)
    paths, root = data.get("paths"), data.get("root")
    base = os.path.abspath(source.parent)
    if isinstance(root, str) and root and "\x00" not in root:
        root = os.path.normpath(os.path.join(base, root))  # an absolute root stays itself
        resolved["root"] = root
    else:
        if isinstance(root, str):  # "" or a NUL character: no usable root
            resolved["root"] = None
        root = None
    missing: dict[int, str] = {}
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return resolved, missing
    out = []
    for index, path in enumerate(paths):
        if "\x00" in path:
            missing[index] = "invalid path in the session file (it contains a NUL character)"
            path = path.replace("\x00", "\ufffd")
        if os.path.isabs(path):
            out.append(path)
            continue
        joined = os.path.normpath(os.path.join(root or base, path))
        if root is not None and not _inside(joined, root):
            missing[index] = "its path in the session file leads out of the session's image folder"
            # The same name inside the root: it never opens what the crafted path pointed at.
            relative = Path(path)
            parts = relative.parts[1:] if relative.anchor else relative.parts  # "C:x" / "\\x" (Windows)
            joined = os.path.join(root, *(part for part in parts if part not in ("..", ".")))
        out.append(joined)
    resolved["paths"] = out
    return resolved, missing


def image_file_problem(path: PathLike) -> Optional[str]:
    """Why ``path`` must not be exported (copied, linked or moved) as an image, or None when it may.

    Only the file's type and header are read (nothing decoded), through a non-blocking open, so a
    FIFO never blocks; call it off the GUI thread all the same (it touches the disk).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    str or None
        ``"file not found"``, ``"is a FIFO (named pipe), not a regular file"``, ``"not an image"``...
    """
    target = Path(os.fsdecode(path))
    try:
        reason = _not_regular_reason(os.stat(target).st_mode)
    except ValueError:
        return "invalid file name (contains a NUL character)"
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    if reason is not None:
        return reason
    if formats.is_raw_path(target):  # LibRaw's header check (Pillow knows no CR3/RAF/ORF); its bytes are copied as-is
        return formats.identify_raw(target, lambda width, height: None) if formats.raw_available() else None
    try:
        with _open_regular_file(target) as fh, _pillow_warnings_named(target):
            with Image.open(fh):
                pass
    except Image.DecompressionBombError:
        return None  # a (very large) image all the same
    except UnidentifiedImageError:
        return "not an image"
    except Exception as exc:  # ImageLoadError (swapped for a FIFO), OSError, a plug-in's parse error
        return f"cannot read it as an image: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
    return None


# ---------------------------------------------------------------------------- limits


def _size_text(n_bytes: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def _unsafe(source: Path, reason: str) -> SessionFileError:
    return SessionFileError(f"{source.name} is damaged or not a session this app can open safely: {reason}")


def _check_members(source: Path, archive: zipfile.ZipFile) -> None:
    """Refuse an archive whose members would expand beyond the limits, before anything is decompressed."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _unsafe(source, f"it has {len(infos)} members (at most {MAX_MEMBERS})")
    for info in infos:
        expands = info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
        if info.file_size > _RATIO_CHECKED_ABOVE and expands:
            raise _unsafe(
                source,
                f"{printable_text(info.filename)} expands from {_size_text(info.compress_size)} to "
                f"{_size_text(info.file_size)} (more than {MAX_COMPRESSION_RATIO} times)",
            )
    try:
        file_bytes = os.stat(source).st_size
    except OSError:
        file_bytes = None
    compressed = sum(info.compress_size for info in infos)
    if file_bytes is not None and compressed > file_bytes:
        raise _unsafe(source, "its members overlap (their sizes add up to more than the file)")
    size = archive.getinfo(_JSON_MEMBER).file_size
    if size > MAX_JSON_BYTES:
        raise _unsafe(source, f"{_JSON_MEMBER} is {_size_text(size)} (at most {_size_text(MAX_JSON_BYTES)})")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests more than ``limit`` lists / objects deep (without recursing)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _image_count(paths: Any) -> int:
    return len(paths) if isinstance(paths, list) else 0


def _check_total(source: Path, archive: zipfile.ZipFile, image_counts: list[int]) -> None:
    """Refuse an archive holding more than its runs' images can need (all members together)."""
    limit = archive.getinfo(_JSON_MEMBER).file_size + sum(
        n * MAX_BYTES_PER_IMAGE + len(_ARRAY_SHAPES) * _NPY_HEADER_BYTES for n in image_counts
    )
    total = sum(info.file_size for info in archive.infolist())
    if total > limit:
        raise _unsafe(source, f"it expands to {_size_text(total)}, more than {sum(image_counts)} images can need")


def _read_array(archive: zipfile.ZipFile, member: str, name: str, n_images: int) -> np.ndarray:
    """The array ``member`` (``name``, one row per image), its header checked before any data is read.

    Raises
    ------
    ValueError
        Too large for ``n_images``, not a plain number type (no objects, no pickles), another shape,
        or not exactly the bytes its shape needs (the caller words it).
    """
    ndim, columns = _ARRAY_SHAPES[name]
    info = archive.getinfo(member)
    if info.file_size > _NPY_HEADER_BYTES + n_images * columns * _MAX_ITEM_BYTES:
        raise ValueError(f"its {name} array is {_size_text(info.file_size)}, more than {n_images} images need")
    with archive.open(info) as fh:
        head = io.BytesIO(fh.read(min(info.file_size, _NPY_HEADER_BYTES)))
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(head)
    elif version == (2, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(head)
    else:
        raise ValueError(f"its {name} array has an unsupported format (.npy version {version[0]}.{version[1]})")
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.itemsize > _MAX_ITEM_BYTES:
        raise ValueError(f"its {name} array holds {dtype.str} values, not plain numbers")
    if len(shape) != ndim or shape[0] != n_images or (ndim == 2 and shape[1] > columns):
        expected = f"({n_images},)" if ndim == 1 else f"({n_images}, at most {columns})"
        raise ValueError(f"its {name} array has shape {tuple(shape)}, expected {expected}")
    n_bytes = math.prod(shape) * dtype.itemsize  # Python integers: a crafted shape cannot overflow
    if head.tell() + n_bytes != info.file_size:
        raise ValueError(
            f"its {name} array is {_size_text(info.file_size)}, not the size its shape {tuple(shape)} needs"
        )
    with archive.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


# ---------------------------------------------------------------------------- files


def save_session(session: "ClusterSession", path: PathLike, mark_saved: bool = True) -> Path:
    """Write ``session`` to ``path`` atomically; see ``ClusterSession.save``."""
    target = Path(os.fsdecode(path))
    writable = target.parent.is_dir() and not target.is_dir()  # else atomic_write below says why
    models = session._models
    reference, model_file, warning = models.write_beside(target) if writable else (None, None, None)
    data = session_to_dict(session)
    if reference is not None:
        data[_MODEL_KEY] = reference
    text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    storage.remove_stale_temp_files(target)  # a killed save's full-size leftover would stay forever
    try:
        with atomic_write(target, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(_JSON_MEMBER, text)
                for name, array in session_arrays(session).items():
                    # Streamed into the member in 16 MB pieces, as save_workspace does: a BytesIO and its
                    # getvalue() held two whole copies (measured: +1.0 GB for 512 MB of features at 100,000).
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, array, allow_pickle=False)
    except ExportError as exc:
        raise SessionFileError(f"Cannot save the session: {exc}") from None
    except OSError as exc:
        raise SessionFileError(f"Cannot save the session to {target}: {exc.strerror or exc}") from None
    models.saved(target, reference, model_file, warning)
    if mark_saved:
        session._mark_saved()
    return target


@contextmanager
def _reading(source: Path) -> Iterator[zipfile.ZipFile]:
    """The open archive ``source``; every way reading it can fail becomes a one-line :class:`SessionFileError`."""
    storage.remove_stale_temp_files(source)  # what a killed save of this file left behind
    try:
        # Opened without blocking and checked to be a regular file: a FIFO picked as a session would
        # otherwise hang the open (on the GUI thread) until something writes to it.
        with _open_regular_file(source) as fh, zipfile.ZipFile(fh, "r") as archive:
            yield archive
    except SessionFileError:
        raise
    except ImageLoadError as exc:  # a folder, FIFO, socket or device, or a NUL in the name
        if source.is_dir():
            raise SessionFileError(f"{source} is a folder, not a session file") from None
        raise SessionFileError(f"Cannot open {source.name} as a session file: {exc}") from None
    except FileNotFoundError:
        raise SessionFileError(f"Session file not found: {source}") from None
    except IsADirectoryError:
        raise SessionFileError(f"{source} is a folder, not a session file") from None
    except PermissionError:
        raise SessionFileError(f"Permission denied reading {source}") from None
    except zipfile.BadZipFile:
        raise SessionFileError(f"{source.name} is not an imgcluster session file (or it is damaged)") from None
    except (zipfile.LargeZipFile, OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        # zlib / CRC errors, a truncated member, bad JSON, a malformed .npy header
        raise SessionFileError(f"{source.name} is damaged: {exc}") from None
    except (MemoryError, RecursionError):  # the limits above should leave nothing to reach here
        raise _unsafe(source, "it is too large or too deeply nested to read") from None


def _read_document(source: Path, archive: zipfile.ZipFile) -> Any:
    if _JSON_MEMBER not in set(archive.namelist()):
        raise SessionFileError(f"{source.name} is not an imgcluster session file")
    _check_members(source, archive)
    text = archive.read(_JSON_MEMBER).decode("utf-8")
    try:
        data = json.loads(text)
    except RecursionError:  # the parser recursed as deep as Python allows
        data = None
        deep = True
    else:
        deep = _deeper_than(data, MAX_JSON_DEPTH)
    if deep:
        raise _unsafe(source, f"{_JSON_MEMBER} nests more than {MAX_JSON_DEPTH} levels deep")
    return data


def _is_workspace(data: Any) -> bool:
    return (
        isinstance(data, Mapping) and data.get("format") == SESSION_FORMAT and data.get("version") == _WORKSPACE_VERSION
    )


def load_session(cls: type, path: PathLike) -> "ClusterSession":
    """Read a session written by :func:`save_session` as an instance of ``cls``; see ``ClusterSession.load``.

    A workspace file (several runs) gives its current run.
    """
    source = Path(os.fsdecode(path))
    with _reading(source) as archive:
        data = _read_document(source, archive)
        arrays = {}
        paths = data.get("paths") if isinstance(data, Mapping) else None
        # A foreign or newer file, or one without a list of paths: session_from_dict says why.
        if not _is_workspace(data) and isinstance(paths, list) and data.get("format") == SESSION_FORMAT:
            members = set(archive.namelist())
            n_images = len(paths)
            _check_total(source, archive, [n_images])
            for name in ("labels", "original_labels", *_OPTIONAL_ARRAYS):
                if f"{name}.npy" in members:
                    try:
                        arrays[name] = _read_array(archive, f"{name}.npy", name, n_images)
                    except ValueError as exc:
                        raise SessionFileError(f"{source.name} is damaged: {exc}") from None
    if _is_workspace(data):
        current = load_workspace(source, cls).current
        assert current is not None  # a workspace always holds a run and knows its current one
        return current.session
    missing: dict[int, str] = {}
    if isinstance(data, Mapping):
        data, missing = _resolve_paths(data, source)
    try:
        session = session_from_dict(cls, data, arrays)
    except SessionFileError as exc:
        raise SessionFileError(f"{source.name}: {exc}") from None
    session.missing = missing
    if data.get(_MODEL_KEY) is not None:
        session._models.attach(source, data[_MODEL_KEY])
    return session


# ---------------------------------------------------------------------------- workspaces (every run)


def save_workspace(path: PathLike, history: RunHistory, mark_saved: bool = True) -> Path:
    """Write every run of ``history`` (sessions, edits, run-list rows, the current run) to ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike
        The ``.imgcluster`` file (version 2, see the module docstring). Deep runs' trained networks
        go to ``<path>.models/`` beside it.
    history : RunHistory
        The runs to save, in order; :attr:`RunHistory.current_number` is restored on load.
    mark_saved : bool
        Clear every run's ``modified`` flag. False for a copy that does not count as saving the
        work (the autosave).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    SessionFileError
        No run to save, the folder is missing or not writable, or the disk is full (one line).
    """
    from .model_store import prune_models_beside

    records = history.records()
    if not records:
        raise SessionFileError("There is no run to save")
    target = Path(os.fsdecode(path))
    writable = target.parent.is_dir() and not target.is_dir()  # else atomic_write below says why
    path_lists: list[list[str]] = []
    path_index: dict[tuple[str, ...], int] = {}
    members: dict[str, np.ndarray] = {}  # each distinct array content once
    hashed: dict[int, tuple[np.ndarray, str]] = {}  # id(array) -> (array, member): one hash per object
    models = []
    runs = []
    for record in records:
        session = record.session
        paths_key = tuple(session.paths)
        if paths_key not in path_index:
            path_index[paths_key] = len(path_lists)
            path_lists.append(list(session.paths))
        store = session._models
        reference, model_file, warning = store.write_beside(target) if writable else (None, None, None)
        models.append((store, reference, model_file, warning))
        data = session_to_dict(session)
        del data["paths"]  # stored once per folder, at the top level
        if reference is not None:
            data[_MODEL_KEY] = reference
        runs.append(
            {
                "number": int(record.number),
                "config": _jsonable(record.config),
                "seconds": float(record.seconds or 0.0),
                "started": float(record.started),
                "source": str(record.source),
                "title": str(record.title),
                "history": _jsonable(list(record.history or [])),
                "paths": path_index[paths_key],
                "arrays": {
                    name: _array_member(array, members, hashed) for name, array in session_arrays(session).items()
                },
                "session": data,
            }
        )
    document = {
        "format": SESSION_FORMAT,
        "version": _WORKSPACE_VERSION,
        "current": history.current_number,
        "paths": path_lists,
        "runs": runs,
    }
    text = json.dumps(document, ensure_ascii=True, allow_nan=False)
    storage.remove_stale_temp_files(target)  # a killed save's full-size leftover would stay forever
    try:
        with atomic_write(target, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(_JSON_MEMBER, text)
                for member, array in members.items():
                    with archive.open(member, "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, array, allow_pickle=False)
    except ExportError as exc:
        raise SessionFileError(f"Cannot save the session: {exc}") from None
    except OSError as exc:
        raise SessionFileError(f"Cannot save the session to {target}: {exc.strerror or exc}") from None
    for store, reference, model_file, warning in models:
        store.saved(target, reference, model_file, warning, prune=False)
    prune_models_beside(target, keep=[model_file for _s, _r, model_file, _w in models if model_file is not None])
    if mark_saved:
        for record in records:
            record.session._mark_saved()
    return target


def _array_member(array: np.ndarray, members: dict[str, np.ndarray], hashed: dict[int, tuple[np.ndarray, str]]) -> str:
    """The archive member holding ``array``'s content, added to ``members`` when new (same content, one member)."""
    known = hashed.get(id(array))
    if known is not None and known[0] is array:
        return known[1]
    contiguous = np.ascontiguousarray(array)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
    if contiguous.size:  # a memoryview of an empty array cannot be cast
        digest.update(contiguous.reshape(-1).view(np.uint8).data)
    member = f"arrays/{digest.hexdigest()}.npy"
    members.setdefault(member, contiguous)
    hashed[id(array)] = (array, member)
    return member


def load_workspace(path: PathLike, session_class: Optional[type] = None) -> RunHistory:
    """Read every run of a session file: a workspace (version 2), or an old one-run file as a workspace of one.

    Parameters
    ----------
    path : str or PathLike
    session_class : type, optional
        The class of the sessions built (default :class:`ClusterSession`).

    Returns
    -------
    RunHistory
        The runs with their edits, numbers and run-list rows; :attr:`RunHistory.current` is the run
        that was current when saved. No session is ``modified``.

    Raises
    ------
    SessionFileError
        Missing, unreadable, damaged (a run's member missing or corrupt), foreign or newer file (one line).
    """
    if session_class is None:
        from .model import ClusterSession

        session_class = ClusterSession
    source = Path(os.fsdecode(path))
    with _reading(source) as archive:
        data = _read_document(source, archive)
        if _is_workspace(data):
            return _workspace_from_archive(session_class, source, archive, data)
    # An old one-run file (or a foreign / newer one, which load_session refuses with the reason).
    session = load_session(session_class, source)
    history = RunHistory()
    history.add(
        RunRecord(
            number=1,
            session=session,
            config=dict(getattr(session, "settings", None) or {}),
            source="file",
            title=source.name,
        )
    )
    return history


def _workspace_from_archive(cls: type, source: Path, archive: zipfile.ZipFile, data: Mapping[str, Any]) -> RunHistory:
    names = set(archive.namelist())
    path_lists, runs = data.get("paths"), data.get("runs")
    if not isinstance(path_lists, list) or not isinstance(runs, list) or not runs:
        raise SessionFileError(f"{source.name} is damaged: it lists no runs")
    _check_total(source, archive, [_run_image_count(path_lists, run) for run in runs])
    loaded: dict[str, np.ndarray] = {}  # member -> array: the runs of one folder share their copies
    history = RunHistory()
    for position, run in enumerate(runs):
        what = f"run {run.get('number', position + 1) if isinstance(run, Mapping) else position + 1}"
        try:
            if not isinstance(run, Mapping):
                raise ValueError("not a run")
            session_data = dict(run["session"])
            session_data["paths"] = path_lists[int(run["paths"])]
            n_images = _image_count(session_data["paths"])
            arrays = {}
            for name, member in dict(run.get("arrays") or {}).items():
                if name not in ("labels", "original_labels", *_OPTIONAL_ARRAYS):
                    continue  # an array a newer app added: not needed here
                if member not in names:
                    raise ValueError(f"its {name} array is missing")
                if member in loaded:
                    # Only the features (never written) are shared; the others get their own copy.
                    arrays[name] = loaded[member] if name == "features" else loaded[member].copy()
                    continue
                loaded[member] = arrays[name] = _read_array(archive, member, name, n_images)
            number = int(run["number"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SessionFileError(f"{source.name} is damaged: {what}: {exc}") from None
        session_data, missing = _resolve_paths(session_data, source)
        try:
            session = session_from_dict(cls, session_data, arrays)
        except SessionFileError as exc:
            raise SessionFileError(f"{source.name}: {what}: {exc}") from None
        session.missing = missing
        if session_data.get(_MODEL_KEY) is not None:
            session._models.attach(source, session_data[_MODEL_KEY])
        try:
            history.add(
                RunRecord(
                    number=number,
                    session=session,
                    config=dict(run.get("config") or {}),
                    seconds=float(run.get("seconds") or 0.0),
                    started=float(run.get("started") or time.time()),
                    source=str(run.get("source") or "run"),
                    title=str(run.get("title") or ""),
                    history=list(run.get("history") or []),
                )
            )
        except (TypeError, ValueError) as exc:
            raise SessionFileError(f"{source.name} is damaged: {what}: {exc}") from None
    current = data.get("current")
    if isinstance(current, int) and any(record.number == current for record in history):
        history.set_current(current)
    return history


def _run_image_count(path_lists: list, run: Any) -> int:
    """How many images ``run`` declares (0 when it does not say properly: the run's own check says why)."""
    try:
        return _image_count(path_lists[int(run["paths"])])
    except (KeyError, TypeError, ValueError, IndexError):
        return 0


def _restore_metrics(metrics: Mapping[str, Any]) -> dict:
    # JSON turned the per-cluster dicts' int keys into strings.
    restored = dict(metrics)
    for key, value in metrics.items():
        if key.startswith("per_cluster_") and isinstance(value, Mapping):
            restored[key] = {int(c): v for c, v in value.items()}
    return restored
