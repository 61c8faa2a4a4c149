"""Time-aware grouping: the neighbour graph's edges mixed with how close in time two photos were taken.

A trip or a party is many looks (a beach, a meal, faces) in a few hours; the visual graph alone
splits it by look. :class:`TimeGraph` takes the adjacency Leiden is about to use and, for the
images with an EXIF capture time:

1. cuts the time line into **events** where the gap between two consecutive photos is long for
   the library's rhythm around it (PhotoTOC, Platt et al. 2003: a boundary where
   ``log(gap) >= log(17) + mean(log(gaps))`` over the 10 gaps either side; :func:`time_events`),
   so an afternoon at the beach is one event and the next morning another, at any shooting pace;
   a pause under half an hour never cuts, and a day without a photo always does (the relative rule
   alone finds nothing in a library of one or two photos per outing, where every gap is long);
2. adds ``n_neighbors`` **event mates** per dated photo as edges, spread evenly over its event
   (the time-nearest photos alone would make an event a chain, and Leiden cuts long chains into
   pieces), so a photo's event mates are among its neighbours even when they look nothing alike;
3. weighs every edge between two dated images ``(1 - w) * visual + w * closeness``, where ``w`` is
   the *time weight* in [0, 1] (0: the visual graph unchanged; 1: time alone decides, one group per
   event) and ``visual`` the visual edge weight (0 for a time-only edge);
   ``closeness = exp(-|dt| / tau)`` inside one event, ``tau`` being the event's own duration (at
   least a minute: photos of one event weigh at least ``e^-1``), and 0 across events.

Images without a capture time (no EXIF date: file dates only say when a folder was copied) keep
their visual edges untouched, and Leiden's outlier rule no longer sets aside a dated image (its
event mates now link it). The mixing lives here, not in the graph engine: the pipeline hands a
:class:`TimeGraph` to Leiden's ``fit`` (``time_graph=``), which calls :meth:`TimeGraph.reweight`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy import sparse

#: Event mates added per dated image when the caller does not say.
DEFAULT_TIME_NEIGHBORS = 15
#: PhotoTOC's boundary rule: a gap ``BOUNDARY_FACTOR`` times the geometric mean of the gaps around it.
BOUNDARY_FACTOR = 17.0
#: Gaps on each side that make "the gaps around it".
BOUNDARY_WINDOW = 10
# Gaps shorter than a minute count as a minute: bursts (and shots in the same second, log(0) = -inf)
# would otherwise drag the mean down and make every ordinary pause a boundary.
_MIN_GAP_S = 60.0
_MIN_TAU_S = 60.0  # an event of one burst: its shots still weigh about 1
MIN_EVENT_GAP_S = 1800.0  # a pause shorter than this never starts a new event
MAX_EVENT_GAP_S = 86_400.0  # a pause longer than this always does


def time_events(times: np.ndarray) -> np.ndarray:
    """The event of each image: consecutive photos stay together unless the gap is long for its surroundings.

    Parameters
    ----------
    times : ndarray of shape (N,)
        Capture instants in seconds; NaN = no capture time.

    Returns
    -------
    ndarray of shape (N,), int64
        Event numbers in time order (0, 1, ...); -1 for the images without a capture time.
    """
    times = np.asarray(times, dtype=np.float64)
    events = np.full(times.shape[0], -1, dtype=np.int64)
    dated = np.flatnonzero(np.isfinite(times))
    if dated.size == 0:
        return events
    order = dated[np.argsort(times[dated], kind="stable")]
    log_gaps = np.log(np.maximum(np.diff(times[order]), _MIN_GAP_S))
    boundary = np.zeros(log_gaps.size, dtype=bool)
    if log_gaps.size:
        # Mean of the log gaps in a window of BOUNDARY_WINDOW either side (the gap itself included), by cumsum.
        padded = np.concatenate([[0.0], np.cumsum(log_gaps)])
        positions = np.arange(log_gaps.size)
        low = np.maximum(positions - BOUNDARY_WINDOW, 0)
        high = np.minimum(positions + BOUNDARY_WINDOW + 1, log_gaps.size)
        local_mean = (padded[high] - padded[low]) / (high - low)
        gaps = np.diff(times[order])
        relative = log_gaps >= math.log(BOUNDARY_FACTOR) + local_mean
        boundary = (relative & (gaps >= MIN_EVENT_GAP_S)) | (gaps >= MAX_EVENT_GAP_S)
    events[order] = np.concatenate([[0], np.cumsum(boundary)])
    return events


def event_mates(events: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_neighbors`` mates per dated image, spread evenly over its event (all of them in a small event).

    Returns
    -------
    rows, cols : ndarray of int64
        Edge ends (global indices), within events only, no self-edges.
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    events = np.asarray(events, dtype=np.int64)
    dated = np.flatnonzero(events >= 0)
    by_event = dated[np.argsort(events[dated], kind="stable")]
    _ids, starts, sizes = np.unique(events[by_event], return_index=True, return_counts=True)
    for start, size in zip(starts.tolist(), sizes.tolist()):
        if size < 2:
            continue
        members = by_event[start : start + size]
        m = min(int(n_neighbors), size - 1)
        # Offsets spread over the event: a circulant graph, well connected whatever the event's length.
        offsets = np.unique(np.round(np.arange(1, m + 1) * size / (m + 1)).astype(np.int64))
        offsets = offsets[(offsets > 0) & (offsets < size)]
        position = np.arange(size)
        rows.append(np.repeat(members, offsets.size))
        cols.append(members[(position[:, None] + offsets[None, :]) % size].reshape(-1))
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


def event_durations(times: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Each event's ``tau``: its duration in seconds, at least a minute (index = event number)."""
    times = np.asarray(times, dtype=np.float64)
    dated = events >= 0
    n_events = int(events.max()) + 1 if dated.any() else 0
    first = np.full(n_events, np.inf)
    last = np.full(n_events, -np.inf)
    np.minimum.at(first, events[dated], times[dated])
    np.maximum.at(last, events[dated], times[dated])
    return np.maximum(last - first, _MIN_TAU_S)


