"""Two groupings of the same images side by side: which group of one run is which group of the other.

A clustering numbers its groups arbitrarily, so the same set of photos is "Cluster 3" (and
``cluster_colour(3)``) in one run and "Cluster 7" in the next. This module finds the
correspondence and renumbers a grouping after a reference one, the way a person expects a group
to keep its number and colour when re-running or moving the granularity slider:

* :func:`overlap_matrix`: how many images each pair of groups shares (the contingency table);
* :func:`match_clusters`: the one-to-one matching of largest total overlap (Hungarian method);
* :func:`align_labels`: the new labels renumbered so a matched group takes the reference's id and
  an unmatched group an id the reference does not use;
* :func:`align_session`: the same for every per-cluster field of a fresh
  :class:`~imgcluster_gui.core.session.ClusterSession` (labels, original labels, names,
  granularity levels, per-cluster metrics);
* :func:`compare_labels`: the summary of two runs (NMI, ARI, images that changed group).

Label ``-1`` (unassigned) is never matched or renumbered: it is the same "Unassigned" in every run.
Plain numpy / scipy / scikit-learn, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

if TYPE_CHECKING:  # the session imports nothing from here at module level; keep it that way
    from .session import ClusterSession

UNASSIGNED = -1

__all__ = [
    "LabelComparison",
    "align_labels",
    "align_session",
    "compare_labels",
    "match_clusters",
    "overlap_matrix",
    "same_images",
]


def _as_label_array(labels: Any, what: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    return array.astype(np.int64, copy=False)


def _pair(labels_a: Any, labels_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _as_label_array(labels_a, "labels_a")
    b = _as_label_array(labels_b, "labels_b")
    if a.shape != b.shape:
        raise ValueError(f"the two labellings cover different numbers of images: {a.size} and {b.size}")
    return a, b


def _ordered_ids(labels: np.ndarray) -> np.ndarray:
    """The ids present, ascending, with ``-1`` last (the order the app lists clusters in)."""
    present = np.unique(labels)
    return np.concatenate([present[present != UNASSIGNED], present[present == UNASSIGNED]]).astype(np.int64)


def overlap_matrix(labels_a: Any, labels_b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How many images each group of ``labels_a`` shares with each group of ``labels_b``.

    Parameters
    ----------
    labels_a, labels_b : array-like of int, shape (N,)
        Two groupings of the same N images (``-1`` = unassigned).

    Returns
    -------
    matrix : ndarray of int64, shape (len(ids_a), len(ids_b))
        ``matrix[i, j]`` = images in group ``ids_a[i]`` of A and group ``ids_b[j]`` of B.
    ids_a, ids_b : ndarray of int64
        The groups present, ascending, with ``-1`` (unassigned, its own row / column) last.

    Raises
    ------
    ValueError
        The labellings are not one-dimensional or differ in length.
    """
    a, b = _pair(labels_a, labels_b)
    ids_a, ids_b = _ordered_ids(a), _ordered_ids(b)
    matrix = np.zeros((ids_a.size, ids_b.size), dtype=np.int64)
    if a.size:
        # Row / column of each image through a sorted lookup (ids_a is sorted apart from the trailing -1).
        rows = _positions(ids_a, a)
        columns = _positions(ids_b, b)
        np.add.at(matrix, (rows, columns), 1)
    return matrix, ids_a, ids_b


def _positions(ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids[order], labels)]


def match_clusters(labels_ref: Any, labels_new: Any) -> dict[int, int]:
    """Which reference group each new group is, one to one (the Hungarian method on the overlaps).

    The matching maximises the number of images whose matched groups agree, so a group split in
    two is matched with its larger part and two merged groups with the larger of them. Among
    equally good matchings, the one where more groups keep their own id wins.

    Parameters
    ----------
    labels_ref, labels_new : array-like of int, shape (N,)
        The reference grouping and the one to match to it (``-1`` is never matched).

    Returns
    -------
    dict[int, int]
        ``{new_id: ref_id}`` for the matched pairs that share at least one image; a new group
        absent from the dict has no counterpart.
    """
    matrix, ids_ref, ids_new = overlap_matrix(labels_ref, labels_new)
    keep_ref = ids_ref != UNASSIGNED
    keep_new = ids_new != UNASSIGNED
    overlap = matrix[np.ix_(keep_ref, keep_new)]
    if overlap.size == 0:
        return {}
    ref_ids, new_ids = ids_ref[keep_ref], ids_new[keep_new]
    # Ties go to a group keeping its own id (a level left and re-entered keeps its numbers): a bonus worth
    # less than one image in total, so the matching of most shared images is still the one found.
    same_id = ref_ids[:, None] == new_ids[None, :]
    weights = overlap + same_id / (min(overlap.shape) + 1.0)
    rows, columns = linear_sum_assignment(weights, maximize=True)
    return {int(new_ids[c]): int(ref_ids[r]) for r, c in zip(rows, columns) if overlap[r, c] > 0}


