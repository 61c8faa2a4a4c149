"""Feature extraction as a Ray Data pipeline: scan by shard, decode, forward pass, written to a :class:`FeatureStore`.

For folders one machine cannot get through (millions of images on shared storage), the work is spread over a Ray
cluster in three streaming stages:

1. **scan** (``flat_map``, one task per shard): each top-level sub-folder of the folder is a shard, scanned with
   :func:`~..dataset.scan_folder` (the same header check and skip reasons as a local run); the folder's own files
   are one more shard.  Paths already in the store are dropped here, so a rerun resumes.
2. **decode** (``map_batches`` tasks, one CPU each, :func:`_decode_batch`): :func:`~..dataset.load_image` with
   JPEG draft, resize and centre crop to ``uint8`` tensors: the same steps as :class:`~.extract.ImageFolderDataset`.
3. **embed** (``map_batches`` on an actor pool, :class:`_Embedder`): each actor loads the network once and runs
   the forward pass, one actor per GPU (fp16 autocast, like a local CUDA run) or per CPU slot.

The driver (the machine that runs ``imgcluster extract --ray``) streams the output into the store chunk by chunk;
a cancel or a lost driver keeps the chunks committed.  Every node needs imgcluster installed and the images at the
same path (shared storage); see the README's multi-machine recipe.  Ray is an optional extra
(``pip install "imgcluster-gui[ray]"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..dataset import SkippedFile
from ..progress import ProgressLike, check, ensure
from .store import DEFAULT_CHUNK_SIZE, FeatureStore, store_info_text

PathLike = Union[str, os.PathLike]

#: Paths per block after the scan: small enough that decoding spreads over every CPU of the cluster.
PATHS_PER_BLOCK = 256
#: Images per decode task call and per forward pass on a CPU actor / a GPU actor.
DECODE_BATCH = 32
CPU_EMBED_BATCH = 16
GPU_EMBED_BATCH = 128
#: torch threads of one CPU actor (and the CPUs it reserves): 2 measured best per process on small CPUs.
CPU_THREADS_PER_ACTOR = 2
ROOT_SHARD = ""


class RayUnavailableError(RuntimeError):
    """Ray is not installed (one-line message with the fix)."""


def ray_module() -> Any:
    """``ray`` with Ray Data, or :class:`RayUnavailableError` naming the pip command."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is a separate part of the ray wheel)
    except ImportError as exc:
        raise RayUnavailableError(
            f'Ray is not installed ({exc}); install it with `pip install "imgcluster-gui[ray]"` '
            '(or `pip install "ray[data]"`), or extract without --ray'
        ) from None
    return ray


# ============================================================================ stages (run on the cluster)
def list_shards(folder: PathLike, recursive: bool = True) -> list[dict[str, Any]]:
    """The scan's units of work: each visible sub-folder (scanned recursively) and the folder's own files.

    Hidden dot-folders and symbolic links to folders are left out, as :func:`~..dataset.scan_folder` does.
    """
    root = Path(folder)
    shards = [{"folder": os.fspath(root), "recursive": False}]
    if recursive:
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
                continue
            shards.append({"folder": entry.path, "recursive": True})
    return shards


def _scan_shard(shard: dict[str, Any], done: Any = None) -> list[dict[str, Any]]:
    """One shard's images as rows ``{path, error}`` (``error`` = the scan's skip reason, '' for an image)."""
    from ..dataset import DatasetError, scan_folder

    skip = done if isinstance(done, (set, frozenset)) else set()
    try:
        result = scan_folder(shard["folder"], recursive=bool(shard["recursive"]))
    except DatasetError:  # a shard without images (e.g. the root holding only sub-folders)
        return []
    rows = [{"path": os.fspath(p), "error": ""} for p in result.paths if os.fspath(p) not in skip]
    rows += [{"path": s.path, "error": s.reason} for s in result.skipped if s.path not in skip]
    return rows