@dataclass
class TimeGraph:
    """What Leiden needs to mix capture-time closeness into its graph (see the module docstring).

    Parameters
    ----------
    times : ndarray of shape (N,)
        Capture instants in seconds (``core.photo_meta.instants(table, exif_only=True)``), NaN = unknown.
    weight : float
        The time weight in [0, 1].
    n_neighbors : int or None
        Event mates added per dated image; None: the visual graph's own count.
    """

    times: np.ndarray
    weight: float
    n_neighbors: Optional[int] = None

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        weight = float(self.weight)
        if not math.isfinite(weight) or not 0.0 <= weight <= 1.0:
            raise ValueError(f"time weight must be in [0, 1], got {self.weight!r}")
        self.weight = weight

    @property
    def dated(self) -> np.ndarray:
        """Which images have a capture time (bool, shape (N,))."""
        return np.isfinite(self.times)

    @property
    def active(self) -> bool:
        """Whether reweighting changes anything: a weight above 0 and at least 2 dated images."""
        return self.weight > 0.0 and int(np.count_nonzero(self.dated)) >= 2

    def events(self) -> np.ndarray:
        """:func:`time_events` of :attr:`times`."""
        return time_events(self.times)

    def reweight(self, adjacency: Any, n_neighbors: int = DEFAULT_TIME_NEIGHBORS) -> sparse.csr_matrix:
        """The symmetric adjacency with event mates added and dated-to-dated edges mixed.

        Parameters
        ----------
        adjacency : sparse matrix of shape (N, N)
            The visual graph's symmetric weights (``KnnGraph.adjacency``), N = ``len(times)``.
        n_neighbors : int
            Event mates per dated image when :attr:`n_neighbors` is None.

        Returns
        -------
        scipy.sparse.csr_matrix
            Symmetric, float64, no explicit zeros; ``adjacency`` itself (as csr) when not :attr:`active`.
        """
        visual = sparse.csr_matrix(adjacency, dtype=np.float64)
        n = visual.shape[0]
        if n != self.times.shape[0]:
            raise ValueError(f"the graph has {n} images but {self.times.shape[0]} capture times were given")
        if not self.active:
            return visual
        k = int(self.n_neighbors if self.n_neighbors is not None else n_neighbors)
        events = self.events()
        rows, cols = event_mates(events, k)
        tau = event_durations(self.times, events)
        # The union of the visual edges and the event edges (both directions), then one weight per edge.
        pattern = visual.copy()
        pattern.data[:] = 1.0
        extra = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        union = ((pattern + extra + extra.T) > 0).tocoo()
        i, j = union.row, union.col
        visual_weight = np.asarray(visual[i, j]).reshape(-1)
        both = (events[i] >= 0) & (events[j] >= 0)
        closeness = np.zeros(i.size)
        same = both & (events[i] == events[j])
        closeness[same] = np.exp(-np.abs(self.times[i[same]] - self.times[j[same]]) / tau[events[i[same]]])
        mixed = np.where(both, (1.0 - self.weight) * visual_weight + self.weight * closeness, visual_weight)
        mixed = self._attach_undated(events, i, j, visual_weight, mixed)
        result = sparse.csr_matrix((mixed, (i, j)), shape=(n, n))
        result.eliminate_zeros()
        return result

    def _attach_undated(
        self, events: np.ndarray, i: np.ndarray, j: np.ndarray, visual_weight: np.ndarray, mixed: np.ndarray
    ) -> np.ndarray:
        """An undated image keeps its visual edges into the event it looks most like; those into other events
        are weighed ``1 - w``, so that at weight 1 it joins one event instead of gluing every event it resembles
        into one group (with 30 % undated photos, the events of one subject would otherwise merge back)."""
        undated_i, undated_j = events[i] < 0, events[j] < 0
        mixed_pair = undated_i ^ undated_j
        if not mixed_pair.any():
            return mixed
        photo = np.where(undated_i, i, j)[mixed_pair]  # the undated end
        event = np.where(undated_i, events[j], events[i])[mixed_pair]  # the dated end's event
        n_events = int(events.max()) + 1
        looks = sparse.csr_matrix((visual_weight[mixed_pair], (photo, event)), shape=(events.shape[0], n_events))
        best = np.asarray(looks.argmax(axis=1)).reshape(-1)
        out = mixed.copy()
        elsewhere = np.flatnonzero(mixed_pair)[best[photo] != event]
        out[elsewhere] = (1.0 - self.weight) * visual_weight[elsewhere]
        return out
