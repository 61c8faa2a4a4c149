"""Near-duplicates and bursts: groups of near-identical images inside each cluster, and which one to keep.

Two images are *near-duplicates* when the cosine similarity of their features is at least
``threshold`` (:data:`DEFAULT_THRESHOLD`, chosen in ``benchmarks/duplicates.py``: crops to 80 %, JPEG
re-encodings, half-size copies and 3-5 degree rotations of one photo against unrelated photos).  The
candidate pairs are the edges of the kNN graph the pipeline already builds (:mod:`.graph`, cached), so
finding them costs one graph search, not N^2 comparisons.  A *burst* (the frames a phone takes in a
second or two) looks a little less alike; with capture times (seconds, NaN = unknown, e.g.
:func:`~imgcluster_gui.core.photo_meta.instants`) a pair whose similarity is at least
``threshold - burst_margin`` counts as well when the two were taken at most ``burst_seconds`` apart.

An optional perceptual hash (:func:`perceptual_hashes`, from the ``imagehash`` package: the
``photos`` extra) is a second signal: ``hash_rule='both'`` keeps a pair only when the hashes agree
too (fewer false pairs), ``'either'`` also accepts a graph neighbour whose hash is within
``max_hash_distance`` bits (more recall).  The benchmark measures both.

Pairs are found once (:func:`duplicate_pairs`) and grouped per clustering (:meth:`DuplicatePairs.groups`):
a group never spans two clusters, so a person's hand edits regroup in O(pairs) without a new search.
Groups are connected components of the pairs (a burst chains frame to frame).

Which image of a group to keep (:func:`best_of_group`): the sharpest (variance of the Laplacian of
a small grey decode, :func:`sharpness`) or the largest (pixels, read from the header).  Nothing here
writes to an image file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from .progress import ProgressLike, check, ensure

PathLike = Union[str, "os.PathLike[str]"]

#: Cosine similarity of the default (two-view) features from which two images are near-duplicates
#: (benchmarks/results/duplicates.md: precision 0.999 and recall 0.85 on copies of real photos among same-class
#: photos; 0.88 finds more, 0.93, but puts a stranger in 3 groups: a stack must not hide a different photo).
DEFAULT_THRESHOLD = 0.90
#: The window's "Stack similarity" choices: (key, cosine threshold). Stricter finds fewer copies and never
#: hides a stranger; looser stacks more (resized copies, similar shots) at the price of a stranger now and
#: then (benchmarks/results/duplicates.md: precision / recall of each threshold).
THRESHOLD_PRESETS = (("strict", 0.92), ("default", DEFAULT_THRESHOLD), ("loose", 0.85))
#: Frames at most this many seconds apart may be a burst (with capture times).
DEFAULT_BURST_SECONDS = 10.0
#: A burst pair may be this much less similar than ``threshold``.
DEFAULT_BURST_MARGIN = 0.08
#: Neighbours searched per image for candidate pairs (components chain larger groups).
DEFAULT_NEIGHBOURS = 10
#: Hamming distance (of 64 bits) up to which two perceptual hashes agree.
DEFAULT_HASH_DISTANCE = 14
HASH_RULES = ("both", "either")
#: How :func:`best_of_group` chooses the image to keep.
BEST_CRITERIA = ("sharpest", "largest")
#: The longer side of the grey decode the sharpness is measured on (same scale for every copy).
SHARPNESS_SIDE = 256
KIND_DUPLICATE, KIND_BURST, KIND_HASH = 0, 1, 2

__all__ = [
    "BEST_CRITERIA",
    "DEFAULT_BURST_MARGIN",
    "DEFAULT_BURST_SECONDS",
    "DEFAULT_HASH_DISTANCE",
    "DEFAULT_THRESHOLD",
    "THRESHOLD_PRESETS",
    "DuplicatePairs",
    "Stacks",
    "best_of_group",
    "duplicate_pairs",
    "find_duplicate_groups",
    "hamming_distances",
    "image_pixels",
    "perceptual_hashes",
    "quality_scores",
    "sharpness",
    "similarity_to",
    "unit_rows",
]


def unit_rows(features: Any) -> np.ndarray:
    """``features`` as float32 rows of unit length (a zero row stays zero), for cosine similarities."""
    X = np.asarray(features, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"features must be a 2-D array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or infinite values")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


@dataclass
class DuplicatePairs:
    """Pairs of near-identical images (``first < second``), found once, grouped per clustering.

    Attributes
    ----------
    first, second : ndarray of int64, shape (n_pairs,)
    similarity : ndarray of float32, shape (n_pairs,)
        Cosine similarity of the two images' features.
    kind : ndarray of uint8, shape (n_pairs,)
        Why the pair counts: ``0`` similar enough, ``1`` a burst (close capture times), ``2`` the hashes.
    n_images : int
    """

    first: np.ndarray
    second: np.ndarray
    similarity: np.ndarray
    kind: np.ndarray
    n_images: int

    def __len__(self) -> int:
        return int(self.first.size)

    def groups(self, labels: Optional[Any] = None) -> list[np.ndarray]:
        """Groups of two or more images linked by pairs inside one cluster.

        Parameters
        ----------
        labels : array-like of int, shape (n_images,), optional
            The clustering (``-1`` = unassigned counts as one more cluster); None: all one cluster.

        Returns
        -------
        list of ndarray of int64
            Each group's indices ascending; groups ordered by their first index.
        """
        n = self.n_images
        first, second = self.first, self.second
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if labels.size != n:
                raise ValueError(f"{labels.size} labels for {n} images")
            same = labels[first] == labels[second]
            first, second = first[same], second[same]
        if not first.size:
            return []
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        graph = coo_matrix((np.ones(first.size, dtype=np.int8), (first, second)), shape=(n, n)).tocsr()
        _count, component = connected_components(graph, directed=False)
        linked = np.zeros(n, dtype=bool)
        linked[first] = linked[second] = True
        members = np.flatnonzero(linked)
        order = members[np.argsort(component[members], kind="stable")]
        _values, starts = np.unique(component[order], return_index=True)
        groups = [g for g in np.split(order, starts[1:]) if g.size >= 2]
        groups.sort(key=lambda g: int(g[0]))
        return [np.sort(g).astype(np.int64) for g in groups]


def duplicate_pairs(
    features: Any,
    threshold: float = DEFAULT_THRESHOLD,
    times: Optional[Any] = None,
    burst_seconds: float = DEFAULT_BURST_SECONDS,
    burst_margin: float = DEFAULT_BURST_MARGIN,
    hashes: Optional[Any] = None,
    max_hash_distance: int = DEFAULT_HASH_DISTANCE,
    hash_rule: str = "both",
    n_neighbors: int = DEFAULT_NEIGHBOURS,
    cache: Any = True,
    progress: ProgressLike = None,
) -> DuplicatePairs:
    """Every pair of near-identical images, from the kNN graph of ``features``.

    Parameters
    ----------
    features : array-like of shape (n_images, n_features)
        Any features (normalised here); the session's or the backbone's.
    threshold : float
        Cosine similarity from which a pair is a near-duplicate (0 to 1).
    times : array-like of float, shape (n_images,), optional
        Capture times in seconds (NaN = unknown): a pair at most ``burst_seconds`` apart needs only
        ``threshold - burst_margin``.
    burst_seconds, burst_margin : float
    hashes : array-like of uint64, shape (n_images,), optional
        Perceptual hashes (:func:`perceptual_hashes`; 0 where unknown is treated as no hash, see
        ``hash_known`` there); None: features only.
    max_hash_distance : int
        Bits two hashes may differ by and still agree.
    hash_rule : {'both', 'either'}
        ``'both'``: the features and the hashes must agree; ``'either'``: a graph neighbour whose
        hash agrees counts even below ``threshold``.
    n_neighbors : int
        Candidate neighbours per image.
    cache : GraphCache, bool or None
        The kNN graph's cache (:func:`~imgcluster_gui.core.graph.build_knn_graph`).
    progress : callable, optional

    Returns
    -------
    DuplicatePairs
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    if hash_rule not in HASH_RULES:
        raise ValueError(f"hash_rule must be one of {HASH_RULES}, got {hash_rule!r}")
    progress = ensure(progress)
    X = unit_rows(features)
    n = X.shape[0]
    empty = DuplicatePairs(
        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.uint8), n
    )
    if n < 2:
        return empty
    from .graph import build_knn_graph

    # The features as given (not the unit-row copy): the same bytes as the run's Leiden saw, so its graph
    # serves from the cache (a second search of 100,000 photos takes a minute).
    graph = build_knn_graph(
        features, n_neighbors=min(int(n_neighbors), n - 1), metric="cosine", cache=cache, progress=progress
    )
    check(progress, "Comparing neighbours")
    k = graph.indices.shape[1]
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = graph.indices.reshape(-1).astype(np.int64)
    found = (cols >= 0) & (cols != rows)
    rows, cols = rows[found], cols[found]
    # Each pair once, smaller index first; its similarity recomputed exactly (approximate searches round).
    first, second = np.minimum(rows, cols), np.maximum(rows, cols)
    key = np.unique(first * n + second)
    first, second = key // n, key % n
    similarity = np.einsum("ij,ij->i", X[first], X[second]).astype(np.float32)

    kind = np.full(first.size, 255, dtype=np.uint8)  # 255 = not a pair
    kind[similarity >= threshold] = KIND_DUPLICATE
    if times is not None:
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        if t.size != n:
            raise ValueError(f"{t.size} capture times for {n} images")
        with np.errstate(invalid="ignore"):
            close = np.abs(t[first] - t[second]) <= float(burst_seconds)  # NaN (unknown) is never close
        burst = (kind == 255) & close & (similarity >= threshold - float(burst_margin))
        kind[burst] = KIND_BURST
    if hashes is not None:
        h = np.asarray(hashes, dtype=np.uint64).reshape(-1)
        if h.size != n:
            raise ValueError(f"{h.size} hashes for {n} images")
        known = h != 0  # imagehash gives 0 only for a flat image: no evidence either way
        both_known = known[first] & known[second]
        agree = both_known & (hamming_distances(h[first], h[second]) <= int(max_hash_distance))
        if hash_rule == "both":
            kind[(kind != 255) & both_known & ~agree] = 255
        else:
            kind[(kind == 255) & agree] = KIND_HASH
    keep = kind != 255
    return DuplicatePairs(first[keep], second[keep], similarity[keep], kind[keep], n)


