"""The editable clustering result: :class:`ClusterSession`.

A session is plain Python (no Qt): the desktop app's views adapt it, the way napari's Qt models
adapt its evented lists, and *only read it*. Every change goes through a method here, and
subscribers get a :class:`~imgcluster_gui.core.session.edits.SessionEvent` after it:

* hand edits (``move``, ``new_cluster``, ``rename``, ``merge``, ``delete_cluster``, ``regroup``,
  ``apply`` / ``revert`` for undo and redo, ``reset_edits``): ``'labels'`` / ``'names'`` /
  ``'reset'``;
* :meth:`ClusterSession.set_metrics` / :meth:`ClusterSession.recompute_metrics`: ``'metrics'``;
* :meth:`ClusterSession.set_embedding`: ``'embedding'``;
* the unsaved-changes flag :attr:`ClusterSession.modified` (set by edits and
  :meth:`ClusterSession.mark_modified`, cleared by :meth:`ClusterSession.save`): ``'modified'``
  when it flips.

Saving and loading are in :mod:`.persistence`, the trained network of a deep run in
:mod:`.model_store`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from .. import naming
from ..dataset import SkippedFile
from ..export import default_cluster_name
from . import persistence
from .edits import (
    REGROUP_PREFIX,
    UNASSIGNED,
    Edit,
    SessionEvent,
    Subscriber,
    clean_name,
    count_clusters,
    count_text,
    hand_placed,
    label_change,
    names_before,
)
from .model_store import TrainedModelStore

PathLike = Union[str, "os.PathLike[str]"]


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
        ``core.metrics.clustering_metrics`` output: ``internal_metrics`` keys at the top level,
        plus ``"external"`` (the ``external_metrics`` dict or None) and ``"auto_k"`` (how K was
        chosen, when it was).
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
    photo_meta : ndarray of shape (N, 6), optional
        Capture time and GPS of each image (a :mod:`imgcluster_gui.core.photo_meta` table: wall-clock
        time, UTC offset, source, latitude, longitude, altitude; NaN = unknown).
    imagenet_top_classes, imagenet_top_probs : ndarray of shape (N, k), optional
        The top ImageNet classes of each image (int16) and their probabilities (float16), from the
        default backbone's classifier head (:mod:`imgcluster_gui.core.naming`): :meth:`name_of` shows a
        suggested name for a cluster without a custom one (while :attr:`suggest_names` is on).
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        labels,
        cluster_names: Optional[Mapping[int, str]] = None,
        embedding=None,
        features=None,
        confidence=None,
        ground_truth: Optional[Sequence[Optional[str]]] = None,
        metrics: Optional[dict] = None,
        settings: Optional[dict] = None,
        root: Optional[PathLike] = None,
        original_labels=None,
        history: Optional[Sequence[Edit]] = None,
        granularity_labels=None,
        granularity: Optional[Sequence[Mapping[str, Any]]] = None,
        photo_meta=None,
        imagenet_top_classes=None,
        imagenet_top_probs=None,
    ) -> None:
        self.paths: list[str] = [os.fsdecode(p) for p in paths]
        n = len(self.paths)
        self.labels: np.ndarray = _as_labels(labels, n, "labels")
        self.original_labels: np.ndarray = (
            self.labels.copy() if original_labels is None else _as_labels(original_labels, n, "original_labels")
        )
        self.cluster_names: dict[int, str] = {int(c): str(name) for c, name in (cluster_names or {}).items()}
        self._embedding = _as_embedding(embedding, n)
        self.features = _optional_rows(features, n, "features", None, ndim=2)
        self.confidence = _optional_rows(confidence, n, "confidence", np.float32, ndim=1)
        self.photo_meta = _optional_rows(photo_meta, n, "photo_meta", np.float64, ndim=2)
        top = naming.check_top_classes(imagenet_top_classes, imagenet_top_probs, n)
        self.imagenet_top_classes: Optional[np.ndarray] = None if top is None else top[0]
        self.imagenet_top_probs: Optional[np.ndarray] = None if top is None else top[1]
        #: Show suggested names (the window's View toggle); off = "Cluster N" for every unnamed cluster.
        self.suggest_names = True
        self._suggestions: tuple[Optional[int], Mapping[int, naming.SuggestedName]] = (None, {})
        if ground_truth is not None and len(ground_truth) != n:
            raise ValueError(f"ground_truth has {len(ground_truth)} entries for {n} images")
        self.ground_truth: Optional[list[Optional[str]]] = (
            None if ground_truth is None else [None if g is None else str(g) for g in ground_truth]
        )
        self._metrics: dict = dict(metrics or {})
        self.settings: dict = dict(settings or {})
        #: ``(path, reason)`` of the files the run that made this session could not use (saved with it, so a
        #: reopened session still says what was left out and why).
        self.skipped: list[tuple[str, str]] = []
        self.root: Optional[str] = None if root is None else os.fsdecode(root)
        # Image index -> why its path was refused when the session was loaded (a path that leads out
        # of the image folder, a NUL character): never opened, never exported (see exportable_paths).
        self.missing: dict[int, str] = {}
        self.history: list[Edit] = list(history or [])
        self.granularity_labels = _optional_rows(granularity_labels, n, "granularity_labels", np.int64, ndim=2)
        self.granularity: list[dict] = [dict(level) for level in (granularity or [])]
        if self.granularity_labels is not None:
            if len(self.granularity) != self.granularity_labels.shape[1]:
                raise ValueError(
                    f"granularity has {len(self.granularity)} level summaries for "
                    f"{self.granularity_labels.shape[1]} label columns"
                )
            if self.granularity_labels.size and self.granularity_labels.min() < UNASSIGNED:
                raise ValueError("granularity labels must be >= -1")
        self._modified = False  # True after a change, False after save / load
        self._revision = 0  # counts the changes that set `modified`
        self.uid = uuid.uuid4().hex  # tells drags from another session (or app instance) apart
        # The deep run's trained estimator (set after construction by the pipeline), or the file it
        # was saved to (after load / save): see model_store and load_trained_model().
        self._models = TrainedModelStore()
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

    def _emit(self, *events: SessionEvent) -> None:
        # Every subscriber hears every event even if one fails; the first failure is raised after.
        failure: Optional[BaseException] = None
        for event in events:
            for fn in list(self._subscribers):
                try:
                    fn(event)
                except Exception as exc:  # noqa: BLE001 - re-raised below
                    failure = failure or exc
        if failure is not None:
            raise failure

    # ------------------------------------------------------------------ unsaved changes
    @property
    def modified(self) -> bool:
        """True when the session has changes no :meth:`save` wrote (the one unsaved-changes flag).

        Set by every edit and by :meth:`mark_modified`; cleared by :meth:`save` (not by an
        autosave, ``save(path, mark_saved=False)``). Each flip emits ``'modified'``.
        """
        return self._modified

    @property
    def revision(self) -> int:
        """Counts the changes that set :attr:`modified` (to tell whether a copy saved earlier is current)."""
        return self._revision

    def mark_modified(self) -> None:
        """Count the session as unsaved work (a new result never saved, a restored autosave)."""
        self._emit(*self._touch())

    def _touch(self) -> list[SessionEvent]:
        """Record a change; returns the ``'modified'`` event to emit once the change is complete (if it flipped)."""
        self._revision += 1
        if self._modified:
            return []
        self._modified = True
        return [SessionEvent("modified")]

    def _mark_saved(self) -> None:
        if self._modified:
            self._modified = False
            self._emit(SessionEvent("modified"))

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
        """The shown name: the custom one, else the suggested one (never "mixed"), else ``"Cluster <id>"``."""
        return self.cluster_names.get(int(cluster)) or self.uncustomised_name(cluster)

    def uncustomised_name(self, cluster: int) -> str:
        """The name without a custom one: the suggestion (not "mixed"), else ``"Cluster <id>"`` / ``"Unassigned"``."""
        suggestion = self.suggested_name(cluster)
        if suggestion is not None and not suggestion.is_mixed:
            return suggestion.text
        return default_cluster_name(int(cluster))

    def suggested_name(self, cluster: int) -> Optional[naming.SuggestedName]:
        """The name suggested from the members' ImageNet classes (``"mixed"`` included), or None.

        None for the unassigned images, without stored classes, or with :attr:`suggest_names` off.
        Recomputed from the labels after every change (a cheap function of the stored top classes).
        """
        classes, probs = self.imagenet_top_classes, self.imagenet_top_probs
        if not self.suggest_names or classes is None or probs is None or int(cluster) == UNASSIGNED:
            return None
        revision, suggestions = self._suggestions
        if revision != self._revision:
            suggestions = naming.suggestions_by_id(self.labels, (classes, probs))
            self._suggestions = (self._revision, suggestions)
        return suggestions.get(int(cluster))

    def set_suggest_names(self, on: bool) -> None:
        """Show suggested names or not (a view choice: not an edit, not unsaved work); emits ``'names'``."""
        if bool(on) == self.suggest_names:
            return
        self.suggest_names = bool(on)
        self._suggestions = (None, {})
        if self.has_class_suggestions:
            self._emit(SessionEvent("names", clusters=frozenset(self.cluster_ids())))

    def shown_names(self) -> dict[int, str]:
        """:meth:`name_of` of every cluster with images (what exports write: custom names, else suggestions)."""
        return {c: self.name_of(c) for c in self.cluster_ids() if c != UNASSIGNED}

    @property
    def has_class_suggestions(self) -> bool:
        """True when the session keeps ImageNet classes to suggest names from."""
        return self.imagenet_top_classes is not None

    def next_cluster_id(self) -> int:
        """An id used by no image and no name (for a new cluster)."""
        used = [int(self.labels.max()) if self.labels.size else UNASSIGNED] + list(self.cluster_names)
        return max(max(used), UNASSIGNED) + 1

    @property
    def n_edits(self) -> int:
        """How many hand edits are applied."""
        return len(self.history)

    # ------------------------------------------------------------------ embedding and settings
    @property
    def embedding(self) -> Optional[np.ndarray]:
        """The 2-D coordinates ``(N, 2)`` float32, or None; assigning one is :meth:`set_embedding`."""
        return self._embedding

    @embedding.setter
    def embedding(self, value) -> None:
        self.set_embedding(value)

    def set_embedding(self, coords, method: Optional[str] = None) -> None:
        """Replace the 2-D embedding (``(N, 2)``, or None) and emit ``'embedding'``.

        ``method`` (``'pca'``, ``'tsne'``, ``'umap'``) is recorded in ``settings['embedding']``.
        """
        self._embedding = _as_embedding(coords, len(self.paths))
        if method is not None:
            self.settings["embedding"] = str(method)
        self._emit(SessionEvent("embedding"))

    def set_setting(self, key: str, value: Any, overwrite: bool = True) -> None:
        """Record ``settings[key] = value`` (how the result was made; saved with it). No event."""
        if overwrite or key not in self.settings:
            self.settings[key] = value

    # ------------------------------------------------------------------ metrics
    @property
    def metrics(self) -> dict:
        """The shown metrics; assigning a new dict is :meth:`set_metrics`."""
        return self._metrics

    @metrics.setter
    def metrics(self, value: Optional[dict]) -> None:
        self.set_metrics(value)

    def set_metrics(self, metrics: Optional[dict], labels=None) -> bool:
        """Replace the shown metrics and emit ``'metrics'``; True when stored.

        Parameters
        ----------
        metrics : dict or None
        labels : array-like of int, shape (N,), optional
            The labels ``metrics`` were computed for (a worker's snapshot). When they are no
            longer the current labels (edits went on meanwhile) nothing is stored and the result
            is False. Default: the current labels.
        """
        if labels is not None and not np.array_equal(np.asarray(labels), self.labels):
            return False
        self._metrics = dict(metrics or {})
        self._metrics_labels = self.labels.copy()
        self._emit(SessionEvent("metrics"))
        return True

    @property
    def metrics_stale(self) -> bool:
        """True when the labels changed since the metrics were computed or set."""
        return self._metrics_labels is None or not np.array_equal(self._metrics_labels, self.labels)

    def _forget_metrics_labels(self) -> None:
        self._metrics_labels = None  # the stored metrics belong to unknown labels: stale

    def recompute_metrics(self, labels=None, sample_size: Optional[int] = 10000) -> dict:
        """The metrics of the labels, by ``core.metrics.clustering_metrics`` (the pipeline's own function).

        Parameters
        ----------
        labels : array-like of int, shape (N,), optional
            Score these labels instead of the current ones, *without* storing the result (safe on a
            worker thread with a snapshot; store it with ``set_metrics(result, labels)``). Default:
            the current labels, and the result is stored (emitting ``'metrics'``).
        sample_size : int or None
            Passed to ``internal_metrics`` (silhouette sample above this many images).

        Returns
        -------
        dict
            ``clustering_metrics`` of :attr:`features`, the labels and :attr:`ground_truth`
            (internal keys, None with ``reason`` when there are no features, and ``"external"``),
            plus the current ``"auto_k"``: how K was chosen does not change with edits.
        """
        from ..metrics import clustering_metrics  # scikit-learn import only when used

        store = labels is None
        used = self.labels.copy() if store else _as_labels(labels, len(self.paths), "labels")
        result = clustering_metrics(self.features, used, self.ground_truth, sample_size=sample_size)
        auto_k = self._metrics.get("auto_k")
        if auto_k is not None:
            result["auto_k"] = auto_k
        if store:
            self.set_metrics(result)
        return result

    # ------------------------------------------------------------------ planning edits (no change yet)
    def _check_indices(self, indices: Iterable[int]) -> np.ndarray:
        array = np.unique(
            np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64).reshape(-1)
        )
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

    def plan_move(self, indices: Iterable[int], target_cluster: int) -> Edit:
        """The :class:`Edit` that moves ``indices`` into ``target_cluster`` (not applied)."""
        target = self._check_cluster(target_cluster)
        changing, old, new = label_change(self.labels, self._check_indices(indices), target)
        return Edit(f"Move {count_text(changing.size, 'image')} to {self.name_of(target)}", changing, old, new)

    def plan_new_cluster(self, indices: Iterable[int], name: Optional[str] = None) -> Edit:
        """The :class:`Edit` that puts ``indices`` into a new cluster, optionally named (not applied)."""
        array = self._check_indices(indices)
        if array.size == 0:
            raise ValueError("a new cluster needs at least one image")
        cluster = self.next_cluster_id()
        changing, old, new = label_change(self.labels, array, cluster)
        name = clean_name(name)
        shown = name or default_cluster_name(cluster)
        new_names = {cluster: name} if name else {}
        return Edit(
            f"New cluster {shown} from {count_text(changing.size, 'image')}",
            changing,
            old,
            new,
            {cluster: None} if name else {},
            new_names,
        )

    def plan_rename(self, cluster: int, name: Optional[str]) -> Edit:
        """The :class:`Edit` that renames ``cluster``; an empty name restores the default (not applied)."""
        cluster = self._check_cluster(cluster)
        name = clean_name(name)
        empty = np.zeros(0, dtype=np.int64)
        old_name = self.cluster_names.get(cluster)
        return Edit(
            f"Rename {self.name_of(cluster)} to {name or self.uncustomised_name(cluster)}",
            empty,
            empty.copy(),
            empty.copy(),
            {cluster: old_name},
            {cluster: name},
        )

    def plan_merge(self, clusters: Iterable[int], into: int) -> Edit:
        """The :class:`Edit` that moves every image of ``clusters`` into ``into`` (not applied).

        The merged-away clusters lose their custom names (they no longer exist).
        """
        into = self._check_cluster(into)
        sources = sorted({self._check_cluster(c) for c in clusters} - {into})
        if not sources:
            raise ValueError("choose at least one other cluster to merge")
        members = np.flatnonzero(np.isin(self.labels, sources)).astype(np.int64)
        changing, old, new = label_change(self.labels, members, into)
        dropped = {c: self.cluster_names[c] for c in sources if c in self.cluster_names}
        names = ", ".join(self.name_of(c) for c in sources)
        return Edit(f"Merge {names} into {self.name_of(into)}", changing, old, new, dropped, {c: None for c in dropped})

    # ------------------------------------------------------------------ corrections (core/constraints.py)
    def plan_confirm(self, cluster: int) -> Edit:
        """The :class:`Edit` that confirms ``cluster``: its images stay and count as placed by hand (not applied)."""
        from .edits import CONFIRM_PREFIX

        if int(cluster) == UNASSIGNED:
            raise ValueError("Unassigned is not a cluster to confirm")
        cluster = self._check_cluster(cluster, must_exist=True)
        members = self.indices_of(cluster).astype(np.int64)
        labels = self.labels[members].copy()
        text = f"{CONFIRM_PREFIX}{self.name_of(cluster)} ({count_text(members.size, 'image')})"
        return Edit(text, members, labels, labels.copy())

    def confirm(self, cluster: int) -> Edit:
        """Apply :meth:`plan_confirm`; returns the applied edit."""
        return self.apply(self.plan_confirm(cluster))

    def constraints(self) -> Any:
        """The must-link / cannot-link constraints the hand edits say (:class:`~..constraints.Constraints`)."""
        from ..constraints import constraints_from_history

        return constraints_from_history(self.history, self.labels)

    def plan_recluster(self, features: Any = None, method: str = "propagation", progress: Any = None) -> Edit:
        """Re-assign every image not placed by hand, keeping the corrections (one undoable edit, not applied).

        ``features`` default to :attr:`features`; ValueError when there are none.
        """
        from ..constraints import RECLUSTER_TEXT, recluster, recluster_edit

        X = self.features if features is None else features
        if X is None:
            raise ValueError("this result has no features to re-cluster")
        new_labels = recluster(X, self.labels, self.constraints(), method=method, progress=progress)
        return recluster_edit(self.labels, new_labels, RECLUSTER_TEXT)

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
        return hand_placed(self.history, len(self.paths))

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
        # Number the level's groups after the ones shown now (same group: same id and colour), and keep that
        # numbering in the ladder so granularity_level() still recognises the level (core/compare.py).
        from ..compare import align_labels

        column = self.granularity_labels[:, int(level)]
        column[:] = align_labels(self.labels, column, keep_ids=True, reserved=self.cluster_names)[0]
        target = column.copy()
        if keep_hand_placed:
            placed = self.hand_placed()
            target[placed] = self.labels[placed]
        changing = np.flatnonzero(target != self.labels).astype(np.int64)
        summary = self.granularity[int(level)] if int(level) < len(self.granularity) else {}
        groups = summary.get("n_clusters", count_clusters(target))
        return Edit(
            f"{REGROUP_PREFIX}{count_text(int(groups), 'group')}",
            changing,
            self.labels[changing].copy(),
            target[changing],
        )

    def regroup(self, level: int, keep_hand_placed: bool = True) -> Edit:
        """Apply :meth:`plan_regroup`; returns the applied edit."""
        return self.apply(self.plan_regroup(level, keep_hand_placed))

    def plan_delete_cluster(self, cluster: int) -> Edit:
        """The :class:`Edit` that sends ``cluster``'s images to Unassigned and drops its name (not applied)."""
        cluster = self._check_cluster(cluster)
        if cluster == UNASSIGNED:
            raise ValueError("Unassigned cannot be deleted: move its images to a cluster instead")
        changing, old, new = label_change(self.labels, self.indices_of(cluster), UNASSIGNED)
        named = cluster in self.cluster_names
        return Edit(
            f"Delete {self.name_of(cluster)} ({count_text(changing.size, 'image')} to Unassigned)",
            changing,
            old,
            new,
            {cluster: self.cluster_names[cluster]} if named else {},
            {cluster: None} if named else {},
        )

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
        # An edit that changes nothing (images dropped on their own cluster) leaves `modified` as it is.
        modified = self._touch() if edit.indices.size or renamed else []
        # Emitted after every write is done, so a subscriber never sees half an edit.
        events = []
        if edit.indices.size:
            events.append(
                SessionEvent(
                    "labels",
                    edit.indices.copy(),
                    frozenset(int(c) for c in np.unique(np.concatenate([edit.old_labels, edit.new_labels]))),
                )
            )
        if renamed:
            events.append(SessionEvent("names", clusters=frozenset(int(c) for c in renamed)))
        self._emit(*events, *modified)

    def reset_edits(self) -> None:
        """Go back to the clustering's own labels and drop every hand edit (not undoable).

        Restores the labels and, from the history, the names before the first edit; emits
        ``'reset'``.  A GUI should clear its undo stack after calling this.
        """
        restored = names_before(self.history, self.cluster_names)
        self.cluster_names.clear()
        self.cluster_names.update(restored)
        self.labels[:] = self.original_labels
        self.history.clear()
        self._emit(SessionEvent("reset"), *self._touch())

    # ------------------------------------------------------------------ trained network of a deep run
    @property
    def trained_model(self) -> Any:
        """The deep estimator whose trained network is saved beside the session (None: nothing to save).

        Set it after building the session from a deep run; any estimator without a trained network
        (classic methods, CC, MVEC) is simply not saved. After :meth:`load` it is None until
        :meth:`load_trained_model` reads the file.
        """
        return self._models.estimator

    @trained_model.setter
    def trained_model(self, estimator: Any) -> None:
        self._models.estimator = estimator

    @property
    def model_path(self) -> Optional[Path]:
        """The trained-model file on disk, when there is one."""
        return self._models.path

    @property
    def model_reference(self) -> Optional[dict]:
        """The trained-model file's entry in ``session.json``."""
        return self._models.reference

    @property
    def model_warning(self) -> Optional[str]:
        """Why the trained network was not saved / is unusable (None: no problem)."""
        return self._models.warning

    @property
    def has_trained_model(self) -> bool:
        """True when a trained network is in memory or referenced by the loaded / saved file."""
        return self._models.has_model

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
        return self._models.load(device=device, backbone=backbone)

    # ------------------------------------------------------------------ files on disk
    def exportable_paths(self, indices: Optional[Iterable[int]] = None) -> tuple[list[int], list[SkippedFile]]:
        """The images that may be copied, linked or moved by an export, and why the others may not.

        An image is exportable when its path was not refused on load (:attr:`missing`) and it is a
        regular file that identifies as an image (:func:`.persistence.image_file_problem`: its type
        and header, nothing decoded). It reads the disk: call it on a worker thread.

        Parameters
        ----------
        indices : iterable of int, optional
            The images to check (default: all).

        Returns
        -------
        exportable : list of int
            Indices of the images to export, ascending.
        refused : list of SkippedFile
            The others: path and reason ("file not found", "is a FIFO (named pipe), not a regular
            file", "not an image", ...).
        """
        chosen = range(len(self.paths)) if indices is None else self._check_indices(indices).tolist()
        exportable: list[int] = []
        refused: list[SkippedFile] = []
        for index in chosen:
            reason = self.missing.get(index) or persistence.image_file_problem(self.paths[index])
            if reason is None:
                exportable.append(index)
            else:
                refused.append(SkippedFile(self.paths[index], reason))
        return exportable, refused

    # ------------------------------------------------------------------ (de)serialising
    def to_dict(self) -> dict[str, Any]:
        """Everything except the large arrays, JSON-able (see :mod:`.persistence`)."""
        return persistence.session_to_dict(self)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays saved beside :meth:`to_dict` (only those present)."""
        return persistence.session_arrays(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "ClusterSession":
        """Rebuild a session from :meth:`to_dict` and :meth:`arrays` output.

        Raises
        ------
        SessionFileError
            Not a session, a newer version, or parts missing / inconsistent.
        """
        return persistence.session_from_dict(cls, data, arrays)

    def save(self, path: PathLike, mark_saved: bool = True) -> Path:
        """Write the session to ``path`` atomically (see :mod:`.persistence` for the format).

        Parameters
        ----------
        path : str or PathLike
        mark_saved : bool
            Clear :attr:`modified` (emitting ``'modified'``). False for a copy that does not count
            as saving the work (the autosave).

        Returns
        -------
        Path
            The file written.

        Raises
        ------
        SessionFileError
            The folder is missing or not writable, or the disk is full.
        """
        return persistence.save_session(self, path, mark_saved=mark_saved)

    @classmethod
    def load(cls, path: PathLike) -> "ClusterSession":
        """Read a session written by :meth:`save` (not :attr:`modified`).

        Raises
        ------
        SessionFileError
            Missing, unreadable, corrupt, foreign or newer file (one-line message).
        """
        return persistence.load_session(cls, path)


# ---------------------------------------------------------------------------- validation


def _as_labels(labels, n: int, what: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{what} must have shape ({n},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if (
            not np.issubdtype(array.dtype, np.floating)
            or not np.all(np.isfinite(array))
            or not np.all(array == np.round(array))
        ):
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


def _as_embedding(values, n: int) -> Optional[np.ndarray]:
    embedding = _optional_rows(values, n, "embedding", np.float32, ndim=2)
    if embedding is not None and embedding.shape[1] != 2:
        raise ValueError(f"embedding must have shape (N, 2), got {embedding.shape}")
    return embedding
