"""Batched feature extraction: images in, one float32 row per image out.

Decoding and resizing run in DataLoader worker processes (large JPEGs are decoded at reduced
scale through Pillow's draft mode), the network runs under ``torch.inference_mode`` on the best
device: CUDA with fp16 autocast, channels-last and JPEGs decoded on the GPU (:mod:`.decode`), Apple's
MPS, or the CPU in fp32 (bf16 autocast is 3-12x slower on CPUs without bf16 hardware, see
``shared/MEASURED.md``).

How the network runs (engine, batch size, decoding workers) is chosen per call by
:func:`.runtime.choose_plan`, from measurements on a 2-core CPU: by default OpenVINO on the CPU
(~6x eager; the converted network is kept on disk), eager for a few images the first time, and
``torch.compile`` only where OpenVINO is missing and the folder is large.  ``engine=`` (or the older
``compile=True``) forces one; an engine that fails falls back to eager mode with a warning.

Images that cannot be decoded are reported in :attr:`FeatureResult.failed` with the reason and
left out; they never stop a run.  Features already in the :class:`~.cache.FeatureCache` are not
extracted again.  Progress is reported (and a cancel seen) once per batch; a cancel shuts the
DataLoader workers down and raises :class:`~..progress.Cancelled`, keeping every batch already
committed to the cache.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ... import __version__
from ..choices import AUTO, resolve_device
from ..dataset import ImageLoadError, SkippedFile, load_image
from ..progress import Progress, ProgressLike, check, ensure, wrap_callback
from .backbones import (
    DEFAULT_BACKBONE,
    Preprocessing,
    build_feature_model,
    get_backbone,
    resolve_layer,
    resolve_preprocessing,
    weights_identity,
)
from .cache import FeatureCache
from .decode import decode_resize_batch, read_jpeg_bytes
from .runtime import (
    AUTO_ENGINE,
    COMPILE,
    EAGER,
    GPU_BATCH_SIZE,
    MAX_WORKERS,
    MPS_BATCH_SIZE,
    OPENVINO,
    ExecutionPlan,
    OpenVinoNetwork,
    choose_plan,
    mean_file_bytes,
    use_persistent_compile_cache,
)

PathLike = Union[str, os.PathLike]

# Bump when a change in this module changes the numbers a backbone produces (invalidates caches).
FEATURES_VERSION = 1

# CPU defaults (the eager engine's; runtime.py has every engine's), measured with EfficientNet-Lite0 on 2
# cores: one image per forward pass in the default layout was the fastest eager set-up.
CPU_BATCH_SIZE = 1
CPU_CHANNELS_LAST = False

# Fraction of the progress bar given to hashing / reading the cache.
_CACHE_SHARE = 0.05


@dataclass
class FeatureResult:
    """Features of the images that could be read.

    Attributes
    ----------
    features : ndarray of shape (n_images, n_features), float32
        Row ``i`` belongs to ``paths[i]``.
    paths : list of Path
        The images kept, in input order (failed ones left out).
    failed : list of SkippedFile
        Images left out, with the reason.
    n_extracted, n_cached : int
        Kept images computed by the network in this run / read from the cache.
    seconds : float
        Wall time of the call.
    device : str
        Device the network ran on (``'cpu'``, ``'cuda:0'``, ``'mps'``); ``'none'`` when
        everything came from the cache.
    backbones : list of str
        One name per view.
    view_slices : list of (start, stop)
        Columns of each view in ``features`` (one entry for a single backbone).
    model_keys : list of str
        The cache model key of each view.
    engine : str
        How the network ran (``'openvino'``, ``'eager'``, ``'compile'``; ``'none'`` when nothing was
        extracted); several views give ``'a,b'``.
    """

    features: np.ndarray
    paths: list[Path]
    failed: list[SkippedFile]
    n_extracted: int
    n_cached: int
    seconds: float
    device: str
    backbones: list[str] = field(default_factory=list)
    view_slices: list[tuple[int, int]] = field(default_factory=list)
    model_keys: list[str] = field(default_factory=list)
    engine: str = "none"

    def __len__(self) -> int:
        return len(self.paths)


# ============================================================================ devices and defaults
# resolve_device's one home is core/choices.py (beside DEVICE_CHOICES); imported here for extraction's callers.


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass: small on CPU (faster there), large on accelerators."""
    if device.type == "cuda":
        return GPU_BATCH_SIZE
    if device.type == "mps":
        return MPS_BATCH_SIZE
    return CPU_BATCH_SIZE