def _decode_batch(
    batch: dict[str, np.ndarray], backbone: str, weights_path: Optional[str], mean: Any, std: Any
) -> dict[str, np.ndarray]:
    """Decode + resize + centre-crop a batch of paths to ``uint8 (B, 3, S, S)`` (failures: zeros and a reason).

    A task, not an actor: its CPU is free again between batches, so the scan and the network actors always
    get one (an actor pool of decoders held every CPU of a small cluster and starved the scan).
    """
    from ..dataset import ImageLoadError, load_image
    from .backbones import resolve_preprocessing
    from .transform import ResizeCenterCrop  # the same pixels as the local extraction's

    prep = resolve_preprocessing(backbone, weights_path, mean, std)
    transform = ResizeCenterCrop(prep)
    size = prep.input_size
    paths = [str(p) for p in batch["path"]]
    errors = [str(e) for e in batch["error"]]
    images = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
    draft = (prep.resize_size, prep.resize_size)
    for i, path in enumerate(paths):
        if errors[i]:
            continue
        try:
            images[i] = transform(load_image(path, draft_size=draft)).numpy()
        except ImageLoadError as exc:
            errors[i] = str(exc)
        except Exception as exc:  # a decoder bug on one malformed file must not end the run
            errors[i] = f"cannot decode image ({type(exc).__name__}: {exc})"
    return {"path": np.asarray(paths, dtype=object), "error": np.asarray(errors, dtype=object), "image": images}


class _Embedder:
    """One network per actor: normalise, forward pass, ``(B, D)`` float32 rows (zeros where decoding failed)."""

    def __init__(
        self,
        backbone: str,
        layer: Optional[str],
        weights_path: Optional[str],
        mean: Any,
        std: Any,
        use_gpu: bool,
        threads: int,
    ) -> None:
        import torch

        from .backbones import build_feature_model, resolve_preprocessing

        self.torch = torch
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(threads)))
        prep = resolve_preprocessing(backbone, weights_path, mean, std)
        model = build_feature_model(backbone, layer, weights_path, device="cpu")
        self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(prep.mean, dtype=torch.float32, device=self.device).view(shape) * 255.0
        self.std = torch.tensor(prep.std, dtype=torch.float32, device=self.device).view(shape) * 255.0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        images = batch["image"]
        ok = np.asarray([not e for e in batch["error"]], dtype=bool)
        features: Optional[np.ndarray] = None
        if ok.any():
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(images[ok])).to(self.device).float()
                x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
                    out = self.model(x)
                rows = out.float().cpu().numpy()
            features = np.zeros((len(ok), rows.shape[1]), dtype=np.float32)
            features[ok] = rows
        if features is None:
            features = np.zeros((len(ok), 1), dtype=np.float32)  # the driver drops these rows (all failed)
        return {"path": batch["path"], "error": batch["error"], "features": features}


