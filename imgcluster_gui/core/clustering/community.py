"""Automatic grouping: community detection on the neighbour graph (Leiden) and FINCH.

Neither needs K. Both read the cached neighbour graph of :mod:`imgcluster_gui.core.graph`.

Leiden (Traag, Waltman & van Eck 2019, through ``leidenalg`` + ``igraph``) finds the partition of
the kNN graph that maximises modularity (or the Constant Potts Model). Its ``resolution`` says how
large a group must be to stand on its own: lower gives fewer, larger groups; higher more, smaller
ones. That one number is the granularity control of the window (:meth:`LeidenClusterer.ladder`).
With ``n_clusters`` set, the resolution is searched by bisection until Leiden finds at least K
communities, and the closest such partition is merged down to exactly K by graph affinity.

FINCH (Sarfraz et al. 2019, ``finch-clust``) links every image to its first neighbour, takes the
connected components, and repeats on the components' means: a parameter-free hierarchy whose
levels are the granularity steps. Its automatic level is the one of highest modularity on the
neighbour graph, the criterion Leiden optimises.

Communities smaller than ``min_cluster_size`` are not dropped: their images get label -1 and the
window shows them as one "Unsorted" group a person can sort by hand.

Importing this module registers: leiden, finch.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ..graph import SYMMETRIZE, WEIGHTINGS, KnnGraph, build_knn_graph
from ..progress import Progress, ProgressCallback, ProgressLike, check, ensure, wrap_callback
from .base import (
    AUTO,
    ProgressClusterer,
    check_auto_number,
    check_choice,
    check_features,
    check_n_clusters,
    check_positive_int,
    cluster_means,
    merge_clusters_to_k,
    seed_from,
)
from .registry import AlgorithmSpec, ParamSpec, register

OBJECTIVES = ("modularity", "cpm")
#: Resolutions of the granularity ladder (multiples of the modularity null model).
#: The lowest steps reach the graph's connected components (rings and other long shapes whole).
DEFAULT_LADDER = (0.002, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0, 8.0)
#: The ladder above STABLE_UP_TO images: fewer steps (each costs ~10 s per 100,000 images).
LARGE_LADDER = (0.01, 0.1, 0.35, 2.0, 5.0)
_RESOLUTION_RANGE = (1e-4, 1e4)
#: Leiden runs until stable up to this many images (automatic ``n_iterations``).
STABLE_UP_TO = 20000

#: Leiden's graph: 10 neighbours per image. Measured by benchmarks/features.py (issue 15) against 15 on the
#: five shared sets: higher mean NMI with no K and at the true K (small classes, such as ORL's 10 faces
#: per person, are no longer swallowed by their neighbours), and the chosen default features meet the
#: photo target with it.
DEFAULT_NEIGHBOURS = 10

#: Parameters Leiden and FINCH share.
NEIGHBOURS_PARAM = ParamSpec(
    "n_neighbors",
    "int",
    minimum=1,
    maximum=1000,
    help="Neighbours per image in the graph: more joins loosely related images.",
)
UNSORTED_PARAM = ParamSpec(
    "min_cluster_size",
    "int",
    minimum=1,
    maximum=100000,
    help="Smaller groups are collected as 'Unsorted' for you to sort; 1 keeps every group.",
)


@dataclass
class GranularityLevel:
    """One step of the "fewer, larger groups <-> more, smaller groups" control.

    Attributes
    ----------
    labels : ndarray of shape (n_samples,), int64
        The grouping at this level (-1 = unsorted), ids aligned with the selected level's.
    n_clusters : int
        Groups (the unsorted images not counted).
    n_unsorted : int
    resolution : float or None
        Leiden's resolution (None for a FINCH level).
    modularity : float or None
        Newman's modularity of the level on the neighbour graph (higher: denser groups).
    silhouette : float or None
        Filled by the pipeline (sampled, cosine on the features).
    """

    labels: np.ndarray
    n_clusters: int
    n_unsorted: int
    resolution: Optional[float] = None
    modularity: Optional[float] = None
    silhouette: Optional[float] = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The level without its labels (JSON-able), ``selected`` True on the fitted result's level."""
        return {
            "n_clusters": int(self.n_clusters),
            "n_unsorted": int(self.n_unsorted),
            "selected": bool(self.extra.get("selected")),
            "resolution": None if self.resolution is None else float(self.resolution),
            "modularity": None if self.modularity is None else float(self.modularity),
            "silhouette": None if self.silhouette is None else float(self.silhouette),
        }


