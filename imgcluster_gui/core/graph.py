"""The k-nearest-neighbour graph of a feature set: one engine (faiss) for every graph method.

Leiden and FINCH (automatic grouping), spectral clustering, PIC, DBSCAN's automatic radius and
the neighbourhood term of IDEC / DMVC all read their neighbours from here, so a folder's graph is
built once, cached on disk beside the features, and never by an O(N^2) dense distance matrix.

Search
    Exact (``faiss.IndexFlatIP`` / ``IndexFlatL2``, blocked so that cancel works) while
    ``n_samples * n_samples * n_features`` stays under :data:`EXACT_BUDGET` (the measured
    crossover with the approximate search on 2 cores), approximate above it: an inverted file
    (``IndexIVFFlat``, the default: its batched search of all points is the fastest at 100k-1M
    points) or HNSW (``IndexHNSWFlat``). Features wider than :data:`SEARCH_DIMS` are searched in
    a PCA projection and the 2k candidates re-ranked by their exact distance in the full space.
    ``benchmarks/graph_scale.py`` prints the recall@10 of each against exact.
Metric
    ``'cosine'`` (the default for CNN features) searches the L2-normalised rows by inner
    product; ``'euclidean'`` the rows as given. Distances are always *squared Euclidean* in the
    searched space, so for cosine ``1 - d / 2`` is the cosine similarity.
Weights
    :meth:`KnnGraph.adjacency` turns the neighbour lists into a symmetric sparse matrix:
    ``binary`` (1 per edge), ``similarity`` (the cosine, or a Gaussian of the distance), ``snn``
    (shared nearest neighbours, as PhenoGraph / Seurat weight their graphs) or ``fuzzy`` (UMAP's
    fuzzy simplicial set: per-point bandwidths, fuzzy union).
Threads
    faiss parallelises with its own OpenMP runtime. It is given the process's CPU count
    explicitly (``threads=`` or ``$IMGCLUSTER_GRAPH_THREADS``), and imported with
    ``OMP_WAIT_POLICY=PASSIVE``: an active OpenMP runtime keeps its worker threads spinning after
    each search, which on a 2-core machine steals the core the GUI's event loop and the feature
    extraction need. The environment is restored right after import, so torch's own OpenMP copy
    keeps its default.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .choices import AUTO
from .progress import Progress, ProgressLike, check, ensure
from .storage import atomic_write

log = logging.getLogger(__name__)

METRICS = ("cosine", "euclidean")
METHODS = (AUTO, "exact", "ivf", "hnsw")
WEIGHTINGS = ("binary", "similarity", "snn", "fuzzy")
SYMMETRIZE = ("union", "mutual")
#: n_samples^2 * n_features below which the exact search is used by ``method='auto'``: measured
#: crossover of exact and IVF search on 2 cores (benchmarks/graph_scale.py): ~11,000 points at
#: 1280 dimensions, ~24,000 at 256.
EXACT_BUDGET = 1.5e11
#: Approximate searches on wider features search a PCA projection to this many dimensions, then
#: re-rank the candidates by their exact distance in the full space.
SEARCH_DIMS = 256
THREADS_ENV_VAR = "IMGCLUSTER_GRAPH_THREADS"
#: Graphs kept in memory (the granularity ladder and several algorithms reuse the same one).
_MEMORY_SLOTS = 4
#: Rows searched per faiss call: a cancel point between blocks.
_BLOCK_ROWS = 4096

_faiss_lock = threading.Lock()
_faiss_module: Any = None


def faiss_module() -> Any:
    """faiss, imported once with a passive OpenMP wait policy (see the module docstring)."""
    global _faiss_module
    if _faiss_module is None:
        with _faiss_lock:
            if _faiss_module is None:
                previous = os.environ.get("OMP_WAIT_POLICY")
                os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
                try:
                    import faiss
                finally:
                    if previous is None:
                        os.environ.pop("OMP_WAIT_POLICY", None)
                    else:
                        os.environ["OMP_WAIT_POLICY"] = previous
                _faiss_module = faiss
    return _faiss_module


def default_threads() -> int:
    """``$IMGCLUSTER_GRAPH_THREADS`` when set, else the CPUs this process may run on."""
    text = os.environ.get(THREADS_ENV_VAR, "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@dataclass
class KnnGraph:
    """Each point's nearest neighbours, nearest first (itself excluded).

    Attributes
    ----------
    indices : ndarray of shape (n_samples, n_neighbors), int64
        Neighbour rows; ``-1`` where an approximate search found fewer than ``n_neighbors``.
    distances : ndarray of shape (n_samples, n_neighbors), float32
        Squared Euclidean distances in the searched space (``inf`` where ``indices`` is -1).
    metric : {'cosine', 'euclidean'}
    method : {'exact', 'ivf', 'hnsw'}
        How it was searched.
    seconds : float
        Time the search took (0 when it came from a cache).
    key : str
        Identity of the data it was built on (a hash), used by the cache.
    """

    indices: np.ndarray
    distances: np.ndarray
    metric: str
    method: str
    seconds: float = 0.0
    key: str = ""

    @property
    def n_samples(self) -> int:
        return int(self.indices.shape[0])

    @property
    def n_neighbors(self) -> int:
        return int(self.indices.shape[1])

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    def truncated(self, n_neighbors: int) -> "KnnGraph":
        """The same graph with only each point's ``n_neighbors`` nearest (a view, no copy)."""
        if not 1 <= n_neighbors <= self.n_neighbors:
            raise ValueError(f"n_neighbors must be in 1..{self.n_neighbors}, got {n_neighbors}")
        if n_neighbors == self.n_neighbors:
            return self
        return KnnGraph(
            self.indices[:, :n_neighbors],
            self.distances[:, :n_neighbors],
            self.metric,
            self.method,
            self.seconds,
            self.key,
        )

    def similarities(self) -> np.ndarray:
        """Cosine similarity of each edge (metric ``'cosine'`` only); 0 for missing neighbours."""
        if self.metric != "cosine":
            raise ValueError("similarities() needs a cosine graph; use the distances of a euclidean one")
        sims = 1.0 - self.distances / 2.0
        sims[self.indices < 0] = 0.0
        return sims

    def directed(self, weights: Optional[np.ndarray] = None):
        """Each point's edges to its found neighbours as a ``csr_matrix`` (not symmetrised).

        ``weights`` gives one value per found neighbour (``indices >= 0``, row by row); 1 when omitted.
        """
        from scipy import sparse

        n, k = self.indices.shape
        valid = self.indices >= 0
        rows = np.repeat(np.arange(n, dtype=np.int64), k)[valid.ravel()]
        values = np.ones(rows.size, dtype=np.float32) if weights is None else weights
        return sparse.csr_matrix((values, (rows, self.indices[valid])), shape=(n, n))

    def adjacency(self, weighting: str = "binary", symmetrize: str = "union", n_neighbors: Optional[int] = None):
        """The graph as a symmetric ``scipy.sparse.csr_matrix`` of edge weights (no self-loops).

        Parameters
        ----------
        weighting : {'binary', 'similarity', 'snn', 'fuzzy'}
            ``binary``: 1 per edge. ``similarity``: the cosine clipped at 0 (cosine graphs) or
            ``exp(-d / median d)`` (euclidean). ``snn``: the share of neighbours two points have
            in common, ``|N(i) & N(j)| / k`` (edges with none left at a small floor so the graph
            stays connected). ``fuzzy``: UMAP's membership strengths ``exp(-(d - rho_i) / sigma_i)``.
        symmetrize : {'union', 'mutual'}
            ``union`` keeps an edge when either point lists the other (weights of both directions
            combined: max for binary / similarity / snn, the fuzzy union ``a + b - ab`` for fuzzy);
            ``mutual`` only when both do.
        n_neighbors : int, optional
            Use only each point's nearest ``n_neighbors`` (default: all stored).
        """

        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if symmetrize not in SYMMETRIZE:
            raise ValueError(f"symmetrize must be one of {SYMMETRIZE}, got {symmetrize!r}")
        graph = self if n_neighbors is None else self.truncated(int(n_neighbors))
        valid = graph.indices >= 0
        distances = graph.distances[valid].astype(np.float64)
        if weighting == "binary" or weighting == "snn":
            weights = np.ones(distances.size)
        elif weighting == "similarity":
            if graph.metric == "cosine":
                weights = np.clip(1.0 - distances / 2.0, 1e-6, None)
            else:
                scale = float(np.median(distances[distances > 0])) if np.any(distances > 0) else 1.0
                weights = np.exp(-distances / scale)
        else:
            weights = _fuzzy_strengths(graph.distances, valid)[valid]
        directed = graph.directed(weights)
        directed.setdiag(0)
        directed.eliminate_zeros()
        transpose = directed.T.tocsr()
        if symmetrize == "mutual":
            pattern = directed.multiply(transpose > 0)
            combined = pattern.maximum(transpose.multiply(directed > 0))
        elif weighting == "fuzzy":
            product = directed.multiply(transpose)
            combined = directed + transpose - product
        else:
            combined = directed.maximum(transpose)
        combined = combined.tocsr()
        if weighting == "snn":
            combined = _shared_neighbour_weights(combined, graph)
        combined.sum_duplicates()
        combined.eliminate_zeros()
        return combined


