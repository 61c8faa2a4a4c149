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
``granularity_labels.npy`` ``(N, L)``
    Present only when the session has them.

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
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Union

import numpy as np

from ..export import ExportError, atomic_write
from ..jsonable import to_jsonable as _jsonable
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
_OPTIONAL_ARRAYS = ("embedding", "features", "confidence", "granularity_labels")
_MODEL_KEY = "trained_model"


class SessionFileError(Exception):
    """A session file cannot be read or written; ``str(error)`` is a one-line user-facing reason."""


# ---------------------------------------------------------------------------- (de)serialising


def session_to_dict(session: "ClusterSession") -> dict[str, Any]:
    """Everything except the large arrays, JSON-able (see the module docstring)."""
    metrics = session.metrics
    return {
        "format": SESSION_FORMAT,
        "version": _ONE_RUN_VERSION,
        "root": session.root,
        "paths": list(session.paths),
        "cluster_names": {str(c): n for c, n in sorted(session.cluster_names.items())},
        "settings": _jsonable(session.settings),
        "metrics": _jsonable(metrics),
        "metrics_current": not session.metrics_stale if metrics else False,
        "ground_truth": session.ground_truth,
        "history": [edit.to_dict() for edit in session.history],
        "granularity": _jsonable(session.granularity),
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
    return session


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
    try:
        with atomic_write(target, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(_JSON_MEMBER, text)
                for name, array in session_arrays(session).items():
                    buffer = io.BytesIO()
                    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                    archive.writestr(f"{name}.npy", buffer.getvalue())
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
    try:
        with zipfile.ZipFile(source, "r") as archive:
            yield archive
    except SessionFileError:
        raise
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


def _read_document(source: Path, archive: zipfile.ZipFile) -> Any:
    if _JSON_MEMBER not in set(archive.namelist()):
        raise SessionFileError(f"{source.name} is not an imgcluster session file")
    return json.loads(archive.read(_JSON_MEMBER).decode("utf-8"))


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
        if not _is_workspace(data):
            members = set(archive.namelist())
            for name in ("labels", "original_labels", *_OPTIONAL_ARRAYS):
                if f"{name}.npy" in members:
                    arrays[name] = np.lib.format.read_array(io.BytesIO(archive.read(f"{name}.npy")), allow_pickle=False)
    if _is_workspace(data):
        current = load_workspace(source, cls).current
        assert current is not None  # a workspace always holds a run and knows its current one
        return current.session
    try:
        session = session_from_dict(cls, data, arrays)
    except SessionFileError as exc:
        raise SessionFileError(f"{source.name}: {exc}") from None
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
    loaded: dict[str, np.ndarray] = {}  # member -> array: the runs of one folder share their copies
    history = RunHistory()
    for position, run in enumerate(runs):
        what = f"run {run.get('number', position + 1) if isinstance(run, Mapping) else position + 1}"
        try:
            if not isinstance(run, Mapping):
                raise ValueError("not a run")
            session_data = dict(run["session"])
            session_data["paths"] = path_lists[int(run["paths"])]
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
                with archive.open(member) as fh:
                    loaded[member] = arrays[name] = np.lib.format.read_array(fh, allow_pickle=False)
            number = int(run["number"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SessionFileError(f"{source.name} is damaged: {what}: {exc}") from None
        try:
            session = session_from_dict(cls, session_data, arrays)
        except SessionFileError as exc:
            raise SessionFileError(f"{source.name}: {what}: {exc}") from None
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


def _restore_metrics(metrics: Mapping[str, Any]) -> dict:
    # JSON turned the per-cluster dicts' int keys into strings.
    restored = dict(metrics)
    for key, value in metrics.items():
        if key.startswith("per_cluster_") and isinstance(value, Mapping):
            restored[key] = {int(c): v for c, v in value.items()}
    return restored
