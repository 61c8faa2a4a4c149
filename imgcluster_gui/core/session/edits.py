"""Hand edits as data: the :class:`Edit` record, the :class:`SessionEvent` subscribers get, and the
bookkeeping over a list of applied edits (which images a person placed, the names before them).

Every hand edit holds the labels and names *before and after* for the images and clusters it
touches, so undo and redo are exact (applying or reverting writes absolute values, never deltas).
Nothing here changes a session: :class:`~imgcluster_gui.core.session.model.ClusterSession` plans,
applies and reverts edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

UNASSIGNED = -1
#: Description prefix of the edits the granularity control makes (not counted as hand placements).
REGROUP_PREFIX = "Regroup into "
#: Description prefix of a re-cluster that keeps the corrections (core/constraints.py): not a hand placement either.
RECLUSTER_PREFIX = "Re-cluster with "
#: Description prefix of "Confirm cluster": the person says these images belong together (a hand placement).
CONFIRM_PREFIX = "Confirm "


@dataclass(frozen=True)
class SessionEvent:
    """What changed in a session.

    Attributes
    ----------
    kind : str
        ``'labels'`` (images changed cluster), ``'names'`` (cluster names changed), ``'metrics'``
        (the metrics were replaced), ``'embedding'`` (the 2-D embedding was replaced),
        ``'modified'`` (:attr:`ClusterSession.modified` flipped: an edit after a save, or a save)
        or ``'reset'`` (everything may have changed: redraw all).
    indices : ndarray of int64, shape (n_changed,)
        Images whose label changed (empty for other kinds).
    clusters : frozenset of int
        Clusters that gained or lost images, or were renamed.
    """

    kind: str
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    clusters: frozenset = frozenset()


Subscriber = Callable[[SessionEvent], None]


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
    def is_regroup(self) -> bool:
        """True for the granularity control's edits and re-clusters (they are not hand placements)."""
        return self.description.startswith((REGROUP_PREFIX, RECLUSTER_PREFIX))

    @property
    def is_confirm(self) -> bool:
        """True for "Confirm cluster": its images keep their labels and become hand-placed."""
        return self.description.startswith(CONFIRM_PREFIX) and bool(np.array_equal(self.old_labels, self.new_labels))

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
        return cls(
            str(data["description"]),
            indices,
            old_labels,
            new_labels,
            {int(c): (None if n is None else str(n)) for c, n in data["old_names"]},
            {int(c): (None if n is None else str(n)) for c, n in data["new_names"]},
        )


# ---------------------------------------------------------------------------- bookkeeping over a history


def hand_placed(history: Sequence[Edit], n_images: int) -> np.ndarray:
    """Indices (ascending) of the images whose latest change in ``history`` (oldest first) was a hand edit.

    An image a person dragged stays hand-placed through regroups that keep it; a regroup that
    replaces its placement makes it follow the levels again.
    """
    seen = np.zeros(n_images, dtype=bool)
    placed = np.zeros(n_images, dtype=bool)
    for edit in reversed(history):
        if not edit.indices.size:
            continue
        fresh = edit.indices[~seen[edit.indices]]
        if not edit.is_regroup:
            placed[fresh] = True
        seen[edit.indices] = True
    return np.flatnonzero(placed).astype(np.int64)


def names_before(history: Sequence[Edit], names: Mapping[int, str]) -> dict[int, str]:
    """The custom names as they were before the first edit of ``history``, given ``names`` after the last."""
    restored = dict(names)
    for edit in reversed(history):
        for cluster, name in edit.old_names.items():
            if name is None:
                restored.pop(cluster, None)
            else:
                restored[cluster] = name
    return restored


def label_change(labels: np.ndarray, indices: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(changing, old, new)``: the ``indices`` not already in ``target``, their labels now and after."""
    changing = indices[labels[indices] != target]
    return changing, labels[changing].copy(), np.full(changing.size, target, dtype=np.int64)


def count_clusters(labels: np.ndarray) -> int:
    """Groups in ``labels``, the unassigned (-1) not counted."""
    labels = np.asarray(labels)
    return int(np.unique(labels[labels != UNASSIGNED]).size)


def count_text(n: int, noun: str) -> str:
    """``'1 image'``, ``'3 images'``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def clean_name(name: Optional[str]) -> Optional[str]:
    """One line, no surrounding blanks; an empty name means "no custom name" (None)."""
    if name is None:
        return None
    cleaned = " ".join(str(name).split())
    return cleaned or None