# ------------------------------------------------------------------------------------ helpers
def _igraph_module() -> tuple[Any, Any]:
    try:
        import igraph
        import leidenalg
    except ImportError as error:  # pragma: no cover - both are dependencies
        raise ImportError("Leiden needs the packages 'leidenalg' and 'igraph': pip install leidenalg igraph") from error
    return igraph, leidenalg


def to_igraph(adjacency: Any) -> Any:
    """An undirected weighted ``igraph.Graph`` from a symmetric sparse adjacency matrix."""
    from scipy import sparse

    igraph, _ = _igraph_module()
    upper = sparse.triu(adjacency, k=1).tocoo()
    graph = igraph.Graph(n=adjacency.shape[0], edges=np.column_stack([upper.row, upper.col]).tolist(), directed=False)
    graph.es["weight"] = upper.data.astype(float).tolist()
    return graph


def modularity(graph: Any, labels: np.ndarray) -> Optional[float]:
    """Newman's modularity of ``labels`` on an igraph graph (unsorted images as their own groups)."""
    if graph.ecount() == 0:
        return None
    membership = np.asarray(labels, dtype=np.int64).copy()
    unsorted = membership < 0
    if unsorted.any():
        membership[unsorted] = membership.max() + 1 + np.arange(int(unsorted.sum()))
    membership = np.unique(membership, return_inverse=True)[1]
    value = float(graph.modularity(membership.tolist(), weights="weight"))
    return 0.0 if abs(value) < 1e-9 else value  # one group: exactly 0, not -0.0000


