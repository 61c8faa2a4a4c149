"""How often a cluster's suggested ImageNet name is right, and how often it is "mixed".

::

    python -m benchmarks.naming [--smoke] [--per-class N] [--draws N] [--out DIR]

On the shared sets whose classes are (or map to) ImageNet-1k classes:

* **imagenette-1k**: its ten folders ARE ImageNet classes (tench = 0, English springer = 217, cassette
  player = 482, chain saw = 491, church = 497, French horn = 566, garbage truck = 569, gas pump = 571,
  golf ball = 574, parachute = 701);
* **fashion-mnist-2k**: its ten classes mapped by hand to the ImageNet words that name them
  (:data:`FASHION_TO_IMAGENET`; ImageNet has no "trouser" or "shirt" class, so the nearest ones:
  jean, jersey = T-shirt).

A name is **right** when it contains one of the class's ImageNet classes (a single or a pair name) or
is a broader word whose block (:data:`imgcluster_gui.core.naming.CLASS_GROUPS`) holds one ("dog" for
English springer, "fish" for tench); **mixed** when no class dominated; **wrong** otherwise.

Three clusterings per set: the true classes as clusters; the default pipeline's clusters (each judged
against its majority class); and, to measure the thresholds (not guess them), many random clusters
drawn from the true classes, ``--draws`` per class of 30 images each ("pure", a name is expected) and
as many of 3 classes mixed in equal parts ("mixed", a single-class or pair name is wrong there). The
grid of :class:`~imgcluster_gui.core.naming.NamingThresholds` is scored on those draws of both sets
(pure right - pure wrong - mixed wrongly named), and the best is printed beside today's defaults.

The logits from the features are checked against the full network's on a few real images (max abs
difference). Writes ``naming.json`` and ``naming.md`` to ``benchmarks/results/`` (``--smoke``:
``naming_smoke.*``, a few images per class, no pipeline run).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import common
from .common import markdown_table

#: imagenette's folder names -> their ImageNet-1k class index.
IMAGENETTE_TO_IMAGENET: dict[str, tuple[int, ...]] = {
    "tench": (0,),
    "english_springer": (217,),
    "cassette_player": (482,),
    "chain_saw": (491,),
    "church": (497,),
    "french_horn": (566,),
    "garbage_truck": (569,),
    "gas_pump": (571,),
    "golf_ball": (574,),
    "parachute": (701,),
}
#: Fashion-MNIST's classes -> the ImageNet-1k classes a person would accept as their name (by hand).
FASHION_TO_IMAGENET: dict[str, tuple[int, ...]] = {
    "tshirt_top": (610,),  # jersey (ImageNet's "jersey, T-shirt, tee shirt")
    "trouser": (608,),  # jean (no trouser class)
    "pullover": (841, 474),  # sweatshirt, cardigan
    "dress": (578, 689, 601),  # gown, overskirt, hoopskirt
    "coat": (869, 568, 617),  # trench coat, fur coat, lab coat
    "sandal": (774,),  # sandal
    "shirt": (610,),  # jersey (no shirt class)
    "sneaker": (770,),  # running shoe
    "bag": (748, 636, 414, 728),  # purse, mailbag, backpack, plastic bag
    "ankle_boot": (514,),  # cowboy boot (the one boot class)
}
CLASS_MAPS = {"imagenette-1k": IMAGENETTE_TO_IMAGENET, "fashion-mnist-2k": FASHION_TO_IMAGENET}
DRAW_SIZE = 30
MIX_CLASSES = 3
GRID = {
    "single": (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6),
    "pair": (0.3, 0.4, 0.5, 0.6),
    "pair_balance": (0.25, 0.35, 0.5),
    "group": (0.3, 0.4, 0.5, 0.6),
}


def verdict(name: Any, accepted: tuple[int, ...]) -> str:
    """``'right'``, ``'wrong'`` or ``'mixed'`` for a :class:`SuggestedName` and the class's accepted indices."""
    from imgcluster_gui.core.naming import CLASS_GROUPS

    if name.is_mixed:
        return "mixed"
    if name.kind == "group":
        group = next(g for g in CLASS_GROUPS if g.word == name.text)
        return "right" if set(group.indices().tolist()) & set(accepted) else "wrong"
    index = _category_index()
    named = [index[part] for part in name.text.split(" / ")]
    return "right" if set(named) & set(accepted) else "wrong"


