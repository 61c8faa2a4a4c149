"""Command-line interface over the headless core (no Qt import here).

::

    imgcluster cluster FOLDER [--backbone NAME ...] [--layer L] [--algorithm NAME] [--k N|auto]
                              [--resolution R] [--pca N] [--out labels.csv]
    imgcluster evaluate FOLDER ...        # same, plus external metrics against sub-folder names
    imgcluster backbones                  # what is usable offline and what needs a download
    imgcluster algorithms                 # the clustering registry with each algorithm's parameters
    imgcluster cache {info,clear}         # the on-disk feature cache
    imgcluster duplicates FOLDER [--threshold T] [--out CSV]   # near-duplicates and bursts
    imgcluster similar IMAGE FOLDER [--top N]                  # the images most like IMAGE
    imgcluster extract FOLDER --store DIR [--ray ADDRESS|local]  # features of a huge folder into a store on disk
    imgcluster cluster FOLDER --features DIR ...               # cluster from that store (no scan, no extraction)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .core.choices import AUTO, DEVICE_CHOICES
from .core.embedding import EMBEDDING_METHODS, NO_EMBEDDING
from .core.text import printable_path, printable_text


class UsageError(Exception):
    """A bad argument: printed as one line, exit status 2."""


def _parse_k(text: str) -> Optional[int]:
    if text.strip().lower() == AUTO:
        return None
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be a whole number or {AUTO!r}, not {text!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError("--k must be at least 1")
    return k


def _parse_resolution(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--resolution must be a number, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("--resolution must be a positive number")
    return value


def _parse_time_weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--time-weight must be a number, not {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError("--time-weight must be between 0 and 1")
    return value


def _parse_k_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split(":", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k-range must look like 2:30, not {text!r}") from None
    if not 2 <= low <= high:
        raise argparse.ArgumentTypeError("--k-range needs 2 <= MIN <= MAX")
    return low, high


def _parse_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param must look like name=value, not {text!r}")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgcluster", description="Cluster a folder of images by deep CNN features.")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, help_text in (
        ("cluster", "cluster a folder and write the labels"),
        ("evaluate", "cluster a folder and score it against its sub-folder names"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("folder", help="folder of images (searched recursively unless --no-recursive)")
        p.add_argument(
            "--backbone",
            action="append",
            dest="backbones",
            metavar="NAME",
            help="feature extractor; repeat for a multi-view (concatenated) feature "
            "(default: the two offline defaults side by side, see `imgcluster backbones`)",
        )
        p.add_argument("--layer", help="backbone layer (default: penultimate, pooled)")
        p.add_argument("--weights", dest="weights_path", help="a .pth state_dict to load into the backbone")
        p.add_argument("--device", default=AUTO, choices=DEVICE_CHOICES)
        p.add_argument(
            "--algorithm",
            default="leiden",
            help="clustering algorithm (default leiden: finds the groups itself; see `imgcluster algorithms`)",
        )
        p.add_argument(
            "--k",
            type=_parse_k,
            default=None,
            metavar="N|auto",
            help="exactly N groups, or 'auto' to let the neighbour graph decide (default: auto)",
        )
        p.add_argument(
            "--resolution",
            type=_parse_resolution,
            default=None,
            metavar="R",
            help="granularity of leiden: lower gives fewer, larger groups (default 1.0)",
        )
        p.add_argument(
            "--k-selection",
            choices=("graph", "silhouette", "silhouette-umap"),
            default="graph",
            help="how an algorithm that needs K gets one under --k auto: the neighbour graph's "
            "communities (default), a silhouette sweep over --k-range, or that sweep in a "
            "10-d UMAP space (needs umap-learn)",
        )
        p.add_argument(
            "--k-range",
            type=_parse_k_range,
            default=(2, 30),
            metavar="MIN:MAX",
            help="range of the silhouette sweep (default 2:30)",
        )
        p.add_argument(
            "--param",
            type=_parse_param,
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="an algorithm parameter, e.g. --param linkage=average (repeatable)",
        )
        p.add_argument("--pca", type=int, default=None, metavar="N", help="reduce features to N dims with PCA")
        p.add_argument("--whiten", action="store_true", help="whiten after PCA")
        p.add_argument("--no-l2", action="store_true", help="skip L2 normalisation of features")
        p.add_argument(
            "--umap",
            type=int,
            default=None,
            metavar="N",
            dest="umap_dims",
            help="reduce the features to N dims with UMAP before grouping (needs umap-learn; measured: lifts "
            "--algorithm kmeans --k N, over-splits without K)",
        )
        p.add_argument(
            "--time-weight",
            type=_parse_time_weight,
            default=0.0,
            metavar="W",
            help="group by capture time too (EXIF dates, leiden): 0 = by look only (default), 1 = by time "
            "alone; 0.5 keeps a trip or an event together",
        )
        p.add_argument(
            "--embedding",
            default="pca",
            choices=(*EMBEDDING_METHODS, NO_EMBEDDING),
            help="2-D embedding written to the CSV (default pca)",
        )
        p.add_argument("--no-recursive", action="store_true", help="only the folder itself, not sub-folders")
        p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
        p.add_argument(
            "--features",
            metavar="DIR",
            help="read the features from this store (made by `imgcluster extract --store DIR`) instead of "
            "scanning and extracting FOLDER",
        )
        p.add_argument(
            "--constraints",
            metavar="SESSION",
            help="keep the hand corrections of this .imgcluster session: images placed or confirmed by hand stay "
            "where they were put, the others are re-assigned around them",
        )
        p.add_argument("--labels-csv", help="ground truth as a CSV of path,label (for external metrics)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--workers", type=int, default=None, help="decoding worker processes")
        p.add_argument(
            "--engine",
            choices=("auto", "eager", "compile", "openvino"),
            default="auto",
            help="how the network runs on the CPU (default auto: OpenVINO for a folder, eager for a few images)",
        )
        p.add_argument("--out", help="write labels to this CSV (a .json name writes JSON)")
        p.add_argument("--json", action="store_true", help="print the summary as JSON")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("backbones", help="list feature extractors and whether they work offline")
    sub.add_parser("algorithms", help="list clustering algorithms and their parameters")
    prepare = sub.add_parser(
        "prepare", help="convert the default backbones for the fast CPU engine now, so a first run need not (seconds)"
    )
    prepare.add_argument(
        "--backbone", action="append", dest="backbones", metavar="NAME", help="these instead of the defaults"
    )
    cache = sub.add_parser("cache", help="inspect or clear the feature cache")
    cache.add_argument("action", choices=("info", "clear"))
    _add_photo_commands(sub)
    _add_extract_command(sub)
    return parser


def _add_extract_command(sub: Any) -> None:
    """``extract``: a folder's features into a store on disk, locally or on a Ray cluster (resumable)."""
    p = sub.add_parser("extract", help="extract a folder's features into a feature store (resumable; --ray to scale)")
    p.add_argument("folder", help="folder of images (searched recursively unless --no-recursive)")
    p.add_argument("--store", required=True, metavar="DIR", help="the store folder (created, or resumed)")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on Ray: 'local' (this machine), 'auto' or HOST:PORT of a cluster started with `ray start`",
    )
    p.add_argument("--backbone", help="feature extractor (default: the offline default, see `imgcluster backbones`)")
    p.add_argument("--layer", help="backbone layer (default: penultimate, pooled)")
    p.add_argument("--weights", dest="weights_path", help="a .pth state_dict to load into the backbone")
    p.add_argument("--device", default=AUTO, choices=DEVICE_CHOICES, help="local extraction's device")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="decoding worker processes (local)")
    p.add_argument("--actors", type=int, default=None, help="networks running at once on Ray (default: per GPU/CPU)")
    p.add_argument("--chunk-size", type=int, default=2048, help="images per commit to the store (default 2048)")
    p.add_argument("--float16", action="store_true", help="store float16 rows (half the disk; read back as float32)")
    p.add_argument("--no-recursive", action="store_true", help="only the folder itself, not sub-folders")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_photo_commands(sub: Any) -> None:
    """``duplicates`` and ``similar``: near-identical images, and the images most like one image."""
    from .core.duplicates import BEST_CRITERIA, DEFAULT_THRESHOLD

    dup = sub.add_parser("duplicates", help="find near-duplicates and bursts in a folder and list them")
    dup.add_argument("folder", help="folder of images (searched recursively)")
    dup.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"cosine similarity from which two images are near-duplicates (default {DEFAULT_THRESHOLD})",
    )
    dup.add_argument("--keep", choices=BEST_CRITERIA, default="sharpest", help="which image of a group to keep")
    dup.add_argument(
        "--hash",
        action="store_true",
        help="also link graph neighbours whose perceptual hashes agree (finds more resized copies; needs imagehash)",
    )
    dup.add_argument("--out", help="write the list to this CSV (group_id, path, kept/duplicate, similarity)")
    dup.add_argument("--quiet", action="store_true", help="no progress bar")
    similar = sub.add_parser("similar", help="the images of a folder most like one image")
    similar.add_argument("image", help="the image to compare with (inside the folder or not)")
    similar.add_argument("folder", help="folder of images (searched recursively)")
    similar.add_argument("--top", type=int, default=10, help="how many to print (default 10)")
    similar.add_argument("--quiet", action="store_true", help="no progress bar")


