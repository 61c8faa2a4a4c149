"""The whole job, stage by stage: scan, features, preprocessing, clustering, metrics, 2-D embedding.

The CLI, the GUI worker and the tests all call :func:`run_pipeline`; it reports progress through
one callback (see :mod:`imgcluster_gui.core.progress`) and is cancelled by that callback raising
:class:`~imgcluster_gui.core.progress.Cancelled`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from .choices import AUTO
from .jsonable import to_jsonable as _jsonable
from .progress import Cancelled, Progress, ProgressEvent, ProgressLike, check, notes_from_warnings, wrap_callback

if TYPE_CHECKING:
    from .clustering.autok import AutoKResult

#: How an algorithm that needs K gets one when none is given (see PipelineConfig).
K_SELECTIONS = ("graph", "silhouette", "silhouette-umap")

# The share of the progress bar each stage gets: extraction dominates on a cold cache.
_STAGE_SPANS = {
    "scan": (0.00, 0.05),
    "features": (0.05, 0.75),
    "metadata": (0.75, 0.76),
    "preprocess": (0.76, 0.77),
    "cluster": (0.77, 0.89),
    "granularity": (0.89, 0.92),
    "metrics": (0.92, 0.95),
    "embedding": (0.95, 1.00),
}


@dataclass
class PipelineConfig:
    """Everything a run needs, as plain data (saved with sessions and shown in the run list).

    The default algorithm, Leiden on the neighbour graph, finds the number of groups itself
    (``n_clusters=None``) and gives the granularity levels. ``n_clusters=N`` gives exactly N
    groups with any algorithm. An algorithm that needs K, run without one, gets it from
    ``k_selection``: ``'graph'`` (the number of Leiden communities of the neighbour graph, the
    default), ``'silhouette'`` (the silhouette sweep over ``[k_min, k_max]``) or
    ``'silhouette-umap'`` (the same sweep in a 10-d UMAP space, with umap-learn installed).

    After extraction: ``pca_dims``, ``whiten`` and ``l2``
    (:func:`~imgcluster_gui.core.preprocess.preprocess_features`), then ``umap_dims`` reduces the
    features with UMAP before clustering (:func:`~imgcluster_gui.core.preprocess.umap_reduce`; off by
    default: measured in ``benchmarks/features.py``, it lifts k-means at a given K on every shared set
    but makes the no-K default over-split).

    ``time_weight`` in [0, 1] mixes capture-time closeness (EXIF dates) into Leiden's neighbour graph
    so that an event comes out as one group (:mod:`imgcluster_gui.core.time_graph`; 0 = off).
    """

    folder: str
    recursive: bool = True
    backbones: list[str] = field(default_factory=lambda: _default_backbones())
    layer: Optional[str] = None
    weights_path: Optional[str] = None
    device: str = AUTO
    pca_dims: Optional[int] = None
    whiten: bool = False
    l2: bool = True
    umap_dims: Optional[int] = None
    algorithm: str = "leiden"
    n_clusters: Optional[int] = None
    k_selection: str = "graph"
    k_min: int = 2
    k_max: int = 30
    algorithm_params: dict[str, Any] = field(default_factory=dict)
    embedding: str = "pca"
    random_state: int = 0
    use_cache: bool = True
    labels_csv: Optional[str] = None
    use_subfolder_labels: bool = True
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    #: How the network runs on the CPU: 'auto' (by folder size), 'eager', 'compile' or 'openvino' (features/runtime.py).
    engine: str = "auto"
    time_weight: float = 0.0
    #: A feature store folder (``imgcluster extract --store``): its rows are the features and its paths the
    #: images, so the folder is neither scanned nor extracted again (a million images are read memory-mapped).
    features_store: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _default_backbones() -> list[str]:
    from .features.backbones import DEFAULT_BACKBONES

    return list(DEFAULT_BACKBONES)


@dataclass
class PipelineResult:
    """What a run produced. Arrays are aligned with ``paths`` (the images actually used)."""

    config: PipelineConfig
    scan: Any
    features: Any
    paths: list[str]
    X: np.ndarray
    labels: np.ndarray
    k: int
    auto_k: Any
    metrics: dict[str, Any]
    external: Optional[dict[str, Any]]
    ground_truth: Optional[list[Optional[str]]]
    embedding: Optional[np.ndarray]
    confidence: Optional[np.ndarray]
    timings: dict[str, float]
    estimator: Any
    warnings: list[str] = field(default_factory=list)
    #: The granularity steps (``GranularityLevel``, fewest groups first), for graph methods.
    levels: Optional[list] = None
    #: Capture time and GPS per image (``core.photo_meta`` table, shape (N, 6)), read at scan time.
    photo_meta: Optional[np.ndarray] = None
    #: The top ImageNet classes of each image, ``(classes int16 (N, k), probabilities float16 (N, k))``, from
    #: the default backbone's classifier head on the features extracted (core/naming.py); None without one.
    imagenet_top: Optional[tuple[np.ndarray, np.ndarray]] = None

    @property
    def skipped(self) -> list:
        """Every file not used, with its reason: unreadable at scan time or at decode time."""
        # A result rebuilt without its scan or features (a test, an opened record) skipped nothing known.
        scanned = list(self.scan.skipped) if self.scan is not None else []
        return scanned + (list(self.features.failed) if self.features is not None else [])

    @property
    def images_per_second(self) -> float:
        seconds = self.timings.get("features", 0.0)
        n = getattr(self.features, "n_extracted", len(self.paths))
        return n / seconds if seconds > 0 and n else 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly digest (run list, CLI ``--json``)."""
        return {
            "folder": self.config.folder,
            "backbones": list(self.config.backbones),
            "algorithm": self.config.algorithm,
            "k": int(self.k),
            "n_images": len(self.paths),
            "n_skipped": len(self.skipped),
            "metrics": _jsonable(self.metrics),
            "external": _jsonable(self.external),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "n_extracted": int(getattr(self.features, "n_extracted", 0)),
            "n_cached": int(getattr(self.features, "n_cached", 0)),
            "device": str(getattr(self.features, "device", "")),
            "n_unsorted": int(np.count_nonzero(np.asarray(self.labels) < 0)),
            "k_selection": None if self.auto_k is None else _auto_k_dict(self.auto_k).get("method"),
            "granularity": [level.summary() for level in (self.levels or [])],
        }

    def suggested_names(self) -> dict[int, str]:
        """The clusters' names suggested from ImageNet classes ("mixed" left out), for an export straight from a run."""
        from .naming import suggestions_by_id

        names = suggestions_by_id(np.asarray(self.labels), self.imagenet_top)
        return {c: name.text for c, name in names.items() if not name.is_mixed}

    def to_session(self):
        """Build the editable :class:`~imgcluster_gui.core.session.ClusterSession` the GUI shows."""
        from .session import ClusterSession

        metrics = dict(self.metrics)
        metrics["external"] = dict(self.external) if self.external else None  # clustering_metrics' form
        if self.auto_k is not None:
            metrics["auto_k"] = _auto_k_dict(self.auto_k)
        levels = self.levels or []
        granularity_labels = np.stack([level.labels for level in levels], axis=1) if levels else None
        session = ClusterSession(
            paths=list(self.paths),
            labels=np.asarray(self.labels, dtype=np.int64).copy(),
            cluster_names=None,
            embedding=self.embedding,
            features=self.X,
            confidence=self.confidence,
            ground_truth=self.ground_truth,
            metrics=metrics,
            settings=self.config.to_dict(),
            root=str(self.config.folder),
            granularity_labels=granularity_labels,
            granularity=[level.summary() for level in levels] or None,
            photo_meta=self.photo_meta,
            imagenet_top_classes=None if self.imagenet_top is None else self.imagenet_top[0],
            imagenet_top_probs=None if self.imagenet_top is None else self.imagenet_top[1],
        )
        session.skipped = [(str(item.path), str(item.reason)) for item in self.skipped]
        session.trained_model = self.estimator  # saved beside the session file only for trained networks
        session.mark_modified()  # a new result is unsaved work
        return session


