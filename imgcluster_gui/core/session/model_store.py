"""The trained network of a deep run, stored beside the session file.

``<session file>.models/<method>-<id>.pt``: written by the method's ``save`` (see
``core.clustering.deep.saving``), atomically and before the session file, tensors only (read with
``weights_only=True``); the session file refers to it by relative name, SHA-256 and size. It is
kept out of the session's zip so that autosaves do not rewrite a large backbone each time (an
unchanged model file is not written again), and each new network gets a fresh name, so the
session file on disk keeps a valid reference until the new one replaces it. A missing or damaged
model file never stops a session from loading: :attr:`TrainedModelStore.warning` says why.

:class:`TrainedModelStore` owns this state for one session (the estimator in memory, the file on
disk, its reference, the last write); :class:`~imgcluster_gui.core.session.model.ClusterSession`
exposes it as ``trained_model``, ``model_path``, ``model_reference``, ``model_warning``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Optional

from ..storage import atomic_copy
from .persistence import SessionFileError

MODELS_SUFFIX = ".models"

log = logging.getLogger(__name__)


class TrainedModelStore:
    """The trained estimator of one session and the file it is (or will be) saved to."""

    def __init__(self) -> None:
        self._estimator: Any = None
        self.path: Optional[Path] = None  # the trained-model file on disk, when there is one
        self.reference: Optional[dict] = None  # its entry in session.json
        self.warning: Optional[str] = None  # why the trained network was not saved / is unusable
        # (estimator id, path, size, mtime_ns, sha256) of the last write or read
        self._written: Optional[tuple] = None

    @property
    def estimator(self) -> Any:
        """The deep estimator in memory (None: nothing in memory)."""
        return self._estimator

    @estimator.setter
    def estimator(self, estimator: Any) -> None:
        self._estimator = estimator
        self.path = None
        self.reference = None
        self.warning = None
        self._written = None

    @property
    def has_model(self) -> bool:
        """True when a trained network is in memory or referenced by the loaded / saved file."""
        return _saveable(self._estimator) or self.path is not None

    def load(self, device: str = "cpu", backbone: Any = None) -> Any:
        """The trained estimator (in memory, or read from the model file); see ``ClusterSession.load_trained_model``."""
        if self._estimator is not None:
            return self._estimator
        if self.path is None:
            raise SessionFileError(
                "This session has no saved trained network (it is not from a deep method, "
                "or was saved before networks were saved with sessions)"
            )
        path = self.path
        if not path.is_file():
            raise SessionFileError(
                f"The trained network of this session is missing: {path} "
                "(the clusters are intact; run the method again to get a network)"
            )
        expected = (self.reference or {}).get("sha256")
        if expected and _sha256(path) != expected:
            raise SessionFileError(
                f"The trained network file {path.name} is damaged (it does not match the "
                "session); the clusters are intact, but the network cannot be reused"
            )
        from ..clustering.deep.saving import ModelFileError, load_model

        try:
            estimator = load_model(path, device=device, backbone=backbone)
        except ModelFileError as exc:
            raise SessionFileError(f"Cannot load the trained network: {exc}") from None
        self._estimator = estimator
        stat = path.stat()
        self._written = (id(estimator), path, stat.st_size, stat.st_mtime_ns, expected or _sha256(path))
        return estimator

    def write_beside(self, target: Path) -> tuple[Optional[dict], Optional[Path], Optional[str]]:
        """Write (or keep, or copy) the trained network beside session file ``target``: ``(reference, file, warning)``.

        Never raises: a network that cannot be written leaves the session savable, with a warning.
        """
        models_dir = _models_dir(target)
        estimator = self._estimator
        try:
            if _saveable(estimator):
                method = type(estimator).__name__
                written = self._written
                if (
                    written is not None
                    and written[0] == id(estimator)
                    and written[1].parent == models_dir
                    and _same_file_state(written[1], written[2], written[3])
                ):
                    dest, sha = written[1], written[4]  # unchanged since the last save there
                else:
                    from ..clustering.deep.saving import save_model

                    dest = models_dir / f"{method.lower()}-{uuid.uuid4().hex[:8]}.pt"
                    save_model(estimator, dest)
                    sha = _sha256(dest)
            elif estimator is None and self.path is not None:
                source = self.path
                method = str((self.reference or {}).get("method", ""))
                if not source.is_file():
                    raise OSError(f"its file {source} is missing")
                dest = source
                if source.parent.resolve() != models_dir.resolve():
                    dest = models_dir / source.name
                    models_dir.mkdir(parents=True, exist_ok=True)
                    atomic_copy(source, dest)
                sha = (self.reference or {}).get("sha256") or _sha256(dest)
            else:
                return None, None, None
            stat = dest.stat()
            if _saveable(estimator):
                self._written = (id(estimator), dest, stat.st_size, stat.st_mtime_ns, sha)
        except Exception as exc:  # noqa: BLE001 - ModelFileError, OSError, torch errors: the session still saves
            warning = f"The trained network was not saved with the session: {exc}"
            log.warning(warning)
            return None, None, warning
        reference = {
            "file": f"{models_dir.name}/{dest.name}",
            "method": method,
            "sha256": sha,
            "bytes": int(stat.st_size),
        }
        return reference, dest, None

    def saved(
        self,
        target: Path,
        reference: Optional[dict],
        model_file: Optional[Path],
        warning: Optional[str],
        prune: bool = True,
    ) -> None:
        """Record that session file ``target`` now refers to ``model_file``; remove the networks of earlier saves.

        ``prune=False`` keeps the folder as it is: a workspace file holds several runs, whose
        networks share the folder, and prunes once for all of them (:func:`prune_models_beside`).
        """
        self.path, self.reference, self.warning = model_file, reference, warning
        if prune:
            _prune_models(_models_dir(target), keep=[] if model_file is None else [model_file])

    def attach(self, source: Path, reference: Any) -> None:
        """Point at the trained-model file session file ``source`` refers to; a problem only sets :attr:`warning`."""
        relative = reference.get("file") if isinstance(reference, Mapping) else None
        if (
            not isinstance(relative, str)
            or not relative
            or PurePosixPath(relative).is_absolute()
            or ".." in PurePosixPath(relative).parts
        ):
            self.warning = "The session's reference to its trained network is damaged: the network is lost"
            return
        path = source.parent / PurePosixPath(relative)
        self.path, self.reference = path, dict(reference)
        if not path.is_file():
            self.warning = (
                f"The trained network saved with this session is missing ({path}); "
                "the clusters are intact, but the network cannot be reused"
            )
        elif isinstance(reference.get("bytes"), int) and path.stat().st_size != reference["bytes"]:
            self.warning = (
                f"The trained network file {path.name} is damaged (wrong size); "
                "the clusters are intact, but the network cannot be reused"
            )
        if self.warning:
            log.warning(self.warning)


# ---------------------------------------------------------------------------- files


def _models_dir(session_file: Path) -> Path:
    """``<session file>.models``: the folder of the trained networks saved with a session."""
    return session_file.with_name(session_file.name + MODELS_SUFFIX)


def _saveable(estimator: Any) -> bool:
    # Only deep estimators can have a network; checking the module first keeps torch unimported otherwise.
    if estimator is None or not type(estimator).__module__.startswith("imgcluster_gui.core.clustering.deep"):
        return False
    from ..clustering.deep.saving import has_trained_network

    return has_trained_network(estimator)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_file_state(path: Path, size: int, mtime_ns: int) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    return stat.st_size == size and stat.st_mtime_ns == mtime_ns


def prune_models_beside(session_file: Path, keep: Iterable[Path]) -> None:
    """Remove from ``<session_file>.models`` every network but those in ``keep`` (the folder too once empty)."""
    _prune_models(_models_dir(session_file), keep)


def _prune_models(models_dir: Path, keep: Iterable[Path]) -> None:
    """Remove the networks of earlier saves from ``models_dir`` (and the folder once empty)."""
    if not models_dir.is_dir():
        return
    kept = {path.name for path in keep}
    for old in models_dir.glob("*.pt"):
        if old.name not in kept:
            try:
                old.unlink()
            except OSError as exc:
                log.warning("Could not remove the old trained network %s: %s", old, exc)
    try:
        models_dir.rmdir()  # only succeeds when empty
    except OSError:
        pass