# ============================================================================ driver
def _connect(ray: Any, address: Optional[str], num_cpus: Optional[int]) -> bool:
    """Join the cluster at ``address`` ('local' = start one here); True when this call started Ray."""
    if ray.is_initialized():
        return False
    if address in (None, "", "local"):
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def extract_to_store_ray(
    folder: PathLike,
    store_dir: PathLike,
    address: Optional[str] = "local",
    backbone: Optional[str] = None,
    layer: Optional[str] = None,
    weights_path: Optional[PathLike] = None,
    recursive: bool = True,
    num_actors: Optional[int] = None,
    use_gpu: Optional[bool] = None,
    batch_size: Optional[int] = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dtype: str = "float32",
    num_cpus: Optional[int] = None,
    progress: ProgressLike = None,
    *,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> FeatureStore:
    """Scan, decode and embed ``folder`` on a Ray cluster, streaming the rows into the store at ``store_dir``.

    Parameters
    ----------
    folder : path
        The image folder; on a multi-machine cluster, a path every node sees (shared storage).
    store_dir : path
        The feature store (created, or resumed: images already in it are not extracted again).
    address : str, optional
        ``'local'`` / ``None``: a Ray instance on this machine; ``'auto'`` or ``'HOST:6379'``: a running cluster.
        When Ray is already initialised in this process, that instance is used.
    backbone, layer, weights_path, mean, std
        As in :func:`~.extract.extract_features`.
    recursive : bool
        Scan sub-folders (each top-level one is a shard).
    num_actors : int, optional
        Most networks running at once; default one per GPU, else one per :data:`CPU_THREADS_PER_ACTOR` CPUs
        (leaving one CPU to decode).
    use_gpu : bool, optional
        Run the actors on GPUs (default: when the cluster has any).
    batch_size : int, optional
        Images per forward pass (default :data:`GPU_EMBED_BATCH` / :data:`CPU_EMBED_BATCH`).
    chunk_size : int
        Rows per store commit.
    dtype : {'float32', 'float16'}
        On-disk precision of a new store.
    num_cpus : int, optional
        CPUs of a local Ray instance (default all).
    progress : callable, optional
        A progress consumer; raising :class:`~..progress.Cancelled` stops the pipeline, keeping committed chunks.

    Returns
    -------
    FeatureStore

    Raises
    ------
    RayUnavailableError
        Ray is not installed.
    """
    from .backbones import DEFAULT_BACKBONE, get_backbone, resolve_layer, resolve_preprocessing
    from .extract import model_key

    ray = ray_module()
    progress = ensure(progress)
    name = backbone or DEFAULT_BACKBONE
    layer_id = resolve_layer(name, layer)
    dim = get_backbone(name).feature_dims[layer_id]
    weights = os.fspath(weights_path) if weights_path is not None else None
    prep = resolve_preprocessing(name, weights, mean, std)
    key = model_key(name, layer_id, weights, prep)
    meta = {"backbone": name, "backbones": [name], "layer": layer_id, "folder": os.fspath(folder), "ray": True}
    store = FeatureStore.open_or_create(store_dir, dim, dtype, key, meta)
    already = len(store) + len(store.info.failed)

    started_here = _connect(ray, address, num_cpus)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        gpu = bool(gpus) if use_gpu is None else bool(use_gpu and gpus)
        threads = 1 if cpus <= 2 else CPU_THREADS_PER_ACTOR
        actors = int(num_actors) if num_actors else (gpus if gpu else max(1, (cpus - 1) // threads))
        embed_batch = int(batch_size) if batch_size else (GPU_EMBED_BATCH if gpu else CPU_EMBED_BATCH)
        progress.note(
            f"Ray: {cpus} CPU(s), {gpus} GPU(s); {actors} network actor(s) on {'GPU' if gpu else 'CPU'}"
            + (f"; resuming, {already} image(s) already in the store" if already else "")
        )
        check(progress, "Ray extraction: starting")
        # Ray Data stores fn_kwargs once in the object store; every scan task reads the same copy.
        done = frozenset(store.paths) | {s.path for s in store.info.failed}
        shards = list_shards(folder, recursive)
        dataset = (
            ray.data.from_items(shards, override_num_blocks=len(shards))
            .flat_map(_scan_shard, fn_kwargs={"done": done}, num_cpus=1)
            .repartition(target_num_rows_per_block=PATHS_PER_BLOCK)
            .map_batches(
                _decode_batch,
                fn_kwargs={"backbone": name, "weights_path": weights, "mean": mean, "std": std},
                batch_size=DECODE_BATCH,
                batch_format="numpy",
                num_cpus=1,
            )
            .map_batches(
                _Embedder,
                fn_constructor_kwargs={
                    "backbone": name,
                    "layer": layer_id,
                    "weights_path": weights,
                    "mean": mean,
                    "std": std,
                    "use_gpu": gpu,
                    "threads": threads,
                },
                batch_size=embed_batch,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)),
                num_gpus=1 if gpu else 0,
                num_cpus=0 if gpu else threads,
            )
        )
        written = 0
        for batch in dataset.iter_batches(batch_size=chunk_size, batch_format="numpy"):
            errors = [str(e) for e in batch["error"]]
            paths = [str(p) for p in batch["path"]]
            keep = [i for i, e in enumerate(errors) if not e]
            failed = [SkippedFile(paths[i], errors[i]) for i, e in enumerate(errors) if e]
            rows = np.asarray(batch["features"], dtype=np.float32)
            block = rows[keep] if keep else np.zeros((0, dim), dtype=np.float32)
            store.append([paths[i] for i in keep], block, failed)
            written += len(paths)
            # The total is unknown until every shard is scanned: a count, and a cancel point after each commit.
            progress.heartbeat(f"Ray extraction: {already + written} image(s) in the store")
    finally:
        if started_here:
            ray.shutdown()
    progress(1.0, f"Feature store: {store_info_text(store)}")
    return store