@dataclass
class GraphKResult:
    """K taken from the neighbour graph: the number of Leiden communities (``k_selection='graph'``)."""

    best_k: int
    resolution: float
    modularity: Optional[float]
    n_unsorted: int
    method: str = "graph"


def choose_k_from_graph(X: np.ndarray, random_state: int = 0, progress: ProgressLike = None) -> GraphKResult:
    """How many groups the neighbour graph holds: Leiden's count with its defaults (at least 1)."""
    from .clustering.registry import make_estimator

    leiden = make_estimator("leiden", random_state=random_state).fit(X, progress=progress)
    return GraphKResult(
        max(1, int(leiden.n_clusters_)), float(leiden.resolution_), leiden.modularity_, int(leiden.n_unsorted_)
    )


def _auto_k_dict(auto_k: Any) -> dict[str, Any]:
    if isinstance(auto_k, GraphKResult):
        return {
            "method": "graph",
            "best_k": int(auto_k.best_k),
            "resolution": auto_k.resolution,
            "modularity": auto_k.modularity,
            "n_unsorted": auto_k.n_unsorted,
        }
    return {
        "method": "silhouette",
        "best_k": int(auto_k.best_k),
        "ks": [int(k) for k in auto_k.ks],
        "silhouette": [None if v is None else float(v) for v in auto_k.silhouette],
        "calinski_harabasz": [None if v is None else float(v) for v in auto_k.calinski_harabasz],
        "davies_bouldin": [None if v is None else float(v) for v in auto_k.davies_bouldin],
    }


