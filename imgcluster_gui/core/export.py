"""Write a clustering out: a CSV or JSON table, or one folder per cluster (copy, symlink or move).

Safety rules
------------
* Tables are written atomically: a temporary file beside the target, then ``os.replace``, so a
  crash never leaves a half-written file under the final name.
* CSV cells holding text (paths, names) that start with ``=``, ``+``, ``-``, ``@``, a tab or a
  carriage return get a leading apostrophe ``'``: spreadsheet programs would otherwise run them
  as formulas ("CSV injection").  Numbers are written as numbers.
* Folder export never overwrites a file: a name already taken gets ``_1``, ``_2``... before its
  extension.  Cluster names become safe folder names (no separators, no ``..``, no reserved
  Windows names).  Moving is refused unless asked for explicitly, and every export writes a
  manifest so :func:`undo_export` can put moved files back and remove the copies and links.

File names that are not valid UTF-8 (possible on Linux) are written to CSV as their original
bytes (``surrogateescape``) and to JSON as ``\\udcXX`` escapes, so they round-trip exactly.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from . import storage
from .dataset import SkippedFile
from .progress import ProgressLike, ensure

PathLike = Union[str, os.PathLike]

CSV_COLUMNS = ("path", "relative_path", "cluster_id", "cluster_name", "confidence", "x", "y")
MANIFEST_VERSION = 1
EXPORT_MODES = ("copy", "symlink", "move")

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Characters Windows, macOS or Linux refuse (or treat specially) in a file name, and control characters.
_UNSAFE_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)
# Leaves room for a collision suffix within the usual 255-byte limit of a file name.
_MAX_FOLDER_NAME = 100


class ExportError(Exception):
    """An export cannot be done as asked; ``str(e)`` is the user-facing reason."""


def default_cluster_name(cluster_id: int) -> str:
    """The name shown for a cluster nobody named."""
    return "Unassigned" if int(cluster_id) == -1 else f"Cluster {int(cluster_id)}"


def escape_formula(text: str) -> str:
    """Prefix ``'`` to text a spreadsheet would run as a formula (see the module docstring)."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


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
) -> list[dict[str, Any]]:
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
) -> Path:
    """Write one CSV row per image: ``path, relative_path, cluster_id, cluster_name, confidence, x, y``.

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

    rows = _rows(paths, labels, cluster_names, confidence, embedding, root)
    target = Path(os.fsdecode(path))
    text_columns = ("path", "relative_path", "cluster_name")
    # surrogateescape: a non-UTF-8 file name is written back as its original bytes.
    with atomic_write(target, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    escape_formula(row[c]) if c in text_columns else ("" if row[c] is None else row[c])
                    for c in CSV_COLUMNS
                ]
            )
    return target


def export_json(
    path: PathLike,
    paths: Sequence[PathLike],
    labels,
    cluster_names: Optional[Mapping[int, str]] = None,
    confidence=None,
    embedding=None,
    root: Optional[PathLike] = None,
) -> Path:
    """Write the same data as :func:`export_csv` as JSON.

    The document is ``{"version", "root", "clusters": {id: {"name", "size"}}, "images": [row, ...]}``
    with rows keyed like the CSV columns (numbers stay numbers, missing values are ``null``).
    """
    rows = _rows(paths, labels, cluster_names, confidence, embedding, root)
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
    names get a ``_`` prefix; an empty result becomes ``fallback``.
    """
    cleaned = _UNSAFE_NAME_CHARS.sub("_", str(name)).strip()
    cleaned = cleaned.lstrip(".").rstrip(". ")
    cleaned = cleaned[:_MAX_FOLDER_NAME].rstrip(". ")
    if not cleaned:
        cleaned = fallback
    if cleaned.split(".")[0].upper() in _WINDOWS_RESERVED:
        cleaned = "_" + cleaned
    return cleaned


def _with_suffix_number(name: str, number: int) -> str:
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a name like ".hidden"
        return f"{name}_{number}"
    return f"{stem}_{number}{dot}{ext}"


@dataclass
class ExportEntry:
    """One file of a folder export (the manifest holds a list of these)."""

    source: str
    destination: str
    mode: str
    status: str = "planned"  # planned -> done | failed
    reason: str = ""


@dataclass
class FolderExportResult:
    """What :func:`export_folders` did."""

    target: Path
    manifest_path: Path
    entries: list[ExportEntry] = field(default_factory=list)
    failed: list[SkippedFile] = field(default_factory=list)

    @property
    def n_done(self) -> int:
        return sum(1 for e in self.entries if e.status == "done")


@dataclass
class UndoResult:
    """What :func:`undo_export` did."""

    restored: int = 0
    removed: int = 0
    problems: list[SkippedFile] = field(default_factory=list)