def _complete_mapping(
    matched: Mapping[int, int],
    ids: Iterable[int],
    taken: Iterable[int],
    keep_ids: bool,
) -> dict[int, int]:
    """``matched`` plus an id for every other group of ``ids``, never one of ``taken`` or of another group."""
    mapping = {int(k): int(v) for k, v in matched.items()}
    used = {int(t) for t in taken} | set(mapping.values()) | {UNASSIGNED}
    unmatched = sorted({int(i) for i in ids} - set(mapping) - {UNASSIGNED})
    if keep_ids:  # first pass: a free own id is kept (a level left and re-entered keeps its numbers)
        for group in unmatched:
            if group not in used:
                mapping[group] = group
                used.add(group)
    next_id = max(used) + 1
    for group in unmatched:  # ascending, so unmatched groups keep their relative order
        if group not in mapping:
            mapping[group] = next_id
            used.add(next_id)
            next_id += 1
    return mapping


def _renumber(labels: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """``labels`` with every id replaced by ``mapping[id]`` (``-1`` and unmapped ids unchanged)."""
    out = np.array(labels, dtype=np.int64, copy=True)
    if not mapping:
        return out
    keys = np.fromiter(mapping.keys(), dtype=np.int64, count=len(mapping))
    values = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    where = np.searchsorted(keys, out)
    where = np.minimum(where, keys.size - 1)
    hit = keys[where] == out
    out[hit] = values[where[hit]]
    return out


def align_labels(
    labels_ref: Any,
    labels_new: Any,
    *,
    keep_ids: bool = False,
    reserved: Iterable[int] = (),
) -> tuple[np.ndarray, dict[int, int]]:
    """Renumber ``labels_new`` so each group matched to a reference group takes that group's id.

    A matched group then shows the same number and colour (``cluster_colour(id)``) in both
    groupings; an unmatched group gets an id no reference group uses; ``-1`` stays ``-1``.

    Parameters
    ----------
    labels_ref, labels_new : array-like of int, shape (N,)
        The grouping on screen and the one to renumber (same images, same order).
    keep_ids : bool
        An unmatched group keeps its own id when no reference group and no matched group has it
        (used by the granularity control: a level left and re-entered gets its numbers back).
        False: unmatched groups are numbered after every id in use.
    reserved : iterable of int
        More ids an unmatched group must not get as a *fresh* id (e.g. clusters that have a name
        but no images).

    Returns
    -------
    aligned : ndarray of int64, shape (N,)
    mapping : dict[int, int]
        ``{old_id: new_id}`` for every group of ``labels_new`` (``-1`` is not listed).
    """
    ref, new = _pair(labels_ref, labels_new)
    matched = match_clusters(ref, new)
    mapping = _complete_mapping(matched, np.unique(new), [*np.unique(ref).tolist(), *reserved], keep_ids)
    return _renumber(new, mapping), mapping


def same_images(session_a: Any, session_b: Any) -> bool:
    """True when two sessions hold the same image paths in the same order (their labels line up)."""
    return list(getattr(session_a, "paths", [])) == list(getattr(session_b, "paths", []))


def align_session(reference: Optional["ClusterSession"], session: "ClusterSession") -> Optional[dict[int, int]]:
    """Renumber a fresh session's clusters after the session on screen, in place.

    Every per-cluster field follows the one renumbering, so nothing else can tell: ``labels``,
    ``original_labels``, ``cluster_names``, every column of ``granularity_labels`` and the metrics
    keyed by cluster (``per_cluster_*``). Call it before the session is shown or edited (no
    subscriber hears it; it emits nothing but ``'metrics'``). The ids that changed are recorded in
    ``settings['cluster_renumbering']`` (``{"old id": new id}``): a deep run's trained network,
    saved with the session, still predicts the old ids.

    Parameters
    ----------
    reference : ClusterSession or None
        The session on screen; its current labels (with hand edits) are the reference.
    session : ClusterSession
        The new run's session.

    Returns
    -------
    dict[int, int] or None
        The ``{old_id: new_id}`` renumbering applied, or None when nothing was done: no
        reference, the same object, other images (paths or order differ), or ``session``
        already has hand edits (their recorded labels would no longer fit).
    """
    if reference is None or reference is session or not same_images(reference, session) or session.history:
        return None
    ref_labels = np.asarray(reference.labels, dtype=np.int64)
    ids: set[int] = set(np.unique(session.labels).tolist()) | set(np.unique(session.original_labels).tolist())
    if session.granularity_labels is not None:
        ids |= set(np.unique(session.granularity_labels).tolist())
    ids |= set(session.cluster_names)
    taken = [*np.unique(ref_labels).tolist(), *reference.cluster_names]
    mapping = _complete_mapping(match_clusters(ref_labels, session.labels), ids, taken, keep_ids=False)
    was_stale = session.metrics_stale
    session.labels[:] = _renumber(session.labels, mapping)
    session.original_labels[:] = _renumber(session.original_labels, mapping)
    if session.granularity_labels is not None:
        session.granularity_labels[:] = _renumber(session.granularity_labels, mapping)
    renamed = {mapping.get(int(c), int(c)): name for c, name in session.cluster_names.items()}
    session.cluster_names.clear()
    session.cluster_names.update(renamed)
    if session.metrics:
        session.set_metrics(_renumber_metrics(session.metrics, mapping))
        if was_stale:  # they were stale before; renumbering does not make them current
            session._forget_metrics_labels()
    changed = {str(old): new for old, new in sorted(mapping.items()) if old != new}
    if changed:  # saved with the result: a trained network's own predictions still use the old ids
        session.set_setting("cluster_renumbering", changed)
    return mapping


def _renumber_metrics(metrics: Mapping[str, Any], mapping: Mapping[int, int]) -> dict[str, Any]:
    """A copy of ``metrics`` with every per-cluster dict (``per_cluster_silhouette``, ...) re-keyed."""
    out = dict(metrics)
    for key, value in metrics.items():
        if key.startswith("per_cluster") and isinstance(value, Mapping):
            out[key] = {mapping.get(int(c), int(c)): v for c, v in value.items()}
    return out


@dataclass(frozen=True)
class LabelComparison:
    """How two groupings of the same images differ (the summary line of the Compare view).

    Attributes
    ----------
    nmi, ari : float or None
        Normalised mutual information and adjusted Rand index between the groupings (unassigned
        counts as one group, as in ``core.metrics.external_metrics``); None for fewer than 2 images.
    mapping : dict[int, int]
        ``{b_id: a_id}``: the matched groups (:func:`match_clusters` with A as the reference).
    moved : ndarray of int64
        Images whose group in B is not the match of their group in A, ascending.
    n_images : int
    """

    nmi: Optional[float]
    ari: Optional[float]
    mapping: dict[int, int]
    moved: np.ndarray
    n_images: int


def compare_labels(labels_a: Any, labels_b: Any) -> LabelComparison:
    """NMI / ARI between two groupings and the images that changed group (after matching B to A).

    Parameters
    ----------
    labels_a, labels_b : array-like of int, shape (N,)

    Returns
    -------
    LabelComparison
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # only when comparing

    a, b = _pair(labels_a, labels_b)
    mapping = match_clusters(a, b)
    # B in A's numbering; an unmatched B group never equals an A id, so its images count as moved.
    in_a_terms = _renumber(b, {k: v for k, v in mapping.items()})
    unmatched = ~np.isin(b, list(mapping)) & (b != UNASSIGNED)
    moved = np.flatnonzero((in_a_terms != a) | unmatched).astype(np.int64)
    if a.size >= 2:
        nmi: Optional[float] = float(normalized_mutual_info_score(a, b))
        ari: Optional[float] = float(adjusted_rand_score(a, b))
    else:
        nmi = ari = None
    return LabelComparison(nmi=nmi, ari=ari, mapping=mapping, moved=moved, n_images=int(a.size))