def load_ground_truth(config: PipelineConfig, root: Path, paths: list[Path]) -> Optional[list[Optional[str]]]:
    """Ground truth for external metrics: a labels CSV when given, else sub-folder names.

    Returns ``None`` when there is none (all images in the root folder and no CSV). Images the CSV
    does not mention get ``None`` entries and are left out of external metrics.
    """
    from .dataset import labels_from_csv, labels_from_subfolders

    if config.labels_csv:
        return labels_from_csv(config.labels_csv, paths)
    if config.use_subfolder_labels:
        return labels_from_subfolders(root, paths)
    return None


def store_scan(store_dir: str, folder: str) -> Any:
    """The :class:`~.dataset.ScanResult` of a feature store: its images, nothing skipped.

    The store's unreadable files come with its features (``FeatureResult.failed``), as an extraction's do.
    """
    from .dataset import ScanResult
    from .features.store import FeatureStore

    return ScanResult(root=Path(folder), paths=[Path(p) for p in FeatureStore.open(store_dir).paths], skipped=[])


def extract(config: PipelineConfig, paths: list[Path], progress: ProgressLike = None):
    """Extract (or read from the cache) the features of ``paths`` for the configured backbone(s)."""
    if config.features_store:
        from .features.store import FeatureStore

        return FeatureStore.open(config.features_store).to_feature_result()
    from .features.extract import extract_features, extract_multiview

    common: dict[str, Any] = dict(  # forwarded as keywords to either extractor
        layer=config.layer,
        weights_path=config.weights_path,
        device=config.device,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        cache=config.use_cache,
        progress=progress,
        engine=config.engine,
    )
    if len(config.backbones) > 1:
        return extract_multiview(paths, list(config.backbones), **common)
    return extract_features(paths, backbone=config.backbones[0], **common)