def _config_from_args(args: argparse.Namespace):
    from .core.pipeline import PipelineConfig

    folder = Path(args.folder)
    if not folder.exists():
        raise UsageError(f"folder not found: {printable_path(folder)}")
    if not folder.is_dir():
        raise UsageError(f"not a folder: {printable_path(folder)}")
    if args.pca is not None and args.pca < 1:
        raise UsageError("--pca must be at least 1")
    if args.weights_path:
        _check_input_file(args.weights_path, "--weights", "weights file (a .pth state_dict)")
    if args.labels_csv:
        _check_input_file(args.labels_csv, "--labels-csv", "labels CSV")

    from .core.clustering.registry import get_algorithm, list_algorithms

    try:
        spec = get_algorithm(args.algorithm)
    except (KeyError, ValueError):
        names = ", ".join(a.id for a in list_algorithms())
        raise UsageError(f"unknown algorithm {args.algorithm!r}; choose one of: {names}") from None
    params = dict(args.param)
    known = {p.name for p in spec.params}
    if args.resolution is not None:
        if "resolution" not in known:
            raise UsageError(f"--resolution applies to graph clustering (leiden), not {args.algorithm}")
        params["resolution"] = args.resolution
    unknown = sorted(set(params) - known)
    if unknown:
        raise UsageError(
            f"{args.algorithm} has no parameter {', '.join(unknown)}; it takes: {', '.join(sorted(known)) or 'none'}"
        )

    config = PipelineConfig(
        folder=str(folder),
        recursive=not args.no_recursive,
        algorithm=spec.id,
        n_clusters=args.k,
        k_selection=args.k_selection,
        k_min=args.k_range[0],
        k_max=args.k_range[1],
        algorithm_params=params,
        layer=args.layer,
        weights_path=args.weights_path,
        device=args.device,
        pca_dims=args.pca,
        whiten=args.whiten,
        l2=not args.no_l2,
        umap_dims=args.umap_dims,
        time_weight=args.time_weight,
        embedding=args.embedding,
        random_state=args.seed,
        use_cache=not args.no_cache,
        labels_csv=args.labels_csv,
        use_subfolder_labels=(args.command == "evaluate"),
        batch_size=args.batch_size,
        num_workers=args.workers,
        engine=getattr(args, "engine", "auto"),
    )
    if getattr(args, "features", None):
        _use_store(config, args.features, args.backbones)
        args.backbones = None  # the store's backbone it is
    if args.backbones:
        from .core.features.backbones import get_backbone

        for name in args.backbones:
            try:
                get_backbone(name)
            except (KeyError, ValueError):
                raise UsageError(f"unknown backbone {name!r}; see `imgcluster backbones`") from None
        config.backbones = list(args.backbones)
    return config


