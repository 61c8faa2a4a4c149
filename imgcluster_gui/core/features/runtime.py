"""How a network runs: execution engine, batch size and the split of cores between decoding and the network.

:func:`choose_plan` picks, for one extraction, an :class:`ExecutionPlan` from the device, the number of
images and their average file size.  The CPU rules come from measurements on a 2-core Zen-3 machine with
EfficientNet-Lite0 (``benchmarks/results/speed.md`` re-measures them; ``shared/MEASURED.md`` has the first
figures):

- **OpenVINO** (``openvino``, the default CPU engine) ran the network at ~260-310 img/s, against ~35-45 img/s
  eager and ~72 img/s with ``torch.compile``; its features match eager ones to cosine >= 0.9998.  Converting a
  network costs ~3 s once; the converted model (OpenVINO IR, fp32) is kept in ``cache_dir("engines")``, keyed
  by the feature-cache model key, and loads in ~0.1 s afterwards.  Below :data:`OPENVINO_MIN_IMAGES` images
  with nothing converted yet, the eager network is quicker than the conversion.
- **torch.compile** (needs a C++ compiler) is 2x eager but costs 20-45 s of compiling on a cold cache; it is
  chosen only when OpenVINO is missing and the folder is large (:data:`COMPILE_MIN_IMAGES`).  Its on-disk
  cache goes to ``cache_dir("engines", "inductor")`` so a second start is quick.
- **eager** runs one image per forward pass on CPU (batch 1 measured fastest eagerly: larger batches fall out
  of the cache); OpenVINO prefers batches of 8.
- **decoding**: small files (PNGs of a few kB) decode at ~900 img/s per core, so one decoding worker is plenty,
  and below :data:`SMALL_FILES_MIN_FOR_WORKER` images none: starting it (a fork of the whole process) was
  measured at 0.1-2.9 s, more than decoding a few hundred small files in the main process; large JPEGs
  decode at ~25-100 img/s per core even with DCT scaling (the entropy decoding of the whole file cannot be
  skipped), so they get one worker per core, the network being the smaller cost.
- **GPUs**: eager with fp16 autocast and channels-last, large batches, pinned memory, and JPEGs decoded on the
  GPU (:mod:`.decode`).

``ONNX Runtime`` was considered; exporting a network to ONNX needs the ``onnx``/``onnxscript`` packages on top,
and OpenVINO reads PyTorch modules directly, so it is not an engine here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..storage import cache_dir

PathLike = Union[str, os.PathLike]

AUTO_ENGINE = "auto"
EAGER = "eager"
COMPILE = "compile"
OPENVINO = "openvino"
#: Every value ``engine=`` accepts (the CLI's ``--engine`` choices).
ENGINE_CHOICES = (AUTO_ENGINE, EAGER, COMPILE, OPENVINO)

# Below this many images to extract, converting a network to OpenVINO (~3 s once) costs more than it saves
# (eager ~40 img/s vs OpenVINO ~260 img/s on 2 cores: 3 s / (1/40 - 1/260) s = ~140 images).
OPENVINO_MIN_IMAGES = 128
# torch.compile saves ~14 ms an image over eager on 2 cores and costs 20-45 s cold: worth it from a few thousand.
COMPILE_MIN_IMAGES = 3000
# Below this many large files (photos, ~40 ms each to decode), a worker's start costs more than it saves.
MIN_IMAGES_FOR_WORKERS = 8
# Small files decode in ~1 ms: a worker (0.1-2.9 s to fork, measured) pays off only for this many.
SMALL_FILES_MIN_FOR_WORKER = 1000
# Files above this mean size are "large" (photos): decoding, not the network, is then the cost.
LARGE_FILE_BYTES = 512 * 1024
#: CPU batch sizes by engine (measured img/s at batch 1 / 8: eager 37-45 / 22-32, compile 72 / 54, OpenVINO 260 / 300).
CPU_BATCH = {EAGER: 1, COMPILE: 1, OPENVINO: 8}
GPU_BATCH_SIZE = 128
MPS_BATCH_SIZE = 32
MAX_WORKERS = 8
# Bump when the way a network is converted changes (invalidates the converted models on disk).
ENGINE_CACHE_VERSION = 1


@dataclass(frozen=True)
class ExecutionPlan:
    """How one extraction runs.

    Attributes
    ----------
    engine : {'eager', 'compile', 'openvino'}
    batch_size : int
        Images per forward pass.
    num_workers : int
        Decoding processes (0 = decode in the calling process).
    channels_last : bool
        Memory layout of the network's input (eager/compile only).
    decode_on_device : bool
        JPEGs travel as file bytes and are decoded, resized and cropped on the device (GPUs).
    reason : str
        Why this plan, in a few words (for logs and the benchmark).
    """

    engine: str
    batch_size: int
    num_workers: int
    channels_last: bool
    decode_on_device: bool
    reason: str


def openvino_available() -> bool:
    """Whether the OpenVINO runtime can be imported (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def compiler_available() -> bool:
    """Whether a C++ compiler for ``torch.compile``'s CPU backend is on the PATH."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def mean_file_bytes(paths: Sequence[PathLike], sample: int = 64) -> float:
    """Average size of up to ``sample`` files spread over ``paths`` (unreadable ones skipped; 0 when none)."""
    if not paths:
        return 0.0
    step = max(1, len(paths) // sample)
    sizes = []
    for path in list(paths)[::step][:sample]:
        try:
            sizes.append(os.stat(path).st_size)
        except (OSError, ValueError):
            continue
    return float(np.mean(sizes)) if sizes else 0.0


def engine_cache_file(model_key: str) -> Path:
    """Where the OpenVINO model converted for ``model_key`` is kept (``.xml``; weights beside it in ``.bin``)."""
    version = _openvino_version()
    digest = hashlib.sha256(f"{model_key}|openvino={version}|v{ENGINE_CACHE_VERSION}".encode()).hexdigest()[:32]
    return cache_dir("engines", "openvino") / f"{digest}.xml"


def _openvino_version() -> str:
    try:
        import importlib.metadata

        return importlib.metadata.version("openvino")
    except Exception:  # not installed / no metadata: the key still works, just never matches an install
        return "none"


def choose_plan(
    n_images: int,
    device: torch.device,
    *,
    engine: str = AUTO_ENGINE,
    mean_bytes: float = 0.0,
    model_key: Optional[str] = None,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    channels_last: Optional[bool] = None,
    cores: Optional[int] = None,
) -> ExecutionPlan:
    """The engine, batch size and decoding workers for extracting ``n_images`` on ``device``.

    Parameters
    ----------
    n_images : int
        Images the network will see (cached ones excluded).
    device : torch.device
    engine : {'auto', 'eager', 'compile', 'openvino'}
        ``'auto'`` follows the rules in this module's docstring; another value is used as asked (OpenVINO
        falls back to eager, with a warning, where it is not installed or the device is not a CPU).
    mean_bytes : float
        Average file size (:func:`mean_file_bytes`): large files (photos) get one decoding worker per core.
    model_key : str, optional
        The feature-cache model key: a network already converted for it makes OpenVINO free to start.
    batch_size, num_workers, channels_last : optional
        A caller's explicit choice, kept as given.
    cores : int, optional
        CPU cores (default ``os.cpu_count()``).

    Returns
    -------
    ExecutionPlan
    """
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINE_CHOICES)}")
    n_cores = cores if cores is not None else (os.cpu_count() or 1)
    if device.type != "cpu":
        return _accelerator_plan(device, engine, n_cores, batch_size, num_workers, channels_last)

    reason = "asked for"
    chosen = engine
    if engine == OPENVINO and not openvino_available():
        warnings.warn("OpenVINO is not installed (pip install openvino); running the network eagerly", stacklevel=2)
        chosen, reason = EAGER, "OpenVINO not installed"
    elif engine == AUTO_ENGINE:
        converted = model_key is not None and engine_cache_file(model_key).is_file()
        if openvino_available() and (converted or n_images >= OPENVINO_MIN_IMAGES):
            chosen = OPENVINO
            reason = "converted model on disk" if converted else f"{n_images} images >= {OPENVINO_MIN_IMAGES}"
        elif not openvino_available() and compiler_available() and n_images >= COMPILE_MIN_IMAGES:
            chosen, reason = COMPILE, f"no OpenVINO; {n_images} images >= {COMPILE_MIN_IMAGES}"
        else:
            chosen = EAGER
            reason = f"{n_images} images: converting costs more than it saves" if openvino_available() else "default"
    large = mean_bytes >= LARGE_FILE_BYTES
    if num_workers is not None:
        workers = int(num_workers)
    elif n_images < MIN_IMAGES_FOR_WORKERS or n_cores < 2 or (not large and n_images < SMALL_FILES_MIN_FOR_WORKER):
        workers = 0
    else:
        workers = n_cores if large else 1
    return ExecutionPlan(
        engine=chosen,
        batch_size=int(batch_size) if batch_size is not None else CPU_BATCH[chosen],
        num_workers=workers,
        # channels_last measured slower than the default layout at batch 1 on this CPU; OpenVINO takes NCHW.
        channels_last=bool(channels_last) if channels_last is not None and chosen != OPENVINO else False,
        decode_on_device=False,
        reason=reason + ("; large files: one decoding worker per core" if large and workers == n_cores else ""),
    )


def _accelerator_plan(
    device: torch.device,
    engine: str,
    cores: int,
    batch_size: Optional[int],
    num_workers: Optional[int],
    channels_last: Optional[bool],
) -> ExecutionPlan:
    chosen = EAGER if engine in (AUTO_ENGINE, OPENVINO) else engine
    if engine == OPENVINO:
        warnings.warn(f"OpenVINO runs on the CPU only; running eagerly on {device}", stacklevel=3)
    cuda = device.type == "cuda"
    default_batch = GPU_BATCH_SIZE if cuda else MPS_BATCH_SIZE
    return ExecutionPlan(
        engine=chosen,
        batch_size=int(batch_size) if batch_size is not None else default_batch,
        num_workers=int(num_workers) if num_workers is not None else max(1, min(MAX_WORKERS, cores - 1)),
        channels_last=channels_last if channels_last is not None else cuda,
        decode_on_device=cuda and _gpu_jpeg_decoder_available(),
        reason=f"{device.type}: large batches" + (", JPEGs decoded on the GPU" if cuda else ""),
    )


def _gpu_jpeg_decoder_available() -> bool:
    try:
        from torchvision.io import decode_jpeg  # noqa: F401  (nvjpeg ships with torchvision's CUDA builds)
    except Exception:  # absent, or a build that does not load beside this torch (RuntimeError): Pillow decodes
        return False
    return True


# ============================================================================ engines
def use_persistent_compile_cache() -> None:
    """Point ``torch.compile``'s on-disk cache at the app's cache folder (unless the user set one)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.fspath(cache_dir("engines", "inductor")))


