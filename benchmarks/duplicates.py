"""Near-duplicate detection: precision and recall on known copies of real photos, per threshold.

::

    python -m benchmarks.duplicates [--smoke] [--originals 100] [--unrelated 400] [--out DIR]

From ``../shared/datasets/imagenette-1k`` (ten ImageNet classes): ``--originals`` photos (spread
over the classes) each get six known copies written to a temporary folder: centre crops to 90 % and
80 % (resized back), JPEG re-encodings at quality 60 and 30, a 50 % resize, and a rotation of 3 to 5
degrees (either way, cropped to the rotated image's inside).  ``--unrelated`` other photos of the same
classes are mixed in: same-class photos are the hard negatives.  Each original and its copies are one
true group.

For each threshold, with features only and with the perceptual hash (``both`` = features and hash
must agree, ``either`` = a graph neighbour whose hash agrees counts too), the predicted groups
(:meth:`~imgcluster_gui.core.duplicates.DuplicatePairs.groups`) are scored as pairs: precision =
predicted same-group pairs that are truly copies of one photo, recall = true pairs predicted in one
group; plus the recall of each kind of copy (the copy in its original's group).  The last table
checks that grouping inside the Leiden clusters (what the grid does) costs little recall at the
default threshold.  Writes ``duplicates.json`` and ``duplicates.md`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import common
from .common import markdown_table

DATASET = "imagenette-1k"
THRESHOLDS = (0.70, 0.75, 0.80, 0.83, 0.85, 0.88, 0.90, 0.92, 0.95)
VARIANTS = ("crop90", "crop80", "jpeg60", "jpeg30", "resize50", "rotate")
HASH_MODES = ("none", "both", "either")
SIDE = 320  # originals are written at this longer side first (imagenette's own size), so copies compare fairly


def _make_variant(image: Any, kind: str, rng: random.Random) -> tuple[Any, dict[str, Any]]:
    from PIL import Image

    w, h = image.size
    if kind.startswith("crop"):
        keep = int(kind[4:]) / 100
        cw, ch = round(w * keep), round(h * keep)
        left, top = (w - cw) // 2, (h - ch) // 2
        return image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BICUBIC), {}
    if kind.startswith("jpeg"):
        return image, {"format": "JPEG", "quality": int(kind[4:])}
    if kind == "resize50":
        return image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS), {}
    angle = rng.uniform(3.0, 5.0) * rng.choice((-1, 1))
    rotated = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False)
    # Cut the corners the rotation filled with black: a camera tilt, not a frame with black wedges.
    margin = int(np.ceil(max(w, h) * np.sin(np.radians(abs(angle)))))
    return rotated.crop((margin, margin, w - margin, h - margin)), {}


def build_set(folder: Path, n_originals: int, n_unrelated: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Write the originals, their copies and the unrelated photos; returns (paths, true group per path, -1 = none)."""
    from PIL import Image

    from imgcluster_gui.core.dataset import load_image

    source = common.DATASETS_DIR / DATASET
    classes = sorted(p for p in source.iterdir() if p.is_dir())
    per_class = [sorted(c.glob("*.*")) for c in classes]
    rng = random.Random(seed)
    for files in per_class:
        rng.shuffle(files)
    # Round-robin over the classes: originals first, then the unrelated photos (never the same file twice).
    pool = [f for row in zip(*per_class) for f in row]
    if len(pool) < n_originals + n_unrelated:
        raise SystemExit(f"{DATASET} has {len(pool)} photos; asked for {n_originals + n_unrelated}")
    paths: list[str] = []
    truth: list[int] = []
    for number, src in enumerate(pool[: n_originals + n_unrelated]):
        image = load_image(src)
        image.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        original = folder / f"{number:04d}_original.jpg"
        image.save(original, quality=95)
        paths.append(str(original))
        is_original = number < n_originals
        truth.append(number if is_original else -1)
        if not is_original:
            continue
        for kind in VARIANTS:
            copy, options = _make_variant(image, kind, rng)
            target = folder / f"{number:04d}_{kind}.jpg"
            copy.save(target, quality=int(options.get("quality", 95)))
            paths.append(str(target))
            truth.append(number)
    return paths, np.asarray(truth, dtype=np.int64)