def _probe_writable(folder: Path) -> None:
    """Create and remove a file: ``os.access`` is wrong for root, ACLs and network drives."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".imgcluster-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ExportError(f"Cannot write in {os.fspath(folder)}: {exc.strerror or exc}") from None


def _write_manifest(manifest_path: Path, data: dict[str, Any]) -> None:
    with atomic_write(manifest_path, "w", encoding="ascii") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=True)


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


def _copy_into_reserved(source: Path, destination: Path) -> None:
    """Copy ``source``'s bytes and times into the empty file :func:`_reserve` made.

    On any failure (or a cancel) the reserved file is removed, so no half-written copy is left.
    """
    try:
        with open(source, "rb") as src, open(destination, "r+b") as dst:
            shutil.copyfileobj(src, dst, length=1024 * 1024)
        shutil.copystat(source, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(destination)
        raise


def _move_no_overwrite(source: Path, destination: Path) -> None:
    """Move a file to a destination that must not exist yet; works across file systems."""
    _reserve(destination)
    try:
        # Replacing our own empty placeholder is the only overwrite that can happen here.
        os.replace(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            with contextlib.suppress(OSError):
                os.unlink(destination)
            raise
        _copy_into_reserved(source, destination)
        os.unlink(source)


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
        while name.casefold() in used_folders or (os.path.lexists(target / name) and not (target / name).is_dir()):
            name = f"{base}_{number}"
            number += 1
        used_folders.add(name.casefold())
        folder_for[cluster] = name

    taken: dict[str, set[str]] = {}
    entries = []
    for p, cluster in zip(paths, labels):
        source = Path(os.fsdecode(p))
        folder = target / folder_for[int(cluster)]
        names = taken.setdefault(folder.name, set())
        candidate, number = source.name, 1
        while candidate.casefold() in names or os.path.lexists(folder / candidate):
            candidate = _with_suffix_number(source.name, number)
            number += 1
        names.add(candidate.casefold())
        destination = folder / candidate
        # Belt and braces: a planned destination must lie directly in its cluster folder.
        if destination.parent != folder or folder.parent != target:
            raise ExportError(f"Unsafe destination for {os.fspath(source)}: {os.fspath(destination)}")
        entries.append(ExportEntry(source=os.fspath(source.absolute()), destination=os.fspath(destination), mode=mode))
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
        folder and needs ``allow_move=True``.
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
        Unknown mode, move without ``allow_move``, mismatched lengths, or ``target`` cannot be
        created or written: raised before any file is touched.
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
    created_folders = [name for name in folder_names if not (target_path / name).exists()]
    manifest_path = _new_manifest_path(target_path)
    manifest = {
        "version": MANIFEST_VERSION,
        "kind": "imgcluster folder export",
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "target": os.fspath(target_path),
        "mode": mode,
        "created_folders": created_folders,
        "undone": False,
        "entries": [vars(e) for e in entries],
    }
    # Written before the first file moves, so an interrupted export can still be undone.
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


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(manifest_path.read_text(encoding="ascii"))
    except FileNotFoundError:
        raise ExportError(f"Export manifest not found: {os.fspath(manifest_path)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"Export manifest is unreadable or corrupt ({exc}): {os.fspath(manifest_path)}") from None
    if (
        not isinstance(data, dict)
        or data.get("version") != MANIFEST_VERSION
        or not isinstance(data.get("entries"), list)
    ):
        raise ExportError(f"Not an imgcluster export manifest (or an unknown version): {os.fspath(manifest_path)}")
    return data


def _same_copy(source: Path, copy: Path) -> bool:
    """Is ``copy`` still the copy we made (same size and modification time as the source)?

    A copy the user has edited since is kept: undo must never lose work.
    """
    try:
        a, b = source.stat(), copy.stat()
    except OSError:
        return False
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def undo_export(manifest_path: PathLike, progress: ProgressLike = None) -> UndoResult:
    """Reverse a folder export from its manifest.

    Moved files go back to their original place (never over a file that is there now); copies
    that are unchanged and links that still point at their source are removed; cluster folders
    the export created are removed when empty.  Running it twice is harmless.

    Parameters
    ----------
    manifest_path : str or path-like
        The ``FolderExportResult.manifest_path`` of the export.

    Returns
    -------
    UndoResult
        Counts and, for every file that could not be put back, the reason.

    Raises
    ------
    ExportError
        The manifest is missing, corrupt or not an export manifest.
    """
    report = ensure(progress)
    manifest_file = Path(os.fsdecode(manifest_path))
    manifest = _read_manifest(manifest_file)
    result = UndoResult()
    entries = manifest["entries"]
    n = len(entries)
    step = max(1, n // 100)
    for i, raw in enumerate(entries):
        if i % step == 0:
            report(i / max(n, 1), "undo", done=i, total=n, unit="files")
        entry = ExportEntry(**{k: raw.get(k, "") for k in ("source", "destination", "mode", "status", "reason")})
        if entry.status not in ("done", "planned"):  # a failed entry touched nothing
            continue
        source, destination = Path(entry.source), Path(entry.destination)
        try:
            if entry.mode == "move":
                if not os.path.lexists(destination):
                    if not os.path.lexists(source) and entry.status == "done":
                        result.problems.append(
                            SkippedFile(entry.source, f"moved file is gone from {entry.destination}")
                        )
                    continue
                if os.path.lexists(source):
                    result.problems.append(
                        SkippedFile(
                            entry.source, f"a file is back at the original place; left {entry.destination} where it is"
                        )
                    )
                    continue
                source.parent.mkdir(parents=True, exist_ok=True)
                _move_no_overwrite(destination, source)
                result.restored += 1
            elif entry.mode == "symlink":
                if os.path.islink(destination) and os.readlink(destination) == entry.source:
                    os.unlink(destination)
                    result.removed += 1
            elif entry.mode == "copy":
                if destination.is_file() and not destination.is_symlink():
                    if _same_copy(source, destination):
                        os.unlink(destination)
                        result.removed += 1
                    else:
                        result.problems.append(
                            SkippedFile(
                                entry.destination,
                                "the copy differs from its source (edited, or the source is gone): kept",
                            )
                        )
        except OSError as exc:
            result.problems.append(SkippedFile(entry.source, f"could not undo: {exc.strerror or exc}"))

    target = Path(manifest.get("target", manifest_file.parent))
    for name in manifest.get("created_folders", []):
        folder = target / name
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