def fit_params_for(
    spec: Any, config: PipelineConfig, features: Any, paths: list[str], ground_truth: Optional[list[Optional[str]]]
) -> dict[str, Any]:
    """Extra ``fit`` arguments an algorithm asks for through its registry entry.

    Methods that fine-tune the CNN get the image paths and backbone; multi-view methods get the
    boundaries of each backbone's block; deep methods get the ground truth (as integer codes)
    only to report NMI per epoch, never to train.
    """
    params: dict[str, Any] = {}
    if getattr(spec, "needs_images", False):
        params.update(paths=list(paths), backbone=config.backbones[0], weights_path=config.weights_path)
    view_slices = getattr(features, "view_slices", None)
    if getattr(spec, "uses_views", False) and view_slices is not None:
        params["view_slices"] = view_slices
    if getattr(spec, "category", "") == "deep" and ground_truth is not None and None not in ground_truth:
        _, codes = np.unique(np.asarray(ground_truth, dtype=object).astype(str), return_inverse=True)
        params["y"] = codes
    return params


def time_fit_params(config: PipelineConfig, photo_meta: Optional[np.ndarray], report: ProgressLike = None) -> dict:
    """The ``time_graph`` fit argument of a time-aware run (``config.time_weight`` > 0), or nothing.

    Only Leiden (the default) mixes time into its graph; another algorithm, or a folder with fewer
    than 2 EXIF capture dates, gets a note saying the weight had nothing to act on.
    """
    from .photo_meta import instants
    from .progress import ensure
    from .time_graph import TimeGraph

    weight = float(config.time_weight or 0.0)
    if weight <= 0.0:
        return {}
    if config.algorithm != "leiden":
        ensure(report).warn(f"Grouping by time works with Leiden only: {config.algorithm} ignores the time weight.")
        return {}
    times = instants(photo_meta, exif_only=True)
    if times is None or np.count_nonzero(np.isfinite(times)) < 2:
        ensure(report).warn("Grouping by time: fewer than 2 images have an EXIF capture date, so it changes nothing.")
        return {}
    n_dated = int(np.count_nonzero(np.isfinite(times)))
    if n_dated < times.size:
        ensure(report).note(
            f"Grouping by time: {n_dated} of {times.size} photos have an EXIF capture date; the others group by look."
        )
    return {"time_graph": TimeGraph(times, weight)}


class PartialCancelled(Cancelled):
    """A run cancelled while a method trained, after it had a complete assignment.

    Deep estimators keep their last complete epoch when cancelled (``labels_``, ``partial_ = True``);
    ``result`` is the :class:`PipelineResult` of that best-so-far assignment, so a caller (the GUI)
    can show it instead of losing the training done so far.
    """

    def __init__(self, result: "PipelineResult") -> None:
        super().__init__("cancelled by user; the last complete epoch is kept")
        self.result = result