def _fuzzy_strengths(distances: np.ndarray, valid: np.ndarray, iterations: int = 64) -> np.ndarray:
    """UMAP's per-point membership strengths (McInnes et al. 2018, section 3).

    ``rho_i`` is the distance to the nearest neighbour and ``sigma_i`` solves
    ``sum_j exp(-(d_ij - rho_i) / sigma_i) = log2(k)`` (bisection), with Euclidean (not squared)
    distances as UMAP uses.
    """
    d = np.sqrt(np.where(valid, np.maximum(distances.astype(np.float64), 0.0), np.inf))
    k = d.shape[1]
    target = np.log2(max(k, 2))
    rho = np.where(np.isfinite(d[:, 0]), d[:, 0], 0.0)
    shifted = np.maximum(d - rho[:, None], 0.0)
    low = np.zeros(d.shape[0])
    high = np.full(d.shape[0], np.inf)
    sigma = np.ones(d.shape[0])
    for _ in range(iterations):
        total = np.exp(-shifted / sigma[:, None]).sum(axis=1)
        too_big = total > target
        high = np.where(too_big, sigma, high)
        low = np.where(too_big, low, sigma)
        sigma = np.where(np.isfinite(high), (low + high) / 2.0, sigma * 2.0)
    mean_distance = np.where(np.isfinite(d), d, 0.0).mean()
    sigma = np.maximum(sigma, 1e-3 * max(mean_distance, 1e-12))
    strengths = np.exp(-shifted / sigma[:, None])
    strengths[~valid] = 0.0
    return strengths


