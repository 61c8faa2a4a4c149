"""2-D embeddings of the feature space for the scatter view: PCA, t-SNE, UMAP (when installed).

Every method accepts any number of samples: below the size a method needs (t-SNE and UMAP need
a handful of neighbours) the embedding falls back to PCA, which is defined for any N.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np

from .progress import Progress, ProgressLike, ensure

#: Every 2-D embedding method (the CLI's --embedding and the GUI's layout choices); UMAP needs
#: umap-learn (:func:`available_methods` lists what works here).
EMBEDDING_METHODS = ("pca", "tsne", "umap")
#: How each method is written for people (the window's combo box and status line).
EMBEDDING_LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
#: ``PipelineConfig.embedding`` (and ``--embedding``) value that skips the 2-D layout.
NO_EMBEDDING = "none"

# t-SNE's neighbour search is run on this many PCA components (the usual speed-up, as in openTSNE
# and the t-SNE FAQ): CNN features have 1000+ dimensions and most of the variance sits in the first few dozen.
TSNE_PCA_DIMS = 50
# scikit-learn's default perplexity; lowered for small N because it must stay below N.
TSNE_PERPLEXITY = 30.0
UMAP_NEIGHBORS = 15
# Below these sizes t-SNE / UMAP have too few neighbours to mean anything; PCA is used instead.
MIN_SAMPLES_TSNE = 5
MIN_SAMPLES_UMAP = 5
# Below this many samples t-SNE runs on one thread.  Its OpenMP gradient loop synchronises threads
# 1000 times; with little work per iteration and another busy process on the machine, threads spin
# on each other: measured on 2 loaded cores, 60 samples took 20 s on 2 threads vs 0.2 s on one,
# 1000 samples 13.3 s vs 5.0 s.  Larger sets have enough work per iteration to gain from threads.
TSNE_SINGLE_THREAD_BELOW = 2000
# Above this many feature values (256 MiB of float32, e.g. 52,000 x 1280) the PCA layout is computed from the
# covariance accumulated block by block: scikit-learn's PCA copies the whole matrix to centre it (measured at
# 100,000 x 1280, a 512 MB input: its peak rose 580 MB; the blockwise covariance's 97 MB). The axes are fitted on
# every k-th row, at most PCA_FIT_ROWS of them (the d x d covariance of 262,144 rows is as good as of all).
STREAMING_PCA_VALUES = 2**26
PCA_FIT_ROWS = 262144
_PCA_BLOCK_ROWS = 8192  # 42 MB of 1280-d float32 rows


def _umap_installed() -> bool:
    return importlib.util.find_spec("umap") is not None


def available_methods() -> list[str]:
    """The embedding methods usable here: ``'pca'``, ``'tsne'``, and ``'umap'`` when umap-learn is installed."""
    return [method for method in EMBEDDING_METHODS if method != "umap" or _umap_installed()]


def _pca_2d_streaming(X: np.ndarray) -> np.ndarray:
    """The first two principal components from a blockwise covariance (memory: d x d plus one block).

    The axes come from every k-th row (at most :data:`PCA_FIT_ROWS`); every row is projected. Signs follow
    scikit-learn's rule (each axis's largest loading positive), so the layout does not flip.
    """
    n_samples, n_features = X.shape
    fit_rows = X[:: max(1, -(-n_samples // PCA_FIT_ROWS))]  # a strided view: nothing copied
    total = np.zeros(n_features, dtype=np.float64)
    gram = np.zeros((n_features, n_features), dtype=np.float64)
    for start in range(0, fit_rows.shape[0], _PCA_BLOCK_ROWS):
        block = np.asarray(fit_rows[start : start + _PCA_BLOCK_ROWS], dtype=np.float32)
        total += block.sum(axis=0, dtype=np.float64)
        gram += block.T @ block  # float32 BLAS per block, summed in float64
    mean = total / fit_rows.shape[0]
    covariance = gram / fit_rows.shape[0] - np.outer(mean, mean)
    _, vectors = np.linalg.eigh(covariance)
    axes = vectors[:, ::-1][:, :2].T  # largest eigenvalues last in eigh's order
    axes *= np.sign(axes[np.arange(axes.shape[0]), np.argmax(np.abs(axes), axis=1)])[:, None]
    axes32, mean32 = axes.T.astype(np.float32), mean.astype(np.float32)
    out = np.empty((n_samples, 2), dtype=np.float32)
    for start in range(0, n_samples, _PCA_BLOCK_ROWS):
        block = np.asarray(X[start : start + _PCA_BLOCK_ROWS], dtype=np.float32)
        out[start : start + _PCA_BLOCK_ROWS] = (block - mean32) @ axes32
    return out


def _pca_2d(X: np.ndarray, random_state: int) -> np.ndarray:
    """First two principal components; a zero column where the data has fewer than 2 dimensions."""
    from sklearn.decomposition import PCA  # imported when used: the CLI reads EMBEDDING_METHODS at start-up

    n_samples, n_features = X.shape
    if n_samples * n_features > STREAMING_PCA_VALUES and n_features >= 2:
        return _pca_2d_streaming(X)
    out = np.zeros((n_samples, 2), dtype=np.float32)
    n_components = min(2, n_samples, n_features)
    if n_samples >= 2 and n_components >= 1:
        out[:, :n_components] = PCA(n_components=n_components, random_state=random_state).fit_transform(X)
    return out


def _tsne(X: np.ndarray, random_state: int, report: Progress) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n_samples, n_features = X.shape
    if n_features > TSNE_PCA_DIMS and n_samples > TSNE_PCA_DIMS:
        report(0.05, f"PCA to {TSNE_PCA_DIMS} dimensions")
        X = PCA(n_components=TSNE_PCA_DIMS, random_state=random_state).fit_transform(X).astype(np.float32)
    # Perplexity ~ the number of effective neighbours: it must be < N; N/3 keeps small sets stable.
    perplexity = min(TSNE_PERPLEXITY, max(1.0, (n_samples - 1) / 3.0))
    report(0.1, "t-SNE")
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=random_state)
    if n_samples < TSNE_SINGLE_THREAD_BELOW:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            return tsne.fit_transform(X)
    return tsne.fit_transform(X)


def _umap(X: np.ndarray, random_state: int, report: Progress) -> np.ndarray:
    try:
        import umap
    except ImportError as exc:
        raise ValueError(
            f"UMAP is not available ({exc}); install it with `pip install umap-learn` or choose 'pca' or 'tsne'"
        ) from None
    n_samples = X.shape[0]
    n_neighbors = min(UMAP_NEIGHBORS, n_samples - 1)
    # Spectral initialisation needs a connected enough graph; tiny sets start from random positions.
    init = "spectral" if n_samples > 2 * UMAP_NEIGHBORS else "random"
    report(0.1, "UMAP")
    with warnings.catch_warnings():
        # "n_jobs overridden by random_state": the seed is what we want (reproducible layouts).
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, init=init, random_state=random_state)
        return reducer.fit_transform(X)


def embed_2d(X, method: str = "pca", random_state: int = 0, progress: ProgressLike = None) -> np.ndarray:
    """Embed features in 2-D for plotting.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    method : {'pca', 'tsne', 'umap'}
        't-SNE' first reduces to 50 PCA components and caps the perplexity for small N;
        'umap' needs umap-learn (see :func:`available_methods`).
    random_state : int
        Seed: the same input and seed give the same layout.
    progress : callable, optional
        a progress consumer (``ProgressEvent`` receiver) or ``Progress``.  t-SNE and UMAP report only at their start
        and end (the libraries have no callback), so a cancel is seen between steps.

    Returns
    -------
    ndarray of shape (n_samples, 2), float32

    Raises
    ------
    ValueError
        Unknown method, UMAP not installed, or ``X`` not 2-D / not finite.
    """
    report = ensure(progress)
    method = str(method).lower().replace("-", "")
    if method not in EMBEDDING_METHODS:
        raise ValueError(f"unknown embedding method {method!r}; choose one of {', '.join(available_methods())}")
    if method == "umap" and not _umap_installed():
        raise ValueError("UMAP is not installed; install it with `pip install umap-learn` or choose 'pca' or 'tsne'")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    # Block by block: a whole-matrix boolean temporary is 1.3 GB at 1,000,000 x 1280.
    blocks = range(0, X.shape[0], _PCA_BLOCK_ROWS)
    if not all(np.isfinite(X[start : start + _PCA_BLOCK_ROWS]).all() for start in blocks):
        raise ValueError("X contains NaN or infinite values")

    n_samples = X.shape[0]
    report(0.0, f"{method.upper()} embedding")
    if method == "tsne" and n_samples >= MIN_SAMPLES_TSNE:
        coords = _tsne(X, random_state, report)
    elif method == "umap" and n_samples >= MIN_SAMPLES_UMAP:
        coords = _umap(X, random_state, report)
    else:
        coords = _pca_2d(X, random_state)
    report(1.0, "embedding done")
    return np.ascontiguousarray(coords, dtype=np.float32)