def cluster(
    config: PipelineConfig,
    X: np.ndarray,
    progress: ProgressLike = None,
    fit_params: Optional[dict[str, Any]] = None,
    on_estimator: Optional[Callable[[Any], None]] = None,
    keep_partial: bool = False,
):
    """Fit the configured algorithm (choosing K first when asked) and return ``(estimator, labels, auto_k)``.

    ``on_estimator(estimator)`` is called before fitting (the GUI polls its ``history_`` live). With
    ``keep_partial``, a :class:`Cancelled` during a fit that already produced ``labels_`` is not
    raised: the estimator's ``partial_`` attribute says so (set here when the estimator did not).
    """
    from .clustering.autok import choose_k
    from .clustering.registry import get_algorithm, make_estimator

    spec = get_algorithm(config.algorithm)
    auto_k: Union[AutoKResult, GraphKResult, None] = None
    n_clusters = config.n_clusters
    if spec.uses_k and n_clusters is None and not spec.k_optional:
        if config.k_selection not in K_SELECTIONS:
            raise ValueError(f"k_selection must be one of {K_SELECTIONS}, got {config.k_selection!r}")
        if config.k_selection.startswith("silhouette"):
            sweep_algorithm = config.algorithm if spec.supports_auto_k else "kmeans"
            auto_k = choose_k(
                X,
                algorithm=sweep_algorithm,
                k_min=config.k_min,
                k_max=config.k_max,
                random_state=config.random_state,
                space="umap" if config.k_selection == "silhouette-umap" else "features",
                progress=wrap_callback(progress, 0.0, 0.7, "Auto-K: "),
            )
        else:
            auto_k = choose_k_from_graph(
                X, random_state=config.random_state, progress=wrap_callback(progress, 0.0, 0.7, "Groups in the graph: ")
            )
        n_clusters = min(auto_k.best_k, X.shape[0])
        progress = wrap_callback(progress, 0.7, 1.0)
    kwargs = dict(config.algorithm_params)
    estimator = make_estimator(
        config.algorithm, n_clusters=n_clusters if spec.uses_k else None, random_state=config.random_state, **kwargs
    )
    if on_estimator is not None:
        on_estimator(estimator)
    fit_params = dict(fit_params or {})
    y = fit_params.pop("y", None)
    try:
        estimator.fit(X, y, progress=progress, **fit_params)
    except Cancelled:
        # Only trained methods keep a best-so-far assignment; a classic fit's labels_ may be half-made.
        if not keep_partial or spec.category != "deep" or getattr(estimator, "labels_", None) is None:
            raise
        estimator.partial_ = True
    labels = np.asarray(estimator.labels_, dtype=np.int64)
    return estimator, labels, auto_k


