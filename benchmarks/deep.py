"""Deep clustering benchmark (issue 4): k-means on pretrained features versus each deep method.

::

    python -m benchmarks.deep [--datasets coil20 umist ...] [--with-images] [--smoke] [--device auto] [--out DIR]

For each shared dataset: features of the two offline backbones (efficientnet_lite0, mobilenet_v2
with the shared Coral weights), then NMI / ARI / ACC and seconds of k-means, DEC, IDEC (lite0
features), CC / MVEC / DMVC (both backbones), and with ``--with-images`` DeepCluster and UCNN
fine-tuning lite0 (slow without a GPU). Every deep method runs with its defaults (what a user gets).
Ground truth is used only for the scores. Features are cached under the temp folder
(``imgcluster_bench/deep_features``) so reruns skip extraction.

Writes ``benchmarks/results/deep.md`` and ``deep.json`` (``deep_images.*`` with ``--with-images``,
``*_smoke.*`` with ``--smoke``, so a smoke or partial run never overwrites a full one); the files are
rewritten after each dataset, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import common
from .common import markdown_table

BACKBONES = ("efficientnet_lite0", "mobilenet_v2")
HEADERS = ["method", "NMI", "ARI", "ACC", "seconds"]
#: The issue's aims: (dataset, methods that may meet it, NMI to reach or None, required gain over k-means lite0).
AIMS = (
    ("coil20", ("IDEC (lite0)", "DMVC (2 backbones)"), 0.95, None),
    ("umist", ("IDEC (lite0)", "DMVC (2 backbones)"), None, 0.03),
)


def backbone_features(name: str, paths: list[Path], cache_file: Path, device: str) -> np.ndarray:
    """Pooled pretrained features ``(n, D)`` of ``paths``, L2-normalised (cached in ``cache_file``)."""
    if cache_file.is_file():
        return np.load(cache_file)
    import torch
    from PIL import Image

    model = common.feature_model(name, device=device)
    transform = common.naive_transform(name)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(paths), 16):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start : start + 16]])
            chunks.append(model(batch.to(device)).float().cpu().numpy())
    features = np.concatenate(chunks)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    np.save(cache_file, features.astype(np.float32))
    return features


def scores(y: np.ndarray, labels: np.ndarray) -> dict:
    from imgcluster_gui.core.metrics import external_metrics

    return external_metrics(y, labels)


def build_methods(args: argparse.Namespace, k: int, views: list[np.ndarray], paths: list[Path]) -> dict[str, Callable]:
    """Name -> zero-argument callable returning labels, for one dataset."""
    from imgcluster_gui.core.clustering.deep import DEC, DMVC, IDEC, UCNN, ConcatKMeans, DeepCluster, MultiViewEnsemble
    from imgcluster_gui.core.clustering.deep.common import kmeans

    lite0 = views[0]
    both = np.hstack(views)
    slices = [(0, views[0].shape[1]), (views[0].shape[1], both.shape[1])]
    small = dict(pretrain_steps=50, max_epochs=5, hidden=(64, 32)) if args.smoke else {}
    # CPU-budget overrides of the autoencoder methods' defaults (recorded in the results).
    small.update(autoencoder_overrides(args))
    deep = dict(device=args.device, **small)
    methods: dict[str, Callable] = {}
    if not args.images_only:
        methods.update(
            {
                "k-means (lite0)": lambda: kmeans(lite0, k, 0)[0],
                "k-means (mobilenet_v2)": lambda: kmeans(views[1], k, 0)[0],
                "DEC (lite0)": lambda: DEC(n_clusters=k, **deep).fit(lite0).labels_,
                "IDEC (lite0)": lambda: IDEC(n_clusters=k, **deep).fit(lite0).labels_,
                "CC (2 backbones)": lambda: ConcatKMeans(n_clusters=k).fit(both, view_slices=slices).labels_,
                "MVEC (2 backbones)": lambda: MultiViewEnsemble(n_clusters=k).fit(both, view_slices=slices).labels_,
                "DMVC (2 backbones)": lambda: DMVC(n_clusters=k, **deep).fit(both, view_slices=slices).labels_,
            }
        )
    else:
        methods["k-means (lite0)"] = lambda: kmeans(lite0, k, 0)[0]
    if args.with_images:
        epochs = 1 if args.smoke else args.image_epochs
        image_kw = dict(device=args.device, input_size=args.input_size)
        fit_kw = dict(paths=paths, backbone="efficientnet_lite0")
        methods["DeepCluster (lite0)"] = lambda: (
            DeepCluster(n_clusters=k, epochs=epochs, **image_kw).fit(lite0, **fit_kw).labels_
        )
        methods["UCNN (lite0)"] = lambda: UCNN(n_clusters=k, epochs=epochs, **image_kw).fit(lite0, **fit_kw).labels_
        methods["UCNN Baseline-I (lite0)"] = lambda: (
            UCNN(n_clusters=k, epochs=epochs, drift_compensation=False, **image_kw).fit(lite0, **fit_kw).labels_
        )
    return methods


def autoencoder_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """DEC / IDEC / DMVC parameters given on the command line (empty = the methods' defaults)."""
    overrides: dict[str, Any] = {}
    if args.hidden:
        overrides["hidden"] = tuple(args.hidden)
    if args.pretrain_steps is not None:
        overrides["pretrain_steps"] = args.pretrain_steps
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    return overrides


def aims_section(results: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The issue's aims against what this run measured (only for the datasets it ran)."""
    rows, records = [], []
    for dataset, candidates, target_nmi, target_gain in AIMS:
        if dataset not in results:
            continue
        measured = results[dataset]["methods"]
        baseline = (measured.get("k-means (lite0)") or {}).get("nmi")
        for name in candidates:
            nmi = (measured.get(name) or {}).get("nmi")
            if nmi is None:
                continue
            if target_nmi is not None:
                aim, met = f"NMI >= {target_nmi:.2f}", nmi >= target_nmi
            else:
                aim = f"NMI >= k-means + {target_gain:.2f}"
                met = baseline is not None and nmi >= baseline + target_gain
            gain = None if baseline is None else nmi - baseline
            rows.append([dataset, name, aim, nmi, baseline, gain, "met" if met else "missed"])
            records.append(dict(dataset=dataset, method=name, aim=aim, nmi=nmi, kmeans_nmi=baseline, met=bool(met)))
    text = "## The issue's aims\n\n" + (
        markdown_table(["dataset", "method", "aim", "NMI", "k-means (lite0) NMI", "gain", "result"], rows)
        if rows
        else "(no aim applies to the datasets of this run)"
    )
    return text, records


def write_results(
    out: Path,
    stem: str,
    args: argparse.Namespace,
    device: dict[str, Any],
    device_used: str,
    results: dict[str, Any],
    sections: list[str],
    started: float,
) -> tuple[Path, Path]:
    aims_text, aims = aims_section(results)
    title = "Deep clustering benchmarks" + (" (smoke run: the figures mean nothing)" if args.smoke else "")
    overrides = autoencoder_overrides(args)
    setting = (
        "with their default parameters"
        if not overrides
        else "with their defaults EXCEPT (CPU budget) DEC/IDEC/DMVC "
        + ", ".join(f"{key}={value}" for key, value in overrides.items())
    )
    intro = (
        f"Deep methods on `{device_used}`, {setting}; k-means = scikit-learn k-means++ "
        "(10 restarts, seed 0) on the L2-normalised pooled features. Command: "
        f"`python -m benchmarks.deep {' '.join(args.argv)}`."
    )
    md = common.save_markdown(out / f"{stem}.md", title, [intro, *sections, aims_text], common.device_line(device))
    js = common.write_json(
        out / f"{stem}.json",
        dict(
            device=device,
            deep_device=device_used,
            smoke=args.smoke,
            with_images=args.with_images,
            image_epochs=args.image_epochs if args.with_images else None,
            input_size=args.input_size,
            argv=args.argv,
            autoencoder_overrides=autoencoder_overrides(args),
            datasets=results,
            aims=aims,
            total_seconds=time.perf_counter() - started,
            measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        ),
    )
    return md, js


def run(args: argparse.Namespace) -> None:
    import torch

    from imgcluster_gui.core.choices import resolve_device

    device_used = str(resolve_device(args.device))
    cache_dir = common.tempfile_dir() / "deep_features"
    cache_dir.mkdir(parents=True, exist_ok=True)
    device = common.device_label()
    out = common.results_dir(args.out)
    stem = args.name or ("deep" + ("_images" if args.with_images else "") + ("_smoke" if args.smoke else ""))
    started = time.perf_counter()
    print(f"Device: {common.device_line(device)} (deep methods on {device_used})\n", flush=True)
    results: dict[str, Any] = {}
    sections: list[str] = []
    for dataset, folder in common.shared_datasets(args.datasets).items():
        paths, names = common.labelled_images(folder, per_class=4 if args.smoke else None)
        _, y = np.unique(names, return_inverse=True)
        k = int(y.max() + 1)
        suffix = "_smoke" if args.smoke else ""
        t0 = time.perf_counter()
        views = [backbone_features(b, paths, cache_dir / f"{dataset}{suffix}_{b}.npy", device_used) for b in BACKBONES]
        record: dict[str, Any] = dict(
            n_images=len(paths),
            k=k,
            feature_seconds=time.perf_counter() - t0,
            feature_dims={b: int(v.shape[1]) for b, v in zip(BACKBONES, views)},
            methods={},
        )
        rows = []
        for name, method in build_methods(args, k, views, paths).items():
            torch.manual_seed(0)
            start = time.perf_counter()
            try:
                labels = method()
            except Exception as error:  # a missing backbone must not hide the other rows
                message = f"failed: {type(error).__name__}: {error}"
                rows.append([name, None, None, None, message[:80]])
                record["methods"][name] = dict(error=message)
                print(f"  {dataset} | {name}: {message}", flush=True)
                continue
            seconds = time.perf_counter() - start
            result = scores(y, labels)
            rows.append([name, result["nmi"], result["ari"], result["acc"], seconds])
            record["methods"][name] = dict(nmi=result["nmi"], ari=result["ari"], acc=result["acc"], seconds=seconds)
            print(
                f"  {dataset} | {name}: NMI {result['nmi']:.3f} ARI {result['ari']:.3f} ACC {result['acc']:.3f}"
                f" ({seconds:.1f} s)",
                flush=True,
            )
        results[dataset] = record
        sections.append(f"## {dataset} ({len(paths)} images, K = {k})\n\n" + markdown_table(HEADERS, rows))
        print("\n" + sections[-1] + "\n", flush=True)
        md, js = write_results(out, stem, args, device, device_used, results, sections, started)
    print(aims_section(results)[0])
    print(f"\nWrote {md} and {js} ({time.perf_counter() - started:.0f} s in all)")


def main(argv: Optional[list[str]] = None) -> int:
    from imgcluster_gui.core.choices import AUTO, DEVICE_CHOICES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["coil20", "umist"])
    parser.add_argument("--with-images", action="store_true", help="also DeepCluster and UCNN (fine-tuning)")
    parser.add_argument(
        "--images-only",
        action="store_true",
        help="with --with-images: skip the feature-level methods (k-means lite0 is kept as the baseline)",
    )
    parser.add_argument("--image-epochs", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--device", default=AUTO, choices=DEVICE_CHOICES)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="4 images per class, few epochs")
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help="DEC/IDEC/DMVC encoder widths instead of the default (to fit a CPU budget)",
    )
    parser.add_argument("--pretrain-steps", type=int, default=None, help="DEC/IDEC/DMVC pre-training batches")
    parser.add_argument("--max-epochs", type=int, default=None, help="DEC/IDEC/DMVC clustering epochs at most")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--name", default=None, help="file stem of the results (default deep, deep_images, *_smoke)")
    args = parser.parse_args(argv)
    import sys

    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.images_only and not args.with_images:
        parser.error("--images-only needs --with-images")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not common.shared_datasets(args.datasets):
        print("No shared dataset found under ../shared/datasets: nothing to benchmark.")
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