@functools.lru_cache(maxsize=1)
def _category_index() -> dict[str, int]:
    from imgcluster_gui.core.naming import imagenet_categories

    return {c: i for i, c in reversed(list(enumerate(imagenet_categories())))}


def logits_check(paths: list[Path], backbone: str = "efficientnet_lite0", engine: str = "auto") -> float:
    """Max abs difference between the head on the project's extracted features and the full network's logits."""
    from imgcluster_gui.core.features.extract import extract_features
    from imgcluster_gui.core.naming import full_network_logits, load_imagenet_head

    result = extract_features(paths, backbone=backbone, device="cpu", cache=False, engine=engine)
    head = load_imagenet_head(backbone)
    assert head is not None
    return float(np.abs(head.logits(result.features) - full_network_logits(result.paths, backbone)).max())


def judge(
    top: tuple[np.ndarray, np.ndarray], labels: np.ndarray, classes: list[str], class_map: dict, thresholds: Any
) -> list[dict[str, Any]]:
    """One row per cluster: its size, majority class, the name and its verdict."""
    from imgcluster_gui.core.naming import suggest_cluster_names

    names = suggest_cluster_names(top[1], labels, classes=top[0], thresholds=thresholds)
    truth = np.asarray(classes)
    rows = []
    for cluster, name in names.items():
        members = truth[labels == cluster]
        values, counts = np.unique(members, return_counts=True)
        majority = str(values[np.argmax(counts)])
        rows.append(
            {
                "cluster": cluster,
                "size": int(members.size),
                "majority": majority,
                "purity": float(counts.max() / members.size),
                "name": name.to_dict(),
                "verdict": verdict(name, class_map[majority]),
            }
        )
    return rows


