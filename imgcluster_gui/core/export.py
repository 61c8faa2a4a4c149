"""Write a clustering out: a CSV or JSON table, or one folder per cluster (copy, symlink or move).

Safety rules
------------
* Tables are written atomically: a temporary file beside the target, then ``os.replace``, so a
  crash never leaves a half-written file under the final name.
* CSV cells holding text (paths, names) that start with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return get a leading apostrophe ``'`` (spreadsheet programs would otherwise run them as
  formulas: "CSV injection"), and so does text that already starts with apostrophes followed by one
  of those characters, so the escape is reversible: :func:`unescape_formula` removes exactly one
  leading ``'`` from a value of the form ``'...'<formula character>...`` and leaves every other
  value alone (``'=x`` is written ``''=x``, ``=x`` is written ``'=x``).  Numbers are written as numbers.
* The CSV is always valid UTF-8.  A file name that is not valid UTF-8 (possible on Linux) is written
  percent-escaped: its row has ``path_escaped`` = ``1`` and its ``path`` and ``relative_path`` are
  the name's bytes with every byte outside ``A-Z a-z 0-9 _ . - ~ /`` written as ``%XX``
  (``urllib.parse.unquote_to_bytes`` gives the original bytes back; undo the formula escape first).
  Other rows have ``path_escaped`` = ``0`` and plain paths.  JSON keeps such names as ``\\udcXX``
  escapes (``os.fsencode`` of the loaded string gives the original bytes back).
* Folder export never overwrites a file: a name already taken gets ``_1``, ``_2``... before its
  extension (the stem is shortened so the name stays within 255 bytes).  Cluster names become safe
  folder names (no separators, no ``..``, no reserved Windows names, at most 200 bytes).  Moving is
  refused unless asked for explicitly; a moved symbolic link is re-created pointing at the same
  file (an absolute link), so a relative link does not dangle; a move across file systems syncs the
  copy (file and folder) before the source is removed.

Manifests and undo
------------------
Every folder export writes a manifest (``imgcluster-export-*.json`` in the target) before the
first file is touched, so :func:`undo_export` can put moved files back and remove the copies and
links, also after a crash.  The window lets a person pick any JSON file as a manifest, so undo
obeys only the app's own: each manifest is signed with an HMAC-SHA256 whose key is random, per
user, and kept in the app's data folder (``export-manifest.key`` in
:func:`~imgcluster_gui.core.storage.data_dir`, created with ``0600`` permissions on first use).
A manifest whose signature is missing or wrong is refused as a whole, before anything is touched.
Manifests of version 1 (written before signing existed) are refused too, with a message saying
so: they cannot be told apart from a forged one; their entries say where each file went, for
putting files back by hand.

Even a signed manifest is checked entry by entry: undo only touches a path the export itself
made directly inside one of its cluster folders (resolved without following a link out of the
target: a cluster folder replaced by a link is left alone), refuses an entry whose source is its
destination, never creates a folder (a moved file whose original folder is gone stays in the
export), and recognises the empty or partial placeholder an interrupted move or copy leaves.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from . import formats, storage
from .dataset import ImageLoadError, SkippedFile, _open_regular_file
from .progress import ProgressLike, ensure

PathLike = Union[str, os.PathLike]

CSV_COLUMNS: tuple[str, ...] = ("path", "relative_path", "cluster_id", "cluster_name", "confidence", "x", "y")
CSV_COLUMNS += ("path_escaped",)
# When and where each photo was taken (core/photo_meta.py); empty cells when unknown.
CSV_COLUMNS += ("capture_time", "capture_time_source", "latitude", "longitude")
# 2: signed with the per-user key (see the module docstring); version 1 manifests are refused.
MANIFEST_VERSION = 2
MANIFEST_KIND = "imgcluster folder export"
MANIFEST_KEY_FILE = "export-manifest.key"
EXPORT_MODES = ("copy", "symlink", "move")
# The usual limit of one file name (ext4, APFS, NTFS in UTF-16 units; bytes is the stricter count here).
NAME_MAX_BYTES = 255

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Characters Windows, macOS or Linux refuse (or treat specially) in a file name, and control characters.
_UNSAFE_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)
# Leaves room for a collision suffix within the usual 255-byte limit of a file name.
_MAX_FOLDER_NAME = 100
_MAX_FOLDER_NAME_BYTES = 200
_KEY_BYTES = 32
_SIGNATURE_PREFIX = "hmac-sha256:"
_NOT_OURS = "this manifest was not written by imgcluster on this account, or it was changed"


class ExportError(Exception):
    """An export cannot be done as asked; ``str(e)`` is the user-facing reason."""


def default_cluster_name(cluster_id: int) -> str:
    """The name shown for a cluster nobody named."""
    return "Unassigned" if int(cluster_id) == -1 else f"Cluster {int(cluster_id)}"


def _formula_like(text: str) -> bool:
    """Text a spreadsheet runs as a formula, possibly behind apostrophes (``=x``, ``'=x``, ``''+x``)."""
    return text.lstrip("'").startswith(_FORMULA_STARTS)


def escape_formula(text: str) -> str:
    """Prefix ``'`` to text a spreadsheet would run as a formula (reversible: see the module docstring).

    Text that already starts with apostrophes before a formula character gets one more, so
    :func:`unescape_formula` can tell a real name ``'=x`` (written ``''=x``) from ``=x`` (``'=x``).
    """
    return "'" + text if _formula_like(text) else text


def unescape_formula(text: str) -> str:
    """The original of a value :func:`escape_formula` wrote (one leading ``'`` removed where it added one)."""
    return text[1:] if text.startswith("'") and _formula_like(text) else text


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _rows(
    paths: Sequence[PathLike],
    labels,
    cluster_names: Optional[Mapping[int, str]],
    confidence,
    embedding,
    root: Optional[PathLike],
    photo_meta=None,
) -> list[dict[str, Any]]:
    from .photo_meta import LATITUDE, LONGITUDE, OFFSET, SOURCE, WALL, iso_time, source_name

    n = len(paths)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != n:
        raise ExportError(f"{n} paths but {labels.shape[0]} labels: they must match one to one")
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
        if confidence.shape[0] != n:
            raise ExportError(f"{n} paths but {confidence.shape[0]} confidence values")
    if embedding is not None:
        embedding = np.asarray(embedding, dtype=np.float64)
        if embedding.ndim != 2 or embedding.shape[0] != n or embedding.shape[1] < 2:
            raise ExportError(f"embedding must have shape ({n}, 2), got {embedding.shape}")
    if photo_meta is not None:
        photo_meta = np.asarray(photo_meta, dtype=np.float64)
        if photo_meta.ndim != 2 or photo_meta.shape[0] != n or photo_meta.shape[1] <= LONGITUDE:
            raise ExportError(f"photo metadata must have shape ({n}, 6), got {photo_meta.shape}")
    names = {int(k): str(v) for k, v in (cluster_names or {}).items()}
    root_path = Path(os.fsdecode(root)).absolute() if root is not None else None

    def number(value: float) -> Optional[float]:
        return float(value) if np.isfinite(value) else None

    rows = []
    for i, p in enumerate(paths):
        path = Path(os.fsdecode(p))
        relative = ""
        if root_path is not None:
            try:
                relative = path.absolute().relative_to(root_path).as_posix()
            except ValueError:
                relative = ""
        cluster = int(labels[i])
        rows.append(
            {
                "path": os.fspath(path),
                "relative_path": relative,
                "cluster_id": cluster,
                "cluster_name": names.get(cluster, default_cluster_name(cluster)),
                "confidence": None if confidence is None else number(confidence[i]),
                "x": None if embedding is None else number(embedding[i, 0]),
                "y": None if embedding is None else number(embedding[i, 1]),
            }
        )
        meta = photo_meta[i] if photo_meta is not None else None
        time_text = "" if meta is None else iso_time(meta[WALL], meta[OFFSET])
        rows[-1].update(
            capture_time=time_text or None,
            capture_time_source=(source_name(meta[SOURCE]) or None) if meta is not None and time_text else None,
            latitude=None if meta is None else number(meta[LATITUDE]),
            longitude=None if meta is None else number(meta[LONGITUDE]),
        )
    return rows


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", **open_kwargs) -> Iterator[Any]:
    """:func:`~imgcluster_gui.core.storage.atomic_write`, its refusals raised as :class:`ExportError`.

    Raises
    ------
    ExportError
        The folder does not exist or is not writable.
    """
    try:
        with storage.atomic_write(path, mode, **open_kwargs) as fh:
            yield fh
    except storage.StorageError as exc:
        raise ExportError(str(exc)) from None


def export_csv(
    path: PathLike,
    paths: Sequence[PathLike],
    labels,
    cluster_names: Optional[Mapping[int, str]] = None,
    confidence=None,
    embedding=None,
    root: Optional[PathLike] = None,
    photo_meta=None,
) -> Path:
    """Write one CSV row per image: ``path, relative_path, cluster_id, cluster_name, confidence, x, y, path_escaped``.

    The file is valid UTF-8 whatever the file names: a row whose path is not valid UTF-8 has
    ``path_escaped`` = ``1`` and percent-escaped paths (see the module docstring).

    Parameters
    ----------
    path : str or path-like
        The CSV to write (replaced atomically if it exists).
    paths : sequence of path-like, length n_images
    labels : array-like of int, shape (n_images,)
        Cluster of each image (``-1`` = unassigned).
    cluster_names : mapping int -> str, optional
        Display names; missing ones become "Cluster <id>" / "Unassigned".
    confidence : array-like of float, shape (n_images,), optional
        Membership confidence (or distance to the centre); empty cells when absent.
    embedding : array-like of shape (n_images, 2), optional
        2-D coordinates, written as ``x`` and ``y``.
    root : path-like, optional
        The scanned folder; ``relative_path`` is relative to it (empty for images outside it).
    photo_meta : ndarray of shape (n_images, 6), optional
        Capture time and GPS (``ClusterSession.photo_meta``): the ``capture_time`` (ISO 8601),
        ``capture_time_source`` (``exif`` / ``file``), ``latitude`` and ``longitude`` columns.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ExportError
        Mismatched lengths, or the file cannot be written.
    """
    import csv

    rows = _rows(paths, labels, cluster_names, confidence, embedding, root, photo_meta)
    target = Path(os.fsdecode(path))
    text_columns = ("path", "relative_path", "cluster_name")
    # strict: the file must decode as UTF-8 everywhere (undecodable names are percent-escaped below).
    with atomic_write(target, "w", encoding="utf-8", errors="strict", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            escaped = not (_is_utf8(row["path"]) and _is_utf8(row["relative_path"]))
            if escaped:  # both columns escaped together, so one flag says how to read the row
                row["path"], row["relative_path"] = _percent_escape(row["path"]), _percent_escape(row["relative_path"])
            # A cluster name is display text: an odd character is shown as a backslash escape.
            row["cluster_name"] = row["cluster_name"].encode("utf-8", "backslashreplace").decode("utf-8")
            row["path_escaped"] = int(escaped)
            writer.writerow(
                [
                    escape_formula(row[c]) if c in text_columns else ("" if row[c] is None else row[c])
                    for c in CSV_COLUMNS
                ]
            )
    return target


DUPLICATE_CSV_COLUMNS = ("group_id", "path", "status", "similarity", "cluster_id", "path_escaped")


def export_duplicates_csv(
    path: PathLike,
    paths: Sequence[PathLike],
    groups: Sequence[Sequence[int]],
    kept: Sequence[int],
    similarity: Sequence[Sequence[float]],
    labels=None,
) -> Path:
    """Write the near-duplicate list: one row per image of each group, ``kept`` or ``duplicate``.

    Parameters
    ----------
    path : str or path-like
        The CSV to write (replaced atomically).
    paths : sequence of path-like
    groups : sequence of sequences of int
        Each group's image indices (:func:`~imgcluster_gui.core.duplicates.find_duplicate_groups`).
    kept : sequence of int
        The image kept in each group (one of its members).
    similarity : sequence of sequences of float
        Each member's cosine similarity to the kept image, in the group's order.
    labels : array-like of int, optional
        The cluster of each image (an empty column when omitted).

    Returns
    -------
    Path
        The written file.
    """
    import csv

    if not len(groups) == len(kept) == len(similarity):
        raise ExportError(f"{len(groups)} groups, {len(kept)} kept images, {len(similarity)} similarity lists")
    target = Path(os.fsdecode(path))
    with atomic_write(target, "w", encoding="utf-8", errors="strict", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(DUPLICATE_CSV_COLUMNS)
        for group_id, (members, keep, sims) in enumerate(zip(groups, kept, similarity), start=1):
            for index, value in zip(members, sims):
                text = os.fsdecode(paths[int(index)])
                escaped = not _is_utf8(text)
                cluster = "" if labels is None else int(np.asarray(labels)[int(index)])
                status = "kept" if int(index) == int(keep) else "duplicate"
                shown = _percent_escape(text) if escaped else text
                row = [group_id, escape_formula(shown), status, round(float(value), 4), cluster, int(escaped)]
                writer.writerow(row)
    return target


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (a name with undecodable bytes holds lone surrogates, which do not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _percent_escape(path: str) -> str:
    """A path's original bytes, percent-escaped (``urllib.parse.unquote_to_bytes`` reverses it)."""
    return urllib.parse.quote(os.fsencode(path), safe="/")


def export_json(
    path: PathLike,
    paths: Sequence[PathLike],
    labels,
    cluster_names: Optional[Mapping[int, str]] = None,
    confidence=None,
    embedding=None,
    root: Optional[PathLike] = None,
    photo_meta=None,
) -> Path:
    """Write the same data as :func:`export_csv` as JSON.

    The document is ``{"version", "root", "clusters": {id: {"name", "size"}}, "images": [row, ...]}``
    with rows keyed like the CSV columns (numbers stay numbers, missing values are ``null``).
    """
    rows = _rows(paths, labels, cluster_names, confidence, embedding, root, photo_meta)
    clusters: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = clusters.setdefault(str(row["cluster_id"]), {"name": row["cluster_name"], "size": 0})
        entry["size"] += 1
    document = {
        "version": MANIFEST_VERSION,
        "root": None if root is None else os.fspath(Path(os.fsdecode(root)).absolute()),
        "clusters": dict(sorted(clusters.items(), key=lambda kv: int(kv[0]))),
        "images": rows,
    }
    target = Path(os.fsdecode(path))
    with atomic_write(target, "w", encoding="ascii") as fh:
        json.dump(document, fh, indent=1, ensure_ascii=True)  # ascii escapes keep odd file names exact
    return target


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def safe_folder_name(name: str, fallback: str) -> str:
    """Turn a cluster name into one folder name that cannot escape its parent.

    Separators and characters refused by common file systems become ``_``; leading dots and
    trailing dots/spaces are removed (no hidden folders, no ``..``); reserved Windows device
    names get a ``_`` prefix; an empty result becomes ``fallback``.  The result has at most 100
    characters and 200 bytes, leaving room for a collision suffix within a file name's 255 bytes.
    """
    cleaned = _UNSAFE_NAME_CHARS.sub("_", str(name)).strip()
    cleaned = cleaned.lstrip(".").rstrip(". ")
    cleaned = _fit_name(cleaned[:_MAX_FOLDER_NAME], "", _MAX_FOLDER_NAME_BYTES).rstrip(". ")
    if not cleaned:
        cleaned = fallback
    if cleaned.split(".")[0].upper() in _WINDOWS_RESERVED:
        cleaned = "_" + cleaned
    return cleaned


def _name_bytes(name: str) -> int:
    # The bytes the file system stores (a surrogate-escaped byte counts as the one byte it stands for).
    return len(os.fsencode(name))


def _fit_name(stem: str, tail: str, limit: int = NAME_MAX_BYTES) -> str:
    """``stem + tail``, the stem shortened (whole characters, so UTF-8 stays valid) until it fits ``limit`` bytes."""
    while stem and _name_bytes(stem + tail) > limit:
        stem = stem[:-1]
    return stem + tail


def _with_suffix_number(name: str, number: int) -> str:
    """``name`` with ``_<number>`` before its extension, shortened to fit :data:`NAME_MAX_BYTES`."""
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a name like ".hidden"
        return _fit_name(name, f"_{number}")
    fitted = _fit_name(stem, f"_{number}{dot}{ext}")
    if _name_bytes(fitted) > NAME_MAX_BYTES:  # an extension too long to keep: shorten the whole name
        fitted = _fit_name(name, f"_{number}")
    return fitted


@dataclass
class ExportEntry:
    """One file of a folder export (the manifest holds a list of these)."""

    source: str
    destination: str
    mode: str
    status: str = "planned"  # planned -> done | failed
    reason: str = ""
    # A moved symbolic link: the original link's text (re-created by undo); empty for a file.
    link: str = ""
    # A RAW file's .xmp sidecar, exported beside it under the matching name (not counted as an image).
    sidecar: bool = False


@dataclass
class FolderExportResult:
    """What :func:`export_folders` did."""

    target: Path
    manifest_path: Path
    entries: list[ExportEntry] = field(default_factory=list)
    failed: list[SkippedFile] = field(default_factory=list)

    @property
    def n_done(self) -> int:
        return sum(1 for e in self.entries if e.status == "done" and not e.sidecar)


@dataclass
class UndoResult:
    """What :func:`undo_export` did.

    ``problems`` are files left where they are, with the reason; ``notes`` say what was cleaned up
    that the export had not finished (an interrupted move's placeholder), counted in ``removed``.
    """

    restored: int = 0
    removed: int = 0
    problems: list[SkippedFile] = field(default_factory=list)
    notes: list[SkippedFile] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Manifest signing
# --------------------------------------------------------------------------------------------


def manifest_key_path() -> Path:
    """Where the per-user manifest signing key lives (``export-manifest.key`` in the app's data folder)."""
    return storage.data_dir(create=False) / MANIFEST_KEY_FILE


def _read_key(path: Path) -> bytes:
    try:
        with contextlib.suppress(OSError):  # only the account may read it; tightened if someone loosened it
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                os.chmod(path, 0o600)
        key = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"Cannot read the manifest key {os.fspath(path)}: {exc.strerror or exc}") from None
    if len(key) < _KEY_BYTES:
        raise ExportError(
            f"The manifest key {os.fspath(path)} is damaged "
            "(delete it; manifests signed with it can no longer be undone)"
        )
    return key


def _signing_key(create: bool) -> Optional[bytes]:
    """The per-user HMAC key; made on first use when ``create`` (None when missing and not ``create``).

    Made in a private temporary file and linked into place, so two processes starting at once
    agree on one key and nobody ever reads a half-written one.
    """
    path = manifest_key_path()
    if os.path.lexists(path):
        return _read_key(path)
    if not create:
        return None
    try:
        folder = storage.data_dir(create=True)
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{MANIFEST_KEY_FILE}.")  # mode 0600
    except OSError as exc:
        raise ExportError(f"Cannot create the manifest key in the app's data folder: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(_KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            os.chmod(temp_name, 0o600)
        try:
            os.link(temp_name, path)  # fails if another process made the key first: then that one is used
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not os.path.lexists(path):
                os.replace(temp_name, path)
    except OSError as exc:
        raise ExportError(f"Cannot create the manifest key {os.fspath(path)}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
    return _read_key(path)


def _signature(data: Mapping[str, Any], key: bytes) -> str:
    # Canonical JSON of everything but the signature: key order and spacing cannot change it.
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    payload = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return _SIGNATURE_PREFIX + hmac.new(key, payload, hashlib.sha256).hexdigest()


def sign_manifest(data: dict[str, Any]) -> dict[str, Any]:
    """Add (or renew) ``data["signature"]``: the HMAC-SHA256 of the manifest with the per-user key.

    Raises
    ------
    ExportError
        The key cannot be read or created.
    """
    key = _signing_key(create=True)
    assert key is not None  # create=True always gives a key or raises
    data["signature"] = _signature(data, key)
    return data


def _has_valid_signature(data: Mapping[str, Any]) -> bool:
    signature = data.get("signature")
    if not isinstance(signature, str):
        return False
    key = _signing_key(create=False)
    return key is not None and hmac.compare_digest(signature, _signature(data, key))


def _write_manifest(manifest_path: Path, data: dict[str, Any]) -> None:
    sign_manifest(data)
    with atomic_write(manifest_path, "w", encoding="ascii") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=True)


# --------------------------------------------------------------------------------------------
# Folder export
# --------------------------------------------------------------------------------------------


def _probe_writable(folder: Path) -> None:
    """Create and remove a file: ``os.access`` is wrong for root, ACLs and network drives."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".imgcluster-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ExportError(f"Cannot write in {os.fspath(folder)}: {exc.strerror or exc}") from None


def _new_manifest_path(target: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = target / f"imgcluster-export-{stamp}.json"
    number = 1
    while os.path.lexists(candidate):
        candidate = target / f"imgcluster-export-{stamp}_{number}.json"
        number += 1
    return candidate


def folder_has_entries(folder: PathLike) -> bool:
    """Whether ``folder`` is an existing folder holding anything (a file, a folder, a link)."""
    try:
        with os.scandir(os.fspath(folder)) as entries:
            return any(True for _entry in entries)
    except OSError:  # missing, not a folder, or unreadable: nothing would be merged into
        return False


def dated_subfolder(target: PathLike, when: Optional[_dt.datetime] = None, prefix: str = "clusters") -> Path:
    """A new sub-folder name of ``target`` for one export, e.g. ``clusters-2026-12-03_1405`` (not created).

    Two exports in the same minute get ``_1``, ``_2``... so a second export never merges into the first.
    """
    stamp = (when or _dt.datetime.now()).strftime("%Y-%m-%d_%H%M")
    name = f"{prefix}-{stamp}"
    candidate = Path(target) / name
    number = 1
    while os.path.lexists(candidate):
        candidate = Path(target) / f"{name}_{number}"
        number += 1
    return candidate


def _reserve(destination: Path) -> None:
    """Create ``destination`` empty, failing if anything exists there (O_EXCL: no race, no overwrite)."""
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a folder's entries (a new file's name) durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
            os.fsync(fd)
    finally:
        os.close(fd)


def _copy_into_reserved(source: Path, destination: Path, durable: bool = False) -> None:
    """Copy ``source``'s bytes and times into the empty file :func:`_reserve` made.

    With ``durable`` the copy (its bytes and its name in the folder) is on disk when
    this returns, so the caller may delete the source.  On any failure (or a cancel) the reserved
    file is removed, so no half-written copy is left.
    """
    try:
        with open(source, "rb") as src, open(destination, "r+b") as dst:
            shutil.copyfileobj(src, dst, length=1024 * 1024)
            if durable:
                dst.flush()
                os.fsync(dst.fileno())
        # After closing: some systems update the modification time when a written file is closed.
        shutil.copystat(source, destination)
        if durable:
            _fsync_folder(destination.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(destination)
        raise


def _move_no_overwrite(source: Path, destination: Path) -> None:
    """Move a file to a destination that must not exist yet; works across file systems.

    Across file systems the copy is synced before the source is removed: a power cut in between
    leaves two copies, never none.
    """
    _reserve(destination)
    try:
        # Replacing our own empty placeholder is the only overwrite that can happen here.
        os.replace(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            with contextlib.suppress(OSError):
                os.unlink(destination)
            raise
        _copy_into_reserved(source, destination, durable=True)
        os.unlink(source)


def _link_target(link: Path, text: str) -> str:
    """What a link's text means as an absolute path.

    A relative link is resolved against the folder holding it; the join is not normalised, so
    ``..`` keeps the meaning the kernel gives it even after a linked folder.
    """
    return text if os.path.isabs(text) else os.path.join(os.fspath(link.parent), text)


def _move_link(source: Path, destination: Path) -> str:
    """Move a symbolic link so it still leads to the same file; returns the original link's text.

    ``os.replace`` would carry a relative link's text to a folder where it leads nowhere, so the
    link is re-created as an absolute link to the same file (never over an existing name), then
    the original is removed.
    """
    text = os.readlink(source)
    os.symlink(_link_target(source, text), destination)
    try:
        os.unlink(source)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(destination)
        raise
    return text


def _plan(
    target: Path, paths: Sequence[PathLike], labels: np.ndarray, cluster_names: Mapping[int, str], mode: str
) -> tuple[list[ExportEntry], list[str]]:
    """Choose a destination for every file: unique folder per cluster, unique file names inside."""
    folder_for: dict[int, str] = {}
    used_folders: set[str] = set()
    for cluster in sorted(set(int(c) for c in labels)):
        fallback = "unassigned" if cluster == -1 else f"cluster_{cluster}"
        base = safe_folder_name(cluster_names.get(cluster, default_cluster_name(cluster)), fallback)
        name, number = base, 1
        # Case-insensitive file systems see "A" == "a"; a *file* already named like the folder blocks it.
        # A link named like the folder is taken too: files put through it would land outside the target.
        while name.casefold() in used_folders or (
            os.path.lexists(target / name) and ((target / name).is_symlink() or not (target / name).is_dir())
        ):
            name = f"{base}_{number}"
            number += 1
        used_folders.add(name.casefold())
        folder_for[cluster] = name

    taken: dict[str, set[str]] = {}
    claimed_sidecars: set[Path] = set()
    entries = []
    for p, cluster in zip(paths, labels):
        source = Path(os.fsdecode(p))
        folder = target / folder_for[int(cluster)]
        names = taken.setdefault(folder.name, set())
        # A RAW file's .xmp edits travel with it, renamed alongside it (each sidecar once).
        sidecars = formats.sidecar_paths(source) if formats.is_raw_path(source) else []
        sidecars = [s for s in sidecars if s not in claimed_sidecars]
        candidate, number = source.name, 1
        while any(
            name.casefold() in names or os.path.lexists(folder / name)
            for name in [candidate, *(formats.sidecar_name(s, source.name, candidate) for s in sidecars)]
        ):
            candidate = _with_suffix_number(source.name, number)
            number += 1
        names.add(candidate.casefold())
        destination = folder / candidate
        # Belt and braces: a planned destination must lie directly in its cluster folder.
        if destination.parent != folder or folder.parent != target:
            raise ExportError(f"Unsafe destination for {os.fspath(source)}: {os.fspath(destination)}")
        entries.append(ExportEntry(source=os.fspath(source.absolute()), destination=os.fspath(destination), mode=mode))
        for sidecar in sidecars:
            claimed_sidecars.add(sidecar)
            sidecar_destination = folder / formats.sidecar_name(sidecar, source.name, candidate)
            names.add(sidecar_destination.name.casefold())
            entries.append(
                ExportEntry(os.fspath(sidecar.absolute()), os.fspath(sidecar_destination), mode=mode, sidecar=True)
            )
    return entries, [folder_for[c] for c in sorted(folder_for)]


def export_folders(
    target: PathLike,
    paths: Sequence[PathLike],
    labels,
    cluster_names: Optional[Mapping[int, str]] = None,
    mode: str = "copy",
    allow_move: bool = False,
    progress: ProgressLike = None,
) -> FolderExportResult:
    """Put each image in a folder named after its cluster, under ``target``.

    Parameters
    ----------
    target : str or path-like
        Where the cluster folders go (created if missing).
    paths : sequence of path-like, length n_images
    labels : array-like of int, shape (n_images,)
    cluster_names : mapping int -> str, optional
        Folder names (sanitised, see :func:`safe_folder_name`); default "Cluster <id>" / "Unassigned".
    mode : {'copy', 'symlink', 'move'}
        ``symlink`` links to the absolute source path; ``move`` takes the files out of their
        folder and needs ``allow_move=True`` (a source that is a symbolic link is moved as a link
        to the same file).
    allow_move : bool
        The explicit consent ``mode='move'`` requires.
    progress : callable, optional

    Returns
    -------
    FolderExportResult
        Every planned file with its status, the files that failed (with reasons; the export
        goes on), and the manifest's path for :func:`undo_export`.

    Raises
    ------
    ExportError
        Unknown mode, move without ``allow_move``, mismatched lengths, ``target`` cannot be
        created or written, or the manifest cannot be signed: raised before any file is touched.
    """
    report = ensure(progress)
    if mode not in EXPORT_MODES:
        raise ExportError(f"Unknown export mode {mode!r}; choose one of {', '.join(EXPORT_MODES)}")
    if mode == "move" and not allow_move:
        raise ExportError(
            "Moving files takes them out of their folders; it must be allowed explicitly (allow_move=True)"
        )
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != len(paths):
        raise ExportError(f"{len(paths)} paths but {labels.shape[0]} labels: they must match one to one")

    target_path = Path(os.fsdecode(target)).absolute()
    if target_path.exists() and not target_path.is_dir():
        raise ExportError(f"The export target is a file, not a folder: {os.fspath(target_path)}")
    try:
        target_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Cannot create the export folder {os.fspath(target_path)}: {exc.strerror or exc}") from None
    _probe_writable(target_path)

    names = {int(k): str(v) for k, v in (cluster_names or {}).items()}
    entries, folder_names = _plan(target_path, paths, labels, names, mode)
    if mode == "move":
        for entry in entries:  # recorded before anything moves, so undo can re-create the link after a crash
            with contextlib.suppress(OSError):
                if os.path.islink(entry.source):
                    entry.link = os.readlink(entry.source)
    created_folders = [name for name in folder_names if not (target_path / name).exists()]
    manifest_path = _new_manifest_path(target_path)
    manifest = {
        "version": MANIFEST_VERSION,
        "kind": MANIFEST_KIND,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "target": os.fspath(target_path),
        # Where the target really was: undo refuses to work in a target that now leads elsewhere.
        "target_real": os.path.realpath(target_path),
        "mode": mode,
        "folders": folder_names,
        "created_folders": created_folders,
        "undone": False,
        "entries": [vars(e) for e in entries],
    }
    # Written (and signed) before the first file moves, so an interrupted export can still be undone.
    _write_manifest(manifest_path, manifest)

    failed: list[SkippedFile] = []
    n = len(entries)
    step = max(1, n // 100)
    try:
        for i, entry in enumerate(entries):
            if i % step == 0:
                report(i / max(n, 1), mode, done=i, total=n, unit="files")
            source, destination = Path(entry.source), Path(entry.destination)
            try:
                destination.parent.mkdir(exist_ok=True)
                if not source.is_file():
                    raise FileNotFoundError(errno.ENOENT, "source file not found")
                if mode == "copy":
                    _reserve(destination)
                    _copy_into_reserved(source, destination)
                elif mode == "symlink":
                    os.symlink(source, destination)  # fails if the name exists: never overwrites
                elif entry.link:
                    _move_link(source, destination)
                else:
                    _move_no_overwrite(source, destination)
                entry.status = "done"
            except FileExistsError:
                entry.status, entry.reason = "failed", "destination appeared during the export (not overwritten)"
            except OSError as exc:
                entry.status, entry.reason = "failed", exc.strerror or str(exc)
            if entry.status == "failed":
                failed.append(SkippedFile(entry.source, entry.reason))
    finally:
        manifest["entries"] = [vars(e) for e in entries]
        _write_manifest(manifest_path, manifest)
    report(1.0, f"exported {n - len(failed)} of {n} files")
    return FolderExportResult(target=target_path, manifest_path=manifest_path, entries=entries, failed=failed)


# --------------------------------------------------------------------------------------------
# Undo
# --------------------------------------------------------------------------------------------


def _is_plain_name(name: Any) -> bool:
    """One ordinary name inside a folder: no separator, not ``.`` or ``..``, not empty."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\x00" not in name
        and os.sep not in name
        and (os.altsep is None or os.altsep not in name)
    )


def _malformed(manifest_path: Path, what: str) -> ExportError:
    return ExportError(f"Export manifest is malformed ({what}): {os.fspath(manifest_path)}")


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    """Load a manifest and check it is the app's own (signature) and well-formed; raise ExportError otherwise."""
    try:
        # Opened without blocking and checked to be a regular file: a FIFO picked as a manifest would
        # otherwise hang the read (on the GUI thread) until something writes to it.
        with _open_regular_file(manifest_path) as fh:
            data = json.loads(fh.read().decode("ascii"))
    except FileNotFoundError:
        raise ExportError(f"Export manifest not found: {os.fspath(manifest_path)}") from None
    except ImageLoadError as exc:  # a folder, FIFO, socket or device, or a NUL in the name
        raise ExportError(f"Not an export manifest ({exc}): {os.fspath(manifest_path)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ExportError(f"Export manifest is unreadable or corrupt ({exc}): {os.fspath(manifest_path)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list) or "version" not in data:
        raise ExportError(f"Not an imgcluster export manifest (or an unknown version): {os.fspath(manifest_path)}")
    if data.get("version") == 1 and "signature" not in data:
        raise ExportError(
            "This export manifest was written by an older imgcluster, before manifests were signed, so undo "
            "cannot tell it from a forged one and refuses it (its entries list where each file went, to put them "
            f"back by hand): {os.fspath(manifest_path)}"
        )
    if data.get("version") != MANIFEST_VERSION or data.get("kind") != MANIFEST_KIND:
        raise ExportError(f"Not an imgcluster export manifest (or an unknown version): {os.fspath(manifest_path)}")
    # Nothing in it is obeyed before this: a crafted or edited manifest fails here as a whole.
    if not _has_valid_signature(data):
        raise ExportError(f"Cannot undo {os.fspath(manifest_path)}: {_NOT_OURS}")

    target = data.get("target")
    if not isinstance(target, str) or not os.path.isabs(target) or not isinstance(data.get("target_real"), str):
        raise _malformed(manifest_path, "target")
    for key in ("folders", "created_folders"):
        if not isinstance(data.get(key), list) or not all(isinstance(n, str) for n in data[key]):
            raise _malformed(manifest_path, key)
    text_fields = ("source", "destination", "mode", "status", "reason", "link")
    for raw in data["entries"]:
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k, ""), str) for k in text_fields):
            raise _malformed(manifest_path, "entries")
    return data


def _real_location(path: Path) -> str:
    """Where ``path`` is, its folders resolved but its last part not followed (a link stays the link)."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def _same_place(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (same place, or the same file under two names)."""
    if os.path.normcase(_real_location(a)) == os.path.normcase(_real_location(b)):
        return True
    try:
        return os.path.samestat(os.lstat(a), os.lstat(b))
    except OSError:
        return False


def _lstat(path: Path) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _refusal(entry: ExportEntry, target: Path, target_real: str, folders: set[str]) -> Optional[str]:
    """Why undo must leave an entry alone, or None: only what the export made inside its folders is touched."""
    source, destination = Path(entry.source), Path(entry.destination)
    if not source.is_absolute() or not destination.is_absolute():
        return "not an absolute path: left alone"
    folder = destination.parent
    if (
        ".." in destination.parts
        or folder.parent != target
        or folder.name not in folders
        or not _is_plain_name(destination.name)
    ):
        return f"not inside the export's cluster folders in {os.fspath(target)}: left alone"
    # The cluster folder must still be the real folder in the target, not a link leading elsewhere.
    if os.path.normcase(os.path.realpath(folder)) != os.path.normcase(os.path.join(target_real, folder.name)):
        return f"its cluster folder {os.fspath(folder)} now leads outside the export folder: left alone"
    if _same_place(source, destination):
        return "its source and its destination are the same file: left alone"
    return None


def _is_prefix_of(partial: Path, source: Path) -> bool:
    """Whether ``partial`` holds nothing but the start of ``source`` (an empty placeholder or an unfinished copy)."""
    try:
        if os.stat(partial).st_size > os.stat(source).st_size:
            return False
        with open(partial, "rb") as a, open(source, "rb") as b:
            while True:
                chunk = a.read(1024 * 1024)
                if not chunk:
                    return True
                if b.read(len(chunk)) != chunk:
                    return False
    except OSError:
        return False


def _same_copy(source: Path, copy: Path) -> bool:
    """Is ``copy`` still the copy we made (same size and modification time as the source)?

    A copy the user has edited since is kept: undo must never lose work.
    """
    try:
        a, b = source.stat(), copy.stat()
    except OSError:
        return False
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def _remove_leftover(entry: ExportEntry, destination: Path, result: UndoResult, leftover: str, original: str) -> None:
    """Remove what an interrupted move left at ``destination`` (the original never left) and say so."""
    os.unlink(destination)
    result.removed += 1
    result.notes.append(
        SkippedFile(
            entry.destination, f"{leftover} of an interrupted move: removed ({original} never left {entry.source})"
        )
    )


def _report_back_at_origin(entry: ExportEntry, result: UndoResult) -> None:
    result.problems.append(
        SkippedFile(entry.source, f"a file is back at the original place; left {entry.destination} where it is")
    )


def _original_folder_problem(source: Path, destination: Path) -> Optional[str]:
    if source.parent.is_dir():
        return None
    return (
        f"its original folder {os.fspath(source.parent)} is gone (undo creates no folders): "
        f"left at {os.fspath(destination)}"
    )


def _undo_copy(entry: ExportEntry, result: UndoResult) -> None:
    source, destination = Path(entry.source), Path(entry.destination)
    found = _lstat(destination)
    if found is None or not stat.S_ISREG(found.st_mode):  # already gone, or not the copy we made (a link now)
        return
    with contextlib.suppress(OSError):
        if os.path.samestat(os.stat(source), found):  # the source leads to this very file: it is no copy
            result.problems.append(SkippedFile(entry.destination, "it is the source file itself: left alone"))
            return
    if _same_copy(source, destination):
        os.unlink(destination)
        result.removed += 1
    elif entry.status == "planned" and _is_prefix_of(destination, source):
        os.unlink(destination)
        result.removed += 1
        result.notes.append(
            SkippedFile(
                entry.destination, "the unfinished copy of an interrupted export: removed (the original is untouched)"
            )
        )
    else:
        result.problems.append(
            SkippedFile(entry.destination, "the copy differs from its source (edited, or the source is gone): kept")
        )


def _undo_symlink(entry: ExportEntry, result: UndoResult) -> None:
    destination = Path(entry.destination)
    found = _lstat(destination)
    if found is not None and stat.S_ISLNK(found.st_mode) and os.readlink(destination) == entry.source:
        os.unlink(destination)
        result.removed += 1


def _undo_moved_link(entry: ExportEntry, result: UndoResult) -> None:
    source, destination = Path(entry.source), Path(entry.destination)
    found = _lstat(destination)
    source_there = os.path.lexists(source)
    ours = (
        found is not None
        and stat.S_ISLNK(found.st_mode)
        and os.readlink(destination) == _link_target(source, entry.link)
    )
    if not ours:
        if found is not None:
            result.problems.append(SkippedFile(entry.destination, "the moved link was changed since: left alone"))
        elif not source_there and entry.status == "done":
            result.problems.append(SkippedFile(entry.source, f"moved link is gone from {entry.destination}"))
        return
    if source_there:
        if entry.status == "planned" and os.path.islink(source) and os.readlink(source) == entry.link:
            # Interrupted between making the new link and removing the old one.
            _remove_leftover(entry, destination, result, "the new link", "the original link")
        else:
            _report_back_at_origin(entry, result)
        return
    problem = _original_folder_problem(source, destination)
    if problem:
        result.problems.append(SkippedFile(entry.source, problem))
        return
    os.symlink(entry.link, source)  # the link's own text again (relative stays relative); fails if taken
    os.unlink(destination)
    result.restored += 1


def _undo_move(entry: ExportEntry, result: UndoResult) -> None:
    if entry.link:
        _undo_moved_link(entry, result)
        return
    source, destination = Path(entry.source), Path(entry.destination)
    found = _lstat(destination)
    source_there = os.path.lexists(source)
    if found is None:
        if not source_there and entry.status == "done":
            result.problems.append(SkippedFile(entry.source, f"moved file is gone from {entry.destination}"))
        return
    if source_there:
        # A kill between reserving the destination and moving (or during a copy across file
        # systems) leaves the manifest saying "planned" and a file holding at most the start of
        # the original, which never left: that placeholder is ours to remove.
        if entry.status == "planned" and stat.S_ISREG(found.st_mode) and _is_prefix_of(destination, source):
            _remove_leftover(entry, destination, result, "the placeholder", "the file")
        else:
            _report_back_at_origin(entry, result)
        return
    if not stat.S_ISREG(found.st_mode):
        result.problems.append(SkippedFile(entry.destination, "it is no longer a plain file: left alone"))
        return
    problem = _original_folder_problem(source, destination)
    if problem:
        result.problems.append(SkippedFile(entry.source, problem))
        return
    _move_no_overwrite(destination, source)
    result.restored += 1


def undo_export(manifest_path: PathLike, progress: ProgressLike = None) -> UndoResult:
    """Reverse a folder export from its manifest.

    Moved files go back to their original place (never over a file that is there now, never into
    a folder that is gone); copies that are unchanged and links that still point at their source
    are removed; cluster folders the export created are removed when empty; the placeholder of an
    interrupted move or copy is removed (see ``UndoResult.notes``).  Only the app's own signed
    manifests are obeyed, and only for paths inside the export's cluster folders (see the module
    docstring).  Running it twice is harmless.

    Parameters
    ----------
    manifest_path : str or path-like
        The ``FolderExportResult.manifest_path`` of the export.
    progress : callable, optional

    Returns
    -------
    UndoResult
        Counts and, for every file that could not be put back (or was left alone), the reason.

    Raises
    ------
    ExportError
        The manifest is missing, corrupt, not an export manifest, an old unsigned one, not signed
        by this account's key (or changed since), or its export folder now leads somewhere else:
        raised before any file is touched.
    """
    report = ensure(progress)
    manifest_file = Path(os.fsdecode(manifest_path))
    manifest = _read_manifest(manifest_file)
    target = Path(manifest["target"])
    target_real = os.path.realpath(target)
    if os.path.normcase(target_real) != os.path.normcase(manifest["target_real"]):
        raise ExportError(
            f"The export folder {os.fspath(target)} now leads to {target_real}, not to {manifest['target_real']} "
            "as when the export was made: nothing was undone"
        )
    folders = {name for name in manifest["folders"] if _is_plain_name(name)}
    mode = manifest.get("mode")
    result = UndoResult()
    entries = manifest["entries"]
    n = len(entries)
    step = max(1, n // 100)
    for i, raw in enumerate(entries):
        if i % step == 0:
            report(i / max(n, 1), "undo", done=i, total=n, unit="files")
        entry = ExportEntry(
            **{k: raw.get(k, "") for k in ("source", "destination", "mode", "status", "reason", "link")}
        )
        if entry.status not in ("done", "planned"):  # a failed entry touched nothing
            continue
        try:
            refusal = _refusal(entry, target, target_real, folders)
            if refusal is None and entry.mode != mode:
                refusal = f"its mode {entry.mode!r} is not the export's ({mode!r}): left alone"
            if refusal is not None:
                result.problems.append(SkippedFile(entry.destination, refusal))
            elif entry.mode == "move":
                _undo_move(entry, result)
            elif entry.mode == "symlink":
                _undo_symlink(entry, result)
            elif entry.mode == "copy":
                _undo_copy(entry, result)
        except OSError as exc:
            result.problems.append(SkippedFile(entry.source, f"could not undo: {exc.strerror or exc}"))

    for name in manifest["created_folders"]:
        folder = target / name
        # Only a real folder of this export, directly in the target (never through a link).
        if name in folders and os.path.realpath(folder) == os.path.join(target_real, name):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty: files the user added are kept
    manifest["undone"] = True
    manifest["undone_at"] = _dt.datetime.now().isoformat(timespec="seconds")
    try:
        _write_manifest(manifest_file, manifest)
    except (OSError, ExportError):
        pass  # the files are back; failing to mark the manifest must not hide that
    report(1.0, f"restored {result.restored}, removed {result.removed}")
    return result
