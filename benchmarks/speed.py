"""Speed benchmarks: extraction, feature cache, clustering, scale, app.

::

    python -m benchmarks.speed [--smoke] [--only extraction,cache,clustering,scale,app] [--extraction-images 400 40]
                               [--backbones efficientnet_lite0 ...] [--threads N] [--out DIR]

Every figure that judges speed is a ratio against a reference measured in the same run (these
machines are noisy); absolute times are printed too, labelled with the CPU/GPU and torch threads.
Prints markdown tables; writes ``speed.json``, ``speed.md`` and PNG plots to ``benchmarks/results/``.
``--smoke`` runs every section on tiny inputs in a few seconds (the CI smoke test uses it): its
numbers say nothing about speed.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import math
import pstats
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import common
from .common import fmt, markdown_table

SECTIONS = ("extraction", "cache", "clustering", "scale", "app")


@dataclass
class Target:
    """One target of issue 5: met or not, with the ratio measured in this run."""

    name: str
    measured: Optional[float]
    goal: str
    met: Optional[bool]
    note: str = ""


@dataclass
class SectionResult:
    name: str
    markdown: str
    data: dict[str, Any]
    targets: list[Target] = field(default_factory=list)


@dataclass
class Sizes:
    """How big each section's inputs are: full run vs smoke run."""

    small_images: int
    large_images: int
    large_size: tuple[int, int]
    ceiling_batches: tuple[int, ...]
    kmeans_points: int
    kmeans_dims: tuple[int, ...]
    kmeans_k: int
    silhouette_reference_points: int
    density_start: int
    density_max: int
    density_seconds: float
    scale_points: tuple[int, ...]
    scale_k: int
    app_thumbnails: int

    @classmethod
    def full(cls) -> "Sizes":
        return cls(
            small_images=400,
            large_images=40,
            large_size=(4000, 3000),
            ceiling_batches=(1, 8, 32),
            kmeans_points=100_000,
            kmeans_dims=(256, 1280),
            kmeans_k=100,
            silhouette_reference_points=20_000,
            density_start=1000,
            density_max=100_000,
            density_seconds=60.0,
            scale_points=(1000, 3000, 10_000, 30_000, 100_000),
            scale_k=50,
            app_thumbnails=20_000,
        )

    @classmethod
    def smoke(cls) -> "Sizes":
        return cls(
            small_images=6,
            large_images=2,
            large_size=(640, 480),
            ceiling_batches=(1, 4),
            kmeans_points=2000,
            kmeans_dims=(16,),
            kmeans_k=8,
            silhouette_reference_points=500,
            density_start=200,
            density_max=400,
            density_seconds=2.0,
            scale_points=(300, 600),
            scale_k=5,
            app_thumbnails=200,
        )


# ============================================================================================ extraction
def honest_transform(backbone: str):
    """What a plain script writes with the project's own recipe: Resize, CenterCrop, ToTensor, Normalize."""
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    from imgcluster_gui.core.features.backbones import resolve_preprocessing

    prep = resolve_preprocessing(backbone, common.backbone_weights(backbone))
    return transforms.Compose(
        [
            transforms.Resize(prep.resize_size, interpolation=InterpolationMode(prep.interpolation), antialias=True),
            transforms.CenterCrop(prep.input_size),
            transforms.ToTensor(),
            transforms.Normalize(prep.mean, prep.std),
        ]
    )


def naive_loop(paths: list[Path], model, transform, device: str = "cpu", autocast: bool = False) -> np.ndarray:
    """The baseline a person writes in ten lines: Pillow open, transform, one image per forward pass.

    ``torch.inference_mode``, torch's default threads, the project's weights (eager) and preprocessing recipe;
    no draft decoding, batching or engine: nothing this project adds.
    """
    import torch
    from PIL import Image

    outputs = []
    with torch.inference_mode():
        for path in paths:
            with Image.open(path) as image:
                batch = transform(image.convert("RGB")).unsqueeze(0).to(device)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=autocast):
                outputs.append(model(batch).float().cpu().numpy())
    return np.concatenate(outputs)


def _load_tensors(paths: list[Path], transform) -> "Any":
    import torch
    from PIL import Image

    tensors = []
    for path in paths:
        with Image.open(path) as image:
            tensors.append(transform(image.convert("RGB")))
    return torch.stack(tensors)


def model_only(tensors, model, batch_size: int, device: str = "cpu", autocast: bool = False) -> None:
    """The ceiling: the network alone on pre-decoded, pre-normalised tensors."""
    import torch

    with torch.inference_mode():
        for start in range(0, len(tensors), batch_size):
            batch = tensors[start : start + batch_size].to(device, non_blocking=True)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=autocast):
                model(batch)
        if device == "cuda":
            torch.cuda.synchronize()