def rates(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Share of clusters (and of images) whose name is right / mixed / wrong."""
    out: dict[str, float] = {"clusters": float(len(rows))}
    sizes = np.array([r["size"] for r in rows], dtype=float)
    for kind in ("right", "mixed", "wrong"):
        hit = np.array([r["verdict"] == kind for r in rows])
        out[kind] = float(hit.mean()) if rows else 0.0
        out[f"{kind}_images"] = float(sizes[hit].sum() / sizes.sum()) if rows else 0.0
    return out


def draws(labels: np.ndarray, n_draws: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random pure clusters (one class) and mixed ones (:data:`MIX_CLASSES` classes in equal parts)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pure, mixed = [], []
    for cls in classes:
        members = np.flatnonzero(labels == cls)
        for _ in range(n_draws):
            pure.append(rng.choice(members, min(DRAW_SIZE, members.size), replace=False))
    per = DRAW_SIZE // MIX_CLASSES
    for _ in range(n_draws * len(classes)):
        chosen = rng.choice(classes, MIX_CLASSES, replace=False)
        parts = [rng.choice(np.flatnonzero(labels == c), per, replace=False) for c in chosen]
        mixed.append(np.concatenate(parts))
    return pure, mixed


def mean_of(top: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The mean (1000,) probabilities of the images ``rows`` from their top classes (the rest count as 0)."""
    mean = np.zeros(1000)
    np.add.at(mean, top[0][rows].ravel().astype(np.int64), top[1][rows].ravel().astype(np.float64))
    return mean / rows.size


def score_draws(
    means: tuple[list, list], truth: np.ndarray, pure: list, mixed: list, class_map: dict, thresholds: Any
) -> dict[str, float]:
    """Right / wrong / mixed shares on the pure draws, and the share of mixed draws named wrongly."""
    from imgcluster_gui.core.naming import CLASS_GROUPS, name_from_mean

    pure_verdicts = [
        verdict(name_from_mean(m, thresholds), class_map[str(truth[r[0]])]) for m, r in zip(means[0], pure)
    ]
    mixed_wrong = 0
    for mean, rows in zip(means[1], mixed):
        name = name_from_mean(mean, thresholds)
        if name.is_mixed:
            continue
        if name.kind == "group":  # a broader word is right for a mix only if it covers every class
            group = set(next(g for g in CLASS_GROUPS if g.word == name.text).indices().tolist())
            if all(group & set(class_map[str(c)]) for c in np.unique(truth[rows])):
                continue
        mixed_wrong += 1
    n = max(len(pure_verdicts), 1)
    return {
        "pure_right": sum(v == "right" for v in pure_verdicts) / n,
        "pure_mixed": sum(v == "mixed" for v in pure_verdicts) / n,
        "pure_wrong": sum(v == "wrong" for v in pure_verdicts) / n,
        "mixed_named_wrongly": mixed_wrong / max(len(mixed), 1),
    }


def run_backbone() -> str:
    """The backbone whose head names the default pipeline's clusters (the first of its backbones with one)."""
    from imgcluster_gui.core.naming import head_for
    from imgcluster_gui.core.pipeline import PipelineConfig

    config = PipelineConfig(folder=".")
    return next(name for name in config.backbones if head_for(name, config.layer) is not None)


def collect(datasets: dict[str, Path], per_class: Optional[int], smoke: bool) -> dict[str, np.ndarray]:
    """Per set: the top classes of every image, its true class, and the default pipeline's clusters (``naming.npz``).

    The full run takes the top classes the pipeline itself keeps for the session; ``--smoke`` extracts a few
    images per class with the same backbone and runs no pipeline.
    """
    from imgcluster_gui.core.features.extract import extract_features
    from imgcluster_gui.core.naming import load_imagenet_head
    from imgcluster_gui.core.pipeline import PipelineConfig, run_pipeline

    data: dict[str, np.ndarray] = {}
    for name, folder in datasets.items():
        if smoke:
            paths, classes = common.labelled_images(folder, per_class=per_class)
            feats = extract_features(paths, backbone=run_backbone(), device="cpu", cache=True)
            kept = {str(p): c for p, c in zip(paths, classes)}
            data[f"{name}/truth"] = np.asarray([kept[str(p)] for p in feats.paths])
            head = load_imagenet_head(run_backbone())
            assert head is not None
            data[f"{name}/classes"], data[f"{name}/probs"] = head.top_k(feats.features)
            continue
        t0 = time.perf_counter()
        result = run_pipeline(PipelineConfig(folder=str(folder), embedding="none"))
        seconds = time.perf_counter() - t0
        assert result.imagenet_top is not None and result.ground_truth is not None
        data[f"{name}/truth"] = np.asarray([str(g) for g in result.ground_truth])
        data[f"{name}/classes"], data[f"{name}/probs"] = result.imagenet_top
        data[f"{name}/run_labels"] = np.asarray(result.labels)
        data[f"{name}/seconds"] = np.asarray(seconds)
        n_clusters = len(set(result.labels.tolist()) - {-1})
        print(f"{name}: default pipeline {seconds:.1f} s, {n_clusters} clusters", flush=True)
    return data


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few images per class, no pipeline run")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: all)")
    parser.add_argument("--draws", type=int, default=30, help="random clusters per class for the threshold grid")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--rescore", action="store_true", help="re-score the stored top classes and clusters (naming.npz), no run"
    )
    args = parser.parse_args(argv)
    per_class = 12 if args.smoke and args.per_class is None else args.per_class
    n_draws = 3 if args.smoke else args.draws

    from imgcluster_gui.core.naming import NamingThresholds, load_imagenet_head

    backbone = run_backbone()
    if load_imagenet_head(backbone) is None:
        print(f"{backbone}'s weights package is missing: nothing to measure")
        return 1
    datasets = common.shared_datasets(list(CLASS_MAPS))
    defaults = NamingThresholds()
    payload: dict[str, Any] = {
        "device": common.device_label(),
        "defaults": defaults.__dict__,
        "head": backbone,
        "sets": {},
    }
    sections = []
    out = common.results_dir(args.out)
    stem = "naming_smoke" if args.smoke else "naming"
    data_file = out / f"{stem}.npz"
    if args.rescore and data_file.is_file():
        with np.load(data_file, allow_pickle=False) as stored:
            data = {key: stored[key] for key in stored.files}
    else:
        data = collect(datasets, per_class, args.smoke)
        np.savez_compressed(data_file, **data)
    tops: dict[str, tuple[tuple[np.ndarray, np.ndarray], np.ndarray]] = {}
    rows_table = []
    for name in datasets:
        if f"{name}/truth" not in data:
            continue
        class_map = CLASS_MAPS[name]
        truth = data[f"{name}/truth"].astype(str)
        top = (data[f"{name}/classes"], data[f"{name}/probs"])
        tops[name] = (top, truth)
        _, true_ids = np.unique(truth, return_inverse=True)
        true_rows = judge(top, true_ids, list(truth), class_map, defaults)
        entry: dict[str, Any] = {"true_classes": {"rates": rates(true_rows), "clusters": true_rows}}
        rows_table.append([name, "true classes", *_rate_cells(rates(true_rows))])
        if f"{name}/run_labels" in data:
            labels = data[f"{name}/run_labels"]
            run_rows = judge(top, labels, list(truth), class_map, defaults)
            entry["pipeline"] = {
                "rates": rates(run_rows),
                "clusters": run_rows,
                "seconds": float(data[f"{name}/seconds"]),
            }
            rows_table.append([name, "default pipeline", *_rate_cells(rates(run_rows))])
        payload["sets"][name] = entry
        print(f"{name}: {len(truth)} images, true classes {rates(true_rows)}", flush=True)

    headers = ["set", "clusters", "n", "right", "mixed", "wrong", "right (images)", "mixed (images)"]
    sections.append(
        f"## Suggested names with today's thresholds ({backbone}'s ImageNet head, the default pipeline's)\n\n"
        + markdown_table(headers, rows_table)
    )
    sections.append(
        "Thresholds: " + ", ".join(f"{k} = {v}" for k, v in defaults.__dict__.items()) + ". Right = the name "
        "contains the class's ImageNet class (or a broader word whose block holds it); pipeline clusters are "
        "judged against their majority class."
    )
    detail = []
    for name, entry in payload["sets"].items():
        for kind in ("true_classes", "pipeline"):
            for row in entry.get(kind, {}).get("clusters", []):
                top3 = ", ".join(f"{c} {p * 100:.0f} %" for c, p in row["name"]["top_classes"])
                detail.append(
                    [name, kind, row["majority"], row["size"], row["purity"], row["name"]["text"], top3, row["verdict"]]
                )
    sections.append(
        "## Every cluster\n\n"
        + markdown_table(
            ["set", "clusters", "majority class", "size", "purity", "name", "top classes", "verdict"], detail
        )
    )

    # The threshold grid on random pure and 3-class clusters of both sets.
    grid_rows = []
    samples = {name: draws(truth, n_draws) for name, (_top, truth) in tops.items()}
    means = {
        name: ([mean_of(top, r) for r in samples[name][0]], [mean_of(top, r) for r in samples[name][1]])
        for name, (top, _truth) in tops.items()
    }
    for values in itertools.product(*GRID.values()):
        thresholds = NamingThresholds(**dict(zip(GRID, values)))
        scores = {
            name: score_draws(means[name], truth, *samples[name], CLASS_MAPS[name], thresholds)
            for name, (_top, truth) in tops.items()
        }
        total = sum(s["pure_right"] - s["pure_wrong"] - s["mixed_named_wrongly"] for s in scores.values())
        grid_rows.append((total, values, scores))
    grid_rows.sort(key=lambda row: -row[0])
    default_values = tuple(getattr(defaults, key) for key in GRID)
    default_row = next(row for row in grid_rows if row[1] == default_values)
    grid_table = []
    for total, values, scores in [*grid_rows[:8], default_row]:
        cells = [*values, total]
        for name in tops:
            s = scores[name]
            cells += [s["pure_right"], s["pure_wrong"], s["mixed_named_wrongly"]]
        grid_table.append(cells)
    grid_headers = [*GRID, "score"]
    for name in tops:
        grid_headers += [f"{name} pure right", f"{name} pure wrong", f"{name} mixes named wrongly"]
    sections.append(
        f"## Threshold grid ({n_draws} random clusters of {DRAW_SIZE} per class, as many {MIX_CLASSES}-class mixes)"
        "\n\nScore = sum over sets of pure right - pure wrong - mixes named wrongly. The 8 best, then today's "
        "defaults (last row).\n\n" + markdown_table(grid_headers, grid_table)
    )
    payload["grid"] = [{"values": dict(zip(GRID, v)), "score": t, "sets": s} for t, v, s in grid_rows]

    some = list(tops)[:1]
    if some:
        paths, _ = common.labelled_images(datasets[some[0]], per_class=1)
        diff = logits_check(paths[:8], backbone)
        payload["logits_max_abs_diff"] = diff
        sections.append(
            f"## Head on the features = the network's logits\n\nMax abs difference on {len(paths[:8])} "
            f"{some[0]} images: {diff:.2e} (float32, CPU)."
        )
    common.write_json(out / f"{stem}.json", payload)
    common.save_markdown(out / f"{stem}.md", "Cluster names from ImageNet classes", sections, common.device_line())
    print("\n\n".join(sections[:1] + sections[3:]))
    return 0


def _rate_cells(r: dict[str, float]) -> list[Any]:
    return [int(r["clusters"]), r["right"], r["mixed"], r["wrong"], r["right_images"], r["mixed_images"]]


if __name__ == "__main__":
    raise SystemExit(main())
