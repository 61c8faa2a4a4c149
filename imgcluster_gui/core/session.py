"""The editable clustering result: labels, names, hand edits, save / load.

A :class:`ClusterSession` is plain Python (no Qt): the desktop app's views adapt it, the way
napari's Qt models adapt its evented lists.  Every hand edit is an :class:`Edit` record that holds
the labels and names *before and after* for the images and clusters it touches, so undo and redo
are exact (``apply`` / ``revert`` write absolute values, never deltas).  Subscribers get a
:class:`SessionEvent` after each change.

Session file format (``.imgcluster``, version :data:`SESSION_VERSION`)
-----------------------------------------------------------------------
One zip archive (stored, not compressed: the arrays are small next to the images), written
atomically (temporary file + ``os.replace``):

``session.json``
    ``{"format": "imgcluster-session", "version": 1, "root", "paths", "cluster_names"
    {id: name}, "settings", "metrics", "ground_truth", "history": [edit, ...]}``.
    Paths keep undecodable bytes as surrogate escapes (JSON ``\\udcxx``).
``labels.npy``, ``original_labels.npy``
    int64 ``(N,)``: the current labels and those the clustering produced (the hand edits are
    the difference, and ``history`` lists them in order).
``embedding.npy`` ``(N, 2)``, ``features.npy`` ``(N, D)``, ``confidence.npy`` ``(N,)``
    Present only when the session has them.

``trained_model`` in ``session.json`` (optional; absent in older files, which still load)
    ``{"file": "<session name>.models/<method>.pt", "method", "sha256", "bytes"}``: the trained
    network of a deep run (autoencoder of DEC / IDEC / DMVC; fine-tuned backbone + head / centroids
    of DeepCluster / UCNN), written *beside* the session file, atomically and before it, by the
    method's ``save`` (see ``core.clustering.deep.saving``). ``file`` is relative to the session's
    folder, so the two move together. It is kept out of the zip so that autosaves do not rewrite a
    large backbone each time (an unchanged model file is not written again). A missing or damaged
    model file never stops the session from loading: :attr:`ClusterSession.model_warning` says why,
    and :meth:`ClusterSession.load_trained_model` raises :class:`SessionFileError` with that reason.

Arrays are read with ``allow_pickle=False``; a damaged, foreign or newer file raises
:class:`SessionFileError` with a one-line message.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from .export import ExportError, atomic_write, default_cluster_name
from .jsonable import to_jsonable as _jsonable

PathLike = Union[str, "os.PathLike[str]"]

UNASSIGNED = -1
#: Description prefix of the edits the granularity control makes (not counted as hand placements).
REGROUP_PREFIX = "Regroup into "
SESSION_FORMAT = "imgcluster-session"
SESSION_VERSION = 1
SESSION_SUFFIX = ".imgcluster"
_JSON_MEMBER = "session.json"
_OPTIONAL_ARRAYS = ("embedding", "features", "confidence", "granularity_labels")
_MODEL_KEY = "trained_model"
MODELS_SUFFIX = ".models"

log = logging.getLogger(__name__)


class SessionFileError(Exception):
    """A session file cannot be read or written; ``str(error)`` is a one-line user-facing reason."""


@dataclass(frozen=True)
class SessionEvent:
    """What changed in a session.

    Attributes
    ----------
    kind : str
        ``'labels'`` (images changed cluster), ``'names'`` (cluster names changed), ``'metrics'``
        (``session.metrics`` was replaced) or ``'reset'`` (everything may have changed: redraw all).
    indices : ndarray of int64, shape (n_changed,)
        Images whose label changed (empty for other kinds).
    clusters : frozenset of int
        Clusters that gained or lost images, or were renamed.
    """

    kind: str
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    clusters: frozenset = frozenset()


@dataclass(frozen=True)
class Edit:
    """One undoable hand edit: absolute values before and after, for what it touches.

    Attributes
    ----------
    description : str
        Text for an undo menu ("Move 3 images to Cats").
    indices : ndarray of int64, shape (n,)
        Images whose label the edit changes.
    old_labels, new_labels : ndarray of int64, shape (n,)
        Their labels before and after.
    old_names, new_names : dict[int, str | None]
        Custom names before and after of the clusters it renames; ``None`` = no custom name.
    """

    description: str
    indices: np.ndarray
    old_labels: np.ndarray
    new_labels: np.ndarray
    old_names: dict = field(default_factory=dict)
    new_names: dict = field(default_factory=dict)

    @property
    def is_noop(self) -> bool:
        """True when applying the edit changes nothing (e.g. images dropped on their own cluster)."""
        return self.indices.size == 0 and self.old_names == self.new_names

    @property
    def clusters(self) -> frozenset:
        """Every cluster the edit touches (gains, losses, renames)."""
        touched = set(int(c) for c in self.old_labels) | set(int(c) for c in self.new_labels)
        return frozenset(touched | set(self.old_names) | set(self.new_names))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (see :meth:`from_dict`)."""
        return {
            "description": self.description,
            "indices": self.indices.tolist(),
            "old_labels": self.old_labels.tolist(),
            "new_labels": self.new_labels.tolist(),
            "old_names": [[int(c), n] for c, n in self.old_names.items()],
            "new_names": [[int(c), n] for c, n in self.new_names.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Edit":
        """Rebuild an edit written by :meth:`to_dict`; ``ValueError``/``KeyError``/``TypeError`` if malformed."""
        indices = np.asarray(data["indices"], dtype=np.int64).reshape(-1)
        old_labels = np.asarray(data["old_labels"], dtype=np.int64).reshape(-1)
        new_labels = np.asarray(data["new_labels"], dtype=np.int64).reshape(-1)
        if not indices.shape == old_labels.shape == new_labels.shape:
            raise ValueError("edit arrays differ in length")
        return cls(str(data["description"]), indices, old_labels, new_labels,
                   {int(c): (None if n is None else str(n)) for c, n in data["old_names"]},
                   {int(c): (None if n is None else str(n)) for c, n in data["new_names"]})


Subscriber = Callable[[SessionEvent], None]


class ClusterSession:
    """One clustering result that a person can inspect and correct.

    Parameters
    ----------
    paths : list of str, length N
        The images, in the order of every array below.
    labels : array-like of int, shape (N,)
        Cluster of each image; ``-1`` = unassigned / noise.
    cluster_names : dict[int, str], optional
        Custom names; clusters without one are shown as ``"Cluster <id>"`` / ``"Unassigned"``.
    embedding : ndarray of shape (N, 2), optional
        2-D coordinates for the scatter plot.
    features : ndarray of shape (N, D), optional
        The (preprocessed) features the clustering ran on; needed by :meth:`recompute_metrics`.
    confidence : ndarray of shape (N,), optional
        Per-image membership confidence in [0, 1].
    ground_truth : list of str or None, length N, optional
        Known classes (for external metrics); ``None`` entries are images without a class.
    metrics : dict, optional
        ``core.metrics.internal_metrics`` keys at the top level, plus ``"external"`` (the
        ``external_metrics`` dict or None).
    settings : dict, optional
        How the result was made (the pipeline configuration); JSON-able values.
    root : str, optional
        The folder the images were scanned from.
    original_labels : array-like of int, shape (N,), optional
        The labels the clustering produced (default: ``labels``); saved so hand edits are visible.
    history : list of Edit, optional
        The hand edits applied so far, oldest first.
    granularity_labels : array-like of int, shape (N, L), optional
        The groupings of the granularity control, one column per level, fewest groups first
        (from :meth:`LeidenClusterer.ladder` and the like); :meth:`plan_regroup` switches to one.
    granularity : list of dict, optional
        One summary per column of ``granularity_labels`` (``n_clusters``, ``n_unsorted``,
        ``resolution``, ``modularity``, ``silhouette``), and ``"selected": True`` on the level the
        clustering returned.
    """

    def __init__(self, paths: Sequence[PathLike], labels, cluster_names: Optional[Mapping[int, str]] = None,
                 embedding=None, features=None, confidence=None,
                 ground_truth: Optional[Sequence[Optional[str]]] = None, metrics: Optional[dict] = None,
                 settings: Optional[dict] = None, root: Optional[PathLike] = None,
                 original_labels=None, history: Optional[Sequence[Edit]] = None,
                 granularity_labels=None, granularity: Optional[Sequence[Mapping[str, Any]]] = None) -> None:
        self.paths: list[str] = [os.fsdecode(p) for p in paths]
        n = len(self.paths)
        self.labels: np.ndarray = _as_labels(labels, n, "labels")
        self.original_labels: np.ndarray = (self.labels.copy() if original_labels is None
                                            else _as_labels(original_labels, n, "original_labels"))
        self.cluster_names: dict[int, str] = {int(c): str(name) for c, name in (cluster_names or {}).items()}
        self.embedding = _optional_rows(embedding, n, "embedding", np.float32, ndim=2)
        if self.embedding is not None and self.embedding.shape[1] != 2:
            raise ValueError(f"embedding must have shape (N, 2), got {self.embedding.shape}")
        self.features = _optional_rows(features, n, "features", None, ndim=2)
        self.confidence = _optional_rows(confidence, n, "confidence", np.float32, ndim=1)
        if ground_truth is not None and len(ground_truth) != n:
            raise ValueError(f"ground_truth has {len(ground_truth)} entries for {n} images")
        self.ground_truth: Optional[list[Optional[str]]] = (
            None if ground_truth is None else [None if g is None else str(g) for g in ground_truth])
        self._metrics: dict = dict(metrics or {})
        self.settings: dict = dict(settings or {})
        self.root: Optional[str] = None if root is None else os.fsdecode(root)
        self.history: list[Edit] = list(history or [])
        self.granularity_labels = _optional_rows(granularity_labels, n, "granularity_labels", np.int64, ndim=2)
        self.granularity: list[dict] = [dict(level) for level in (granularity or [])]
        if self.granularity_labels is not None:
            if len(self.granularity) != self.granularity_labels.shape[1]:
                raise ValueError(f"granularity has {len(self.granularity)} level summaries for "
                                 f"{self.granularity_labels.shape[1]} label columns")
            if self.granularity_labels.size and self.granularity_labels.min() < UNASSIGNED:
                raise ValueError("granularity labels must be >= -1")
        self.modified = False  # True after an edit, False after save / load
        self.uid = uuid.uuid4().hex  # tells drags from another session (or app instance) apart
        # The deep run's trained estimator (set after construction by the pipeline), or the file it
        # was saved to (after load / save): see the module docstring and load_trained_model().
        self._trained_model: Any = None
        self.model_path: Optional[Path] = None  # the trained-model file on disk, when there is one
        self.model_reference: Optional[dict] = None  # its entry in session.json
        self.model_warning: Optional[str] = None  # why the trained network was not saved / is unusable
        self._model_written: Optional[tuple] = None  # (estimator id, path, size, mtime_ns) of the last write
        self._subscribers: list[Subscriber] = []
        self._metrics_labels: Optional[np.ndarray] = self.labels.copy() if metrics else None

    # ------------------------------------------------------------------ observing
    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn(event)`` after every change; returns a function that unsubscribes."""
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def _emit(self, event: SessionEvent) -> None:
        # Every subscriber hears the event even if one fails; the first failure is raised after.
        failure: Optional[BaseException] = None
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception as exc:  # noqa: BLE001 - re-raised below
                failure = failure or exc
        if failure is not None:
            raise failure

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.paths)

    def cluster_ids(self) -> list[int]:
        """Clusters that have images, ascending, with ``-1`` (unassigned) last when present."""
        present = [int(c) for c in np.unique(self.labels)]
        return [c for c in present if c != UNASSIGNED] + ([UNASSIGNED] if UNASSIGNED in present else [])

    def indices_of(self, cluster: int) -> np.ndarray:
        """Indices (ascending, int64) of the images in ``cluster``."""
        return np.flatnonzero(self.labels == int(cluster)).astype(np.int64, copy=False)

    def size_of(self, cluster: int) -> int:
        """Number of images in ``cluster``."""
        return int(np.count_nonzero(self.labels == int(cluster)))

    def name_of(self, cluster: int) -> str:
        """The shown name: the custom one, else ``"Cluster <id>"`` or ``"Unassigned"``."""
        return self.cluster_names.get(int(cluster)) or default_cluster_name(int(cluster))

    def next_cluster_id(self) -> int:
        """An id used by no image and no name (for a new cluster)."""
        used = [int(self.labels.max()) if self.labels.size else UNASSIGNED] + list(self.cluster_names)
        return max(max(used), UNASSIGNED) + 1

    @property
    def n_edits(self) -> int:
        """How many hand edits are applied."""
        return len(self.history)

    @property
    def metrics(self) -> dict:
        """The shown metrics; assigning a new dict emits a ``'metrics'`` event."""
        return self._metrics

    @metrics.setter
    def metrics(self, value: Optional[dict]) -> None:
        self._metrics = dict(value or {})
        self._metrics_labels = self.labels.copy()
        self._emit(SessionEvent("metrics"))

    @property
    def metrics_stale(self) -> bool:
        """True when the labels changed since the metrics were computed or set."""
        return self._metrics_labels is None or not np.array_equal(self._metrics_labels, self.labels)

    # ------------------------------------------------------------------ planning edits (no change yet)
    def _check_indices(self, indices: Iterable[int]) -> np.ndarray:
        array = np.unique(np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices,
                                     dtype=np.int64).reshape(-1))
        if array.size and (array[0] < 0 or array[-1] >= len(self.paths)):
            raise IndexError(f"image index out of range 0..{len(self.paths) - 1}")
        return array

    def _check_cluster(self, cluster: int, must_exist: bool = False) -> int:
        cluster = int(cluster)
        if cluster < UNASSIGNED:
            raise ValueError(f"cluster ids are >= -1, got {cluster}")
        if must_exist and not np.any(self.labels == cluster):
            raise ValueError(f"{self.name_of(cluster)} has no images")
        return cluster

    def _label_change(self, indices: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        changing = indices[self.labels[indices] != target]
        return changing, self.labels[changing].copy(), np.full(changing.size, target, dtype=np.int64)

    def plan_move(self, indices: Iterable[int], target_cluster: int) -> Edit:
        """The :class:`Edit` that moves ``indices`` into ``target_cluster`` (not applied)."""
        target = self._check_cluster(target_cluster)
        changing, old, new = self._label_change(self._check_indices(indices), target)
        return Edit(f"Move {_count(changing.size, 'image')} to {self.name_of(target)}", changing, old, new)

    def plan_new_cluster(self, indices: Iterable[int], name: Optional[str] = None) -> Edit:
        """The :class:`Edit` that puts ``indices`` into a new cluster, optionally named (not applied)."""
        array = self._check_indices(indices)
        if array.size == 0:
            raise ValueError("a new cluster needs at least one image")
        cluster = self.next_cluster_id()
        changing, old, new = self._label_change(array, cluster)
        name = _clean_name(name)
        shown = name or default_cluster_name(cluster)
        new_names = {cluster: name} if name else {}
        return Edit(f"New cluster {shown} from {_count(changing.size, 'image')}", changing, old, new,
                    {cluster: None} if name else {}, new_names)

    def plan_rename(self, cluster: int, name: Optional[str]) -> Edit:
        """The :class:`Edit` that renames ``cluster``; an empty name restores the default (not applied)."""
        cluster = self._check_cluster(cluster)
        name = _clean_name(name)
        empty = np.zeros(0, dtype=np.int64)
        old_name = self.cluster_names.get(cluster)
        return Edit(f"Rename {self.name_of(cluster)} to {name or default_cluster_name(cluster)}",
                    empty, empty.copy(), empty.copy(), {cluster: old_name}, {cluster: name})

    def plan_merge(self, clusters: Iterable[int], into: int) -> Edit:
        """The :class:`Edit` that moves every image of ``clusters`` into ``into`` (not applied).

        The merged-away clusters lose their custom names (they no longer exist).
        """
        into = self._check_cluster(into)
        sources = sorted({self._check_cluster(c) for c in clusters} - {into})
        if not sources:
            raise ValueError("choose at least one other cluster to merge")
        members = np.flatnonzero(np.isin(self.labels, sources)).astype(np.int64)
        changing, old, new = self._label_change(members, into)
        dropped = {c: self.cluster_names[c] for c in sources if c in self.cluster_names}
        names = ", ".join(self.name_of(c) for c in sources)
        return Edit(f"Merge {names} into {self.name_of(into)}", changing, old, new,
                    dropped, {c: None for c in dropped})

    @property
    def n_granularity_levels(self) -> int:
        """Steps of the granularity control (0 when the result has none)."""
        return 0 if self.granularity_labels is None else int(self.granularity_labels.shape[1])

    def granularity_level(self) -> Optional[int]:
        """The level whose grouping the labels show now, ignoring hand-placed images; None if none fits."""
        if self.granularity_labels is None:
            return None
        free = np.ones(len(self.paths), dtype=bool)
        free[self.hand_placed()] = False
        for level in range(self.granularity_labels.shape[1]):
            if np.array_equal(self.granularity_labels[free, level], self.labels[free]):
                return level
        return None

    def hand_placed(self) -> np.ndarray:
        """Indices (ascending) of the images whose latest change was a hand edit (not a regroup).

        An image a person dragged stays hand-placed through regroups that keep it; a regroup that
        replaces its placement ("replace them too") makes it follow the levels again.
        """
        seen = np.zeros(len(self.paths), dtype=bool)
        placed = np.zeros(len(self.paths), dtype=bool)
        for edit in reversed(self.history):
            if not edit.indices.size:
                continue
            fresh = edit.indices[~seen[edit.indices]]
            if not edit.description.startswith(REGROUP_PREFIX):
                placed[fresh] = True
            seen[edit.indices] = True
        return np.flatnonzero(placed).astype(np.int64)

    def plan_regroup(self, level: int, keep_hand_placed: bool = True) -> Edit:
        """Switch to granularity level ``level`` (an undoable edit).

        Parameters
        ----------
        level : int
            Column of ``granularity_labels``.
        keep_hand_placed : bool
            Images a hand edit moved stay in the group they were put in; the rest follow the level.
            False replaces those placements too.
        """
        if self.granularity_labels is None:
            raise ValueError("this result has no granularity levels")
        if not 0 <= int(level) < self.granularity_labels.shape[1]:
            raise IndexError(f"granularity level must be in 0..{self.granularity_labels.shape[1] - 1}, got {level}")
        target = self.granularity_labels[:, int(level)].copy()
        if keep_hand_placed:
            placed = self.hand_placed()
            target[placed] = self.labels[placed]
        changing = np.flatnonzero(target != self.labels).astype(np.int64)
        summary = self.granularity[int(level)] if int(level) < len(self.granularity) else {}
        groups = summary.get("n_clusters", count_clusters(target))
        return Edit(f"{REGROUP_PREFIX}{_count(int(groups), 'group')}", changing, self.labels[changing].copy(),
                    target[changing])

    def regroup(self, level: int, keep_hand_placed: bool = True) -> Edit:
        """Apply :meth:`plan_regroup`; returns the applied edit."""
        return self.apply(self.plan_regroup(level, keep_hand_placed))

    def plan_delete_cluster(self, cluster: int) -> Edit:
        """The :class:`Edit` that sends ``cluster``'s images to Unassigned and drops its name (not applied)."""
        cluster = self._check_cluster(cluster)
        if cluster == UNASSIGNED:
            raise ValueError("Unassigned cannot be deleted: move its images to a cluster instead")
        changing, old, new = self._label_change(self.indices_of(cluster), UNASSIGNED)
        named = cluster in self.cluster_names
        return Edit(f"Delete {self.name_of(cluster)} ({_count(changing.size, 'image')} to Unassigned)",
                    changing, old, new, {cluster: self.cluster_names[cluster]} if named else {},
                    {cluster: None} if named else {})

    # ------------------------------------------------------------------ editing
    def move(self, indices: Iterable[int], target_cluster: int) -> Edit:
        """Move images into ``target_cluster`` (``-1`` = Unassigned); returns the applied edit."""
        return self.apply(self.plan_move(indices, target_cluster))

    def new_cluster(self, indices: Iterable[int], name: Optional[str] = None) -> Edit:
        """Put images into a new cluster (id :meth:`next_cluster_id`); returns the applied edit."""
        return self.apply(self.plan_new_cluster(indices, name))

    def rename(self, cluster: int, name: Optional[str]) -> Edit:
        """Rename a cluster (empty name = back to the default); returns the applied edit."""
        return self.apply(self.plan_rename(cluster, name))

    def merge(self, clusters: Iterable[int], into: int) -> Edit:
        """Move all images of ``clusters`` into ``into``; returns the applied edit."""
        return self.apply(self.plan_merge(clusters, into))

    def delete_cluster(self, cluster: int) -> Edit:
        """Send a cluster's images to Unassigned (-1); returns the applied edit."""
        return self.apply(self.plan_delete_cluster(cluster))

    def apply(self, edit: Edit) -> Edit:
        """Write ``edit``'s new values (redo) and notify subscribers; returns ``edit``."""
        self._write(edit, edit.new_labels, edit.new_names)
        self.history.append(edit)
        return edit

    def revert(self, edit: Edit) -> Edit:
        """Write ``edit``'s old values back (undo) and notify subscribers; returns ``edit``."""
        self._write(edit, edit.old_labels, edit.old_names)
        for position in range(len(self.history) - 1, -1, -1):
            if self.history[position] is edit:
                del self.history[position]
                break
        return edit

    def _write(self, edit: Edit, labels: np.ndarray, names: Mapping[int, Optional[str]]) -> None:
        if edit.indices.size and edit.indices.max() >= len(self.paths):
            raise IndexError("the edit does not belong to this session (image index out of range)")
        self.labels[edit.indices] = labels
        renamed = []
        for cluster, name in names.items():
            if self.cluster_names.get(cluster) != name:
                renamed.append(cluster)
            if name is None:
                self.cluster_names.pop(cluster, None)
            else:
                self.cluster_names[cluster] = name
        self.modified = True
        # Emitted after every write is done, so a subscriber never sees half an edit.
        if edit.indices.size:
            self._emit(SessionEvent("labels", edit.indices.copy(),
                                    frozenset(int(c) for c in np.unique(np.concatenate([edit.old_labels,
                                                                                        edit.new_labels])))))
        if renamed:
            self._emit(SessionEvent("names", clusters=frozenset(int(c) for c in renamed)))

    def reset_edits(self) -> None:
        """Go back to the clustering's own labels and drop every hand edit (not undoable).

        Restores the labels and, from the history, the names before the first edit; emits
        ``'reset'``.  A GUI should clear its undo stack after calling this.
        """
        for edit in reversed(self.history):
            for cluster, name in edit.old_names.items():
                if name is None:
                    self.cluster_names.pop(cluster, None)
                else:
                    self.cluster_names[cluster] = name
        self.labels[:] = self.original_labels
        self.history.clear()
        self.modified = True
        self._emit(SessionEvent("reset"))

    # ------------------------------------------------------------------ metrics
    def recompute_metrics(self, labels=None, sample_size: Optional[int] = 10000) -> dict:
        """Internal metrics on ``features`` and external metrics against ``ground_truth``.

        Parameters
        ----------
        labels : array-like of int, shape (N,), optional
            Score these labels instead of the current ones, *without* storing the result (safe on a
            worker thread with a snapshot).  Default: the current labels, and the result is stored
            in :attr:`metrics` (emitting ``'metrics'``).
        sample_size : int or None
            Passed to ``internal_metrics`` (silhouette sample above this many images).

        Returns
        -------
        dict
            ``internal_metrics`` keys (None values with ``reason`` when there are no features)
            plus ``"external"``: the ``external_metrics`` dict over images with a known class, or None.
        """
        from .metrics import external_metrics, internal_metrics  # scikit-learn import only when used

        store = labels is None
        used = self.labels.copy() if store else _as_labels(labels, len(self.paths), "labels")
        if self.features is not None:
            result = internal_metrics(self.features, used, sample_size=sample_size)
        else:
            result = {"silhouette": None, "calinski_harabasz": None, "davies_bouldin": None,
                      "per_cluster_silhouette": {}, "reason": "the session has no features"}
            clusters, sizes = np.unique(used[used != UNASSIGNED], return_counts=True)
            result["per_cluster_size"] = {int(c): int(s) for c, s in zip(clusters, sizes)}
            result["n_clusters"] = int(clusters.size)
            result["n_noise"] = int(np.count_nonzero(used == UNASSIGNED))
        result["external"] = None
        if self.ground_truth is not None:
            known = np.array([g is not None for g in self.ground_truth], dtype=bool)
            if known.any():
                truth = [g for g in self.ground_truth if g is not None]
                result["external"] = external_metrics(truth, used[known])
        if store:
            self.metrics = result
        return result

    # ------------------------------------------------------------------ trained network of a deep run
    @property
    def trained_model(self) -> Any:
        """The deep estimator whose trained network is saved beside the session (None: nothing to save).

        Set it after building the session from a deep run; any estimator without a trained network
        (classic methods, CC, MVEC) is simply not saved. After :meth:`load` it is None until
        :meth:`load_trained_model` reads the file.
        """
        return self._trained_model

    @trained_model.setter
    def trained_model(self, estimator: Any) -> None:
        self._trained_model = estimator
        self.model_path = None
        self.model_reference = None
        self.model_warning = None
        self._model_written = None

    @property
    def has_trained_model(self) -> bool:
        """True when a trained network is in memory or referenced by the loaded / saved file."""
        return _saveable(self._trained_model) or self.model_path is not None

    def load_trained_model(self, device: str = "cpu", backbone: Any = None) -> Any:
        """The trained estimator of this session (in memory, or read from its model file).

        Parameters
        ----------
        device : str
            Where to put the network ('cpu', 'cuda', 'auto').
        backbone : torch.nn.Module, optional
            For DeepCluster / UCNN trained from a module given directly: a module of the same
            architecture (a registry backbone is rebuilt by name, without downloading weights).

        Returns
        -------
        estimator
            DEC / IDEC / DMVC: ``transform(features)`` gives the embedding, ``predict`` the clusters.
            DeepCluster / UCNN: ``transform(paths)`` / ``predict(paths)`` on image files.

        Raises
        ------
        SessionFileError
            No trained network, or its file is missing, damaged or does not fit (one line).
            The session itself is unaffected.
        """
        if self._trained_model is not None:
            return self._trained_model
        if self.model_path is None:
            raise SessionFileError("This session has no saved trained network (it is not from a deep method, "
                                   "or was saved before networks were saved with sessions)")
        path = self.model_path
        if not path.is_file():
            raise SessionFileError(f"The trained network of this session is missing: {path} "
                                   "(the clusters are intact; run the method again to get a network)")
        expected = (self.model_reference or {}).get("sha256")
        if expected and _sha256(path) != expected:
            raise SessionFileError(f"The trained network file {path.name} is damaged (it does not match the "
                                   "session); the clusters are intact, but the network cannot be reused")
        from .clustering.deep.saving import ModelFileError, load_model

        try:
            estimator = load_model(path, device=device, backbone=backbone)
        except ModelFileError as exc:
            raise SessionFileError(f"Cannot load the trained network: {exc}") from None
        self._trained_model = estimator
        stat = path.stat()
        self._model_written = (id(estimator), path, stat.st_size, stat.st_mtime_ns, expected or _sha256(path))
        return estimator

    def _save_model(self, target: Path) -> tuple[Optional[dict], Optional[Path], Optional[str]]:
        """Write (or keep, or copy) the trained network beside ``target``: ``(reference, file, warning)``.

        Never raises: a network that cannot be written leaves the session savable, with a warning.
        Each new network gets a fresh file name, so the session file on disk keeps a valid
        reference until the new session file replaces it.
        """
        models_dir = _models_dir(target)
        estimator = self._trained_model
        try:
            if _saveable(estimator):
                method = type(estimator).__name__
                written = self._model_written
                if (written is not None and written[0] == id(estimator) and written[1].parent == models_dir
                        and _same_file_state(written[1], written[2], written[3])):
                    dest, sha = written[1], written[4]  # unchanged since the last save there
                else:
                    from .clustering.deep.saving import save_model

                    dest = models_dir / f"{method.lower()}-{uuid.uuid4().hex[:8]}.pt"
                    save_model(estimator, dest)
                    sha = _sha256(dest)
            elif estimator is None and self.model_path is not None:
                source = self.model_path
                method = str((self.model_reference or {}).get("method", ""))
                if not source.is_file():
                    raise OSError(f"its file {source} is missing")
                dest = source
                if source.parent.resolve() != models_dir.resolve():
                    dest = models_dir / source.name
                    _atomic_copy(source, dest)
                sha = (self.model_reference or {}).get("sha256") or _sha256(dest)
            else:
                return None, None, None
            stat = dest.stat()
            if _saveable(estimator):
                self._model_written = (id(estimator), dest, stat.st_size, stat.st_mtime_ns, sha)
        except Exception as exc:  # noqa: BLE001 - ModelFileError, OSError, torch errors: the session still saves
            warning = f"The trained network was not saved with the session: {exc}"
            log.warning(warning)
            return None, None, warning
        reference = {"file": f"{models_dir.name}/{dest.name}", "method": method, "sha256": sha,
                     "bytes": int(stat.st_size)}
        return reference, dest, None

    # ------------------------------------------------------------------ (de)serialising
    def to_dict(self) -> dict[str, Any]:
        """Everything except the large arrays, JSON-able (see the module docstring)."""
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "root": self.root,
            "paths": list(self.paths),
            "cluster_names": {str(c): n for c, n in sorted(self.cluster_names.items())},
            "settings": _jsonable(self.settings),
            "metrics": _jsonable(self._metrics),
            "metrics_current": not self.metrics_stale if self._metrics else False,
            "ground_truth": self.ground_truth,
            "history": [edit.to_dict() for edit in self.history],
            "granularity": _jsonable(self.granularity),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays saved beside :meth:`to_dict` (only those present)."""
        arrays = {"labels": self.labels, "original_labels": self.original_labels}
        for name in _OPTIONAL_ARRAYS:
            value = getattr(self, name)
            if value is not None:
                arrays[name] = np.asarray(value)
        return arrays

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "ClusterSession":
        """Rebuild a session from :meth:`to_dict` and :meth:`arrays` output.

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
            raise SessionFileError(f"session file version {version} is newer than this app reads "
                                   f"({SESSION_VERSION}): update imgcluster")
        try:
            paths = data["paths"]
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise ValueError("paths must be a list of strings")
            if "labels" not in arrays:
                raise ValueError("labels are missing")
            names = {int(c): str(n) for c, n in dict(data.get("cluster_names") or {}).items()}
            metrics = _restore_metrics(data.get("metrics") or {})
            history = [Edit.from_dict(item) for item in data.get("history") or []]
            session = cls(paths, arrays["labels"], names, embedding=arrays.get("embedding"),
                          features=arrays.get("features"), confidence=arrays.get("confidence"),
                          ground_truth=data.get("ground_truth"), metrics=metrics,
                          settings=dict(data.get("settings") or {}), root=data.get("root"),
                          original_labels=arrays.get("original_labels"), history=history,
                          granularity_labels=arrays.get("granularity_labels"),
                          granularity=list(data.get("granularity") or []) if "granularity_labels" in arrays else None)
            for edit in history:
                if edit.indices.size and (edit.indices.min() < 0 or edit.indices.max() >= len(paths)):
                    raise ValueError("an edit refers to an image that is not in the session")
        except SessionFileError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise SessionFileError(f"damaged session file: {exc}") from None
        if metrics and not data.get("metrics_current", True):
            session._metrics_labels = None  # saved metrics predate the saved hand edits
        return session

    def save(self, path: PathLike) -> Path:
        """Write the session to ``path`` atomically (see the module docstring for the format).

        Returns
        -------
        Path
            The file written.

        Raises
        ------
        SessionFileError
            The folder is missing or not writable, or the disk is full.
        """
        target = Path(os.fsdecode(path))
        writable = target.parent.is_dir() and not target.is_dir()  # else atomic_write below says why
        reference, model_file, warning = self._save_model(target) if writable else (None, None, None)
        data = self.to_dict()
        if reference is not None:
            data[_MODEL_KEY] = reference
        text = json.dumps(data, ensure_ascii=True, allow_nan=False)
        try:
            with atomic_write(target, "wb") as fh:
                with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as archive:
                    archive.writestr(_JSON_MEMBER, text)
                    for name, array in self.arrays().items():
                        buffer = io.BytesIO()
                        np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                        archive.writestr(f"{name}.npy", buffer.getvalue())
        except ExportError as exc:
            raise SessionFileError(f"Cannot save the session: {exc}") from None
        except OSError as exc:
            raise SessionFileError(f"Cannot save the session to {target}: {exc.strerror or exc}") from None
        self.modified = False
        self.model_path, self.model_reference, self.model_warning = model_file, reference, warning
        _prune_models(_models_dir(target), keep=model_file)
        return target

    @classmethod
    def load(cls, path: PathLike) -> "ClusterSession":
        """Read a session written by :meth:`save`.

        Raises
        ------
        SessionFileError
            Missing, unreadable, corrupt, foreign or newer file (one-line message).
        """
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
                        arrays[name] = np.lib.format.read_array(io.BytesIO(archive.read(f"{name}.npy")),
                                                                allow_pickle=False)
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
            session = cls.from_dict(data, arrays)
        except SessionFileError as exc:
            raise SessionFileError(f"{source.name}: {exc}") from None
        if data.get(_MODEL_KEY) is not None:
            session._attach_model_file(source, data[_MODEL_KEY])
        session.modified = False
        return session

    def _attach_model_file(self, source: Path, reference: Any) -> None:
        """Point at the trained-model file a loaded session refers to; a problem only sets :attr:`model_warning`."""
        from pathlib import PurePosixPath

        relative = reference.get("file") if isinstance(reference, Mapping) else None
        if not isinstance(relative, str) or not relative or PurePosixPath(relative).is_absolute() \
                or ".." in PurePosixPath(relative).parts:
            self.model_warning = "The session's reference to its trained network is damaged: the network is lost"
            return
        path = source.parent / PurePosixPath(relative)
        self.model_path, self.model_reference = path, dict(reference)
        if not path.is_file():
            self.model_warning = (f"The trained network saved with this session is missing ({path}); "
                                  "the clusters are intact, but the network cannot be reused")
        elif isinstance(reference.get("bytes"), int) and path.stat().st_size != reference["bytes"]:
            self.model_warning = (f"The trained network file {path.name} is damaged (wrong size); "
                                  "the clusters are intact, but the network cannot be reused")
        if self.model_warning:
            log.warning(self.model_warning)


# ---------------------------------------------------------------------------- helpers

def count_clusters(labels: np.ndarray) -> int:
    """Groups in ``labels``, the unassigned (-1) not counted."""
    labels = np.asarray(labels)
    return int(np.unique(labels[labels != UNASSIGNED]).size)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _clean_name(name: Optional[str]) -> Optional[str]:
    # One line, no surrounding blanks; an empty name means "no custom name".
    if name is None:
        return None
    cleaned = " ".join(str(name).split())
    return cleaned or None


def _as_labels(labels, n: int, what: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{what} must have shape ({n},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)) \
                or not np.all(array == np.round(array)):
            raise ValueError(f"{what} must be integers")
    array = array.astype(np.int64, copy=True)
    if array.size and array.min() < UNASSIGNED:
        raise ValueError(f"{what} must be >= -1 (-1 = unassigned)")
    return array


def _optional_rows(values, n: int, what: str, dtype, ndim: int) -> Optional[np.ndarray]:
    if values is None:
        return None
    array = np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)
    if array.ndim != ndim or array.shape[0] != n:
        raise ValueError(f"{what} must have {n} rows and {ndim} dimension(s), got shape {array.shape}")
    return array


def _models_dir(session_file: Path) -> Path:
    """``<session file>.models``: the folder of the trained networks saved with a session."""
    return session_file.with_name(session_file.name + MODELS_SUFFIX)


def _saveable(estimator: Any) -> bool:
    # Only deep estimators can have a network; checking the module first keeps torch unimported otherwise.
    if estimator is None or not type(estimator).__module__.startswith("imgcluster_gui.core.clustering.deep"):
        return False
    from .clustering.deep.saving import has_trained_network

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


def _atomic_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _prune_models(models_dir: Path, keep: Optional[Path]) -> None:
    """Remove the networks of earlier saves from ``models_dir`` (and the folder once empty)."""
    if not models_dir.is_dir():
        return
    for old in models_dir.glob("*.pt"):
        if keep is None or old.name != keep.name:
            try:
                old.unlink()
            except OSError as exc:
                log.warning("Could not remove the old trained network %s: %s", old, exc)
    try:
        models_dir.rmdir()  # only succeeds when empty
    except OSError:
        pass


def _restore_metrics(metrics: Mapping[str, Any]) -> dict:
    # JSON turned the per-cluster dicts' int keys into strings.
    restored = dict(metrics)
    for key, value in metrics.items():
        if key.startswith("per_cluster_") and isinstance(value, Mapping):
            restored[key] = {int(c): v for c, v in value.items()}
    return restored