def _shared_neighbour_weights(adjacency: Any, graph: "KnnGraph") -> Any:
    """Re-weight each edge of ``adjacency`` by the share of neighbour lists its ends have in common."""
    from scipy import sparse

    n, k = graph.indices.shape
    membership = graph.directed() + sparse.identity(n, dtype=np.float32, format="csr")  # a point is in its own list
    coo = adjacency.tocoo()
    # |N(i) & N(j)| for the existing edges only: row-wise dot products of the membership rows.
    shared = np.asarray(membership[coo.row].multiply(membership[coo.col]).sum(axis=1)).ravel()
    weights = np.maximum(shared / (k + 1), 1.0 / (4 * (k + 1)))
    return sparse.csr_matrix((weights, (coo.row, coo.col)), shape=adjacency.shape)


# ------------------------------------------------------------------------------------- building
def data_key(X: np.ndarray) -> str:
    """A hash identifying a feature matrix (shape, dtype and bytes)."""
    data = np.ascontiguousarray(X)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((data.shape, str(data.dtype))).encode())
    digest.update(data.data.cast("B"))  # ndarray.data: a memoryview of the (contiguous) buffer, no copy
    return digest.hexdigest()


def prepare(X: Any, metric: str) -> tuple[np.ndarray, str]:
    """The float32 rows that are searched for ``metric`` (``X`` itself when it already is C-ordered unit float32
    rows, e.g. a memory-mapped store: never written to), and the metric the graph is stored under.

    Rows that already have unit length give the same neighbours for both metrics; such a graph is
    stored as ``'cosine'`` so either request finds it in the cache.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    source = np.asarray(X)
    if source.ndim != 2 or source.shape[0] < 2:
        raise ValueError(f"the neighbour graph needs a 2-D matrix of at least 2 rows, got shape {source.shape}")
    # Checked block by block, and unit float32 rows are not copied: measured at 100,000 x 1280 (a 512 MB
    # input), the whole-matrix copy, isfinite booleans and norm squares rose the peak by 1.0 GB; now by 6 MB.
    norms = np.empty(source.shape[0], dtype=np.float32)
    for start in range(0, source.shape[0], _BLOCK_ROWS):
        block = np.asarray(source[start : start + _BLOCK_ROWS], dtype=np.float32)
        if not np.isfinite(block).all():
            raise ValueError("features contain NaN or infinite values")
        norms[start : start + _BLOCK_ROWS] = np.einsum("ij,ij->i", block, block)
    unit = bool(np.all(np.abs(norms - 1.0) < 1e-3))  # squared norms, as the cache's "unit rows" test always was
    if unit and source.dtype == np.float32 and source.flags.c_contiguous:
        # Unit float32 rows (the pipeline's L2-normalised features, a memory-mapped store) are searched as they
        # are: nothing below writes to them, and a copy would double the memory of the largest array.
        return source, "cosine"
    data = np.array(source, dtype=np.float32, order="C", copy=True)
    if metric == "cosine":
        norms = np.sqrt(norms)[:, None]
        np.divide(data, np.maximum(norms, 1e-12), out=data)
        zero = norms.ravel() < 1e-12
        if zero.any():  # an all-zero feature row has no direction: give it a fixed one
            data[zero, 0] = 1.0
        return data, "cosine"
    return data, ("cosine" if unit else "euclidean")


def choose_method(n_samples: int, n_features: int) -> str:
    """``'exact'`` while an exact all-points search stays within :data:`EXACT_BUDGET`, else ``'ivf'``."""
    return "exact" if float(n_samples) * n_samples * n_features <= EXACT_BUDGET else "ivf"


def _lookup(X: Any, n_neighbors: int, metric: str, method: str, cache: Any) -> tuple:
    """``(data, stored_metric, k, resolved method, key, store, cached graph or None)`` of a request."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    data, stored_metric = prepare(X, metric)
    n_samples, n_features = data.shape
    k = int(n_neighbors)
    if k < 1:
        raise ValueError(f"n_neighbors must be at least 1, got {n_neighbors}")
    k = min(k, n_samples - 1)
    resolved = choose_method(n_samples, n_features) if method == AUTO else method
    if resolved != "exact" and n_samples <= 4 * k + 64:
        resolved = "exact"  # too few points to train an approximate index
    key = f"{data_key(data)}-{stored_metric}"
    store = default_graph_cache() if cache is True else (cache or None)
    found = store.get(key, k, exact=(resolved == "exact")) if store is not None else None
    return data, stored_metric, k, resolved, key, store, found