def _pairs_in_groups(groups: list[np.ndarray]) -> set[tuple[int, int]]:
    found = set()
    for group in groups:
        members = group.tolist()
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                found.add((members[a], members[b]))
    return found


def score(groups: list[np.ndarray], truth: np.ndarray, kinds: list[str]) -> dict[str, Any]:
    """Pair precision / recall of predicted groups against the true groups, and recall per kind of copy."""
    true_groups = [np.flatnonzero(truth == g) for g in np.unique(truth[truth >= 0])]
    true_pairs = _pairs_in_groups(true_groups)
    predicted = _pairs_in_groups(groups)
    hits = len(true_pairs & predicted)
    group_of = np.full(truth.size, -1, dtype=np.int64)
    for number, group in enumerate(groups):
        group_of[group] = number
    original_of = {int(truth[i]): i for i, k in enumerate(kinds) if k == "original"}
    per_kind = {}
    for kind in VARIANTS:
        copies = [i for i, k in enumerate(kinds) if k == kind]
        together = [group_of[i] >= 0 and group_of[i] == group_of[original_of[int(truth[i])]] for i in copies]
        per_kind[kind] = float(np.mean(together)) if together else None
    precision = hits / len(predicted) if predicted else None
    recall = hits / len(true_pairs) if true_pairs else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    unrelated = truth < 0
    false_groups = sum(1 for g in groups if np.unique(truth[g]).size > 1 or (truth[g] < 0).any())
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "groups": len(groups),
        "groups_with_a_stranger": false_groups,
        "unrelated_flagged": int(np.isin(np.flatnonzero(unrelated), np.concatenate(groups) if groups else []).sum()),
        "recall_by_copy": per_kind,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from imgcluster_gui.core import duplicates
    from imgcluster_gui.core.features.backbones import DEFAULT_BACKBONES
    from imgcluster_gui.core.features.extract import extract_multiview

    results: dict[str, Any] = {"machine": common.device_label(), "thresholds": list(THRESHOLDS)}
    with tempfile.TemporaryDirectory(prefix="imgcluster-dups-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        paths, truth = build_set(folder, args.originals, args.unrelated)
        kinds = [Path(p).stem.split("_", 1)[1] for p in paths]
        results["images"] = len(paths)
        results["build_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        # The app's default features (what a session's stacks compare), cached by content.
        feats = extract_multiview(paths, list(DEFAULT_BACKBONES))
        results["features"] = " + ".join(DEFAULT_BACKBONES)
        results["feature_seconds"] = time.perf_counter() - started
        assert len(feats.paths) == len(paths), "every benchmark image must decode"
        X = feats.features
        started = time.perf_counter()
        hashes = duplicates.perceptual_hashes(paths)
        results["hash_seconds"] = time.perf_counter() - started
        rows = []
        for mode in HASH_MODES:
            for threshold in THRESHOLDS:
                started = time.perf_counter()
                pairs = duplicates.duplicate_pairs(
                    X,
                    threshold,
                    hashes=None if mode == "none" else hashes,
                    hash_rule="both" if mode == "none" else mode,
                    cache=False,
                )
                groups = pairs.groups()
                seconds = time.perf_counter() - started
                rows.append({"hash": mode, "threshold": threshold, "seconds": seconds} | score(groups, truth, kinds))
        results["rows"] = rows
        # Inside the clusters, as the grid groups them: the default Leiden clustering of the same features.
        from imgcluster_gui.core.clustering.registry import make_estimator
        from imgcluster_gui.core.preprocess import preprocess_features

        labels = make_estimator("leiden").fit(preprocess_features(X)).labels_
        pairs = duplicates.duplicate_pairs(X, duplicates.DEFAULT_THRESHOLD, cache=False)
        results["in_clusters"] = {
            "threshold": duplicates.DEFAULT_THRESHOLD,
            "clusters": int(np.unique(labels[labels >= 0]).size),
            "all": score(pairs.groups(), truth, kinds),
            "within_clusters": score(pairs.groups(labels), truth, kinds),
        }
    return results


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def default_line(results: dict[str, Any]) -> str:
    """The default the rows support (precision first: a stack must not hide a different photo), measured."""
    from imgcluster_gui.core.duplicates import DEFAULT_THRESHOLD

    plain = [row for row in results["rows"] if row["hash"] == "none"]
    precise = [row for row in plain if row["precision"] is not None and row["precision"] >= 0.999]
    chosen = min(precise, key=lambda row: row["threshold"]) if precise else None
    best_f1 = max(plain, key=lambda row: row["f1"] or 0.0)
    verdict = (
        "the app's default"
        if chosen is not None and abs(chosen["threshold"] - DEFAULT_THRESHOLD) < 1e-9
        else f"the app's default is {DEFAULT_THRESHOLD:.2f}: update `core/duplicates.py`"
    )
    found = (
        f"{chosen['threshold']:.2f} is the lowest threshold whose precision reaches 0.999 with the features alone "
        f"(recall {_fmt(chosen['recall'])}): {verdict}"
        if chosen is not None
        else "no threshold reaches precision 0.999 with the features alone"
    )
    return (
        f"Default: {found}. A stack must not hide a different photo, so precision comes first; "
        f"{best_f1['threshold']:.2f} has the best F1 ({_fmt(best_f1['f1'])}) but puts strangers in "
        f"{best_f1['groups_with_a_stranger']} groups. The hash as `either` (`imgcluster duplicates --hash`) finds the "
        "50 % resizes the features miss."
    )


def to_markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Near-duplicates: precision and recall on known copies (benchmarks/duplicates.py)",
        "",
        f"{results['images']} images from {DATASET}: {results['originals']} originals with 6 copies each "
        f"(crop 90 %, crop 80 %, JPEG q60, JPEG q30, 50 % resize, 3-5 degree rotation) and "
        f"{results['unrelated']} unrelated photos of the same ten classes; features: "
        f"{results.get('features', 'efficientnet_lite0')} (penultimate), {results['feature_seconds']:.0f} s; "
        f"pHash of every image {results['hash_seconds']:.1f} s.",
        "Pairs: precision = predicted same-group pairs that are copies of one photo; recall = true pairs found.",
        "",
    ]
    header = ["hash", "threshold", "precision", "recall", "F1", "groups", "groups with a stranger", *VARIANTS]
    table = []
    for row in results["rows"]:
        table.append(
            [
                row["hash"],
                f"{row['threshold']:.2f}",
                _fmt(row["precision"]),
                _fmt(row["recall"]),
                _fmt(row["f1"]),
                str(row["groups"]),
                str(row["groups_with_a_stranger"]),
                *[_fmt(row["recall_by_copy"][k]) for k in VARIANTS],
            ]
        )
    lines.append(markdown_table(header, table))
    inside = results["in_clusters"]
    lines += [
        "",
        f"Inside the {inside['clusters']} Leiden clusters (what the grid stacks) at threshold "
        f"{inside['threshold']:.2f}: precision {_fmt(inside['within_clusters']['precision'])}, recall "
        f"{_fmt(inside['within_clusters']['recall'])} (all images as one group: precision "
        f"{_fmt(inside['all']['precision'])}, recall {_fmt(inside['all']['recall'])}).",
        "",
        default_line(results),
        "",
        f"Machine: {results['machine'].get('cpu')} ({results['machine'].get('cpu_cores')} cores), "
        f"GPU {results['machine'].get('gpu') or 'none'}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="10 originals and 20 unrelated photos")
    parser.add_argument("--originals", type=int, default=100)
    parser.add_argument("--unrelated", type=int, default=400)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.smoke:
        args.originals, args.unrelated = 10, 20
    if not (common.DATASETS_DIR / DATASET).is_dir():
        print(f"../shared/datasets/{DATASET} is not present", file=sys.stderr)
        return 1
    results = run(args)
    results["originals"], results["unrelated"] = args.originals, args.unrelated
    text = to_markdown(results)
    print(text)
    if not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        common.write_json(args.out / "duplicates.json", results)
        (args.out / "duplicates.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