def default_num_workers(device: torch.device) -> int:
    """Decoding processes: one on a CPU run (the network needs the cores), more for a GPU."""
    cores = os.cpu_count() or 1
    if device.type == "cpu":
        return 1 if cores >= 2 else 0
    return max(1, min(MAX_WORKERS, cores - 1))


def model_key(
    backbone: str,
    layer: Optional[str] = None,
    weights_path: Optional[PathLike] = None,
    preprocessing: Optional[Preprocessing] = None,
) -> str:
    """Everything that changes a backbone's numbers, as one text (the cache's model key).

    Backbone, layer, weights identity (package file, torchvision enum member, or a user file's
    SHA-256), preprocessing, this package's version and :data:`FEATURES_VERSION`.  The device and
    precision are not part of it: fp16 CUDA and fp32 CPU features agree to cosine ~0.999.
    """
    layer_id = resolve_layer(backbone, layer)
    prep = preprocessing or resolve_preprocessing(backbone, weights_path)
    return (
        f"{backbone}|layer={layer_id}|weights={weights_identity(backbone, weights_path)}|"
        f"prep={prep.key()}|imgcluster={__version__}|features=v{FEATURES_VERSION}"
    )


# ============================================================================ data loading
class ImageFolderDataset(Dataset):
    """Decode + resize + centre-crop each image to a uint8 tensor ``(3, S, S)`` (normalised later).

    Items are ``(index, tensor or None, reason)``; a file that cannot be decoded gives ``None`` and
    the reason instead of raising, so one bad file never stops a worker.  With ``device_jpeg=True`` a
    JPEG's item holds its file bytes (a 1-D uint8 tensor) instead, for :func:`.decode.decode_resize_batch`.
    """

    def __init__(self, paths: Sequence[PathLike], preprocessing: Preprocessing, device_jpeg: bool = False) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.preprocessing = preprocessing
        self.device_jpeg = device_jpeg
        self._transform: Optional[Callable[[Any], torch.Tensor]] = None

    def __len__(self) -> int:
        return len(self.paths)

    def _build_transform(self) -> Callable[[Any], torch.Tensor]:
        # Pillow alone (torchvision's Resize + CenterCrop + PILToTensor, the same pixels): torchvision is optional.
        from .transform import ResizeCenterCrop

        return ResizeCenterCrop(self.preprocessing)

    def __getitem__(self, index: int) -> tuple[int, Optional[torch.Tensor], str]:
        transform = self._transform
        if transform is None:  # built in the worker, after fork/spawn
            transform = self._transform = self._build_transform()
        size = self.preprocessing.resize_size
        if self.device_jpeg:
            try:
                blob = read_jpeg_bytes(self.paths[index])
            except (OSError, ValueError):
                blob = None  # load_image below words the reason
            if blob is not None:
                return index, blob, ""
        try:
            image = load_image(self.paths[index], draft_size=(size, size))
            return index, transform(image), ""
        except ImageLoadError as exc:
            return index, None, str(exc)
        except Exception as exc:  # a decoder bug on one malformed file must not end the run
            return index, None, f"cannot decode image ({type(exc).__name__}: {exc})"


def _collate(items: list[tuple[int, Optional[torch.Tensor], str]]):
    good = [(i, t) for i, t, _ in items if t is not None]
    failures = [(i, reason) for i, t, reason in items if t is None]
    indices = [i for i, _ in good]
    batch = torch.stack([t for _, t in good]) if good else None
    return indices, batch, failures


def _collate_with_blobs(items: list[tuple[int, Optional[torch.Tensor], str]]):
    """:func:`_collate`, with JPEG file bytes (1-D tensors) kept apart for decoding on the device."""
    blobs = [(i, t) for i, t, _ in items if t is not None and t.ndim == 1]
    indices, batch, failures = _collate([item for item in items if item[1] is None or item[1].ndim != 1])
    return indices, batch, failures, [i for i, _ in blobs], [t for _, t in blobs]


