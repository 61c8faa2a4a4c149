"""Deep clustering benchmark (issue 4): k-means on pretrained features versus each deep method.

::

    python -m benchmarks.deep [--datasets coil20 umist ...] [--with-images] [--smoke] [--device auto]

For each shared dataset: features of the two offline backbones (efficientnet_lite0, mobilenet_v2
with the shared Coral weights), then NMI / ARI / ACC and seconds of k-means, DEC, IDEC (lite0
features), CC / MVEC / DMVC (both backbones), and with ``--with-images`` DeepCluster and UCNN
fine-tuning lite0 (slow without a GPU). Ground truth is used only for the scores. Features are
cached under the temp folder (``imgcluster_bench/deep_features``) so reruns skip extraction.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from . import common
from .common import markdown_table

BACKBONES = ("efficientnet_lite0", "mobilenet_v2")


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
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start:start + 16]])
            chunks.append(model(batch.to(device)).float().cpu().numpy())
    features = np.concatenate(chunks)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    np.save(cache_file, features.astype(np.float32))
    return features


def scores(y: np.ndarray, labels: np.ndarray) -> dict:
    from imgcluster_gui.core.metrics import external_metrics

    return external_metrics(y, labels)


def run(args: argparse.Namespace) -> None:
    import torch

    from imgcluster_gui.core.clustering.deep import DEC, DMVC, IDEC, UCNN, ConcatKMeans, DeepCluster, MultiViewEnsemble
    from imgcluster_gui.core.clustering.deep.common import kmeans, resolve_device

    device = str(resolve_device(args.device))
    cache_dir = common.tempfile_dir() / "deep_features"
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"Device: {common.device_line()} (deep methods on {device})\n")
    for dataset, folder in common.shared_datasets(args.datasets).items():
        paths, names = common.labelled_images(folder, per_class=4 if args.smoke else None)
        _, y = np.unique(names, return_inverse=True)
        k = int(y.max() + 1)
        suffix = "_smoke" if args.smoke else ""
        views = [backbone_features(b, paths, cache_dir / f"{dataset}{suffix}_{b}.npy", device) for b in BACKBONES]
        lite0 = views[0]
        both = np.hstack(views)
        slices = [(0, views[0].shape[1]), (views[0].shape[1], both.shape[1])]
        small = dict(pretrain_steps=50, max_epochs=5) if args.smoke else {}
        methods = {
            "k-means (lite0)": lambda: kmeans(lite0, k, 0)[0],
            "k-means (mobilenet_v2)": lambda: kmeans(views[1], k, 0)[0],
            "DEC (lite0)": lambda: DEC(n_clusters=k, device=args.device, **small).fit(lite0).labels_,
            "IDEC (lite0)": lambda: IDEC(n_clusters=k, device=args.device, **small).fit(lite0).labels_,
            "CC (2 backbones)": lambda: ConcatKMeans(n_clusters=k).fit(both, view_slices=slices).labels_,
            "MVEC (2 backbones)": lambda: MultiViewEnsemble(n_clusters=k).fit(both, view_slices=slices).labels_,
            "DMVC (2 backbones)": lambda: DMVC(n_clusters=k, device=args.device, **small).fit(
                both, view_slices=slices).labels_,
        }
        if args.with_images:
            epochs = 1 if args.smoke else args.image_epochs
            image_kw = dict(device=args.device, input_size=args.input_size)
            methods["DeepCluster (lite0)"] = lambda: DeepCluster(n_clusters=k, epochs=epochs, **image_kw).fit(
                lite0, paths=paths, backbone="efficientnet_lite0").labels_
            methods["UCNN (lite0)"] = lambda: UCNN(n_clusters=k, epochs=epochs, **image_kw).fit(
                lite0, paths=paths, backbone="efficientnet_lite0").labels_
            methods["UCNN Baseline-I (lite0)"] = lambda: UCNN(n_clusters=k, epochs=epochs, drift_compensation=False,
                                                              **image_kw).fit(
                lite0, paths=paths, backbone="efficientnet_lite0").labels_
        rows = []
        for name, method in methods.items():
            torch.manual_seed(0)
            start = time.perf_counter()
            try:
                labels = method()
            except Exception as error:  # a missing backbone must not hide the other rows
                rows.append([name, None, None, None, f"failed: {type(error).__name__}: {error}"[:80]])
                continue
            seconds = time.perf_counter() - start
            result = scores(y, labels)
            rows.append([name, result["nmi"], result["ari"], result["acc"], seconds])
        print(f"## {dataset} ({len(paths)} images, K = {k})\n")
        print(markdown_table(["method", "NMI", "ARI", "ACC", "seconds"], rows))
        print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["coil20", "umist"])
    parser.add_argument("--with-images", action="store_true", help="also DeepCluster and UCNN (fine-tuning)")
    parser.add_argument("--image-epochs", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="4 images per class, few epochs")
    args = parser.parse_args(argv)
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