def cached_knn_graph(
    X: Any, n_neighbors: int = 15, metric: str = "cosine", method: str = AUTO, cache: Any = True
) -> Optional[KnnGraph]:
    """The graph :func:`build_knn_graph` would return from its cache for this request, or None (no search).

    A window asks first, so that a search it would have to run (a minute at 100,000 photos) goes to a
    background thread instead of freezing it. ``ValueError`` as :func:`build_knn_graph`.
    """
    return _lookup(X, n_neighbors, metric, method, cache)[-1]


def build_knn_graph(
    X: Any,
    n_neighbors: int = 15,
    metric: str = "cosine",
    method: str = AUTO,
    threads: Optional[int] = None,
    cache: Any = True,
    random_state: int = 0,
    progress: ProgressLike = None,
) -> KnnGraph:
    """The ``n_neighbors`` nearest neighbours of every row of ``X``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_neighbors : int
        Capped at ``n_samples - 1``.
    metric : {'cosine', 'euclidean'}
    method : {'auto', 'exact', 'ivf', 'hnsw'}
        ``auto`` is exact up to :data:`EXACT_BUDGET` (see :func:`choose_method`).
    threads : int, optional
        faiss's OpenMP threads (default :func:`default_threads`).
    cache : GraphCache, bool or None
        ``True`` uses the default on-disk cache (and a small in-memory one); ``False``/``None``
        builds every time. A cached graph with more neighbours, or an exact one for an
        approximate request, serves a request too.
    random_state : int
        Seed of the approximate index's training sample.
    progress : callable, optional
        Fractions per searched block; raising :class:`~.progress.Cancelled` stops between blocks.

    Returns
    -------
    KnnGraph
    """
    report = ensure(progress)
    data, stored_metric, k, resolved, key, store, found = _lookup(X, n_neighbors, metric, method, cache)
    n_samples, n_features = data.shape
    if found is not None:
        report(1.0, "neighbour graph (cached)")
        return found
    started = time.perf_counter()
    faiss = faiss_module()
    faiss.omp_set_num_threads(int(threads or default_threads()))
    inner_product = stored_metric == "cosine"
    report(0.0, f"neighbour graph ({resolved}, {n_samples} images)")
    searched = data
    rerank = resolved != "exact" and n_features > SEARCH_DIMS
    if rerank:
        searched = _pca_projection(faiss, data, SEARCH_DIMS, inner_product, random_state)
        check(report, "neighbour graph: projected")
    index = _build_index(faiss, searched, resolved, inner_product, k, random_state, report)
    # One more than asked: a point usually finds itself first and is dropped below. A projected
    # search collects twice as many candidates for the exact re-ranking.
    search_k = min((2 * k if rerank else k) + 1, n_samples)
    indices = np.empty((n_samples, k), dtype=np.int64)
    distances = np.empty((n_samples, k), dtype=np.float32)
    for start in range(0, n_samples, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n_samples)
        rows = np.arange(start, stop)
        scores, found = index.search(searched[start:stop], search_k)
        if rerank:
            found, scores = _rerank(data, rows, found, inner_product)
        rows_idx, rows_dist = _drop_self(found, scores, rows, k, inner_product)
        indices[start:stop] = rows_idx
        distances[start:stop] = rows_dist
        report(0.2 + 0.8 * stop / n_samples, f"neighbour graph: {stop}/{n_samples}")
    graph = KnnGraph(indices, distances, stored_metric, resolved, time.perf_counter() - started, key)
    if store is not None:
        store.put(graph)
    return graph