def _shutdown(iterator: Any) -> None:
    """Stop a DataLoader iterator's worker processes now (not at garbage collection)."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()


@contextlib.contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """Let cuDNN pick the fastest kernels for our fixed input size, restoring the flag after."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


class _Runner:
    """The network on its device: normalisation, layout, precision, and the engine that runs it."""

    def __init__(
        self,
        build: Callable[[], torch.nn.Module],
        preprocessing: Preprocessing,
        device: torch.device,
        plan: ExecutionPlan,
        key: str,
    ) -> None:
        self.device = device
        self.channels_last = plan.channels_last
        self.batch_size = plan.batch_size
        self._build = build
        self._eager: Optional[torch.nn.Module] = None
        self.engine = plan.engine
        self.model: Callable[..., torch.Tensor]
        if plan.engine == OPENVINO:
            try:
                self.model = OpenVinoNetwork(build, preprocessing.input_size, model_key=key)
            except Exception as exc:  # a network the converter does not support, a broken install
                warnings.warn(
                    f"OpenVINO cannot run this network ({type(exc).__name__}: {exc}); running eagerly", stacklevel=2
                )
                self.engine = EAGER
        if self.engine != OPENVINO:
            self.model = self.eager()
        if self.engine == COMPILE:
            try:
                use_persistent_compile_cache()  # a second start reads the compiled kernels from disk
                self.model = torch.compile(self.model, dynamic=False)
            except Exception as exc:  # no compiler / unsupported platform
                warnings.warn(
                    f"torch.compile is unavailable ({type(exc).__name__}: {exc}); running eagerly", stacklevel=2
                )
                self.engine = EAGER
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=device).view(shape) * 255.0
        self.std = torch.tensor(preprocessing.std, dtype=torch.float32, device=device).view(shape) * 255.0
        self.autocast = device.type == "cuda"  # fp16 on GPUs only; never bf16 on CPU

    def eager(self) -> torch.nn.Module:
        """The eager network on the device, built on first use (an OpenVINO model read from disk needs none)."""
        if self._eager is None:
            memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
            self._eager = self._build().to(device=self.device).to(memory_format=memory_format).eval()
        return self._eager

    def __call__(self, batch_uint8: torch.Tensor) -> np.ndarray:
        """``(B, 3, S, S)`` uint8 -> ``(B, D)`` float32 numpy."""
        n = batch_uint8.shape[0]
        x = batch_uint8.to(self.device, non_blocking=True).float()
        x = (x - self.mean) / self.std
        if self.engine == COMPILE and n < self.batch_size:
            # A fixed batch shape avoids recompiling for the last, shorter batch.
            x = torch.cat([x, x.new_zeros((self.batch_size - n, *x.shape[1:]))])
        if self.channels_last and self.engine != OPENVINO:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.autocast):
            try:
                out = self.model(x)
            except Exception as exc:
                if self.engine == EAGER:
                    raise
                # Compilation happens at the first call; fall back to eager if it fails there.
                warnings.warn(f"{self.engine} failed ({type(exc).__name__}: {exc}); running eagerly", stacklevel=2)
                self.engine = EAGER
                self.model = self.eager()
                out = self.model(x[:n])
        return out[:n].float().cpu().numpy()


# ============================================================================ extraction
def _unwritable(cache: FeatureCache) -> str:
    return (
        f"The feature cache at {cache.root} cannot be written ({cache.write_error}): this run goes on "
        "without storing its features, so the next run extracts them again."
    )


def _cache_warning(progress: Progress, has_listener: bool, text: str) -> None:
    """Tell the person about a cache problem: a warning note in the run's channel, else ``warnings.warn``."""
    if has_listener:
        progress.warn(text)
    else:
        warnings.warn(text, stacklevel=3)


def _open_cache(cache: Union[FeatureCache, bool, None]) -> Optional[FeatureCache]:
    if isinstance(cache, FeatureCache):
        return cache
    return FeatureCache() if cache is True else None