class OpenVinoNetwork:
    """A network converted to OpenVINO and compiled for the CPU: ``(B, 3, S, S)`` float tensor in, ``(B, D)`` out.

    Parameters
    ----------
    build : callable returning nn.Module
        Builds the eager network; called only when no converted model is on disk for ``model_key``.
    input_size : int
        Side of the square input (the conversion traces one example of it; the batch stays dynamic).
    model_key : str, optional
        The feature-cache model key; ``None`` converts without keeping the result.
    threads : int, optional
        Inference threads (default: torch's thread count, so ``--threads`` and ``torch.set_num_threads`` apply).
    """

    def __init__(
        self,
        build: Callable[[], torch.nn.Module],
        input_size: int,
        model_key: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> None:
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, every thread on it
            "INFERENCE_PRECISION_HINT": "f32",  # never a lower precision behind our back
        }
        path = engine_cache_file(model_key) if model_key is not None else None
        self.from_disk = False
        compiled = None
        if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
            try:
                compiled = core.compile_model(os.fspath(path), "CPU", config)
                self.from_disk = True
            except Exception:  # a damaged or foreign file: convert again and replace it
                compiled = None
        if compiled is None:
            converted = _convert(ov, build(), input_size)
            if path is not None:
                _save(ov, converted, path)
            compiled = core.compile_model(converted, "CPU", config)
        self._compiled = compiled

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        output = self._compiled(array)[0]
        return torch.from_numpy(np.asarray(output, dtype=np.float32))


def _convert(ov: Any, model: torch.nn.Module, input_size: int) -> Any:
    example = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings():
        # The PyTorch frontend traces with torch.jit, which warns that tracing is deprecated: not ours to act on.
        warnings.simplefilter("ignore")
        return ov.convert_model(model.eval(), example_input=example)


def _save(ov: Any, converted: Any, path: Path) -> None:
    """Write the ``.xml``/``.bin`` pair so that a reader never sees half of it (``.xml`` last, by rename)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            staged = Path(tmp) / path.name
            ov.save_model(converted, os.fspath(staged), compress_to_fp16=False)  # fp32: same numbers as eager
            os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
            os.replace(staged, path)
    except OSError as exc:  # a read-only cache: this run still works, the next one converts again
        warnings.warn(f"cannot keep the converted network in {path.parent} ({exc})", stacklevel=3)