def find_duplicate_groups(
    features: Any,
    labels: Optional[Any] = None,
    threshold: float = DEFAULT_THRESHOLD,
    times: Optional[Any] = None,
    **options: Any,
) -> list[list[int]]:
    """Groups of near-identical images, each inside one cluster.

    Parameters
    ----------
    features : array-like of shape (n_images, n_features)
    labels : array-like of int, shape (n_images,), optional
        The clustering; None treats every image as one cluster.
    threshold : float
        Cosine similarity from which two images are near-duplicates.
    times : array-like of float, optional
        Capture times in seconds (NaN = unknown) for bursts.
    **options
        Passed to :func:`duplicate_pairs` (``hashes``, ``burst_seconds``, ``n_neighbors``, ...).

    Returns
    -------
    list of list of int
        Each group's indices ascending, groups by their first index.
    """
    pairs = duplicate_pairs(features, threshold=threshold, times=times, **options)
    return [group.tolist() for group in pairs.groups(labels)]


def similarity_to(features: Any, group: Sequence[int], kept: int) -> np.ndarray:
    """Cosine similarity of each image of ``group`` to the image ``kept`` (1.0 for itself)."""
    X = unit_rows(np.asarray(features)[np.asarray(list(group) + [kept], dtype=np.int64)])
    return np.clip(X[:-1] @ X[-1], -1.0, 1.0)