def extract_features(
    paths: Sequence[PathLike],
    backbone: str = DEFAULT_BACKBONE,
    layer: Optional[str] = None,
    weights_path: Optional[PathLike] = None,
    device: Union[str, torch.device] = AUTO,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    cache: Union[FeatureCache, bool, None] = True,
    progress: ProgressLike = None,
    *,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    channels_last: Optional[bool] = None,
    compile: bool = False,
    engine: str = AUTO_ENGINE,
) -> FeatureResult:
    """Features of ``paths`` from one backbone, reading and filling the cache.

    Parameters
    ----------
    paths : sequence of path
        Image files (typically ``scan_folder(...).paths``).
    backbone : str
        Registry id (see :func:`~.backbones.list_backbones`).
    layer : str, optional
        Layer id; ``None`` = penultimate pooled layer.
    weights_path : path, optional
        A user ``state_dict`` ``.pth`` replacing the pretrained weights.
    device : {'auto', 'cpu', 'cuda', 'cuda:N', 'mps'} or torch.device
    batch_size, num_workers : int, optional
        Default: chosen by :func:`.runtime.choose_plan` for the device, the engine and the files.
    cache : FeatureCache, bool or None
        ``True`` = the default cache, a :class:`FeatureCache` = that one, ``False``/``None`` = none.
    progress : callable, optional
        a progress consumer (``ProgressEvent`` receiver) or ``Progress``; raising :class:`~..progress.Cancelled`
        stops the run.
    mean, std : 3 floats, optional
        Override the normalisation (e.g. ``0.5`` for weights trained on ``[-1, 1]`` inputs).
    channels_last : bool, optional
        Memory layout; default on for CUDA, off on the CPU (measured slower at batch 1) and MPS.
    compile : bool
        Same as ``engine='compile'`` (kept for older callers).
    engine : {'auto', 'eager', 'compile', 'openvino'}
        How the network runs on the CPU (see :mod:`.runtime`); ``'auto'`` picks by folder size. Every
        engine gives the eager network's features (cosine >= 0.999).

    Returns
    -------
    FeatureResult
        ``features`` of shape ``(n_kept, D)`` float32.

    Raises
    ------
    WeightsUnavailableError
        The backbone's weights cannot be had (only raised when something must be extracted).
    Cancelled
        The callback cancelled; batches finished before it stay in the cache.
    """
    started = time.perf_counter()
    # A library caller without a progress consumer hears the cache's trouble as a warnings.warn.
    has_listener = progress is not None
    progress = ensure(progress)
    path_list = [Path(os.fsdecode(p)) for p in paths]
    n = len(path_list)
    torch_device = resolve_device(device)
    layer_id = resolve_layer(backbone, layer)
    prep = resolve_preprocessing(backbone, weights_path, mean, std)
    key = model_key(backbone, layer_id, weights_path, prep)
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if num_workers is not None and int(num_workers) < 0:
        raise ValueError(f"num_workers must be 0 or more; got {num_workers}")
    if compile and engine == AUTO_ENGINE:
        engine = COMPILE

    # Rows by image index; the width comes from the rows themselves (get_backbone's width of every layer
    # costs a forward pass of the architecture, ~1.5 s, which a run that builds the network needs not pay).
    rows: dict[int, np.ndarray] = {}
    failed_reason: dict[int, str] = {}
    from_cache = np.zeros(n, dtype=bool)
    feature_cache = _open_cache(cache)
    content_keys: list[Optional[str]] = [None] * n
    store_in_cache = feature_cache is not None
    if feature_cache is not None and n:
        try:
            content_keys, unreadable = feature_cache.keys_for(
                path_list, wrap_callback(progress, 0.0, _CACHE_SHARE, f"{backbone}: ")
            )
            failed_reason.update(unreadable)
            stored = feature_cache.get_many([k for k in content_keys if k], key)
        except (OSError, sqlite3.Error) as exc:
            _cache_warning(
                progress,
                has_listener,
                f"The feature cache at {feature_cache.root} cannot be used ({exc}); extracting without it.",
            )
            feature_cache, content_keys, stored = None, [None] * n, {}
        cached_dim = _common_width(stored.values(), backbone, layer_id)
        for index, content in enumerate(content_keys):
            vector = stored.get(content) if content else None
            if vector is not None and vector.shape[0] == cached_dim:
                rows[index] = vector
                from_cache[index] = True
        # Reading works but writing does not (locked by another process, disk full): extract, store nothing.
        if feature_cache is not None and feature_cache.write_error is not None:
            store_in_cache = False
            _cache_warning(progress, has_listener, _unwritable(feature_cache))

    # One network pass per distinct file content; copies of the same bytes share the result.
    pending: dict[Any, list[int]] = {}
    for index in range(n):
        if from_cache[index] or index in failed_reason:
            continue
        pending.setdefault(_group_of(index, content_keys), []).append(index)
    todo = [indices[0] for indices in pending.values()]
    n_cached = int(from_cache.sum())
    done = n_cached + len(failed_reason)
    base = _CACHE_SHARE if feature_cache is not None else 0.0
    progress(base + (1 - base) * done / max(n, 1), f"{backbone}: {n_cached} of {n} images from the cache")

    device_used = "none"
    engine_used = "none"
    n_extracted = 0
    if todo:
        check(progress, f"{backbone}: loading the network")
        at = base + (1 - base) * done / max(n, 1)
        todo_paths = [path_list[i] for i in todo]
        plan = choose_plan(
            len(todo),
            torch_device,
            engine=engine,
            mean_bytes=mean_file_bytes(todo_paths),
            model_key=key,
            batch_size=batch_size,
            num_workers=num_workers,
            channels_last=channels_last,
        )

        def build() -> torch.nn.Module:
            # A zero-width slice: a first-use weights download reports MB done without moving the bar.
            return build_feature_model(
                backbone, layer_id, weights_path, device="cpu", progress=progress.sub(at, at, f"{backbone}: ")
            )

        runner = _Runner(build, prep, torch_device, plan, key)
        check(progress, f"{backbone}: network loaded")
        device_used = str(torch_device)
        dataset = ImageFolderDataset(todo_paths, prep, device_jpeg=plan.decode_on_device)
        loader = DataLoader(
            dataset,
            batch_size=plan.batch_size,
            shuffle=False,
            num_workers=plan.num_workers,
            collate_fn=_collate_with_blobs,
            pin_memory=torch_device.type == "cuda",
        )
        run_started = time.perf_counter()
        iterator = iter(loader)
        try:
            with torch.inference_mode(), _cudnn_benchmark(torch_device):
                for local_indices, batch, failures, blob_indices, blobs in iterator:
                    check(progress, backbone)  # no work after a cancel
                    if blobs:
                        batch, local_indices, failures = _add_device_decoded(
                            dataset, batch, local_indices, failures, blob_indices, blobs, torch_device
                        )
                    for local, reason in failures:
                        for index in pending[_group_of(todo[local], content_keys)]:
                            failed_reason[index] = reason
                        done += len(pending[_group_of(todo[local], content_keys)])
                    if batch is not None:
                        vectors = runner(batch)
                        to_store: dict[str, np.ndarray] = {}
                        for local, vector in zip(local_indices, vectors):
                            group = pending[_group_of(todo[local], content_keys)]
                            for index in group:
                                rows[index] = vector
                            done += len(group)
                            n_extracted += len(group)
                            content = content_keys[todo[local]]
                            if content is not None:
                                to_store[content] = vector
                        if store_in_cache and feature_cache is not None and to_store:
                            try:
                                feature_cache.put_many(key, to_store)  # the batch, committed whole
                            except (OSError, sqlite3.Error):
                                # The features in hand are kept; only the next run pays for this.
                                store_in_cache = False
                                _cache_warning(progress, has_listener, _unwritable(feature_cache))
                    rate = n_extracted / max(time.perf_counter() - run_started, 1e-9)
                    # Once per batch: the bar moves and a cancel is seen.
                    progress(
                        base + (1 - base) * done / max(n, 1), backbone, done=done, total=n, unit="images", rate=rate
                    )
        finally:
            _shutdown(iterator)
            del iterator
        engine_used = runner.engine

    kept = [i for i in range(n) if i not in failed_reason]
    dim = _row_width(rows, backbone, layer_id)
    features = np.zeros((len(kept), dim), dtype=np.float32)
    for row, index in enumerate(kept):
        features[row] = rows[index]
    failed = [SkippedFile(os.fspath(path_list[i]), failed_reason[i]) for i in sorted(failed_reason)]
    progress(1.0, f"{backbone}: {len(kept)} images, {n_extracted} extracted, {n_cached} from the cache")
    return FeatureResult(
        features=features,
        paths=[path_list[i] for i in kept],
        failed=failed,
        n_extracted=n_extracted,
        n_cached=n_cached,
        seconds=time.perf_counter() - started,
        device=device_used,
        backbones=[backbone],
        view_slices=[(0, dim)],
        model_keys=[key],
        engine=engine_used,
    )


