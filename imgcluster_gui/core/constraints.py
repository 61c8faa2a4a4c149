"""A person's corrections as data, and re-clustering that keeps them.

Every hand edit in a session's history says something about the images it touched:

* **must-link**: images a person *placed* in a cluster (dragged, merged, new cluster) or *confirmed*
  ("Confirm cluster") belong together, in that cluster: :attr:`Constraints.anchors` and
  :attr:`Constraints.anchor_labels` (where each one was put), and :attr:`Constraints.must_link` (the
  anchored images of each cluster, as groups);
* **cannot-link**: images moved *out of* a cluster do not belong with the images they left behind
  (:class:`CannotLink`; a merge moves a whole cluster, so it leaves nobody behind and adds none).

:func:`recluster` re-assigns every *other* image on the kNN graph of the features and never moves an
anchored one (``tests/core/test_constraints.py``). Three methods, measured by
``benchmarks/curation.py`` (``benchmarks/results/curation.md``):

* ``'propagation'`` (default): label spreading (Zhou et al. 2004) on the symmetric normalised kNN
  graph; anchored images are clamped seeds, the current labels a weaker prior for the others. Before
  spreading, **look-alikes follow a lone move** (:func:`follow_lone_moves`): where a person made only one
  or two moves out of a cluster, the sub-group of that cluster the moved image typifies goes with it
  (one face dragged out of a cluster that holds two people takes the rest of that person along);
* ``'leiden'``: Leiden started from the current labels with the anchored images' memberships fixed
  (``leidenalg``'s ``is_membership_fixed``), so the number of groups is re-estimated;
* ``'copkmeans'``: k-means seeded by the current clusters, anchored images fixed, cannot-links honoured
  in the assignment step (COP-k-means, Wagstaff et al. 2001).

Nothing here imports Qt; :meth:`ClusterSession.plan_recluster` wraps :func:`recluster` as one undoable edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .progress import ProgressLike, ensure
from .session.edits import RECLUSTER_PREFIX, UNASSIGNED, Edit, hand_placed

#: Neighbours of the re-cluster's graph: the default Leiden's (``clustering.community.DEFAULT_NEIGHBOURS``), so
#: the run's own graph serves from the cache; measured on the curation curve as good as 15 (within 0.01).
RECLUSTER_NEIGHBOURS = 10

#: The re-clustering methods :func:`recluster` knows, the default first.
RECLUSTER_METHODS = ("propagation", "leiden", "copkmeans")


@dataclass(frozen=True)
class CannotLink:
    """Images moved out of ``cluster`` (``moved``) do not belong with those left in it (``left``).

    Attributes
    ----------
    moved, left : ndarray of int64
        Image indices (ascending).
    cluster : int
        The cluster they were in before the move.
    """

    moved: np.ndarray
    left: np.ndarray
    cluster: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (see :meth:`from_dict`)."""
        return {"moved": self.moved.tolist(), "left": self.left.tolist(), "cluster": int(self.cluster)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CannotLink":
        """Rebuild a record of :meth:`to_dict`; ``KeyError`` / ``ValueError`` / ``TypeError`` if malformed."""
        return cls(_indices(data["moved"]), _indices(data["left"]), int(data["cluster"]))


@dataclass
class Constraints:
    """What a person's corrections say (see the module docstring).

    Attributes
    ----------
    n_images : int
    anchors : ndarray of int64
        Images placed or confirmed by hand (ascending): a re-cluster never moves them.
    anchor_labels : ndarray of int64
        Where each anchor was put (``-1``: sent to Unassigned by hand).
    cannot_link : list of CannotLink
    confirmed : list of int
        Clusters the person confirmed (still present).
    """

    n_images: int
    anchors: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    anchor_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cannot_link: list[CannotLink] = field(default_factory=list)
    confirmed: list[int] = field(default_factory=list)

    @property
    def must_link(self) -> list[np.ndarray]:
        """The anchored images of each cluster (Unassigned is not a group), groups of two or more."""
        groups = []
        for cluster in np.unique(self.anchor_labels):
            if cluster != UNASSIGNED:
                members = self.anchors[self.anchor_labels == cluster]
                if members.size >= 2:
                    groups.append(members)
        return groups

    @property
    def is_empty(self) -> bool:
        """True when there is no correction to keep."""
        return self.anchors.size == 0 and not self.cannot_link

    def counts(self) -> dict[int, int]:
        """Anchored images per cluster (Unassigned not counted)."""
        clusters, sizes = np.unique(self.anchor_labels[self.anchor_labels != UNASSIGNED], return_counts=True)
        return {int(c): int(s) for c, s in zip(clusters, sizes)}

    def enough_to_train(self, per_cluster: int = 2, clusters: int = 2) -> bool:
        """True with at least ``per_cluster`` anchored images in each of at least ``clusters`` clusters."""
        return sum(1 for size in self.counts().values() if size >= per_cluster) >= clusters

    def forbidden(self) -> dict[int, set[int]]:
        """Image -> clusters it must not join: a free image a person once moved out of a cluster never goes back.

        (Moved images are anchored where they were put; this matters once a later regroup freed them.) The images
        left behind are not banned from the moved image's new cluster: moving one image out says that image is not
        like the cluster, not that the cluster's images are unlike it.
        """
        anchored = set(self.anchors.tolist())
        banned: dict[int, set[int]] = {}
        for link in self.cannot_link:
            for image in link.moved.tolist():
                if image not in anchored:
                    banned.setdefault(image, set()).add(int(link.cluster))
        return banned

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, saved in the session file (see :meth:`from_dict`)."""
        return {
            "anchors": self.anchors.tolist(),
            "anchor_labels": self.anchor_labels.tolist(),
            "must_link": [group.tolist() for group in self.must_link],
            "cannot_link": [link.to_dict() for link in self.cannot_link],
            "confirmed": [int(c) for c in self.confirmed],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], n_images: int) -> "Constraints":
        """Rebuild :meth:`to_dict` output; ``ValueError`` for indices outside ``n_images`` or a bad shape."""
        anchors = _indices(data.get("anchors") or [])
        labels = np.asarray(data.get("anchor_labels") or [], dtype=np.int64).reshape(-1)
        if anchors.shape != labels.shape:
            raise ValueError("constraint anchors and their labels differ in length")
        links = [CannotLink.from_dict(item) for item in data.get("cannot_link") or []]
        for array in [anchors, *[a for link in links for a in (link.moved, link.left)]]:
            if array.size and (array.min() < 0 or array.max() >= n_images):
                raise ValueError("a constraint refers to an image that is not in the session")
        return cls(n_images, anchors, labels, links, [int(c) for c in data.get("confirmed") or []])


def _indices(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


# ---------------------------------------------------------------------------- from an edit history


def constraints_from_history(history: Sequence[Edit], labels: np.ndarray) -> Constraints:
    """The constraints a session's hand edits say (oldest edit first), given the labels now.

    Anchors are the images whose latest change was a hand edit (:func:`.session.edits.hand_placed`:
    moves, new clusters, merges, deletes, confirms); regroups and re-clusters are not corrections.
    A move out of a cluster gives a :class:`CannotLink` between the moved images and those that
    stayed, dropped where a later hand edit put them back together.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_images = labels.size
    anchors = hand_placed(history, n_images)
    anchor_labels = labels[anchors].copy()
    anchored = np.zeros(n_images, dtype=bool)
    anchored[anchors] = True
    # Replay the history to know each cluster's members right before every edit.
    replay = _labels_before(history, labels)
    links: list[CannotLink] = []
    confirmed: set[int] = set()
    for edit in history:
        if edit.is_confirm:
            confirmed.update(int(c) for c in np.unique(edit.new_labels))
        elif not edit.is_regroup and edit.indices.size:
            moved_mask = np.zeros(n_images, dtype=bool)
            moved_mask[edit.indices] = True
            for source in np.unique(edit.old_labels):
                if source == UNASSIGNED:
                    continue  # Unassigned is not a group: leaving it says nothing about the others there
                moved = edit.indices[edit.old_labels == source]
                left = np.flatnonzero((replay == source) & ~moved_mask).astype(np.int64)
                if left.size:
                    links.append(CannotLink(np.sort(moved), left, int(source)))
        replay[edit.indices] = edit.new_labels
    links = [link for link in (_still_apart(link, labels, anchored) for link in links) if link is not None]
    present = set(np.unique(labels).tolist())
    return Constraints(n_images, anchors, anchor_labels, links, sorted(c for c in confirmed if c in present))


def _labels_before(history: Sequence[Edit], labels: np.ndarray) -> np.ndarray:
    before = labels.copy()
    for edit in reversed(history):
        before[edit.indices] = edit.old_labels
    return before


def _still_apart(link: CannotLink, labels: np.ndarray, anchored: np.ndarray) -> Optional[CannotLink]:
    # A later hand edit that put a moved image back with the ones it left overrides the old separation.
    moved = link.moved[~(anchored[link.moved] & (labels[link.moved] == link.cluster))]
    moved_clusters = set(labels[moved[anchored[moved]]].tolist())
    left = link.left[~(anchored[link.left] & np.isin(labels[link.left], list(moved_clusters)))]
    if not moved.size or not left.size:
        return None
    return CannotLink(moved, left, link.cluster)


# ---------------------------------------------------------------------------- re-clustering


def recluster(
    features: np.ndarray,
    labels: np.ndarray,
    constraints: Constraints,
    method: str = "propagation",
    n_neighbors: int = RECLUSTER_NEIGHBOURS,
    prior_weight: float = 1.0,
    alpha: float = 0.9,
    weighting: str = "fuzzy",
    graph: Any = None,
    random_state: int = 0,
    progress: ProgressLike = None,
    follow: bool = True,
    whole_graph: bool = False,
) -> np.ndarray:
    """New labels for every image that is not anchored; anchored images keep ``constraints.anchor_labels``.

    Parameters
    ----------
    features : ndarray of shape (N, D)
        The features the clustering ran on (or their projection by :mod:`.finetune`).
    labels : array-like of int, shape (N,)
        The labels now (``-1`` = unassigned): the starting point and the prior of the free images.
    constraints : Constraints
    method : {'propagation', 'leiden', 'copkmeans'}
        See the module docstring.
    n_neighbors : int
        Neighbours of the kNN graph (propagation, leiden).
    prior_weight : float
        Propagation: weight of a free image's current label against an anchor's 1 (0 = only the anchors).
    alpha : float
        Propagation: share of a label that comes from the neighbours (Zhou et al.'s alpha).
    weighting : str
        Edge weights of the graph (``KnnGraph.adjacency``; ``'fuzzy'`` as the automatic Leiden).
    graph : KnnGraph, optional
        A graph of ``features`` already built.
    random_state : int
    progress : callable, optional
    follow : bool
        Propagation: let look-alikes follow a lone move first (:func:`follow_lone_moves`).
    whole_graph : bool
        Propagation: spread over the whole graph instead of the corrections' region
        (:func:`corrections_region`; measured, the same labels but for an image at times, at a fraction of
        the time at scale): the reference ``benchmarks/recluster_scale.py`` compares with.

    Returns
    -------
    ndarray of int64, shape (N,)
        Free images that were unassigned stay unassigned; a free image is never put in a cluster a
        cannot-link forbids it.
    """
    if method not in RECLUSTER_METHODS:
        raise ValueError(f"method must be one of {RECLUSTER_METHODS}, got {method!r}")
    progress = ensure(progress)
    X = np.asarray(features, dtype=np.float32)
    current = np.asarray(labels, dtype=np.int64).copy()
    if X.ndim != 2 or X.shape[0] != current.size or constraints.n_images != current.size:
        raise ValueError(
            f"features {X.shape}, labels ({current.size},) and constraints ({constraints.n_images}) differ"
        )
    prior = current.copy()
    prior[constraints.anchors] = constraints.anchor_labels
    if current.size < 3 or constraints.is_empty:
        return prior  # no correction: nothing to keep and nothing to learn from
    free = np.ones(current.size, dtype=bool)
    free[constraints.anchors] = False
    classes = np.unique(prior[prior != UNASSIGNED])
    if not free.any() or classes.size == 0:
        return prior
    X = _unit_rows(X)
    if method == "copkmeans":
        banned = _banned_matrix(constraints.forbidden(), classes, current.size)
        result = _cop_kmeans(X, prior, free, classes, banned, progress)
    else:
        if graph is None:
            from .graph import build_knn_graph

            # The features as given (not the unit-row copy): the same bytes as the run's Leiden saw, so its
            # graph serves from the cache instead of a second neighbour search.
            graph = build_knn_graph(features, n_neighbors=n_neighbors, metric="cosine", progress=progress.sub(0.0, 0.5))
        adjacency = graph.adjacency(weighting=weighting, n_neighbors=min(n_neighbors, graph.n_neighbors))
        if method == "propagation":
            if follow:
                prior = follow_lone_moves(X, adjacency, prior, constraints, random_state=random_state)
            if whole_graph:
                classes = np.unique(prior[prior != UNASSIGNED])
                banned = _banned_matrix(constraints.forbidden(), classes, current.size)
                result = _propagate(adjacency, prior, free, classes, banned, prior_weight, alpha, progress.sub(0.5, 1))
            else:
                result = _propagate_near_corrections(
                    adjacency, current, prior, free, constraints, prior_weight, alpha, progress.sub(0.5, 1.0)
                )
        else:
            banned = _banned_matrix(constraints.forbidden(), classes, current.size)
            result = _leiden_fixed(adjacency, prior, free, classes, banned, random_state)
    result[~free] = prior[~free]  # the guarantee, whatever a method did
    result[free & (current == UNASSIGNED)] = UNASSIGNED
    progress(1.0, "Re-clustered with the corrections")
    return result


#: A cluster a person made at most this many moves out of counts as corrected by example (see below).
FOLLOW_MAX_MOVES = 2
#: How typical of a sub-group a moved image must be for the sub-group to follow it: its mean cosine to
#: the sub-group over the sub-group's own mean pairwise cosine (measured: 0.95-1.0 for a face among the
#: same person's, 0.78-0.91 for a lone misfit among Fashion-MNIST's garments; benchmarks/curation.py).
FOLLOW_TYPICALITY = 0.93


def follow_lone_moves(
    X: np.ndarray,
    adjacency: Any,
    labels: np.ndarray,
    constraints: Constraints,
    max_moves: int = FOLLOW_MAX_MOVES,
    typicality: float = FOLLOW_TYPICALITY,
    random_state: int = 0,
) -> np.ndarray:
    """Labels where the look-alikes of a lone moved image went with it.

    A person who drags one image out of a mixed cluster usually means "this kind does not belong here",
    not "only this one". For every cluster a person made at most ``max_moves`` moves out of (a drag of a
    selection is one move), the
    cluster (as it was, moved images included) is split into sub-groups (Leiden on its part of the kNN
    graph); a sub-group smaller than half the cluster that holds a moved image goes where that image was
    put, when the image is typical of it (``typicality``, see :data:`FOLLOW_TYPICALITY`). Where the person
    made more moves out of a cluster they picked its misfits one by one, and the rest stays. Anchored images
    and images no longer in the source cluster never move.

    Parameters
    ----------
    X : ndarray of shape (N, D)
        Unit-norm features.
    adjacency : sparse matrix of shape (N, N)
        The kNN graph's symmetric edge weights.
    labels : ndarray of int64, shape (N,)
        The labels now (anchors at their place).
    constraints : Constraints
    max_moves, typicality : see above
    random_state : int
        Seed of the sub-group split.

    Returns
    -------
    ndarray of int64, shape (N,)
        A copy of ``labels`` with the followers moved (the prior of the propagation).
    """
    from collections import Counter

    from .clustering.community import _igraph_module, to_igraph

    out = np.asarray(labels, dtype=np.int64).copy()
    moves_out = Counter(int(link.cluster) for link in constraints.cannot_link)
    destination = dict(zip(constraints.anchors.tolist(), constraints.anchor_labels.tolist()))
    anchored = np.zeros(out.size, dtype=bool)
    anchored[constraints.anchors] = True
    adjacency = adjacency.tocsr()
    _, leidenalg = _igraph_module()
    for link in constraints.cannot_link:
        if moves_out[int(link.cluster)] > max_moves:
            continue
        members = np.union1d(link.moved, link.left)
        if members.size < 4:
            continue
        partition = leidenalg.find_partition(
            to_igraph(adjacency[members][:, members]),
            leidenalg.RBConfigurationVertexPartition,
            weights="weight",
            seed=int(random_state),
        )
        community = np.asarray(partition.membership)
        is_moved = np.isin(members, link.moved)
        for group in np.unique(community[is_moved]):
            inside = community == group
            if inside.sum() * 2 >= members.size:
                continue  # the cluster's core stays: a person moved an image *out* of it
            followers = members[inside & ~is_moved]
            followers = followers[~anchored[followers] & (out[followers] == link.cluster)]
            if followers.size < 2:
                continue
            gram = X[followers] @ X[followers].T
            within = (gram.sum() - np.trace(gram)) / (followers.size * (followers.size - 1))
            for image in members[inside & is_moved]:
                target = destination.get(int(image))
                if target is None or target == UNASSIGNED:
                    continue
                if float((X[image] @ X[followers].T).mean()) >= typicality * max(float(within), 1e-9):
                    out[followers] = target
                    break
    return out


def _unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _banned_matrix(forbidden: Mapping[int, set[int]], classes: np.ndarray, n: int) -> np.ndarray:
    banned = np.zeros((n, classes.size), dtype=bool)
    position = {int(c): j for j, c in enumerate(classes)}
    for image, clusters in forbidden.items():
        for cluster in clusters:
            if cluster in position:
                banned[image, position[cluster]] = True
    return banned


def _one_hot(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    Y = np.zeros((labels.size, classes.size), dtype=np.float64)
    rows = np.flatnonzero(labels != UNASSIGNED)
    Y[rows, np.searchsorted(classes, labels[rows])] = 1.0
    return Y


def _best_allowed(scores: np.ndarray, banned: np.ndarray, fallback: np.ndarray, classes: np.ndarray) -> np.ndarray:
    scores = np.where(banned, -np.inf, scores)
    best = classes[np.argmax(scores, axis=1)]
    # No evidence at all (an image cut off from every labelled one): it keeps the label it had.
    empty = ~np.isfinite(scores).any(axis=1) | (np.nanmax(np.where(np.isfinite(scores), scores, np.nan), axis=1) <= 0)
    return np.where(empty, fallback, best).astype(np.int64)


#: An image with this share of its neighbour weight outside its cluster may be re-assigned by the spreading
#: however far from a correction (see :func:`corrections_region`).
UNSETTLED_SHARE = 0.3


def corrections_region(adjacency: Any, current: np.ndarray, prior: np.ndarray, constraints: Constraints) -> np.ndarray:
    """The images a re-cluster may change: those of a corrected cluster and their graph neighbours (ascending).

    A corrected cluster holds an anchor, lost an image to a move, or changed in the follow step (``prior`` differs
    from ``current``). Label spreading from the corrections decays by ``alpha`` per step of the graph, so the
    clusters nobody touched keep their labels beyond one step, except an image most of whose neighbour weight
    (:data:`UNSETTLED_SHARE` or more) lies in other clusters, which spreading re-assigns wherever it is: those
    are in the region too. Restricting the spreading to this region is what makes a re-cluster of 100,000
    images in 1,000 groups take seconds instead of minutes (``benchmarks/recluster_scale.py`` compares it
    with spreading over the whole graph).
    """
    from .review import share_outside

    touched = set(constraints.anchor_labels.tolist())
    touched.update(int(link.cluster) for link in constraints.cannot_link)
    changed = prior != current
    touched.update(current[changed].tolist())
    touched.update(prior[changed].tolist())
    touched.discard(UNASSIGNED)
    inside = np.isin(current, list(touched)) | np.isin(prior, list(touched))
    inside[constraints.anchors] = True
    inside |= share_outside(adjacency, prior) >= UNSETTLED_SHARE
    neighbours = np.asarray(adjacency[inside].sum(axis=0)).ravel() > 0
    return np.flatnonzero(inside | neighbours).astype(np.int64)


def _propagate_near_corrections(
    adjacency: Any,
    current: np.ndarray,
    prior: np.ndarray,
    free: np.ndarray,
    constraints: Constraints,
    prior_weight: float,
    alpha: float,
    progress: Any,
) -> np.ndarray:
    """:func:`_propagate` on the subgraph of :func:`corrections_region`; everything else keeps ``prior``.

    The region's outer neighbours take part held at their current label (as a settled image is in the full
    spreading), and every image is weighed by its degree in the whole graph, so an image at the region's edge
    sees the same neighbourhood as in a spreading over the whole graph.
    """
    from scipy.sparse.csgraph import connected_components

    adjacency = adjacency.tocsr()
    region = corrections_region(adjacency, current, prior, constraints)
    result = prior.copy()
    if region.size == 0:
        return result
    in_region = np.zeros(prior.size, dtype=bool)
    in_region[region] = True
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    forbidden = constraints.forbidden()
    # The region falls apart into islands (a stray image and its neighbours, the corrected clusters): the held
    # outer neighbours pass nothing on, so each island spreads alone, over the few clusters it holds.
    count, island = connected_components(adjacency[region][:, region], directed=False)
    order = np.argsort(island, kind="stable")
    bounds = np.searchsorted(island[order], np.arange(count + 1))
    for number in range(count):
        members = region[order[bounds[number] : bounds[number + 1]]]
        # Each island's share of the region is its share of the progress (and a cancel point).
        share = progress.sub(bounds[number] / region.size, bounds[number + 1] / region.size)
        touching = np.unique(adjacency[members].indices)  # the island's neighbours (sparse: not a pass over all)
        edge = touching[~in_region[touching]]
        nodes = np.concatenate([members, edge])
        local_prior = prior[nodes]
        classes = np.unique(local_prior[local_prior != UNASSIGNED])
        if classes.size == 0:
            continue
        banned = _banned_matrix(
            {j: forbidden[int(i)] for j, i in enumerate(members) if int(i) in forbidden}, classes, nodes.size
        )
        frozen = np.zeros(nodes.size, dtype=bool)
        frozen[members.size :] = True
        local = _propagate(
            adjacency[nodes][:, nodes],
            local_prior,
            free[nodes],
            classes,
            banned,
            prior_weight,
            alpha,
            share,
            degree=degree[nodes],
            frozen=frozen,
        )
        result[members] = local[: members.size]
    return result


def _propagate(
    adjacency: Any,
    prior: np.ndarray,
    free: np.ndarray,
    classes: np.ndarray,
    banned: np.ndarray,
    prior_weight: float,
    alpha: float,
    progress: Any,
    iterations: int = 40,
    degree: Optional[np.ndarray] = None,
    frozen: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Label spreading; ``degree`` (default: the graph's) normalises the weights, ``frozen`` rows keep their prior."""
    from scipy import sparse

    if degree is None:
        degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    S = sparse.diags(scale) @ adjacency @ sparse.diags(scale)
    S = S.astype(np.float32)
    Y0 = _one_hot(prior, classes).astype(np.float32)
    Y0[free] *= float(prior_weight)
    clamped = ~free if frozen is None else ~free | frozen
    F = Y0.copy()
    for step in range(iterations):
        F = alpha * (S @ F) + (1.0 - alpha) * Y0
        F[clamped] = Y0[clamped]
        if step % 8 == 0:
            progress(step / iterations, "Spreading the corrections over the neighbour graph")
    result = prior.copy()
    moving = ~clamped
    result[moving] = _best_allowed(F[moving], banned[moving], prior[moving], classes)
    return result


def _leiden_fixed(
    adjacency: Any, prior: np.ndarray, free: np.ndarray, classes: np.ndarray, banned: np.ndarray, seed: int
) -> np.ndarray:
    from .clustering.community import _igraph_module, to_igraph

    _, leidenalg = _igraph_module()
    graph = to_igraph(adjacency)
    start = prior.copy()
    loose = start == UNASSIGNED
    start[loose] = start.max(initial=-1) + 1 + np.arange(int(loose.sum()))
    membership = np.unique(start, return_inverse=True)[1]
    partition = leidenalg.RBConfigurationVertexPartition(
        graph, initial_membership=membership.tolist(), weights="weight", resolution_parameter=1.0
    )
    optimiser = leidenalg.Optimiser()
    optimiser.set_rng_seed(int(seed))
    optimiser.optimise_partition(partition, n_iterations=-1, is_membership_fixed=(~free).tolist())
    communities = np.asarray(partition.membership, dtype=np.int64)
    # Each community takes the label of its anchors, else the label most of its images had; new ones get new ids.
    result = prior.copy()
    next_id = int(max(prior.max(initial=-1), classes.max(initial=-1))) + 1
    for community in np.unique(communities):
        members = np.flatnonzero(communities == community)
        anchored = members[~free[members]]
        source = prior[anchored] if anchored.size else prior[members]
        source = source[source != UNASSIGNED]
        if source.size:
            result[members[free[members]]] = classes[np.bincount(np.searchsorted(classes, source)).argmax()]
        else:
            result[members[free[members]]] = next_id
            next_id += 1
    # A cannot-link the graph ignored: that image goes to its most connected allowed cluster.
    offenders = np.flatnonzero(free & _violates(result, classes, banned))
    if offenders.size:
        scores = adjacency[offenders] @ _one_hot(result, classes)
        result[offenders] = _best_allowed(np.asarray(scores), banned[offenders], prior[offenders], classes)
    return result


def _violates(labels: np.ndarray, classes: np.ndarray, banned: np.ndarray) -> np.ndarray:
    known = np.isin(labels, classes)
    out = np.zeros(labels.size, dtype=bool)
    rows = np.flatnonzero(known)
    out[rows] = banned[rows, np.searchsorted(classes, labels[rows])]
    return out


def _cop_kmeans(
    X: np.ndarray,
    prior: np.ndarray,
    free: np.ndarray,
    classes: np.ndarray,
    banned: np.ndarray,
    progress: Any,
    iterations: int = 20,
    anchor_weight: float = 5.0,
) -> np.ndarray:
    result = prior.copy()
    for step in range(iterations):
        Y = _one_hot(result, classes)
        Y[~free] *= anchor_weight  # a corrected image pulls its centre more than an automatic one
        centres = _unit_rows((Y.T @ X).astype(np.float32))
        scores = X[free] @ centres.T + 1.0  # cosine + 1 > 0, so "no evidence" never triggers
        assigned = _best_allowed(scores, banned[free], prior[free], classes)
        changed = np.any(assigned != result[free])
        result[free] = assigned
        progress((step + 1) / iterations, "Re-assigning to the corrected centres")
        if not changed:
            break
    return result


# ---------------------------------------------------------------------------- as one undoable edit

#: Description of the re-cluster edit (its prefix makes it no hand placement: see ``Edit.is_regroup``).
RECLUSTER_TEXT = f"{RECLUSTER_PREFIX}my corrections"


def recluster_edit(labels: np.ndarray, new_labels: np.ndarray, description: str = RECLUSTER_TEXT) -> Edit:
    """The :class:`Edit` from ``labels`` to ``new_labels`` (only the images that change)."""
    labels = np.asarray(labels, dtype=np.int64)
    new_labels = np.asarray(new_labels, dtype=np.int64)
    changing = np.flatnonzero(labels != new_labels).astype(np.int64)
    return Edit(description, changing, labels[changing].copy(), new_labels[changing].copy())


# ---------------------------------------------------------------------------- a saved session's corrections


def constraints_for_paths(session: Any, paths: Sequence[str], labels: np.ndarray) -> tuple[Constraints, np.ndarray]:
    """A saved session's corrections carried to a new run of (some of) the same images.

    Parameters
    ----------
    session : ClusterSession
        The corrected session (e.g. ``ClusterSession.load(file)``).
    paths : sequence of str
        The new run's images; matched to the session's by absolute path (images in one only are free).
    labels : array-like of int
        The new run's labels.

    Returns
    -------
    constraints : Constraints
        Over the new run's images: the session's anchors and cannot-links that are among them.
    start : ndarray of int64
        Labels to re-cluster from: the session's labels for the images it has, the new run's (renumbered to
        match the session's groups, ``core/compare.py``) for the others.
    """
    import os

    from .compare import align_labels

    index = {os.path.abspath(p): i for i, p in enumerate(session.paths)}
    here = np.asarray([index.get(os.path.abspath(os.fsdecode(p)), -1) for p in paths], dtype=np.int64)
    common = here >= 0
    reference = np.full(len(paths), UNASSIGNED, dtype=np.int64)
    reference[common] = session.labels[here[common]]
    start = align_labels(reference, np.asarray(labels, dtype=np.int64))[0].astype(np.int64)
    start[common] = reference[common]
    position = np.full(len(session.paths), -1, dtype=np.int64)
    position[here[common]] = np.flatnonzero(common)
    source = session.constraints()
    kept = position[source.anchors] >= 0
    order = np.argsort(position[source.anchors][kept])
    anchors = position[source.anchors][kept][order]
    anchor_labels = source.anchor_labels[kept][order]
    links = []
    for link in source.cannot_link:
        moved, left = position[link.moved], position[link.left]
        if (moved >= 0).any() and (left >= 0).any():
            links.append(CannotLink(np.sort(moved[moved >= 0]), np.sort(left[left >= 0]), link.cluster))
    return Constraints(len(paths), anchors, anchor_labels, links, list(source.confirmed)), start