# ---------------------------------------------------------------------------------------- which to keep
def sharpness(path: PathLike) -> float:
    """Variance of the Laplacian of a small grey decode (higher = sharper); NaN when it cannot be decoded.

    The image is decoded (JPEG draft mode) and scaled so its longer side is :data:`SHARPNESS_SIDE`,
    so a half-size copy and its original are measured at the same scale.
    """
    from PIL import Image

    from .dataset import ImageLoadError, load_image

    try:
        image = load_image(path, draft_size=(SHARPNESS_SIDE, SHARPNESS_SIDE))
    except ImageLoadError:
        return float("nan")
    image = image.convert("L")
    scale = SHARPNESS_SIDE / max(image.size)
    if scale != 1:  # up too: a half-size copy, enlarged, is blurrier than its original, as it should be
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    g = np.asarray(image, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    laplacian = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(laplacian.var())


def image_pixels(path: PathLike) -> int:
    """Width x height from the file's header (no decode); 0 when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.width) * int(image.height)
    except Exception:  # noqa: BLE001 - any unreadable file is just "no size"; never raises
        return 0


def quality_scores(paths: Sequence[PathLike], criterion: str = "sharpest", progress: ProgressLike = None) -> np.ndarray:
    """One score per path, higher = better to keep: sharpness or pixels (NaN = unknown)."""
    if criterion not in BEST_CRITERIA:
        raise ValueError(f"criterion must be one of {BEST_CRITERIA}, got {criterion!r}")
    progress = ensure(progress)
    scores = np.full(len(paths), np.nan, dtype=np.float64)
    measure = sharpness if criterion == "sharpest" else image_pixels
    for i, path in enumerate(paths):
        if i % 16 == 0:
            progress(i / max(1, len(paths)), "Measuring sharpness" if criterion == "sharpest" else "Reading sizes")
        scores[i] = float(measure(path))
    return scores


def best_of_group(
    group: Sequence[int],
    paths: Sequence[PathLike],
    criterion: str = "sharpest",
    scores: Optional[Any] = None,
) -> int:
    """The image of ``group`` to keep: the sharpest or the largest (ties: more pixels, then the first).

    Parameters
    ----------
    group : sequence of int
        Indices into ``paths``.
    paths : sequence of path
    criterion : {'sharpest', 'largest'}
    scores : array-like of float, shape (len(paths),), optional
        Precomputed :func:`quality_scores` for ``criterion`` (NaN = not measured: measured here).

    Returns
    -------
    int
        The index (an element of ``group``).
    """
    if criterion not in BEST_CRITERIA:
        raise ValueError(f"criterion must be one of {BEST_CRITERIA}, got {criterion!r}")
    members = [int(i) for i in group]
    if not members:
        raise ValueError("an empty group has no best image")
    measure = sharpness if criterion == "sharpest" else image_pixels
    values = []
    for i in members:
        value = float(scores[i]) if scores is not None else float("nan")
        if not np.isfinite(value):
            value = float(measure(paths[i]))
            if scores is not None:
                scores[i] = value
        values.append(value if np.isfinite(value) else -np.inf)
    top = max(values)
    tied = [j for j, value in enumerate(values) if value == top]
    if len(tied) > 1 and criterion == "sharpest":  # equally sharp (copies): the larger one (headers read only then)
        pixels = {j: image_pixels(paths[members[j]]) for j in tied}
        tied = [j for j in tied if pixels[j] == max(pixels.values())]
    return members[tied[0]]


# ---------------------------------------------------------------------------------------- perceptual hash
def perceptual_hashes(paths: Sequence[PathLike], progress: ProgressLike = None) -> np.ndarray:
    """64-bit pHash of each image (``imagehash.phash``), 0 where it cannot be decoded.

    Raises
    ------
    ImportError
        ``imagehash`` is not installed (``pip install 'imgcluster[photos]'``).
    """
    try:
        import imagehash
    except ImportError:
        raise ImportError("the perceptual hash needs the imagehash package: pip install 'imgcluster[photos]'") from None
    from .dataset import ImageLoadError, load_image

    progress = ensure(progress)
    hashes = np.zeros(len(paths), dtype=np.uint64)
    for i, path in enumerate(paths):
        if i % 16 == 0:
            progress(i / max(1, len(paths)), "Hashing images")
        try:
            image = load_image(path, draft_size=(128, 128))
        except ImageLoadError:
            continue
        bits = np.asarray(imagehash.phash(image).hash, dtype=bool).reshape(-1)
        hashes[i] = np.uint64(int("".join("1" if b else "0" for b in bits), 2))
    return hashes


def hamming_distances(a: Any, b: Any) -> np.ndarray:
    """Bits that differ between two arrays of 64-bit hashes, element by element."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------- stacks (grid view state)
class Stacks:
    """Which images a grid shows stacked: each group's cover (the image to keep) stands for the group.

    Headless bookkeeping for :class:`~imgcluster_gui.ui.cluster_grid.ClusterGridWidget`: the grid
    passes each cluster's display order through :meth:`arrange`, which hides the members of a
    collapsed stack and puts an expanded stack's members right after its cover.

    Parameters
    ----------
    n_images : int
    groups : sequence of sequences of int
        Near-duplicate groups (each inside one cluster).
    covers : sequence of int
        The shown image of each group (one of its members).
    expanded : iterable of int, optional
        Covers whose stacks are shown open.
    """

    def __init__(
        self,
        n_images: int,
        groups: Sequence[Sequence[int]] = (),
        covers: Sequence[int] = (),
        expanded: Optional[Any] = None,
    ) -> None:
        self.n_images = int(n_images)
        self.cover_of = np.full(self.n_images, -1, dtype=np.int64)  # per image: its stack's cover, -1 = none
        self.members: dict[int, np.ndarray] = {}  # cover -> the group (ascending)
        for group, cover in zip(groups, covers):
            members = np.asarray(sorted(int(i) for i in group), dtype=np.int64)
            if members.size < 2 or int(cover) not in members:
                continue
            self.cover_of[members] = int(cover)
            self.members[int(cover)] = members
        self.expanded = {int(c) for c in (expanded or ()) if int(c) in self.members}
        self._update_hidden()

    def _update_hidden(self) -> None:
        grouped = self.cover_of >= 0
        covers = np.arange(self.n_images) == self.cover_of
        open_ = np.zeros(self.n_images, dtype=bool)
        for cover in self.expanded:
            open_[self.members[cover]] = True
        self.hidden = grouped & ~covers & ~open_

    def count(self, image: int) -> int:
        """Images in the stack whose cover is ``image`` (0 when ``image`` is not a cover)."""
        members = self.members.get(int(image))
        return 0 if members is None else int(members.size)

    def cover(self, image: int) -> Optional[int]:
        """The cover of ``image``'s stack, or None when it is in none."""
        if not 0 <= int(image) < self.n_images:
            return None
        cover = int(self.cover_of[int(image)])
        return None if cover < 0 else cover

    def is_expanded(self, image: int) -> bool:
        """Whether ``image``'s stack is shown open."""
        return self.cover(image) in self.expanded

    def set_expanded(self, image: int, expanded: bool) -> bool:
        """Open or close ``image``'s stack; False when nothing changed."""
        cover = self.cover(image)
        if cover is None or (cover in self.expanded) == bool(expanded):
            return False
        if expanded:
            self.expanded.add(cover)
        else:
            self.expanded.discard(cover)
        self._update_hidden()
        return True

    def arrange(self, ordered: np.ndarray) -> np.ndarray:
        """A cluster's display order with stacks applied: hidden members out, open stacks after their covers."""
        ordered = np.asarray(ordered, dtype=np.int64)
        if not self.members or not ordered.size:
            return ordered
        position = np.full(self.n_images, -1, dtype=np.int64)
        position[ordered] = np.arange(ordered.size)
        covers = self.cover_of[ordered]
        covers = np.where((covers >= 0) & (position[np.maximum(covers, 0)] >= 0), covers, -1)  # cover shown here
        if not (covers >= 0).any():
            return ordered
        # Sort key: the position of the image's cover (itself when not stacked), then cover first, then order.
        anchor = np.where(covers >= 0, position[np.maximum(covers, 0)], np.arange(ordered.size))
        not_cover = (covers >= 0) & (covers != ordered)
        arranged = ordered[np.lexsort((np.arange(ordered.size), not_cover, anchor))]
        return arranged[~self.hidden[arranged]]