def _pca_projection(faiss: Any, data: np.ndarray, dims: int, inner_product: bool, random_state: int) -> np.ndarray:
    """``data`` projected on its first ``dims`` principal axes (trained on a sample); unit rows
    again for a cosine search, so inner products stay cosines of the projection."""
    rng = np.random.default_rng(random_state)
    n_samples, n_features = data.shape
    sample = data[np.sort(rng.choice(n_samples, size=min(n_samples, 20000), replace=False))]
    pca = faiss.PCAMatrix(n_features, dims)
    pca.train(sample)
    projected = np.empty((n_samples, dims), dtype=np.float32)
    for start in range(0, n_samples, 8 * _BLOCK_ROWS):
        projected[start : start + 8 * _BLOCK_ROWS] = pca.apply(data[start : start + 8 * _BLOCK_ROWS])
    if inner_product:
        projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
    return projected


def _rerank(
    data: np.ndarray, rows: np.ndarray, found: np.ndarray, inner_product: bool, block: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of each row sorted by their exact score in the full space (faiss's convention:
    inner products descending, squared distances ascending); missing candidates (-1) last."""
    found = found.astype(np.int64, copy=False)
    scores = np.empty(found.shape, dtype=np.float32)
    for start in range(0, len(rows), block):
        stop = min(start + block, len(rows))
        candidates = np.where(found[start:stop] >= 0, found[start:stop], rows[start:stop, None])
        vectors = data[candidates]  # (block, m, d)
        query = data[rows[start:stop]][:, None, :]
        if inner_product:
            part = np.einsum("bmd,bod->bm", vectors, query)
            part[found[start:stop] < 0] = -np.inf
        else:
            difference = vectors - query
            part = np.einsum("bmd,bmd->bm", difference, difference)
            part[found[start:stop] < 0] = np.inf
        scores[start:stop] = part
    order = np.argsort(-scores if inner_product else scores, axis=1, kind="stable")
    return np.take_along_axis(found, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _build_index(
    faiss: Any, data: np.ndarray, method: str, inner_product: bool, k: int, random_state: int, report: Progress
) -> Any:
    n_samples, n_features = data.shape
    faiss_metric = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
    if method == "exact":
        index = faiss.IndexFlatIP(n_features) if inner_product else faiss.IndexFlatL2(n_features)
    elif method == "hnsw":
        index = faiss.IndexHNSWFlat(n_features, 32, faiss_metric)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(64, 4 * k)
        for start in range(0, n_samples, 8 * _BLOCK_ROWS):  # add in blocks: cancel points
            index.add(data[start : start + 8 * _BLOCK_ROWS])
            report(0.2 * min(1.0, (start + 8 * _BLOCK_ROWS) / n_samples), "neighbour graph: indexing")
        return index
    else:
        # Inverted file: ~2 sqrt(N) lists, trained on a sample, 1/32 of them probed (at least 16);
        # benchmarks/graph_scale.py measures the recall@10 this gives against exact.
        # (faiss wants >= 39 training points per list; 10 training iterations are plenty for a
        # coarse quantiser and cost a quarter of faiss's default 25.)
        n_lists = int(max(1, min(2 * np.sqrt(n_samples), n_samples // 40, 16384)))
        quantizer = faiss.IndexFlatIP(n_features) if inner_product else faiss.IndexFlatL2(n_features)
        index = faiss.IndexIVFFlat(quantizer, n_features, n_lists, faiss_metric)
        index.cp.niter = 10
        rng = np.random.default_rng(random_state)
        sample_size = min(n_samples, max(40 * n_lists, 10000))
        sample = data[np.sort(rng.choice(n_samples, size=sample_size, replace=False))]
        check(report, "neighbour graph: training the index")
        index.train(sample)
        index.nprobe = min(n_lists, max(16, n_lists // 32))
    index.add(data)
    check(report, "neighbour graph: index ready")
    return index


def _drop_self(
    found: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int, inner_product: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's neighbours without itself (ties with duplicates keep the others), as squared distances."""
    found = found.astype(np.int64, copy=False)
    is_self = found == rows[:, None]
    # A row that did not find itself (an exact duplicate came first) drops its farthest result instead.
    missing_self = ~is_self.any(axis=1)
    is_self[missing_self, -1] = True if found.shape[1] > k else False
    keep = ~is_self
    out_idx = np.full((found.shape[0], k), -1, dtype=np.int64)
    out_dist = np.full((found.shape[0], k), np.inf, dtype=np.float32)
    counts = keep.sum(axis=1)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept entries first, in their search order
    kept_idx = np.take_along_axis(found, order, axis=1)[:, :k]
    kept_scores = np.take_along_axis(scores, order, axis=1)[:, :k].astype(np.float32)
    if inner_product:
        kept_dist = np.maximum(2.0 - 2.0 * kept_scores, 0.0)
    else:
        kept_dist = np.maximum(kept_scores, 0.0)
    width = kept_idx.shape[1]
    columns = np.arange(width)[None, :]
    ok = (columns < np.minimum(counts, k)[:, None]) & (kept_idx >= 0)
    out_idx[:, :width] = np.where(ok, kept_idx, -1)
    out_dist[:, :width] = np.where(ok, kept_dist, np.inf)
    return out_idx, out_dist


def nearest_neighbors(
    X: Any,
    n_neighbors: int,
    queries: Optional[np.ndarray] = None,
    metric: str = "euclidean",
    progress: ProgressLike = None,
    cache: Any = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances and indices of each query row's ``n_neighbors`` nearest rows of ``X``.

    Without ``queries`` this is the neighbour graph (:func:`build_knn_graph`, cached); with
    ``queries`` (row indices) only those rows are searched, exactly, against all rows (for a
    sample, e.g. DBSCAN's radius). A row never gets itself back.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float32, ascending
    indices : ndarray of shape (n_queries, n_neighbors), int64
    """
    n_samples = np.asarray(X).shape[0]
    if not 1 <= n_neighbors <= n_samples - 1:
        raise ValueError(f"n_neighbors must be between 1 and {n_samples - 1} for {n_samples} points, got {n_neighbors}")
    if queries is None:
        graph = build_knn_graph(X, n_neighbors, metric=metric, cache=cache, progress=progress)
        return graph.distances[:, :n_neighbors], graph.indices[:, :n_neighbors]
    data, stored_metric = prepare(X, metric)
    rows = np.asarray(queries, dtype=np.int64)
    faiss = faiss_module()
    faiss.omp_set_num_threads(default_threads())
    inner_product = stored_metric == "cosine"
    index = faiss.IndexFlatIP(data.shape[1]) if inner_product else faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    distances = np.empty((rows.size, n_neighbors), dtype=np.float32)
    indices = np.empty((rows.size, n_neighbors), dtype=np.int64)
    for start in range(0, rows.size, _BLOCK_ROWS):
        block = rows[start : start + _BLOCK_ROWS]
        scores, found = index.search(data[block], min(n_neighbors + 1, n_samples))
        block_idx, block_dist = _drop_self(found, scores, block, n_neighbors, inner_product)
        indices[start : start + block.size] = block_idx
        distances[start : start + block.size] = block_dist
        check(progress, "nearest neighbours")
    return distances, indices


# ---------------------------------------------------------------------------------------- cache
class GraphCache:
    """Neighbour graphs by data hash: a few in memory, and ``.npz`` files on disk.

    Parameters
    ----------
    root : path, optional
        Folder of the files (default ``<feature cache dir>/graphs``); ``None`` with
        ``memory_only=True`` keeps graphs in memory only.
    max_bytes : int
        Disk budget: the least recently used files are removed above it.
    """

    def __init__(
        self, root: Optional[os.PathLike] = None, memory_only: bool = False, max_bytes: int = 2 * 1024**3
    ) -> None:
        self.root: Optional[Path] = None if memory_only else Path(root) if root is not None else None
        self._default_root = root is None and not memory_only
        self.max_bytes = int(max_bytes)
        self._memory: "OrderedDict[str, KnnGraph]" = OrderedDict()
        self._lock = threading.Lock()

    def _folder(self) -> Optional[Path]:
        if self._default_root:
            from .features.cache import default_cache_dir

            return default_cache_dir() / "graphs"  # read each time: tests and users may move the cache
        return self.root

    def _file(self, key: str) -> Optional[Path]:
        folder = self._folder()
        return None if folder is None else folder / f"{key}.npz"

    @staticmethod
    def _serves(graph: KnnGraph, k: int, exact: bool) -> bool:
        return graph.n_neighbors >= k and (graph.exact or not exact)

    def get(self, key: str, n_neighbors: int, exact: bool) -> Optional[KnnGraph]:
        """A stored graph for ``key`` with at least ``n_neighbors`` (exact when asked), truncated."""
        with self._lock:
            graph = self._memory.get(key)
            if graph is not None and self._serves(graph, n_neighbors, exact):
                self._memory.move_to_end(key)
                return _from_cache(graph, n_neighbors)
        path = self._file(key)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                graph = KnnGraph(
                    stored["indices"].astype(np.int64),
                    stored["distances"].astype(np.float32),
                    str(stored["metric"]),
                    str(stored["method"]),
                    0.0,
                    key,
                )
            os.utime(path)  # recently used: kept longest
        except (OSError, ValueError, KeyError) as error:
            log.warning("ignoring unreadable cached graph %s: %s", path, error)
            return None
        if graph.indices.shape != graph.distances.shape or graph.indices.ndim != 2:
            return None
        self._remember(graph)
        return _from_cache(graph, n_neighbors) if self._serves(graph, n_neighbors, exact) else None

    def put(self, graph: KnnGraph) -> None:
        """Keep ``graph`` (replacing a smaller or less exact one for the same data)."""
        self._remember(graph)
        path = self._file(graph.key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, "wb") as fh:  # a reader never sees half a file
                np.savez(
                    fh,
                    indices=graph.indices.astype(np.int32 if graph.n_samples < 2**31 else np.int64),
                    distances=graph.distances,
                    metric=np.array(graph.metric),
                    method=np.array(graph.method),
                )
            self._prune(path.parent)
        except OSError as error:
            log.warning("could not cache the neighbour graph in %s: %s", path.parent, error)

    def _remember(self, graph: KnnGraph) -> None:
        with self._lock:
            old = self._memory.get(graph.key)
            if old is not None and old.n_neighbors > graph.n_neighbors and (old.exact or not graph.exact):
                return
            self._memory[graph.key] = graph
            self._memory.move_to_end(graph.key)
            while len(self._memory) > _MEMORY_SLOTS:
                self._memory.popitem(last=False)

    def _prune(self, folder: Path) -> None:
        files = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget every graph, in memory and on disk."""
        with self._lock:
            self._memory.clear()
        folder = self._folder()
        if folder is not None and folder.is_dir():
            for path in folder.glob("*.npz"):
                path.unlink(missing_ok=True)


def _from_cache(graph: KnnGraph, n_neighbors: int) -> KnnGraph:
    served = graph.truncated(n_neighbors)
    return KnnGraph(served.indices, served.distances, served.metric, served.method, 0.0, served.key)


_default_cache: Optional[GraphCache] = None


def default_graph_cache() -> GraphCache:
    """The process-wide cache under the feature cache folder."""
    global _default_cache
    if _default_cache is None:
        _default_cache = GraphCache()
    return _default_cache