def _common_width(vectors: Any, backbone: str, layer_id: str) -> int:
    """The width cached rows must have: the registry's when they disagree (a stale entry), else theirs."""
    widths = {int(v.shape[0]) for v in vectors}
    if len(widths) == 1:
        return widths.pop()
    return get_backbone(backbone).feature_dims[layer_id] if widths else -1


def _row_width(rows: Mapping[int, np.ndarray], backbone: str, layer_id: str) -> int:
    for vector in rows.values():
        return int(vector.shape[0])
    return get_backbone(backbone).feature_dims[layer_id]  # nothing kept: an empty (0, D) result


def _add_device_decoded(
    dataset: ImageFolderDataset,
    batch: Optional[torch.Tensor],
    local_indices: list[int],
    failures: list[tuple[int, str]],
    blob_indices: list[int],
    blobs: list[torch.Tensor],
    device: torch.device,
) -> tuple[Optional[torch.Tensor], list[int], list[tuple[int, str]]]:
    """Decode a batch's JPEG bytes on ``device`` and join them to the images the workers decoded.

    A JPEG the device decoder rejects is decoded here with Pillow, which either reads it or says why not.
    """
    decoded = decode_resize_batch(blobs, dataset.preprocessing, device)
    tensors = [] if batch is None else [batch.to(device, non_blocking=True)]
    indices = list(local_indices)
    failures = list(failures)
    good = []
    for local, image in zip(blob_indices, decoded):
        if image is None:
            dataset.device_jpeg = False  # this one through Pillow
            index, tensor, reason = dataset[local]
            dataset.device_jpeg = True
            if tensor is None:
                failures.append((index, reason))
                continue
            image = tensor.to(device)
        good.append(image)
        indices.append(local)
    if good:
        tensors.append(torch.stack(good))
    return (torch.cat(tensors) if tensors else None), indices, failures