def _ceilings(backbone: str, tensors, batches: tuple[int, ...], device: str, smoke: bool) -> dict[str, Any]:
    """img/s of the network alone per engine and batch: eager (both layouts), torch.compile, OpenVINO."""
    import torch

    from imgcluster_gui.core.features.backbones import build_feature_model
    from imgcluster_gui.core.features.runtime import OpenVinoNetwork, compiler_available, openvino_available

    n = len(tensors)
    autocast = device == "cuda"
    out: dict[str, Any] = {"eager": {}, "compile": {}, "openvino": {}, "compile_seconds": {}, "notes": []}

    def measure(fn, batch_size: int, variant_tensors) -> float:
        model_only(variant_tensors[:batch_size], fn, batch_size, device, autocast)  # warm-up (lazy init)
        timing, _ = common.time_call(functools.partial(model_only, variant_tensors, fn, batch_size, device, autocast))
        return n / timing.best

    eager = build_feature_model(backbone, weights_path=common.backbone_weights(backbone), device=device)
    for batch_size in batches:
        out["eager"][f"batch {batch_size}"] = measure(eager, batch_size, tensors)
    channels_last = eager.to(memory_format=torch.channels_last)
    cl_tensors = tensors.contiguous(memory_format=torch.channels_last)
    for batch_size in batches:
        out["eager"][f"channels_last, batch {batch_size}"] = measure(channels_last, batch_size, cl_tensors)
    eager = eager.to(memory_format=torch.contiguous_format)
    if smoke:
        out["notes"].append("torch.compile skipped in a smoke run (20-45 s a shape)")
    elif not compiler_available():
        out["notes"].append("torch.compile skipped: no C++ compiler")
    else:
        from imgcluster_gui.core.features.runtime import use_persistent_compile_cache

        use_persistent_compile_cache()
        for batch_size in batches[:2]:  # one compile per batch shape: the two small batches that CPUs prefer
            compiled = torch.compile(eager, dynamic=False)
            t0 = time.perf_counter()
            model_only(tensors[:batch_size], compiled, batch_size, device, autocast)
            out["compile_seconds"][f"batch {batch_size}"] = time.perf_counter() - t0
            whole = (n // batch_size) * batch_size  # no short last batch: it would compile again
            timing, _ = common.time_call(
                functools.partial(model_only, tensors[:whole], compiled, batch_size, device, autocast)
            )
            out["compile"][f"batch {batch_size}"] = whole / timing.best
    if device == "cpu" and openvino_available():
        network = OpenVinoNetwork(lambda: eager, int(tensors.shape[-1]))
        for batch_size in batches:
            out["openvino"][f"batch {batch_size}"] = measure(network, batch_size, tensors)
    elif device == "cpu":
        out["notes"].append("OpenVINO not installed")
    return out


def _decode_one(args: tuple[str, Any]) -> bool:
    """One image through the project's decoder (``ImageFolderDataset``: draft decode, resize, crop)."""
    from imgcluster_gui.core.features.extract import ImageFolderDataset

    path, prep = args
    _, tensor, _ = ImageFolderDataset([path], prep)[0]
    return tensor is not None


def decode_ceiling(paths: list[Path], backbone: str) -> dict[str, Any]:
    """Decode + resize + crop only (no network), one process a core: nothing can extract faster than this.

    Also times one core of each JPEG decoder with DCT-domain scaling (Pillow draft, simplejpeg, PyTurboJPEG),
    which is how the decoder was picked.
    """
    import multiprocessing
    import os

    from imgcluster_gui.core.features.backbones import resolve_preprocessing

    prep = resolve_preprocessing(backbone, common.backbone_weights(backbone))
    cores = os.cpu_count() or 1
    jobs = [(str(p), prep) for p in paths]
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(_decode_one, jobs[:cores])  # workers started and imported before the clock
        t0 = time.perf_counter()
        ok = pool.map(_decode_one, jobs, chunksize=1)
        all_cores = len(paths) / (time.perf_counter() - t0)
    one_core = {name: ips for name, ips in _decoders_one_core(paths, prep.resize_size).items()}
    return dict(ips=all_cores, processes=cores, decoded=sum(ok), one_core=one_core)


def _decoders_one_core(paths: list[Path], size: int) -> dict[str, Any]:
    from PIL import Image

    from imgcluster_gui.core.dataset import load_image

    def pillow(path: Path) -> None:
        load_image(path, draft_size=(size, size))

    decoders: dict[str, Callable[[Path], Any]] = {"Pillow + draft (used)": pillow}
    try:
        import simplejpeg

        def simple(path: Path) -> None:
            simplejpeg.decode_jpeg(path.read_bytes(), colorspace="RGB", min_width=size, min_height=size)

        decoders["simplejpeg, min_width/min_height"] = simple
    except ImportError:
        pass
    results: dict[str, Any] = {}
    try:
        import turbojpeg

        jpeg = turbojpeg.TurboJPEG()

        def turbo(path: Path) -> None:
            with Image.open(path) as im:
                scale = max(1, min(8, min(im.size) // size))
            factor = (1, 8 if scale >= 8 else 4 if scale >= 4 else 2 if scale >= 2 else 1)
            jpeg.decode(path.read_bytes(), scaling_factor=factor)

        decoders["PyTurboJPEG, scaling_factor"] = turbo
    except ImportError:
        pass
    except Exception as exc:  # the wheel needs a system libturbojpeg
        results["PyTurboJPEG, scaling_factor"] = f"unavailable ({str(exc).splitlines()[0]})"
    for name, decode in decoders.items():
        decode(paths[0])
        t0 = time.perf_counter()
        for path in paths:
            decode(path)
        results[name] = len(paths) / (time.perf_counter() - t0)
    return results


def pipeline_extract(paths: list[Path], backbone: str, device: str, cache=False, engine: str = "auto"):
    """The project's extraction, as the app and CLI run it."""
    from imgcluster_gui.core.features.extract import extract_features

    return extract_features(
        paths,
        backbone=backbone,
        weights_path=common.backbone_weights(backbone),
        device=device,
        cache=cache,
        engine=engine,
    )


def _profile(fn: Callable[[], Any], top: int = 14) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
    return stream.getvalue()


_FIRST_RUN = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from imgcluster_gui.core.features.backbones import DEFAULT_BACKBONES
from imgcluster_gui.core.features.extract import extract_multiview
imported = time.perf_counter() - t0
paths = sorted(p for p in Path(sys.argv[1]).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
# The app's default features (every default backbone), as a first run in the window extracts them.
result = extract_multiview(paths, list(DEFAULT_BACKBONES), cache=False)
print(json.dumps(dict(
    n=len(result.paths), import_s=imported, extract_s=result.seconds, engine=result.engine,
    backbones="+".join(DEFAULT_BACKBONES),
)))
"""


def first_run(folder: Path, engine_cache: Path) -> dict[str, Any]:
    """Extraction of ``folder`` in a new process, feature cache off: the seconds a person waits on a first run."""
    import json
    import os
    import subprocess

    env = dict(os.environ, IMGCLUSTER_CACHE_DIR=str(engine_cache))
    proc = subprocess.run(
        [sys.executable, "-c", _FIRST_RUN, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        cwd=common.REPO_ROOT,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_networks_in(engine_cache: Path) -> None:
    """``imgcluster prepare`` in a new process with ``engine_cache`` as the cache folder (the install step)."""
    import os
    import subprocess

    env = dict(os.environ, IMGCLUSTER_CACHE_DIR=str(engine_cache))
    subprocess.run(
        [sys.executable, "-c", "from imgcluster_gui.cli import main; raise SystemExit(main(['prepare']))"],
        capture_output=True,
        text=True,
        env=env,
        cwd=common.REPO_ROOT,
        check=True,
    )


def bench_extraction(
    sizes: Sizes, backbones: list[str], workdir: Path, out: Path, profile: bool, smoke: bool = False
) -> SectionResult:
    import os

    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    image_sets: dict[str, list[Path]] = {}
    datasets = common.shared_datasets(["coil20"])
    if datasets:
        per_class = max(1, math.ceil(sizes.small_images / 20))
        small, _ = common.labelled_images(datasets["coil20"], per_class=per_class)
        image_sets["small PNG (COIL-20 32x32)"] = small[: sizes.small_images]
    else:
        small = sorted((common.REPO_ROOT / "resources" / "sample_images").rglob("*.png"))
        image_sets["small PNG (sample images)"] = small[: sizes.small_images]
    w, h = sizes.large_size
    large_name = f"large JPEG ({w}x{h}, synthetic)"
    image_sets[large_name] = common.make_large_jpegs(
        workdir / f"jpeg_{w}x{h}", sizes.large_images, size=sizes.large_size
    )

    rows, records, targets, profiles, notes = [], [], [], {}, []
    for device in devices:
        autocast = device == "cuda"  # fp16 on a GPU; on a CPU without bf16 hardware autocast is 3-12x slower
        for backbone in backbones:
            from imgcluster_gui.core.features.backbones import build_feature_model

            plain_model = build_feature_model(backbone, weights_path=common.backbone_weights(backbone), device=device)
            transform = honest_transform(backbone)
            # The converted network on disk before any timing (a person's second day); the first run is timed apart.
            pipeline_extract(image_sets[next(iter(image_sets))][:2], backbone, device, engine="openvino")
            for set_name, paths in image_sets.items():
                n = len(paths)
                naive_loop(paths[:2], plain_model, transform, device, autocast)  # warm-up: lazy init, allocator
                naive_time, _ = common.time_call(
                    functools.partial(naive_loop, paths, plain_model, transform, device, autocast)
                )
                pipeline_extract(paths[:2], backbone, device)  # warm-up (page cache, lazy imports)
                pipe_time, result = common.time_call(functools.partial(pipeline_extract, paths, backbone, device))
                if len(result.paths) != n:
                    raise RuntimeError(f"pipeline extracted {len(result.paths)} of {n} images: {result.failed[:3]}")
                ceilings = _ceilings(backbone, _load_tensors(paths, transform), sizes.ceiling_batches, device, smoke)
                notes.extend(ceilings["notes"])
                best = {
                    engine: max(by_batch.items(), key=lambda kv: kv[1])
                    for engine, by_batch in ceilings.items()
                    if engine in ("eager", "compile", "openvino") and by_batch
                }
                record = dict(
                    device=device,
                    backbone=backbone,
                    images=set_name,
                    n=n,
                    naive_ips=n / naive_time.best,
                    pipeline_ips=n / pipe_time.best,
                    pipeline_engine=result.engine,
                    ceilings=ceilings,
                    ceiling_ips=max(v for _, v in best.values()),
                    best_ceiling={engine: dict(setting=k, ips=v) for engine, (k, v) in best.items()},
                )
                record["pipeline_vs_naive"] = record["pipeline_ips"] / record["naive_ips"]
                record["pipeline_vs_ceiling"] = record["pipeline_ips"] / record["ceiling_ips"]
                label = f"{device} {backbone} {set_name}"
                missed = False
                if set_name == large_name:
                    decode = decode_ceiling(paths, backbone)
                    record["decode"] = decode
                    record["pipeline_vs_decode"] = record["pipeline_ips"] / decode["ips"]
                    met = record["pipeline_vs_decode"] >= 0.9
                    missed = not met
                    targets.append(
                        Target(
                            f"extraction vs decode-only ceiling ({label}, {decode['processes']} processes)",
                            record["pipeline_vs_decode"],
                            ">= 0.90",
                            met,
                            f"decode {decode['ips']:.1f} img/s, pipeline {record['pipeline_ips']:.1f} img/s",
                        )
                    )
                else:
                    met = record["pipeline_vs_naive"] >= 2.0
                    missed = not met
                    targets.append(
                        Target(
                            f"extraction vs plain loop ({label})",
                            record["pipeline_vs_naive"],
                            ">= 2x",
                            met,
                            f"engine {result.engine}; model-only ceiling / plain loop = "
                            f"{record['ceiling_ips'] / record['naive_ips']:.2f}",
                        )
                    )
                if profile and missed:
                    profiles[label] = _profile(functools.partial(pipeline_extract, paths, backbone, device))
                records.append(record)
                ceiling_text = "; ".join(f"{e} {v:.1f} ({k})" for e, (k, v) in best.items())
                rows.append(
                    [
                        device + (" (fp16 autocast)" if autocast else ""),
                        backbone,
                        set_name,
                        n,
                        record["naive_ips"],
                        f"{record['pipeline_ips']:.1f} ({result.engine})",
                        ceiling_text,
                        fmt(record["decode"]["ips"], 1) if "decode" in record else "",
                        record["pipeline_vs_naive"],
                        fmt(record.get("pipeline_vs_decode"), 2) if "decode" in record else "",
                    ]
                )
            del plain_model
    if "cuda" not in devices:
        rows.append(["GPU: unmeasured (no GPU lent to this task)"] + [""] * 9)

    sample = common.REPO_ROOT / "resources" / "sample_images"
    first: dict[str, Any] = {}
    if sample.is_dir() and not smoke:  # two new processes: not for the few-seconds smoke run
        with tempfile.TemporaryDirectory(dir=workdir) as fresh:
            first["cold"] = first_run(sample, Path(fresh))  # nothing converted yet, `imgcluster prepare` skipped
            first["warm"] = first_run(sample, Path(fresh))  # the converted networks from the first
        with tempfile.TemporaryDirectory(dir=workdir) as installed:
            # What `make run` leaves: the install step runs `imgcluster prepare`, then the app's first run.
            started = time.perf_counter()
            prepare_networks_in(Path(installed))
            first["prepare_s"] = time.perf_counter() - started
            first["installed"] = first_run(sample, Path(installed))
        seconds = first["installed"]["extract_s"]
        targets.append(
            Target(
                f"first run on the bundled sample ({first['cold']['n']} images) after the install "
                "(`make run`: install + `imgcluster prepare`), extraction seconds",
                seconds,
                "< 8 s",
                seconds < 8.0,
                f"engine {first['installed']['engine']}; import {first['cold']['import_s']:.1f} s; the install's "
                f"prepare step took {first['prepare_s']:.1f} s; without it (nothing converted) "
                f"{first['cold']['extract_s']:.1f} s ({first['cold']['engine']})",
            )
        )
    headers = [
        "device",
        "backbone",
        "images",
        "N",
        "naive loop img/s",
        "pipeline img/s (engine)",
        "model-only ceilings img/s (best setting)",
        "decode-only ceiling img/s",
        "pipeline / plain loop",
        "pipeline / decode ceiling",
    ]
    text = (
        "## Extraction (images/s; targets: >= 2x the plain loop on small images, >= 0.90 of the decode "
        "ceiling on large JPEGs)\n\n"
        "The plain loop is ten lines a person would write: Pillow open, the project's Resize/CenterCrop/ToTensor/"
        "Normalize, `torch.inference_mode`, one image at a time, torch's default threads, the same weights. "
        "The pipeline is `extract_features` as the app runs it (engine `auto`, no feature cache, the converted "
        "network already on disk). Model-only ceilings: the network alone on decoded tensors, per engine. "
        f"Decode-only ceiling: decode + resize + crop in {os.cpu_count()} processes, no network.\n\n"
        + markdown_table(headers, rows)
    )
    decoders = [r["decode"]["one_core"] for r in records if "decode" in r]
    if decoders:
        text += "\n\nJPEG decoders with DCT scaling, one core, img/s: " + "; ".join(
            f"{name} {fmt(value, 1)}" for name, value in decoders[0].items()
        )
    compile_costs = [r["ceilings"]["compile_seconds"] for r in records if r["ceilings"]["compile_seconds"]]
    if compile_costs:
        text += "\n\ntorch.compile's first call (compiling), seconds: " + "; ".join(
            f"{k} {v:.1f}" for k, v in compile_costs[0].items()
        )
    if first:
        text += (
            f"\n\nFirst run on `resources/sample_images` in a new process, feature cache off, the default features "
            f"({first['cold'].get('backbones', 'efficientnet_lite0')}): extraction "
            f"{first['cold']['extract_s']:.1f} s with nothing converted yet ({first['cold']['engine']}), "
            f"{first['warm']['extract_s']:.1f} s once the networks are converted ({first['warm']['engine']}); "
            f"after the install's `imgcluster prepare` ({first['prepare_s']:.1f} s, part of `make run`) "
            f"{first['installed']['extract_s']:.1f} s; "
            f"importing the package {first['cold']['import_s']:.1f} s."
        )
    for note in dict.fromkeys(notes):
        text += f"\n\n_{note}._"
    for label, report in profiles.items():
        path = out / f"speed.profile_{_slug(label)}.txt"
        path.write_text(report)
        text += f"\n\nProfile of the pipeline ({label}), top entries by cumulative time, in `{path.name}`."
    plot_extraction(records, out / "extraction_speed.png", common.device_line())
    return SectionResult("extraction", text, {"records": records, "profiles": profiles, "first_run": first}, targets)


def plot_extraction(records: list[dict[str, Any]], path: Path, caption: str) -> None:
    """Images/s by method (plain loop, pipeline, model-only ceiling), log scale."""
    groups = [f"{r['device']}\n{r['backbone']}\n{r['images'].split(' (')[0]}" for r in records]
    common.bar_chart(
        path,
        "Feature extraction speed",
        groups,
        {
            "plain loop": [r["naive_ips"] for r in records],
            "pipeline": [r["pipeline_ips"] for r in records],
            "model-only ceiling": [r["ceiling_ips"] for r in records],
            "decode-only ceiling": [r.get("decode", {}).get("ips", float("nan")) for r in records],
        },
        "images / s (log)",
        caption=caption,
        log_y=True,
    )


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")[:80]


# ============================================================================================ cache
def bench_cache(sizes: Sizes, backbone: str, workdir: Path) -> SectionResult:
    if not common.project_has("features.extract", "features.cache"):
        return _skipped("cache", "core/features/{extract,cache}.py not importable yet")
    from imgcluster_gui.core.features.cache import FeatureCache

    datasets = common.shared_datasets(["coil20"])
    if datasets:
        paths, _ = common.labelled_images(datasets["coil20"], per_class=max(1, math.ceil(sizes.small_images / 20)))
        paths = paths[: sizes.small_images]
    else:
        paths = sorted((common.REPO_ROOT / "resources" / "sample_images").rglob("*.png"))[: sizes.small_images]
    with tempfile.TemporaryDirectory(dir=workdir) as cache_dir:
        cache = FeatureCache(root=cache_dir)
        cold, first = common.time_call(lambda: pipeline_extract(paths, backbone, "cpu", cache=cache))
        warm, second = common.time_call(lambda: pipeline_extract(paths, backbone, "cpu", cache=cache), repeat=3)
        same = bool(np.allclose(first.features, second.features, atol=1e-5))
        cache_mb = cache.size_bytes() / 1e6
    ratio = cold.best / warm.best
    rows = [[backbone, len(paths), cold.best, warm.best, ratio, second.n_cached, same, cache_mb]]
    text = "## Feature cache (second run over the same folder; target >= 20x faster)\n\n" + markdown_table(
        ["backbone", "N", "first run s", "second run s", "speed-up", "from cache", "same features", "cache MB"], rows
    )
    data = dict(
        n=len(paths),
        first_s=cold.best,
        second_s=warm.best,
        ratio=ratio,
        n_cached=second.n_cached,
        identical=same,
        cache_mb=cache_mb,
    )
    return SectionResult("cache", text, data, [Target("cache second run vs first", ratio, ">= 20x", ratio >= 20)])


# ============================================================================================ clustering
def inertia_of(X: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances to each cluster's mean (the same yardstick for every method)."""
    total = 0.0
    for cluster in np.unique(labels):
        members = X[labels == cluster].astype(np.float64)
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


def _project_kmeans(X: np.ndarray, k: int, seed: int):
    from imgcluster_gui.core.clustering.registry import make_estimator

    estimator = make_estimator("kmeans", n_clusters=k, random_state=seed)
    estimator.fit(X)
    return estimator


def bench_clustering(sizes: Sizes) -> SectionResult:
    import faiss
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score, silhouette_score

    have_registry = common.project_has("clustering.registry", "clustering.kmeans")
    rows, records, targets, sections = [], [], [], []
    n, k = sizes.kmeans_points, sizes.kmeans_k
    X_first = y_first = None
    for dims in sizes.kmeans_dims:
        X, y = common.gaussian_mixture(n, dims, k, seed=0)
        if X_first is None:
            X_first, y_first = X, y
        record: dict[str, Any] = dict(n=n, d=dims, k=k)
        project_params = {}
        if have_registry:
            t, estimator = common.time_call(functools.partial(_project_kmeans, X, k, 0))
            labels = np.asarray(estimator.labels_)
            project_params = {
                key: v for key, v in estimator.get_params().items() if key in ("n_init", "max_iter", "tol")
            }
            record["project"] = dict(
                seconds=t.best,
                inertia=inertia_of(X, labels),
                nmi=normalized_mutual_info_score(y, labels),
                params=project_params,
            )
        # scikit-learn at the same settings (n_init / max_iter / tol as the project's estimator uses).
        sk_params = dict(n_init=project_params.get("n_init", 1), max_iter=project_params.get("max_iter", 300))
        if "tol" in project_params:
            sk_params["tol"] = project_params["tol"]
        t, sk = common.time_call(
            lambda X=X, sk_params=sk_params: KMeans(n_clusters=k, init="k-means++", random_state=0, **sk_params).fit(X)
        )
        record["sklearn"] = dict(
            seconds=t.best,
            inertia=inertia_of(X, sk.labels_),
            nmi=normalized_mutual_info_score(y, sk.labels_),
            params=sk_params,
        )

        # Plain faiss defaults, for context (what a naive faiss user gets).
        def raw_faiss(dims: int = dims, X: np.ndarray = X) -> np.ndarray:
            km = faiss.Kmeans(dims, k, niter=20, seed=0, verbose=False)
            km.train(X)
            return km.index.search(X, 1)[1].ravel()

        t, raw_labels = common.time_call(raw_faiss)
        record["faiss_defaults"] = dict(
            seconds=t.best, inertia=inertia_of(X, raw_labels), nmi=normalized_mutual_info_score(y, raw_labels)
        )
        ref = record["sklearn"]
        for name in ("project", "faiss_defaults", "sklearn"):
            if name not in record:
                continue
            r = record[name]
            rows.append(
                [
                    f"{n:,} x {dims}",
                    {
                        "project": "project kmeans",
                        "faiss_defaults": "faiss.Kmeans defaults",
                        "sklearn": "scikit-learn KMeans",
                    }[name],
                    r["seconds"],
                    ref["seconds"] / r["seconds"],
                    r["inertia"] / ref["inertia"],
                    r["nmi"],
                ]
            )
        if "project" in record:
            speedup = ref["seconds"] / record["project"]["seconds"]
            inertia_ratio = record["project"]["inertia"] / ref["inertia"]
            met = speedup >= 10 and inertia_ratio <= 1.01
            targets.append(
                Target(
                    f"k-means vs scikit-learn ({n:,} x {dims}, K={k})",
                    speedup,
                    ">= 10x at inertia <= 1.01x",
                    met,
                    f"inertia ratio {inertia_ratio:.4f}",
                )
            )
        records.append(record)
    sections.append(
        f"## k-means, K = {k} (Gaussian mixture; "
        "target >= 10x faster than scikit-learn at inertia within 1%)\n\n"
        + markdown_table(
            ["points", "method", "seconds", "speed-up vs sklearn", "inertia / sklearn", "NMI vs truth"], rows
        )
        + (f"\n\nscikit-learn settings: {records[0]['sklearn']['params']}." if records else "")
    )
    data: dict[str, Any] = {"kmeans": records}

    # Auto-K sweep and the silhouette cost at n points.
    X, y = X_first, y_first
    if have_registry and common.project_has("clustering.autok", "metrics"):
        from imgcluster_gui.core.clustering.autok import choose_k
        from imgcluster_gui.core.metrics import internal_metrics

        k_max = max(3, min(30, k // 3))
        t_sweep, auto = common.time_call(lambda: choose_k(X, k_min=2, k_max=k_max, random_state=0))
        t_fit, estimator = common.time_call(lambda: _project_kmeans(X, k, 0))
        t_internal, metrics = common.time_call(lambda: internal_metrics(X, estimator.labels_))
        m = sizes.silhouette_reference_points
        t_exact, exact = common.time_call(lambda: silhouette_score(X[:m], estimator.labels_[:m]))
        full_estimate = t_exact.best * (n / m) ** 2  # exact silhouette is quadratic in N
        rows = [
            [
                "auto-K sweep (choose_k 2..%d)" % k_max,
                t_sweep.best,
                t_sweep.best / t_fit.best,
                f"chose K={auto.best_k}",
            ],
            ["one k-means fit (reference)", t_fit.best, 1.0, ""],
            [
                "internal metrics (sampled silhouette + CH + DB)",
                t_internal.best,
                t_internal.best / t_fit.best,
                f"silhouette {fmt(metrics.get('silhouette'))} on {metrics.get('silhouette_sample_size')} points",
            ],
            [f"exact silhouette, {m:,} points (sklearn)", t_exact.best, t_exact.best / t_fit.best, f"{fmt(exact)}"],
            [
                f"exact silhouette, {n:,} points (extrapolated N^2)",
                full_estimate,
                full_estimate / t_fit.best,
                "estimate",
            ],
        ]
        sections.append(
            f"## Auto-K and silhouette cost at {n:,} points x {X.shape[1]} (cost in k-means fits)\n\n"
            + markdown_table(["step", "seconds", "x one k-means fit", "note"], rows)
        )
        data["auto_k"] = dict(
            seconds=t_sweep.best,
            k_max=k_max,
            best_k=int(auto.best_k),
            fit_seconds=t_fit.best,
            internal_seconds=t_internal.best,
            exact_silhouette_seconds_at=(m, t_exact.best),
            exact_full_estimate_seconds=full_estimate,
        )
    else:
        sections.append(
            "## Auto-K and silhouette cost\n\n_skipped: core/clustering/autok.py or core/metrics.py not importable yet_"
        )

    # Density/hierarchical methods: the largest N that fits in the time budget.
    if have_registry:
        data["largest_n"] = {}
        rows = []
        for algorithm in ("agglomerative", "hdbscan"):
            outcome = _largest_n(algorithm, X_first.shape[1], k, sizes)
            data["largest_n"][algorithm] = outcome
            rows.append([algorithm, outcome["largest_n"], outcome["seconds_at_largest"], outcome["stopped_because"]])
        sections.append(
            f"## Largest N in {sizes.density_seconds:.0f} s (Gaussian mixture, d = {X_first.shape[1]}, "
            f"doubling N)\n\n"
            + markdown_table(["algorithm", "largest N", "seconds at that N", "stopped because"], rows)
        )
    return SectionResult("clustering", "\n\n".join(sections), data, targets)


def _largest_n(algorithm: str, dims: int, k: int, sizes: Sizes, memory_budget_gb: float = 4.0) -> dict[str, Any]:
    """Double N until a fit would pass the time budget (predicted from the last growth) or memory budget."""
    from imgcluster_gui.core.clustering.registry import get_algorithm, make_estimator

    try:
        spec = get_algorithm(algorithm)
    except (KeyError, ValueError):
        return dict(largest_n=None, seconds_at_largest=None, stopped_because="not in the registry", history=[])
    history: list[tuple[int, float]] = []
    n = sizes.density_start
    reason = f"reached {sizes.density_max:,}"
    while n <= sizes.density_max:
        if algorithm == "agglomerative" and n * n * 8 / 1e9 > memory_budget_gb:
            reason = f"a full distance matrix at N={n:,} would pass {memory_budget_gb:.0f} GB"
            break
        X, _ = common.gaussian_mixture(n, dims, k, seed=1)
        estimator = make_estimator(algorithm, n_clusters=k if spec.uses_k else None, random_state=0)
        start = time.perf_counter()
        estimator.fit(X)
        seconds = time.perf_counter() - start
        if seconds > sizes.density_seconds:
            reason = f"N={n:,} took {seconds:.1f} s"
            break
        history.append((n, seconds))
        growth = history[-1][1] / history[-2][1] if len(history) > 1 and history[-2][1] > 0 else 4.0
        if seconds * max(growth, 2.0) > sizes.density_seconds:
            reason = f"N={2 * n:,} predicted {seconds * max(growth, 2.0):.0f} s"
            break
        n *= 2
    largest = history[-1] if history else (None, None)
    return dict(largest_n=largest[0], seconds_at_largest=largest[1], stopped_because=reason, history=history)


# ============================================================================================ scale
def _scale_worker(stats_mean: np.ndarray, stats_std: np.ndarray, n: int, k: int) -> dict[str, Any]:
    """One N of the scale run, in its own process (see :func:`common.run_isolated`)."""
    from imgcluster_gui.core.clustering.registry import make_estimator
    from imgcluster_gui.core.embedding import embed_2d
    from imgcluster_gui.core.metrics import internal_metrics
    from imgcluster_gui.core.preprocess import preprocess_features

    real = np.stack([stats_mean - stats_std, stats_mean + stats_std])  # features_like needs mean/std only
    timings: dict[str, float] = {}
    start = time.perf_counter()
    X, _ = common.features_like(real, n, k, seed=0)
    timings["synthesise"] = time.perf_counter() - start
    stage_start = time.perf_counter()
    Xp = preprocess_features(X)
    if isinstance(Xp, tuple):
        Xp = Xp[0]
    timings["preprocess"] = time.perf_counter() - stage_start
    stage_start = time.perf_counter()
    estimator = make_estimator("kmeans", n_clusters=k, random_state=0).fit(Xp)
    timings["kmeans"] = time.perf_counter() - stage_start
    stage_start = time.perf_counter()
    internal_metrics(Xp, np.asarray(estimator.labels_))
    timings["metrics"] = time.perf_counter() - stage_start
    stage_start = time.perf_counter()
    embed_2d(Xp, method="pca", random_state=0)
    timings["embedding"] = time.perf_counter() - stage_start
    return dict(timings=timings, dtype=str(Xp.dtype), dims=int(X.shape[1]))


def bench_scale(
    sizes: Sizes, backbone: str, real_features: Optional[np.ndarray], extraction_ips: Optional[float], out: Path
) -> SectionResult:
    needed = ("clustering.registry", "clustering.kmeans", "embedding", "metrics", "preprocess")
    if not common.project_has(*needed):
        return _skipped("scale", "core/{clustering,embedding,metrics,preprocess} not all importable yet")
    if real_features is None:
        datasets = common.shared_datasets(["coil20"])
        paths = (
            common.labelled_images(datasets["coil20"], per_class=5)[0]
            if datasets
            else sorted((common.REPO_ROOT / "resources" / "sample_images").rglob("*.png"))
        )
        real_features = pipeline_extract(paths, backbone, "cpu", cache=False).features
    mean, std = real_features.mean(axis=0), real_features.std(axis=0)
    rows, records = [], []
    for n in sizes.scale_points:
        run = common.run_isolated(
            _scale_worker,
            mean,
            std,
            n,
            sizes.scale_k,
            preload=[f"imgcluster_gui.core.{m}" for m in needed] + ["faiss", "sklearn.cluster"],
        )
        timings = run["result"]["timings"]
        work = sum(v for key, v in timings.items() if key != "synthesise")
        dims = run["result"]["dims"]
        float64_mb = n * dims * 8 / 1e6
        extraction_s = n / extraction_ips if extraction_ips else None
        record = dict(
            n=n,
            dims=dims,
            timings=timings,
            after_extraction_s=work,
            extraction_estimate_s=extraction_s,
            peak_rss_mb=run["peak_rss_mb"],
            baseline_rss_mb=run["baseline_rss_mb"],
            float64_features_mb=float64_mb,
            dtype=run["result"]["dtype"],
        )
        records.append(record)
        rows.append(
            [
                f"{n:,}",
                timings["preprocess"],
                timings["kmeans"],
                timings["metrics"],
                timings["embedding"],
                work,
                extraction_s,
                run["peak_rss_mb"] - run["baseline_rss_mb"],
                float64_mb,
                record["dtype"],
            ]
        )
    # Growth exponent of the post-extraction time between the two largest N (1.0 = linear).
    if len(records) >= 2 and records[-2]["after_extraction_s"] > 0:
        a, b = records[-2], records[-1]
        exponent = math.log(b["after_extraction_s"] / a["after_extraction_s"]) / math.log(b["n"] / a["n"])
    else:
        exponent = None
    text = (
        f"## Scale (features synthesised from {backbone}'s statistics on real images; K = {sizes.scale_k})\n\n"
        + markdown_table(
            [
                "N",
                "preprocess s",
                "k-means s",
                "metrics s",
                "PCA 2-D s",
                "after extraction s",
                "extraction s (estimated from measured img/s)",
                "peak extra RSS MB",
                "all features as float64 MB",
                "feature dtype",
            ],
            rows,
        )
        + f"\n\nGrowth of the post-extraction time between the two largest N: N^{fmt(exponent, 2)}."
    )
    common.line_chart(
        out / "scale.png",
        "Cost by number of images",
        [r["n"] for r in records],
        {
            "after extraction (s)": [r["after_extraction_s"] for r in records],
            "peak extra RSS (MB)": [r["peak_rss_mb"] - r["baseline_rss_mb"] for r in records],
            "all features as float64 (MB)": [r["float64_features_mb"] for r in records],
        },
        "images",
        "seconds / MB",
        caption=common.device_line(),
    )
    return SectionResult("scale", text, dict(records=records, growth_exponent=exponent))


# ============================================================================================ app
def bench_app(sizes: Sizes) -> SectionResult:
    """The GUI figures come from benchmarks/app_grid.py (written with the Qt shell)."""
    app_grid = common.BENCH_DIR / "app_grid.py"
    if not app_grid.is_file():
        return _skipped("app", "benchmarks/app_grid.py is not there yet (it comes with the Qt shell)")
    from . import app_grid as grid  # type: ignore[attr-defined]

    runner = getattr(grid, "run", None) or getattr(grid, "main", None)
    if runner is None:
        return _skipped("app", "benchmarks/app_grid.py has no run() entry point")
    try:
        result = runner(n_thumbnails=sizes.app_thumbnails)
    except TypeError:
        result = runner()
    if isinstance(result, SectionResult):
        return result
    if isinstance(result, dict):
        rows = [[key, value] for key, value in result.items() if not isinstance(value, (dict, list))]
        return SectionResult("app", "## App\n\n" + markdown_table(["measure", "value"], rows), result)
    return SectionResult("app", f"## App\n\n{result}", {"text": str(result)})


def _skipped(name: str, reason: str) -> SectionResult:
    return SectionResult(name, f"## {name.capitalize()}\n\n_skipped: {reason}_", {"skipped": reason})


# ============================================================================================ main
def targets_table(targets: list[Target]) -> str:
    rows = [
        [t.name, t.goal, fmt(t.measured, 2), {True: "met", False: "NOT met", None: "n/a"}[t.met], t.note]
        for t in targets
    ]
    return "## Targets\n\n" + markdown_table(["target", "goal", "measured", "status", "note"], rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, a few seconds: checks the script runs")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections (default all): {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=None,
        help="backbones for extraction (default: the project's default backbone)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--no-profile", action="store_true", help="do not profile unmet extraction targets")
    parser.add_argument(
        "--extraction-images",
        type=int,
        nargs=2,
        metavar=("SMALL", "LARGE"),
        default=None,
        help="extraction's image counts (default 400 small PNGs, 40 large JPEGs): fewer on a busy machine",
    )
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    sizes = Sizes.smoke() if args.smoke else Sizes.full()
    if args.extraction_images:
        sizes.small_images, sizes.large_images = (max(2, int(v)) for v in args.extraction_images)
    out = common.results_dir(args.out)
    if args.backbones:
        backbones = list(args.backbones)
    else:
        try:
            from imgcluster_gui.core.features.backbones import DEFAULT_BACKBONE
        except ImportError:
            DEFAULT_BACKBONE = "efficientnet_lite0"
        backbones = [DEFAULT_BACKBONE]
    device = common.device_label()
    print(
        f"Device: {common.device_line(device)}"
        + ("  [SMOKE RUN: tiny inputs, the figures mean nothing]" if args.smoke else "")
    )
    results: list[SectionResult] = []
    workdir = common.tempfile_dir()
    real_features, extraction_ips = None, None
    started = time.perf_counter()
    for name in SECTIONS:
        if name not in only:
            continue
        t0 = time.perf_counter()
        if name == "extraction":
            result = bench_extraction(
                sizes, backbones, workdir, out, profile=not args.no_profile and not args.smoke, smoke=args.smoke
            )
            cpu_small = [r for r in result.data["records"] if r["device"] == "cpu" and r["pipeline_ips"]]
            if cpu_small:
                extraction_ips = cpu_small[0]["pipeline_ips"]
        elif name == "cache":
            result = bench_cache(sizes, backbones[0], workdir)
        elif name == "clustering":
            result = bench_clustering(sizes)
        elif name == "scale":
            result = bench_scale(sizes, backbones[0], real_features, extraction_ips, out)
        else:
            result = bench_app(sizes)
        result.data["section_seconds"] = time.perf_counter() - t0
        results.append(result)
        print("\n" + result.markdown + f"\n\n_(section took {time.perf_counter() - t0:.1f} s)_", flush=True)
    targets = [t for r in results for t in r.targets]
    sections = [r.markdown for r in results]
    if targets:
        sections.append(targets_table(targets))
        print("\n" + sections[-1])
    suffix = "_smoke" if args.smoke else ""
    common.write_json(
        out / f"speed{suffix}.json",
        dict(
            device=device,
            smoke=args.smoke,
            sizes=sizes.__dict__,
            sections={r.name: r.data for r in results},
            targets=[t.__dict__ for t in targets],
            total_seconds=time.perf_counter() - started,
        ),
    )
    common.save_markdown(
        out / f"speed{suffix}.md",
        "Speed benchmarks" + (" (smoke run)" if args.smoke else ""),
        sections,
        common.device_line(device),
    )
    print(
        f"\nWrote {out / f'speed{suffix}.json'} and {out / f'speed{suffix}.md'} "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