def leiden_membership(
    graph: Any,
    objective: str,
    resolution: float,
    seed: int,
    n_iterations: int = -1,
    total_weight: Optional[float] = None,
    initial: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Leiden's partition of ``graph`` (an igraph with a ``weight`` edge attribute), as int64 labels.

    ``objective='modularity'`` is the RB configuration model (modularity at ``resolution=1``);
    ``'cpm'`` the Constant Potts Model with threshold ``resolution`` x the graph's density, so
    that the same resolution scale means roughly the same granularity for both objectives.
    ``initial`` (labels, -1 allowed) starts the optimisation from a known partition.
    """
    _, leidenalg = _igraph_module()
    if graph.ecount() == 0:
        return np.arange(graph.vcount(), dtype=np.int64)
    if objective == "modularity":
        partition_type = leidenalg.RBConfigurationVertexPartition
        parameter = float(resolution)
    else:
        partition_type = leidenalg.CPMVertexPartition
        n = graph.vcount()
        weight = float(total_weight if total_weight is not None else sum(graph.es["weight"]))
        parameter = float(resolution) * 2.0 * weight / max(n * (n - 1), 1)
    start = None
    if initial is not None:
        start = np.asarray(initial, dtype=np.int64).copy()
        loose = start < 0
        start[loose] = start.max(initial=-1) + 1 + np.arange(int(loose.sum()))
        start = np.unique(start, return_inverse=True)[1].tolist()
    partition = leidenalg.find_partition(
        graph,
        partition_type,
        initial_membership=start,
        weights="weight",
        resolution_parameter=parameter,
        n_iterations=int(n_iterations),
        seed=int(seed),
    )
    return np.asarray(partition.membership, dtype=np.int64)


def collect_small(labels: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Groups of fewer than ``min_cluster_size`` images become -1 (unsorted); the rest are renumbered
    0, 1, ... by size, largest first (ties by first image), so cluster 0 is the biggest."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(labels.shape, -1, dtype=np.int64)
    assigned = labels >= 0
    if not assigned.any():
        return out
    ids, first, inverse, counts = np.unique(
        labels[assigned], return_index=True, return_inverse=True, return_counts=True
    )
    big = counts >= max(1, int(min_cluster_size))
    order = sorted(np.flatnonzero(big), key=lambda c: (-counts[c], first[c]))
    new_id = np.full(ids.size, -1, dtype=np.int64)
    new_id[order] = np.arange(len(order))
    out[assigned] = new_id[inverse]
    return out


def isolated_images(knn: KnnGraph, threshold: float = 3.0) -> np.ndarray:
    """Images that fit no group: no image lists them among its neighbours (in-degree 0), and their
    nearest neighbour is unusually far (robust z-score of the first-neighbour distance above
    ``threshold``, median and MAD).

    Every image has neighbours in a kNN graph, so community detection alone would put even a
    stray photo in some group; these are the ones shown as unsorted instead.
    """
    n = knn.n_samples
    listed = knn.indices[knn.indices >= 0]
    in_degree = np.bincount(listed, minlength=n)
    first = np.sqrt(np.maximum(knn.distances[:, 0].astype(np.float64), 0.0))
    first[~np.isfinite(first)] = np.inf
    finite = first[np.isfinite(first)]
    if finite.size < 3:
        return np.zeros(n, dtype=bool)
    median = float(np.median(finite))
    spread = 1.4826 * float(np.median(np.abs(finite - median)))
    if spread <= 1e-12:
        spread = max(1e-12, 1e-3 * median)
    return (in_degree == 0) & ((first - median) / spread > threshold)


def count_groups(labels: np.ndarray) -> int:
    """Groups in ``labels`` (-1 not counted)."""
    return int(np.unique(labels[labels >= 0]).size)


def align_labels(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered so that each group takes the id of the ``reference`` group it overlaps
    most (greedily, largest overlaps first); other groups get new ids after the reference's.

    Keeps a cluster's colour and grid position when the granularity changes.
    """
    labels = np.asarray(labels, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    both = (labels >= 0) & (reference >= 0)
    out = np.full(labels.shape, -1, dtype=np.int64)
    groups = np.unique(labels[labels >= 0])
    if groups.size == 0:
        return out
    pairs, counts = np.unique(np.stack([labels[both], reference[both]]), axis=1, return_counts=True)
    taken_ref: set[int] = set()
    mapping: dict[int, int] = {}
    for position in np.argsort(-counts, kind="stable"):
        group, ref = int(pairs[0, position]), int(pairs[1, position])
        if group in mapping or ref in taken_ref:
            continue
        mapping[group] = ref
        taken_ref.add(ref)
    next_id = int(max(reference.max(initial=-1), -1)) + 1
    for group in groups:
        if int(group) not in mapping:
            mapping[int(group)] = next_id
            next_id += 1
    lookup = np.vectorize(mapping.get, otypes=[np.int64])
    out[labels >= 0] = lookup(labels[labels >= 0])
    return out


class _GraphClusterer(ProgressClusterer):
    """What Leiden and FINCH share: the neighbour graph, its igraph, the unsorted group."""

    def _graph(self, data: np.ndarray, graph: Optional[KnnGraph], progress: ProgressLike) -> KnnGraph:
        k = min(check_positive_int(self.n_neighbors, "n_neighbors"), data.shape[0] - 1)
        if graph is not None and graph.n_samples == data.shape[0] and graph.n_neighbors >= k:
            return graph.truncated(k)
        return build_knn_graph(
            data,
            k,
            metric=check_choice(self.metric, "metric", ("cosine", "euclidean")),
            method=self.graph_method,
            random_state=seed_from(self.random_state) or 0,
            progress=progress,
        )

    def _adjacency(self, knn: KnnGraph) -> Any:
        weighting = check_choice(self.weighting, "weighting", WEIGHTINGS)
        symmetrize = check_choice(self.symmetrize, "symmetrize", SYMMETRIZE)
        return knn.adjacency(weighting, symmetrize)

    def _finish(self, data: np.ndarray, labels: np.ndarray) -> None:
        self.labels_ = labels.astype(np.int64)
        self.n_clusters_ = count_groups(self.labels_)
        self.n_unsorted_ = int(np.count_nonzero(self.labels_ < 0))
        # cluster_means leaves the unsorted images (-1) out.
        self.cluster_centers_ = cluster_means(data, self.labels_, max(self.n_clusters_, 1))


# ===================================================================================== Leiden
class LeidenClusterer(_GraphClusterer):
    """Leiden community detection on the cosine kNN graph of the features; no K needed.

    Parameters
    ----------
    n_clusters : int or None
        None (the default): Leiden's own number of groups. A number: the resolution is searched
        so that exactly that many groups come out (see the module docstring).
    n_neighbors : int
        Neighbours per image in the graph (capped at ``n_samples - 1``).
    resolution : float
        Granularity: lower gives fewer, larger groups. 1 is standard modularity.
    objective : {'modularity', 'cpm'}
        Modularity (RB configuration model) or the Constant Potts Model (density threshold of
        ``resolution`` x the graph's density; free of modularity's resolution limit).
    weighting : {'binary', 'similarity', 'snn', 'fuzzy'}
        Edge weights (see :meth:`KnnGraph.adjacency`).
    symmetrize : {'union', 'mutual'}
    min_cluster_size : int
        Smaller communities go to the unsorted group (-1); 1 keeps every community. Not applied
        when ``n_clusters`` is set (every image then gets one of the K groups).
    outliers : bool
        Images that fit no group (:func:`isolated_images`) go to the unsorted group too.
    n_iterations : int or 'auto'
        Leiden passes; -1 runs until the partition no longer changes; ``'auto'`` does so up to
        :data:`STABLE_UP_TO` images and takes Leiden's own 2 passes above (a 100,000-image graph
        needs ~7x longer to become stable, for the same groups).
    metric : {'cosine', 'euclidean'}
    graph_method : {'auto', 'exact', 'ivf', 'hnsw'}
        The neighbour search (auto: exact up to a measured size, approximate above).
    random_state : int or None

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,), int64, -1 = unsorted
    n_clusters_ : int
        Groups found (unsorted not counted).
    n_unsorted_ : int
    resolution_ : float
        The resolution of the result (the searched one when ``n_clusters`` was given).
    modularity_ : float or None
    graph_ : KnnGraph
    cluster_centers_ : ndarray of shape (n_clusters_, n_features)
    """

    param_specs = (
        ParamSpec(
            "resolution",
            "float",
            minimum=1e-4,
            maximum=1e4,
            help="Granularity: lower gives fewer, larger groups; higher more, smaller ones.",
        ),
        NEIGHBOURS_PARAM,
        ParamSpec(
            "objective",
            "choice",
            choices=OBJECTIVES,
            help="modularity: the standard; cpm: Constant Potts Model (groups of a minimum density).",
        ),
        ParamSpec(
            "weighting",
            "choice",
            choices=WEIGHTINGS,
            help="Edge weights: binary, cosine similarity, shared neighbours (snn) or UMAP's fuzzy set.",
        ),
        ParamSpec(
            "symmetrize",
            "choice",
            choices=SYMMETRIZE,
            help="union: an edge when either image lists the other; mutual: only when both do.",
        ),
        UNSORTED_PARAM,
        ParamSpec(
            "outliers",
            "bool",
            help="Images far from all others, that no image counts as a neighbour, go to 'Unsorted'.",
        ),
    )

    def __init__(
        self,
        n_clusters: Optional[int] = None,
        n_neighbors: int = DEFAULT_NEIGHBOURS,
        resolution: float = 1.0,
        objective: str = "modularity",
        weighting: str = "fuzzy",
        symmetrize: str = "union",
        min_cluster_size: int = 2,
        outliers: bool = True,
        n_iterations: Any = AUTO,
        metric: str = "cosine",
        graph_method: str = AUTO,
        random_state: Any = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.resolution = resolution
        self.objective = objective
        self.weighting = weighting
        self.symmetrize = symmetrize
        self.min_cluster_size = min_cluster_size
        self.outliers = outliers
        self.n_iterations = n_iterations
        self.metric = metric
        self.graph_method = graph_method
        self.random_state = random_state

    def fit(
        self,
        X: Any,
        y: Any = None,
        progress: Optional[ProgressCallback] = None,
        graph: Optional[KnnGraph] = None,
        time_graph: Any = None,
    ) -> "LeidenClusterer":
        """Group ``X``; ``graph`` reuses a neighbour graph already built on the same rows.

        ``time_graph`` (a :class:`~imgcluster_gui.core.time_graph.TimeGraph`) mixes capture-time
        closeness into the graph's edges, so an event comes out as one group.
        """
        report = ensure(progress)
        data = check_features(X, min_samples=1, dtype=np.float32)
        n_samples = data.shape[0]
        n_clusters = None if self.n_clusters is None else check_n_clusters(self.n_clusters, n_samples)
        check_choice(self.objective, "objective", OBJECTIVES)
        resolution = float(self.resolution)
        if not math.isfinite(resolution) or resolution <= 0:
            raise ValueError(f"resolution must be a positive number, got {self.resolution!r}")
        min_size = check_positive_int(self.min_cluster_size, "min_cluster_size")
        self._seed_value = seed_from(self.random_state) or 0
        if n_samples < 3:
            # One or two images: a graph says nothing more than "they are the group".
            self.graph_ = None
            self._igraph = None
            self.resolution_ = resolution
            self.modularity_ = None
            self._finish(
                data,
                np.zeros(n_samples, dtype=np.int64)
                if n_clusters in (None, 1)
                else np.arange(n_samples, dtype=np.int64),
            )
            report(1.0, "Leiden done")
            return self
        self.graph_ = self._graph(data, graph, wrap_callback(progress, 0.0, 0.5, "Leiden: "))
        report(0.5, "Leiden: communities")
        adjacency = self._adjacency(self.graph_)
        timed = time_graph is not None and time_graph.active
        if timed:
            adjacency = time_graph.reweight(adjacency, self.graph_.n_neighbors)
        self._igraph = to_igraph(adjacency)
        self._total_weight = float(adjacency.sum()) / 2.0
        self._isolated = isolated_images(self.graph_) if self.outliers else np.zeros(n_samples, dtype=bool)
        if timed:
            self._isolated &= ~time_graph.dated  # its event mates link a dated image now
        if n_clusters is None:
            labels = self._automatic(resolution, min_size)
            self.resolution_ = resolution
        else:
            labels, self.resolution_ = self._exactly_k(
                data, adjacency, n_clusters, resolution, wrap_callback(progress, 0.5, 1.0, "Leiden: ")
            )
        self.modularity_ = modularity(self._igraph, labels)
        self._finish(data, labels)
        report(1.0, f"Leiden done: {self.n_clusters_} groups")
        return self

    def _automatic(
        self, resolution: float, min_size: int, n_iterations: Optional[int] = None, initial: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Leiden's groups at ``resolution``, isolated images and too-small groups unsorted."""
        raw = self._membership(resolution, n_iterations, initial)
        raw[self._isolated] = -1
        return collect_small(raw, min_size)

    def _membership(
        self, resolution: float, n_iterations: Optional[int] = None, initial: Optional[np.ndarray] = None
    ) -> np.ndarray:
        passes = check_auto_number(
            self.n_iterations if n_iterations is None else n_iterations, "n_iterations", minimum=-1, integer=True
        )
        if passes == 0:
            raise ValueError("n_iterations must be -1 (until stable), a number of passes >= 1 or 'auto', got 0")
        if self._igraph is None:
            raise RuntimeError("Leiden has no neighbour graph yet: fit it on 3 images or more first")
        if passes == AUTO:
            passes = -1 if self._igraph.vcount() <= STABLE_UP_TO else 2
        return leiden_membership(
            self._igraph, self.objective, resolution, self._seed_value, passes, self._total_weight, initial
        )

    def _exactly_k(
        self, data: np.ndarray, adjacency: Any, n_clusters: int, start: float, progress: Progress
    ) -> tuple[np.ndarray, float]:
        """Bisection on log(resolution) for the partition with the fewest groups >= K, merged to K."""
        low, high = _RESOLUTION_RANGE
        best: Optional[tuple[int, float, np.ndarray]] = None  # (groups, resolution, labels), groups >= K
        fallback: Optional[tuple[int, float, np.ndarray]] = None  # the most groups seen, when all < K
        resolution = start
        for step in range(30):
            labels = collect_small(self._membership(resolution), 1)
            found = count_groups(labels)
            if found >= n_clusters and (best is None or found < best[0]):
                best = (found, resolution, labels)
            if found < n_clusters and (fallback is None or found > fallback[0]):
                fallback = (found, resolution, labels)
            if found == n_clusters:
                break
            if found > n_clusters:
                high = resolution
            else:
                low = resolution
            if high / low < 1.0001:
                break
            resolution = math.sqrt(low * high)
            progress(min(0.95, (step + 1) / 30), f"searching the resolution for {n_clusters} groups")
        if best is None:
            assert fallback is not None
            warnings.warn(
                f"Leiden found at most {fallback[0]} groups, fewer than the {n_clusters} asked for "
                "(images too alike to split further)",
                UserWarning,
                stacklevel=3,
            )
            return fallback[2], fallback[1]
        found, resolution, labels = best
        if found > n_clusters:
            labels = merge_clusters_to_k(labels, adjacency, data, n_clusters)
        return collect_small(labels, 1), resolution

    def ladder(
        self, X: Any, resolutions: Sequence[float] = DEFAULT_LADDER, progress: ProgressLike = None
    ) -> list[GranularityLevel]:
        """Leiden on the fitted graph at a ladder of resolutions: the granularity steps.

        Levels with the same number of groups are kept once (the one nearest the fitted
        resolution); the fitted result is always one of the levels. Sorted by number of groups,
        labels aligned with the fitted result's ids.
        """
        if not hasattr(self, "labels_"):
            raise ValueError("fit the estimator before asking for its ladder")
        min_size = 1 if self.n_clusters is not None else int(self.min_cluster_size)
        levels: dict[int, GranularityLevel] = {}
        fitted = GranularityLevel(
            self.labels_.copy(),
            self.n_clusters_,
            self.n_unsorted_,
            self.resolution_,
            self.modularity_,
            extra={"selected": True},
        )
        if self._igraph is None:
            return [fitted]
        # On large graphs each level starts from the fitted partition and takes one pass: most images
        # stay where they are, so a level costs a fraction of a fresh run (measured: ~22 s -> a few s
        # per level at 100,000 images).
        large = self._igraph.vcount() > STABLE_UP_TO
        if large and tuple(resolutions) == DEFAULT_LADDER:
            resolutions = LARGE_LADDER
        passes = 1 if large else None
        initial = self.labels_ if large else None
        for position, resolution in enumerate(resolutions):
            check(progress, "granularity levels")
            labels = (
                collect_small(self._membership(float(resolution), passes, initial), 1)
                if self.n_clusters is not None
                else self._automatic(float(resolution), min_size, passes, initial)
            )
            level = GranularityLevel(
                align_labels(self.labels_, labels),
                count_groups(labels),
                int(np.count_nonzero(labels < 0)),
                float(resolution),
                modularity(self._igraph, labels),
            )
            previous = levels.get(level.n_clusters)
            if previous is None or abs(math.log(resolution / self.resolution_)) < abs(
                math.log((previous.resolution or 1.0) / self.resolution_)
            ):
                levels[level.n_clusters] = level
            if progress is not None:
                ensure(progress)((position + 1) / len(resolutions), "granularity levels")
        levels[fitted.n_clusters] = fitted
        return [levels[k] for k in sorted(levels)]


# ====================================================================================== FINCH
class FINCHClusterer(_GraphClusterer):
    """FINCH: parameter-free clustering by first-neighbour relations (Sarfraz et al., CVPR 2019).

    Parameters
    ----------
    n_clusters : int or None
        None: the level chosen by ``level``. A number: FINCH's own refinement to exactly K.
    level : int or 'auto'
        Which partition of the hierarchy (0 = the finest); ``'auto'`` takes the level of
        highest modularity on the neighbour graph.
    n_neighbors : int
        Neighbours of the graph that scores the levels (the first neighbour drives FINCH).
    min_cluster_size : int
        Smaller groups go to the unsorted group (-1).
    metric : {'cosine', 'euclidean'}

    Attributes
    ----------
    labels_, n_clusters_, n_unsorted_, cluster_centers_
    levels_ : ndarray of shape (n_samples, n_levels), int64
        Every partition of the hierarchy, finest first.
    level_sizes_ : list of int
        Groups per level.
    level_ : int
        The level returned (-1 when ``n_clusters`` was given).
    """

    param_specs = (
        ParamSpec(
            "level",
            "int",
            minimum=0,
            maximum=100,
            help="Partition of the hierarchy (0 = finest); auto = the best modularity.",
        ),
        NEIGHBOURS_PARAM,
        UNSORTED_PARAM,
    )

    def __init__(
        self,
        n_clusters: Optional[int] = None,
        level: Any = AUTO,
        n_neighbors: int = 15,
        min_cluster_size: int = 2,
        metric: str = "cosine",
        random_state: Any = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.level = level
        self.n_neighbors = n_neighbors
        self.min_cluster_size = min_cluster_size
        self.metric = metric
        self.random_state = random_state

    # The shared graph helpers read these; FINCH scores levels on the plain binary graph.
    weighting = "binary"
    symmetrize = "union"
    graph_method = AUTO

    def fit(
        self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None, graph: Optional[KnnGraph] = None
    ) -> "FINCHClusterer":
        try:
            from finch import FINCH
        except ImportError as error:  # pragma: no cover - a dependency
            raise ImportError("FINCH needs the package 'finch-clust': pip install finch-clust") from error
        report = ensure(progress)
        data = check_features(X, min_samples=1, dtype=np.float32)
        n_samples = data.shape[0]
        n_clusters = None if self.n_clusters is None else check_n_clusters(self.n_clusters, n_samples)
        level = check_auto_number(self.level, "level", minimum=0, integer=True)
        min_size = check_positive_int(self.min_cluster_size, "min_cluster_size")
        if n_samples < 3:
            self.levels_ = np.zeros((n_samples, 1), dtype=np.int64)
            self.level_sizes_ = [1]
            self.level_ = 0
            self._igraph = None
            self.graph_ = None
            self.modularity_ = None
            self._finish(
                data,
                np.zeros(n_samples, dtype=np.int64)
                if n_clusters in (None, 1)
                else np.arange(n_samples, dtype=np.int64),
            )
            return self
        self.graph_ = self._graph(data, graph, wrap_callback(progress, 0.0, 0.4, "FINCH: "))
        first = self.graph_.indices[:, 0].copy()
        lonely = first < 0
        first[lonely] = np.flatnonzero(lonely)  # an image with no neighbour found links to itself
        report(0.4, "FINCH: hierarchy")
        metric = check_choice(self.metric, "metric", ("cosine", "euclidean"))
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Above 10,000 groups FINCH's own faiss path finds the first neighbours (never a dense matrix).
            partitions, sizes, requested = FINCH(
                data,
                req_clust=n_clusters,
                initial_rank=first.astype(np.int32),
                distance=metric,
                ensure_early_exit=False,
                ann_threshold=10_000,
                faiss_threshold=10_000,
                verbose=False,
                random_state=seed_from(self.random_state),
            )
        self.levels_ = np.asarray(partitions, dtype=np.int64).reshape(n_samples, -1)
        self.level_sizes_ = [int(s) for s in np.atleast_1d(sizes)]
        self._igraph = to_igraph(self._adjacency(self.graph_))
        self._level_min_size = min_size
        if n_clusters is not None:
            labels = collect_small(np.asarray(requested, dtype=np.int64).ravel(), 1)
            self.level_ = -1
        else:
            if level != AUTO and level >= self.levels_.shape[1]:
                raise ValueError(
                    f"level must be below {self.levels_.shape[1]} (FINCH found "
                    f"{self.levels_.shape[1]} levels: {self.level_sizes_} groups), got {level}"
                )
            if level == AUTO:
                scores = [modularity(self._igraph, self.levels_[:, j]) or -1.0 for j in range(self.levels_.shape[1])]
                level = int(np.argmax(scores))
            self.level_ = level
            labels = collect_small(self.levels_[:, level], min_size)
        self.modularity_ = modularity(self._igraph, labels)
        self._finish(data, labels)
        report(1.0, f"FINCH done: {self.n_clusters_} groups")
        return self

    def ladder(self, X: Any, progress: Optional[ProgressCallback] = None, **_ignored: Any) -> list[GranularityLevel]:
        """FINCH's levels as granularity steps (sorted by number of groups, aligned with the result)."""
        if not hasattr(self, "labels_"):
            raise ValueError("fit the estimator before asking for its ladder")
        levels: dict[int, GranularityLevel] = {}
        for j in range(self.levels_.shape[1]):
            labels = collect_small(self.levels_[:, j], getattr(self, "_level_min_size", 1))
            levels[count_groups(labels)] = GranularityLevel(
                align_labels(self.labels_, labels),
                count_groups(labels),
                int(np.count_nonzero(labels < 0)),
                None,
                None if self._igraph is None else modularity(self._igraph, labels),
                extra={"level": j},
            )
        fitted = GranularityLevel(
            self.labels_.copy(),
            self.n_clusters_,
            self.n_unsorted_,
            None,
            self.modularity_,
            extra={"selected": True, "level": self.level_},
        )
        levels[fitted.n_clusters] = fitted
        return [levels[k] for k in sorted(levels)]


register(
    AlgorithmSpec(
        "leiden",
        "Leiden (automatic groups)",
        "Finds the groups itself: communities of the graph that links "
        "each image to its nearest neighbours. The granularity control then gives fewer, larger or more, "
        "smaller groups without re-running. With a K set, the resolution is searched to give exactly K.",
        LeidenClusterer,
        uses_k=True,
        supports_auto_k=False,
        k_optional=True,
        order=90,
    )
)
register(
    AlgorithmSpec(
        "finch",
        "FINCH (parameter-free hierarchy)",
        "Links each image to its first neighbour and merges "
        "the linked groups level by level; no parameter to tune. The level of best modularity is shown, "
        "the others are the granularity steps.",
        FINCHClusterer,
        uses_k=True,
        supports_auto_k=False,
        k_optional=True,
        order=100,
    )
)