def _group_of(index: int, content_keys: list[Optional[str]]) -> Any:
    return content_keys[index] if content_keys[index] is not None else ("path", index)


def l2_normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` scaled to unit L2 norm (all-zero rows stay zero), float32.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    """
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, np.float32(1e-12))


def extract_multiview(
    paths: Sequence[PathLike],
    backbones: Sequence[str],
    layer: Optional[str] = None,
    weights_path: Optional[PathLike] = None,
    device: Union[str, torch.device] = AUTO,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    cache: Union[FeatureCache, bool, None] = True,
    progress: ProgressLike = None,
    *,
    layers: Optional[Mapping[str, Optional[str]]] = None,
    weights_paths: Optional[Mapping[str, Optional[PathLike]]] = None,
    channels_last: Optional[bool] = None,
    compile: bool = False,
    engine: str = AUTO_ENGINE,
) -> FeatureResult:
    """Features from several backbones, each view L2-normalised, then concatenated.

    Parameters
    ----------
    paths : sequence of path
    backbones : sequence of str
        One view per backbone (at least one; no repeats).
    layer : str, optional
        Layer for every view (``None`` = each one's penultimate layer); ``layers`` overrides per view.
    weights_path : path, optional
        Only with a single backbone (which file fits which network would be a guess); use
        ``weights_paths={name: file}`` for several.
    layers, weights_paths : mapping of backbone name, optional
    device, batch_size, num_workers, cache, progress, channels_last, compile, engine
        As in :func:`extract_features`.

    Returns
    -------
    FeatureResult
        ``features`` of shape ``(n_kept, sum of D)``; ``view_slices[v]`` = ``(start, stop)`` columns
        of view ``v`` (each block has unit-norm rows); an image kept only if every view read it.
    """
    names = list(backbones)
    if not names:
        raise ValueError("extract_multiview needs at least one backbone")
    if len(set(names)) != len(names):
        raise ValueError(f"each backbone may appear once; got {names}")
    if weights_path is not None and len(names) > 1:
        raise ValueError(
            "one weights file for several backbones is ambiguous; pass weights_paths={backbone: file} instead"
        )
    started = time.perf_counter()
    results = []
    for view, name in enumerate(names):
        view_weights = (weights_paths or {}).get(name, weights_path if len(names) == 1 else None)
        view_layer = (layers or {}).get(name, layer)
        results.append(
            extract_features(
                paths,
                backbone=name,
                layer=view_layer,
                weights_path=view_weights,
                device=device,
                batch_size=batch_size,
                num_workers=num_workers,
                cache=cache,
                progress=wrap_callback(
                    progress, view / len(names), (view + 1) / len(names), f"view {view + 1}/{len(names)} "
                ),
                channels_last=channels_last,
                compile=compile,
                engine=engine,
            )
        )

    failed: dict[str, str] = {}
    for result in results:
        for skipped in result.failed:
            failed.setdefault(skipped.path, skipped.reason)
    kept_paths = [p for p in results[0].paths if os.fspath(p) not in failed]
    blocks, slices, start = [], [], 0
    for result in results:
        row_of = {os.fspath(p): i for i, p in enumerate(result.paths)}
        rows = [row_of[os.fspath(p)] for p in kept_paths]
        block = l2_normalize_rows(result.features[rows])
        blocks.append(block)
        slices.append((start, start + block.shape[1]))
        start += block.shape[1]
    features = np.concatenate(blocks, axis=1) if blocks else np.zeros((0, 0), np.float32)
    ordered_failed = [SkippedFile(path, reason) for path, reason in failed.items()]
    devices = sorted({r.device for r in results if r.device != "none"}) or ["none"]
    return FeatureResult(
        features=features,
        paths=kept_paths,
        failed=ordered_failed,
        n_extracted=sum(r.n_extracted for r in results),
        n_cached=sum(r.n_cached for r in results),
        seconds=time.perf_counter() - started,
        device=",".join(devices),
        backbones=names,
        view_slices=slices,
        model_keys=[r.model_keys[0] for r in results],
        engine=",".join(dict.fromkeys(r.engine for r in results)),
    )


def prepare_networks(backbones: Sequence[str], progress: ProgressLike = None) -> dict[str, str]:
    """Convert ``backbones``' networks for the fast CPU engine ahead of a first run (what ``imgcluster prepare`` does).

    Converting a network to OpenVINO costs a few seconds once (then ~0.1 s to load from the engine cache),
    and a first run pays it for every view: 12.4 s of extraction on the bundled 150 images with the two
    default backbones, 6.7 s once they are converted (benchmarks/results/speed.md). The install step
    (``make run``) calls this so that a person's first run is the quick one.

    Parameters
    ----------
    backbones : sequence of str
        Registry names (their penultimate layer, their own weights).
    progress : ProgressLike, optional

    Returns
    -------
    dict
        Backbone -> ``"converted"``, ``"already converted"`` or the reason nothing was done (no OpenVINO,
        weights unavailable offline, a network the converter refuses).
    """
    from .runtime import OpenVinoNetwork, engine_cache_file, openvino_available

    progress = ensure(progress)
    outcome: dict[str, str] = {}
    for number, backbone in enumerate(backbones):
        check(progress, f"{backbone}: preparing")
        if not openvino_available():
            outcome[backbone] = "OpenVINO is not installed: runs use the eager network"
            continue
        layer_id = resolve_layer(backbone, None)
        prep = resolve_preprocessing(backbone, None, None, None)
        key = model_key(backbone, layer_id, None, prep)
        path = engine_cache_file(key)
        if path.is_file() and path.with_suffix(".bin").is_file():
            outcome[backbone] = "already converted"
        else:

            def build(name: str = backbone, layer: str = layer_id) -> torch.nn.Module:
                return build_feature_model(name, layer, None, device="cpu")

            try:
                OpenVinoNetwork(build, prep.input_size, model_key=key)
                outcome[backbone] = "converted"
            except Exception as exc:  # weights unavailable offline, an unsupported network: a run goes eager
                outcome[backbone] = f"not converted ({type(exc).__name__}: {exc})"
        progress((number + 1) / len(backbones), f"{backbone}: {outcome[backbone]}")
    return outcome
