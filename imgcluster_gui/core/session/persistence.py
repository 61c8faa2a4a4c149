"""Saving and loading a session: the ``.imgcluster`` file format and its version.

Session file format (``.imgcluster``, version :data:`SESSION_VERSION`)
-----------------------------------------------------------------------
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

Arrays are read with ``allow_pickle=False``; a damaged, foreign or newer file raises
:class:`SessionFileError` with a one-line message.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

import numpy as np

from ..export import ExportError, atomic_write
from ..jsonable import to_jsonable as _jsonable
from .edits import Edit

if TYPE_CHECKING:  # the model imports this module, not the other way round
    from .model import ClusterSession

PathLike = Union[str, "os.PathLike[str]"]

SESSION_FORMAT = "imgcluster-session"
SESSION_VERSION = 1
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
        "version": SESSION_VERSION,
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


def load_session(cls: type, path: PathLike) -> "ClusterSession":
    """Read a session written by :func:`save_session` as an instance of ``cls``; see ``ClusterSession.load``."""
    source = Path(os.fsdecode(path))
    try:
        with zipfile.ZipFile(source, "r") as archive:
            members = set(archive.namelist())
            if _JSON_MEMBER not in members:
                raise SessionFileError(f"{source.name} is not an imgcluster session file")
            data = json.loads(archive.read(_JSON_MEMBER).decode("utf-8"))
            arrays = {}
            for name in ("labels", "original_labels", *_OPTIONAL_ARRAYS):
                if f"{name}.npy" in members:
                    arrays[name] = np.lib.format.read_array(io.BytesIO(archive.read(f"{name}.npy")), allow_pickle=False)
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
    try:
        session = session_from_dict(cls, data, arrays)
    except SessionFileError as exc:
        raise SessionFileError(f"{source.name}: {exc}") from None
    if data.get(_MODEL_KEY) is not None:
        session._models.attach(source, data[_MODEL_KEY])
    return session


def _restore_metrics(metrics: Mapping[str, Any]) -> dict:
    # JSON turned the per-cluster dicts' int keys into strings.
    restored = dict(metrics)
    for key, value in metrics.items():
        if key.startswith("per_cluster_") and isinstance(value, Mapping):
            restored[key] = {int(c): v for c, v in value.items()}
    return restored