def _check_input_file(path: str, option: str, what: str) -> None:
    """Refuse an input that is missing or not a regular file, saying which (not "not found" for a folder)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} needs a {what}, but {printable_path(path)} is a folder")
    if not target.exists():
        kind = "broken symbolic link" if target.is_symlink() else "not found"
        raise UsageError(f"{what} {kind}: {printable_path(path)}")
    if not target.is_file():
        raise UsageError(f"{option} needs a {what}, but {printable_path(path)} is not a regular file")


def _check_k_fits(config) -> None:
    """Refuse ``--k N`` above the number of images before any extraction (a file-name scan: cheap).

    A missing or empty folder is left to the run's own scan, which names the problem.
    """
    if config.n_clusters is None:
        return
    from .core.dataset import DatasetError, scan_folder

    try:
        n_images = len(scan_folder(config.folder, recursive=config.recursive, check_content=False).paths)
    except DatasetError:
        return
    if n_images and config.n_clusters > n_images:  # no image at all: the run's scan names the problem
        raise UsageError(
            f"--k {config.n_clusters} is more than the {n_images} image(s) in {printable_path(config.folder)}"
        )


def _format_metric(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_summary(result, out=None) -> None:
    """Print what a person needs after a run: images used and skipped, K, metrics, time per stage.

    Every skipped file is listed with its reason.  File names and notes are printed through
    :func:`~imgcluster_gui.core.text.printable_text`: bytes that are not UTF-8 and control
    characters appear as escapes (``\\xff``, ``\\x1b``, ``\\n``), so no name can fail the print on
    a strict UTF-8 terminal, send escape sequences to it, or forge a line of this summary.
    """
    out = sys.stdout if out is None else out  # looked up at call time, so redirection is honoured
    feats = result.features
    print(f"Folder:      {printable_path(result.config.folder)}", file=out)
    print(f"Backbone:    {' + '.join(result.config.backbones)} on {getattr(feats, 'device', '?')}", file=out)
    print(
        f"Images:      {len(result.paths)} used, {len(result.skipped)} skipped "
        f"({feats.n_extracted} extracted, {feats.n_cached} from cache)",
        file=out,
    )
    for item in result.skipped:  # all of them: the person fixes or removes each one
        print(f"  skipped {printable_path(item.path)}: {printable_text(item.reason)}", file=out)
    print(f"Algorithm:   {result.config.algorithm}, {_k_note(result)}", file=out)
    n_noise = int((result.labels == -1).sum())
    if n_noise:
        print(f"Unassigned:  {n_noise} image(s) in no group", file=out)
    _print_ladder(result, out)
    m = result.metrics
    print(
        "Internal:    silhouette {}  Calinski-Harabasz {}  Davies-Bouldin {}".format(
            _format_metric(m.get("silhouette")),
            _format_metric(m.get("calinski_harabasz")),
            _format_metric(m.get("davies_bouldin")),
        ),
        file=out,
    )
    if result.external:
        e = result.external
        print(
            "External:    NMI {}  ARI {}  ACC {}  purity {}".format(
                _format_metric(e.get("nmi")),
                _format_metric(e.get("ari")),
                _format_metric(e.get("acc")),
                _format_metric(e.get("purity")),
            ),
            file=out,
        )
    times = "  ".join(f"{name} {seconds:.2f}s" for name, seconds in result.timings.items())
    print(f"Time:        {times}", file=out)
    if feats.n_extracted:
        print(f"Extraction:  {result.images_per_second:.1f} images/s", file=out)
    for note in result.warnings:
        print(f"Note:        {printable_text(note)}", file=out)


def _k_note(result) -> str:
    """How the number of groups came about, in words."""
    config = result.config
    if config.n_clusters is not None:
        return f"K = {result.k} (asked for)"
    auto = result.auto_k
    if auto is None:
        return f"found {result.k} group(s) itself"
    if getattr(auto, "method", "") == "graph":
        return f"K = {result.k} (the neighbour graph's communities)"
    where = " in UMAP space" if config.k_selection == "silhouette-umap" else ""
    return f"K = {result.k} (silhouette sweep {config.k_min}-{config.k_max}{where})"


def _print_ladder(result, out) -> None:
    """The granularity levels: what --resolution gives, with the internal scores of each."""
    levels = result.levels or []
    if len(levels) < 2:
        return
    print("Granularity: level  groups  unsorted  resolution  modularity  silhouette", file=out)
    for position, level in enumerate(levels):
        mark = "*" if level.extra.get("selected") else " "
        resolution = "-" if level.resolution is None else f"{level.resolution:.3g}"
        print(
            f"           {mark}{position:>5}  {level.n_clusters:>6}  {level.n_unsorted:>8}  {resolution:>10}  "
            f"{_format_metric(level.modularity):>10}  {_format_metric(level.silhouette):>10}",
            file=out,
        )
    print("             (* = this result; --resolution R picks another level of leiden)", file=out)


def _cmd_cluster(args: argparse.Namespace) -> int:
    from .core.export import export_csv, export_json
    from .core.pipeline import run_pipeline
    from .core.progress import TqdmProgress

    config = _config_from_args(args)
    _check_k_fits(config)
    bar = TqdmProgress(disable=args.quiet or args.json)
    try:
        result = run_pipeline(config, progress=bar)
    finally:
        bar.close()
    if getattr(args, "constraints", None):
        _keep_corrections(result, args.constraints)
    # The labels first: whatever happens to the terminal afterwards (a closed pipe), the run's
    # result is on disk.
    if args.out:
        writer = export_json if args.out.lower().endswith(".json") else export_csv
        writer(
            args.out,
            result.paths,
            result.labels,
            cluster_names=result.suggested_names(),
            confidence=result.confidence,
            embedding=result.embedding,
            root=config.folder,
            photo_meta=result.photo_meta,
        )
    if args.json:
        summary = result.summary()
        summary["skipped"] = [{"path": s.path, "reason": s.reason} for s in result.skipped]
        print(json.dumps(summary, indent=2))  # ASCII with \u escapes: safe on any terminal
    else:
        print_summary(result)
        if args.out:
            print(f"Labels:      written to {printable_path(args.out)}")
    return 0


def _keep_corrections(result: Any, session_file: str) -> None:
    """Re-cluster ``result`` keeping the corrections of a saved session (``--constraints``), in place."""
    from .core.constraints import constraints_for_paths, recluster
    from .core.metrics import clustering_metrics
    from .core.session import ClusterSession, SessionFileError

    try:
        session = ClusterSession.load(session_file)
    except SessionFileError as exc:
        raise UsageError(f"--constraints: {exc}") from None
    constraints, start = constraints_for_paths(session, result.paths, result.labels)
    result.labels = recluster(result.X, start, constraints)
    result.k = len({int(label) for label in result.labels if label >= 0})
    metrics = clustering_metrics(result.X, result.labels, result.ground_truth)
    result.external = metrics.pop("external")
    result.metrics = metrics
    result.warnings.append(f"kept {constraints.anchors.size} hand-corrected image(s) from {session_file}")


def _cmd_backbones(args: argparse.Namespace) -> int:
    from .core.features.backbones import DEFAULT_BACKBONES, list_backbones

    rows = []
    for spec in list_backbones():
        status = spec.status  # "works offline", "download once (about 88 MB)", "needs pip install ..."
        default = " (default)" if spec.name in DEFAULT_BACKBONES else ""
        layers = ", ".join(spec.layers)
        rows.append((spec.name + default, status, layers))
    width = max(len(r[0]) for r in rows)
    for name, status, layers in rows:
        print(f"{name:<{width}}  {status:<40}  layers: {layers}")
    print(f"\nDefault features: {' + '.join(DEFAULT_BACKBONES)} side by side (--backbone NAME picks others).")
    return 0


def _cmd_algorithms(args: argparse.Namespace) -> int:
    from .core.clustering.registry import list_algorithms

    for spec in list_algorithms():
        k = "K" if spec.uses_k else "no K"
        print(f"{spec.id:<20} {spec.name} [{spec.category}, {k}] - {spec.description}")
        if spec.unavailable:
            print(f"    unavailable here: {spec.unavailable}")
        for p in spec.params:
            extra = f" choices={list(p.choices)}" if p.choices else ""
            print(f"    {p.name}={p.default!r} ({p.kind}){extra}  {p.help}")
    return 0


def _use_store(config, store_dir: str, asked: Optional[list[str]] = None) -> None:
    """Point ``config`` at a feature store, taking its backbone (the store says what made its numbers)."""
    from .core.features.store import FeatureStore, FeatureStoreError

    try:
        store = FeatureStore.open(store_dir)
    except FeatureStoreError as exc:
        raise UsageError(str(exc)) from None
    config.features_store = str(store_dir)
    config.backbones = [str(b) for b in store.info.meta.get("backbones", [])] or list(config.backbones)
    if asked and list(asked) != config.backbones:
        raise UsageError(
            f"--features {store_dir} holds {' + '.join(config.backbones)} features, not {' + '.join(asked)}; "
            "leave out --backbone or extract a store with that backbone"
        )
    config.layer = store.info.meta.get("layer", config.layer)


def _cmd_extract(args: argparse.Namespace) -> int:
    from .core.features.store import FeatureStoreError, extract_to_store, store_info_text
    from .core.progress import TqdmProgress

    folder = _folder_or_error(args.folder)
    if args.chunk_size < 1:
        raise UsageError("--chunk-size must be at least 1")
    if args.backbone:
        from .core.features.backbones import get_backbone

        try:
            get_backbone(args.backbone)
        except (KeyError, ValueError):
            raise UsageError(f"unknown backbone {args.backbone!r}; see `imgcluster backbones`") from None
    if args.weights_path:
        _check_input_file(args.weights_path, "--weights", "weights file (a .pth state_dict)")
    dtype = "float16" if args.float16 else "float32"
    bar = TqdmProgress(disable=args.quiet)
    try:
        if args.ray:
            from .core.features.distributed import RayUnavailableError, extract_to_store_ray

            try:
                store = extract_to_store_ray(
                    folder,
                    args.store,
                    address=args.ray,
                    backbone=args.backbone,
                    layer=args.layer,
                    weights_path=args.weights_path,
                    recursive=not args.no_recursive,
                    num_actors=args.actors,
                    batch_size=args.batch_size,
                    chunk_size=args.chunk_size,
                    dtype=dtype,
                    progress=bar,
                )
            except RayUnavailableError as exc:
                raise UsageError(str(exc)) from None
        else:
            from .core.dataset import scan_folder

            scan = scan_folder(folder, recursive=not args.no_recursive, progress=bar)
            store = extract_to_store(
                scan.paths,
                args.store,
                backbone=args.backbone,
                layer=args.layer,
                weights_path=args.weights_path,
                device=args.device,
                batch_size=args.batch_size,
                num_workers=args.workers,
                chunk_size=args.chunk_size,
                dtype=dtype,
                progress=bar,
                meta={"folder": str(folder)},
            )
            for item in scan.skipped:
                print(f"  skipped {printable_path(item.path)}: {printable_text(item.reason)}")
    except FeatureStoreError as exc:
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
    for item in store.failed:
        print(f"  skipped {printable_path(item.path)}: {printable_text(item.reason)}")
    print(f"Feature store: {printable_text(store_info_text(store))}")
    print(f"Next:          imgcluster cluster {printable_path(folder)} --features {printable_path(args.store)}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .core.features.backbones import DEFAULT_BACKBONES
    from .core.features.extract import prepare_networks

    for backbone, outcome in prepare_networks(args.backbones or list(DEFAULT_BACKBONES)).items():
        print(f"{backbone}: {printable_text(outcome)}")
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from .core.features.cache import FeatureCache

    cache = FeatureCache()
    if args.action == "clear":
        from .core.graph import default_graph_cache

        cache.clear()
        default_graph_cache().clear()
        print(f"Cleared the feature and neighbour-graph cache at {cache.root}")
    else:
        print(f"Feature cache: {cache.root} ({cache.size_bytes() / 1e6:.1f} MB)")
    return 0


def _folder_or_error(folder: str) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise UsageError(f"{'not a folder' if path.exists() else 'folder not found'}: {printable_path(folder)}")
    return path


def _cmd_duplicates(args: argparse.Namespace) -> int:
    from .core import duplicates
    from .core.export import export_duplicates_csv
    from .core.photo_meta import instants, read_photo_metas
    from .core.progress import TqdmProgress, ensure
    from .core.similar import folder_features

    folder = _folder_or_error(args.folder)
    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError("--threshold must be between 0 and 1")
    bar = TqdmProgress(disable=args.quiet)
    progress = ensure(bar)
    try:
        found = folder_features(folder, progress=progress.sub(0.0, 0.8))
        times = instants(read_photo_metas(found.paths), exif_only=True)  # bursts need real capture times
        hashes = duplicates.perceptual_hashes(found.paths, progress=progress.sub(0.8, 0.95)) if args.hash else None
        pairs = duplicates.duplicate_pairs(
            found.features, args.threshold, times=times, hashes=hashes, hash_rule="either"
        )
    finally:
        bar.close()
    groups = pairs.groups()
    kept = [duplicates.best_of_group(g, found.paths, args.keep) for g in groups]
    sims = [duplicates.similarity_to(found.features, g, k) for g, k in zip(groups, kept)]
    if args.out:
        export_duplicates_csv(args.out, found.paths, groups, kept, sims)
    n_extra = sum(len(g) - 1 for g in groups)
    print(f"{len(groups)} group(s) of near-duplicates in {len(found.paths)} images; {n_extra} could go")
    for number, (group, keep, sim) in enumerate(zip(groups, kept, sims), start=1):
        print(f"group {number}: keep {printable_path(found.paths[keep])}")
        for index, value in zip(group.tolist(), sim.tolist()):
            if index != keep:
                print(f"    {value:.3f}  {printable_path(found.paths[index])}")
    if args.out:
        print(f"List written to {printable_path(args.out)}")
    return 0


def _cmd_similar(args: argparse.Namespace) -> int:
    import os

    from .core.progress import TqdmProgress
    from .core.similar import folder_features, most_similar

    folder = _folder_or_error(args.folder)
    _check_input_file(args.image, "IMAGE", "image file")
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    bar = TqdmProgress(disable=args.quiet)
    try:
        found = folder_features(folder, extra=[args.image], progress=bar)
    finally:
        bar.close()
    real = {os.path.realpath(p): i for i, p in enumerate(found.paths)}
    query = real.get(os.path.realpath(args.image))
    if query is None:
        reason = next((s.reason for s in found.skipped if os.path.realpath(s.path) == os.path.realpath(args.image)), "")
        raise UsageError(f"cannot read {printable_path(args.image)}" + (f": {reason}" if reason else ""))
    nearest = most_similar(found.features, query, top=args.top)
    for index, value in zip(nearest.indices.tolist(), nearest.similarities.tolist()):
        print(f"{value:.4f}  {printable_path(found.paths[index])}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``imgcluster``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .core.progress import Cancelled

    handlers = {
        "cluster": _cmd_cluster,
        "evaluate": _cmd_cluster,
        "backbones": _cmd_backbones,
        "algorithms": _cmd_algorithms,
        "cache": _cmd_cache,
        "prepare": _cmd_prepare,
        "extract": _cmd_extract,
        "duplicates": _cmd_duplicates,
        "similar": _cmd_similar,
    }
    try:
        return handlers[args.command](args)
    except UsageError as exc:
        print(f"imgcluster: error: {printable_text(str(exc))}", file=sys.stderr)
        return 2
    except Cancelled:
        print("imgcluster: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("imgcluster: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a known, user-facing failure prints one line; anything else too, with its type
        from .core.errors import is_user_error

        if is_user_error(exc):
            print(f"imgcluster: error: {printable_text(str(exc))}", file=sys.stderr)
            return 1
        print(f"imgcluster: unexpected error: {type(exc).__name__}: {printable_text(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