def run_pipeline(
    config: PipelineConfig, progress: ProgressLike = None, on_estimator: Optional[Callable[[Any], None]] = None
) -> PipelineResult:
    """Run every stage on ``config.folder`` and return the result.

    Parameters
    ----------
    config : PipelineConfig
        What to run.
    progress : callable, optional
        a progress consumer (``ProgressEvent`` receiver) or ``Progress``; raising :class:`Cancelled` from it stops
        the run cleanly (the feature cache keeps only complete entries).
    on_estimator : callable, optional
        Called with the estimator just before it is fitted, e.g. to watch a deep method's
        per-epoch ``history_`` from another thread.

    Raises
    ------
    DatasetError
        The folder does not exist, is not a folder, or holds no usable image.
    WeightsUnavailableError
        A backbone's weights are neither cached, downloadable, nor given as a file.
    PartialCancelled
        The callback asked to stop while a deep method trained, after its first complete
        assignment: ``exc.result`` holds the result of that assignment (with a PCA layout).
    Cancelled
        The callback asked to stop.
    """
    from .clustering.registry import get_algorithm
    from .dataset import DatasetError, scan_folder
    from .features.backbones import WeightsUnavailableError
    from .photo_meta import read_photo_metas
    from .preprocess import preprocess_features, umap_reduce

    try:
        unavailable = get_algorithm(config.algorithm).unavailable
    except KeyError:  # an unknown name is reported where it always was
        unavailable = ""
    if unavailable:  # said before minutes of extraction (DeepCluster / UCNN without torchvision)
        raise WeightsUnavailableError(f"{config.algorithm}: {unavailable}")
    timings: dict[str, float] = {}
    # Notes travel in the progress events (the window logs them as they come, the CLI prints
    # them); the run also keeps the warnings among them, for its summary and its record.
    warnings: list[str] = []
    consumer = progress
    listening = [True]

    def record(event: ProgressEvent) -> None:
        if event.note is not None and event.level == "warning":
            warnings.append(event.note)
        if consumer is None:
            return
        if listening[0] or event.note is not None:
            # After a cancel nothing may raise Cancelled again: the consumer only hears notes.
            try:
                if isinstance(consumer, Progress):
                    consumer.emit(event)
                else:
                    consumer(event)
            except Cancelled:
                if listening[0]:
                    raise

    report = Progress(record)

    def stage(name: str, prefix: str) -> Progress:
        start, end = _STAGE_SPANS[name]
        return wrap_callback(report, start, end, prefix)

    t0 = time.perf_counter()
    if config.features_store:  # the store lists its images: no scan of a folder that may hold millions
        scan = store_scan(config.features_store, config.folder)
    else:
        scan = scan_folder(config.folder, recursive=config.recursive, progress=stage("scan", "Scanning: "))
    timings["scan"] = time.perf_counter() - t0
    if not scan.paths:
        raise DatasetError(f"No readable image in {config.folder} ({len(scan.skipped)} file(s) skipped).")

    t0 = time.perf_counter()
    feats = extract(config, list(scan.paths), progress=stage("features", "Features: "))
    timings["features"] = time.perf_counter() - t0
    paths = [str(p) for p in feats.paths]
    if len(paths) < 2:
        raise DatasetError(f"Only {len(paths)} image(s) could be read in {config.folder}: nothing to cluster.")

    t0 = time.perf_counter()
    photo_meta = None
    if not config.features_store or config.time_weight:  # a store of millions: its files are not opened unless asked
        photo_meta = read_photo_metas(paths, cache=config.use_cache, progress=stage("metadata", "Capture dates: "))
    timings["metadata"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    check(report, "Preprocessing features")
    X = preprocess_features(
        feats.features, pca_dims=config.pca_dims, whiten=config.whiten, l2=config.l2, random_state=config.random_state
    )
    if isinstance(X, tuple):  # (X, notes) form: the notes are passed on
        X, notes = X
        for note in notes or []:
            report.warn(note)
    if config.umap_dims:
        check(report, f"UMAP reduction to {config.umap_dims} dimensions")
        X = umap_reduce(X, n_components=config.umap_dims, random_state=config.random_state)
    timings["preprocess"] = time.perf_counter() - t0

    root = Path(config.folder)
    ground_truth = load_ground_truth(config, root, [Path(p) for p in paths])
    if config.pca_dims and len(config.backbones) > 1 and getattr(get_algorithm(config.algorithm), "uses_views", False):
        report.warn("PCA mixes the backbones' feature blocks: the multi-view method sees them as one view.")
        fit_extra = {}
    else:
        fit_extra = fit_params_for(get_algorithm(config.algorithm), config, feats, paths, ground_truth)
    fit_extra.update(time_fit_params(config, photo_meta, report))

    t0 = time.perf_counter()
    with notes_from_warnings(report):
        estimator, labels, auto_k = cluster(
            config,
            X,
            progress=stage("cluster", "Clustering: "),
            fit_params=fit_extra,
            on_estimator=on_estimator,
            keep_partial=True,
        )
    timings["cluster"] = time.perf_counter() - t0
    cancelled = bool(getattr(estimator, "partial_", False))
    if getattr(estimator, "collapsed_", False):
        report.warn(
            f"Self-training began merging clusters away at epoch {estimator.collapsed_epoch_}: the "
            "result of the epoch before is kept. A lower learning rate or gamma avoids this."
        )
    if cancelled:
        history = getattr(estimator, "history_", None) or [{}]
        # Nothing below may raise Cancelled again: from here the consumer only hears notes.
        listening[0] = False
        report.warn(f"Cancelled during training: the result of epoch {history[-1].get('epoch', '?')} is kept.")
    levels = None
    if not cancelled and hasattr(estimator, "ladder"):
        t0 = time.perf_counter()
        levels = granularity_levels(estimator, X, progress=stage("granularity", "Granularity levels: "))
        timings["granularity"] = time.perf_counter() - t0
    n_unsorted = int(np.count_nonzero(labels < 0))
    if n_unsorted and getattr(estimator, "n_unsorted_", 0):
        report.warn(
            f"{n_unsorted} image(s) fit no group (too unlike the others, or in groups smaller "
            "than min_cluster_size): they are in the 'Unassigned' group for you to place."
        )
    result = _finish(
        config,
        scan,
        feats,
        paths,
        X,
        labels,
        auto_k,
        ground_truth,
        estimator,
        timings,
        warnings,
        report,
        fast_embedding=cancelled,
    )
    result.levels = levels
    result.photo_meta = photo_meta
    result.imagenet_top = imagenet_top_classes(config, feats, None if cancelled else report)
    if cancelled:
        raise PartialCancelled(result)
    return result


def imagenet_top_classes(
    config: PipelineConfig, feats: Any, report: Optional[Progress] = None
) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The top ImageNet classes of each image for suggested names (None when no backbone's head fits).

    A matrix product on the features already extracted (core/naming.py); a failure only costs the names.
    """
    from .naming import top_classes_for_run

    try:
        return top_classes_for_run(
            config.backbones, config.layer, config.weights_path, feats, config.use_cache, config.device, report
        )
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        if report is not None:
            report.note(f"No suggested names from ImageNet classes ({type(exc).__name__}: {exc})")
        return None


def granularity_levels(
    estimator: Any, X: np.ndarray, progress: ProgressLike = None, silhouette_sample: int = 2000
) -> list:
    """The estimator's granularity ladder, each level with its (sampled) silhouette.

    Parameters
    ----------
    estimator : fitted estimator with a ``ladder(X, progress=)`` method
    X : ndarray
        The features the estimator was fitted on.
    silhouette_sample : int
        Images the per-level silhouette is computed on (one random sample shared by every level).
    """
    from .metrics import silhouettes_of

    levels = estimator.ladder(X, progress=wrap_callback(progress, 0.0, 0.9))
    check(progress, "granularity levels: silhouettes")
    for level, score in zip(levels, silhouettes_of(X, [level.labels for level in levels], silhouette_sample)):
        level.silhouette = score
    return levels


def _finish(
    config: PipelineConfig,
    scan: Any,
    feats: Any,
    paths: list[str],
    X: np.ndarray,
    labels: np.ndarray,
    auto_k: Any,
    ground_truth: Optional[list[Optional[str]]],
    estimator: Any,
    timings: dict[str, float],
    warnings: list[str],
    report: Progress,
    fast_embedding: bool = False,
) -> PipelineResult:
    """Metrics and 2-D embedding of an assignment, packed as a :class:`PipelineResult`.

    ``fast_embedding`` swaps a slow layout (t-SNE, UMAP) for PCA: the user asked to stop, and the
    scatter's method menu can redo the slow one later.
    """
    from .embedding import NO_EMBEDDING, embed_2d
    from .metrics import clustering_metrics

    def stage(name: str, prefix: str) -> Progress:
        start, end = _STAGE_SPANS[name]
        return wrap_callback(report, start, end, prefix)

    t0 = time.perf_counter()
    metric_progress = stage("metrics", "Metrics: ")
    metric_progress(0.0, "internal")
    metrics = clustering_metrics(X, labels, ground_truth)  # the session rescores edits with it too
    external = metrics.pop("external")
    metric_progress(1.0, "done")
    timings["metrics"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    embedding = None
    method = config.embedding
    if method and method != NO_EMBEDDING:
        embedding = embed_2d(
            X,
            method="pca" if fast_embedding else method,
            random_state=config.random_state,
            progress=stage("embedding", "2-D embedding: "),
        )
    timings["embedding"] = time.perf_counter() - t0
    report(1.0, "Done")

    confidence = getattr(estimator, "confidence_", None)
    return PipelineResult(
        config=config,
        scan=scan,
        features=feats,
        paths=paths,
        X=X,
        labels=labels,
        k=int(len(set(labels.tolist()) - {-1})),
        auto_k=auto_k,
        metrics=metrics,
        external=external,
        ground_truth=ground_truth,
        embedding=embedding,
        confidence=None if confidence is None else np.asarray(confidence, dtype=np.float32),
        timings=timings,
        estimator=estimator,
        warnings=warnings,
    )
