"""Curation curve: how much a few hand corrections improve the clustering (issue 14).

On each shared dataset (the app's default features, ``DEFAULT_BACKBONES`` side by side, through the
project's extraction and the benchmarks' feature cache, as ``benchmarks/quality.py``), the automatic
result is the app's default (Leiden on the L2-normalised features).
A simulated person then corrects the worst-placed ``m`` images
of every cluster (``m`` = 1, 2, 5, 10): among the members whose class (the folder name, the oracle)
differs from the cluster's majority class, the ones farthest from the cluster centre, each moved to the
cluster whose majority is its true class (a new cluster, made by hand, when no cluster has that
majority). The corrections are real session edits (``ClusterSession.move`` / ``new_cluster``), so the
constraints are derived exactly as in the app. Then:

* **re-cluster** with each method of :func:`imgcluster_gui.core.constraints.recluster` (and the default
  propagation without its follow step, to show what the follow adds);
* **fine-tune**: a projection head trained on the corrected clusters (:mod:`imgcluster_gui.core.finetune`),
  then the default re-cluster in the projected space;

and NMI is reported against the share of images corrected. Every run asserts that no corrected image
was moved back. Two references say how far any re-cluster could go, measured on the same features:

* **perfect follow**: every image of a moved image's class in the cluster it left goes with it (what the
  follow step would do with a perfect look-alike test; it reads the oracle), then the default propagation;
* **supervised ceiling**: logistic regression trained on the true labels of 80 % of the images, NMI of
  its predictions on the other 20 % (5-fold cross-validated): what these features allow with every label.

A second table compares the grid's two review orders: the same person reading each cluster in
*Likely misplaced first* (:mod:`imgcluster_gui.core.review`) instead of *Outliers first*, and how
many images they look at to find the misplaced ones.
 Target (issue 14): on UMist and Fashion-MNIST-2k, correcting 2 % of the images raises
NMI by at least 0.10 over the automatic result (read at the smallest ``m`` whose corrections reach 2 %).

    python -m benchmarks.curation [--datasets umist orl] [--quick]

Writes ``benchmarks/results/curation.md`` and ``curation.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import common
from .common import markdown_table

CORRECTIONS_PER_CLUSTER = (1, 2, 5, 10)
TARGET_DATASETS = ("umist", "fashion-mnist-2k")
DATASETS = ("coil20", "umist", "orl", "fashion-mnist-2k", "imagenette-1k")
TARGET_SHARE = 0.02
TARGET_GAIN = 0.10


REVIEW_ORDERS = ("outliers", "misplaced")


def review_sequence(labels: np.ndarray, X: np.ndarray, cluster: int, order: str, scores: Any = None) -> np.ndarray:
    """A cluster's images in the order a person reviews them in the grid.

    ``'outliers'``: View > Sort > Outliers first (farthest from the centre first); ``'misplaced'``: Likely
    misplaced first (``core/review.py``; ``scores`` = its :func:`misplacement_scores` of ``labels``).
    """
    from imgcluster_gui.core.review import review_order

    members = np.flatnonzero(labels == cluster)
    if order == "misplaced":
        return review_order(members, scores, X)
    distance = np.linalg.norm(X[members] - X[members].mean(axis=0), axis=1)
    return members[np.argsort(-distance, kind="stable")]


def simulate_corrections(
    session: Any, X: np.ndarray, truth: np.ndarray, per_cluster: int, order: str = "outliers", graph: Any = None
) -> tuple[int, int]:
    """Correct the worst-placed ``per_cluster`` images of every cluster of ``session`` (in place).

    The person reads each cluster in the ``order`` of :func:`review_sequence` and moves the first
    ``per_cluster`` images whose class is not the cluster's majority. Returns ``(moves, looked)``: the
    corrections made and the images looked at to find them (up to the last one moved, per cluster).
    ``graph`` (the features' kNN graph) is needed for ``order='misplaced'``.
    """
    labels = session.labels.copy()
    clusters = [int(c) for c in np.unique(labels) if c >= 0]
    scores = None
    if order == "misplaced":
        from imgcluster_gui.core.clustering.community import DEFAULT_NEIGHBOURS
        from imgcluster_gui.core.review import misplacement_scores

        scores = misplacement_scores(graph, labels, n_neighbors=DEFAULT_NEIGHBOURS)  # the grid's: the run's graph
    majority: dict[int, str] = {}
    for cluster in clusters:
        classes, counts = np.unique(truth[labels == cluster], return_counts=True)
        majority[cluster] = str(classes[np.argmax(counts)])
    home: dict[str, int] = {}  # class -> the cluster a person moves its images to (the biggest with that majority)
    for cluster in sorted(clusters, key=lambda c: -int(np.sum(labels == c))):
        home.setdefault(majority[cluster], cluster)
    moves: list[tuple[int, str]] = []
    looked = 0
    for cluster in clusters:
        sequence = review_sequence(labels, X, cluster, order, scores)
        wrong = np.flatnonzero(truth[sequence] != majority[cluster])[:per_cluster]
        if wrong.size:
            looked += int(wrong[-1]) + 1
        moves += [(int(sequence[i]), str(truth[sequence[i]])) for i in wrong]
    for image, cls in moves:
        if cls in home:
            session.move([image], home[cls])
        else:  # no cluster of that class yet: the person makes one
            session.new_cluster([image])
            home[cls] = int(session.labels[image])
    return len(moves), looked


def perfect_follow(automatic: np.ndarray, labels: np.ndarray, constraints: Any, truth: np.ndarray) -> np.ndarray:
    """Labels where every free image of a moved image's class in its source cluster went where it went (oracle)."""
    out = labels.copy()
    free = np.ones(out.size, dtype=bool)
    free[constraints.anchors] = False
    for image, target in zip(constraints.anchors.tolist(), constraints.anchor_labels.tolist()):
        if automatic[image] >= 0 and target >= 0:
            mates = free & (automatic == automatic[image]) & (truth == truth[image]) & (labels == automatic[image])
            out[mates] = target
    return out


def supervised_ceiling(X: np.ndarray, truth: np.ndarray, folds: int = 5) -> float:
    """NMI of a logistic regression trained on the true labels of the other folds (cross-validated)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    smallest = int(np.unique(truth, return_counts=True)[1].min())
    splits = StratifiedKFold(min(folds, max(smallest, 2)), shuffle=True, random_state=0)
    predicted = cross_val_predict(LogisticRegression(C=10.0, max_iter=3000), X, truth, cv=splits)
    return nmi(truth, predicted)


def nmi(truth: np.ndarray, labels: np.ndarray) -> float:
    from imgcluster_gui.core.metrics import external_metrics

    return float(external_metrics(list(truth), labels)["nmi"])


def run_dataset(name: str, X: np.ndarray, truth: np.ndarray, methods: list[str], finetune: bool) -> dict[str, Any]:
    """The curation curve of one dataset."""
    from imgcluster_gui.core.clustering.registry import make_estimator
    from imgcluster_gui.core.constraints import recluster
    from imgcluster_gui.core.graph import build_knn_graph
    from imgcluster_gui.core.session import ClusterSession

    started = time.perf_counter()
    automatic = np.asarray(make_estimator("leiden", random_state=0).fit(X).labels_, dtype=np.int64)
    base = nmi(truth, automatic)
    from imgcluster_gui.core.constraints import RECLUSTER_NEIGHBOURS

    graph = build_knn_graph(X, n_neighbors=RECLUSTER_NEIGHBOURS, metric="cosine", cache=False)
    rows: list[dict[str, Any]] = []
    for m in CORRECTIONS_PER_CLUSTER:
        session = ClusterSession([f"{i}.png" for i in range(len(truth))], automatic.copy(), features=X)
        count, looked = simulate_corrections(session, X, truth, m)
        constraints = session.constraints()
        row: dict[str, Any] = {
            "m": m,
            "corrections": count,
            "looked": looked,
            "share": count / len(truth),
            "edited": nmi(truth, session.labels),
        }
        for method in methods:
            t0 = time.perf_counter()
            labels = recluster(X, session.labels, constraints, method=method, graph=graph)
            assert np.array_equal(labels[constraints.anchors], constraints.anchor_labels), "a correction moved back"
            row[method] = nmi(truth, labels)
            row[f"{method}_s"] = time.perf_counter() - t0
        if "propagation" in methods:
            labels = recluster(X, session.labels, constraints, method="propagation", graph=graph, follow=False)
            assert np.array_equal(labels[constraints.anchors], constraints.anchor_labels), "a correction moved back"
            row["no_follow"] = nmi(truth, labels)
            oracle = perfect_follow(automatic, session.labels, constraints, truth)
            labels = recluster(X, oracle, constraints, method="propagation", graph=graph, follow=False)
            row["perfect_follow"] = nmi(truth, labels)
        if finetune:
            from imgcluster_gui.core.finetune import finetune_and_recluster

            t0 = time.perf_counter()
            outcome = finetune_and_recluster(X, session.labels, constraints)
            labels = outcome.labels
            if labels is not None:
                assert np.array_equal(labels[constraints.anchors], constraints.anchor_labels)
                row["finetune"] = nmi(truth, labels)
            else:
                row["finetune"] = None
            row["finetune_s"] = time.perf_counter() - t0
        # The same person reading in the grid's "Likely misplaced first" order instead.
        other = ClusterSession([f"{i}.png" for i in range(len(truth))], automatic.copy(), features=X)
        count, looked = simulate_corrections(other, X, truth, m, order="misplaced", graph=graph)
        labels = recluster(X, other.labels, other.constraints(), graph=graph)
        row["misplaced_order"] = {"corrections": count, "looked": looked, "propagation": nmi(truth, labels)}
        rows.append(row)
        print(name, row, flush=True)
    ceiling = supervised_ceiling(X, truth)
    print(name, "supervised ceiling", round(ceiling, 3), flush=True)
    return {
        "supervised_ceiling": ceiling,
        "n_images": int(len(truth)),
        "n_classes": int(np.unique(truth).size),
        "automatic_nmi": base,
        "automatic_groups": int(np.unique(automatic[automatic >= 0]).size),
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }


def target_check(name: str, result: dict[str, Any], method: str) -> tuple[Optional[bool], str]:
    """Met / not met for one target dataset: NMI gain at the first m reaching 2 % corrections."""
    reaching = [row for row in result["rows"] if row["share"] >= TARGET_SHARE]
    if not reaching:
        return None, f"{name}: fewer than 2 % of the images were correctable"
    row = reaching[0]
    best = max(v for k, v in row.items() if k in (method, "finetune") and v is not None)
    gain = best - result["automatic_nmi"]
    ok = gain >= TARGET_GAIN
    references = []
    if row.get("perfect_follow") is not None:
        references.append(f"perfect follow {row['perfect_follow']:.3f}")
    if result.get("supervised_ceiling") is not None:
        references.append(f"supervised ceiling {result['supervised_ceiling']:.3f}")
    needed = result["automatic_nmi"] + TARGET_GAIN
    return ok, (
        f"{name}: m = {row['m']} ({row['share']:.1%} corrected): NMI {result['automatic_nmi']:.3f} -> {best:.3f} "
        f"(+{gain:.3f}): {'met' if ok else 'not met'}; the target needs {needed:.3f}"
        + (f" ({', '.join(references)})" if references else "")
    )


def section(name: str, result: dict[str, Any], methods: list[str]) -> str:
    no_follow = any("no_follow" in row for row in result["rows"])
    headers = ["m per cluster", "corrected", "NMI edits only"]
    headers += ["NMI propagation without follow"] if no_follow else []
    headers += [f"NMI {m}" for m in methods]
    oracle = any("perfect_follow" in row for row in result["rows"])
    headers += ["NMI perfect follow (oracle)"] if oracle else []
    finetuned = any("finetune" in row for row in result["rows"])
    if finetuned:
        headers.append("NMI fine-tune + propagation")
    rows = []
    for row in result["rows"]:
        line = [row["m"], f"{row['corrections']} ({row['share']:.1%})", common.fmt(row["edited"])]
        line += [common.fmt(row["no_follow"])] if no_follow else []
        line += [f"{common.fmt(row[m])} ({row[m + '_s']:.2f} s)" for m in methods]
        line += [common.fmt(row["perfect_follow"])] if oracle else []
        if finetuned:
            value = row.get("finetune")
            line.append("too few" if value is None else f"{common.fmt(value)} ({row['finetune_s']:.1f} s)")
        rows.append(line)
    title = (
        f"## {name} ({result['n_images']} images, {result['n_classes']} classes)\n\n"
        f"Automatic (Leiden, default settings): {result['automatic_groups']} groups, "
        f"NMI {result['automatic_nmi']:.3f}. Supervised ceiling (logistic regression on 80 % of the true labels, "
        f"5-fold): NMI {common.fmt(result.get('supervised_ceiling'))}.\n\n"
    )
    return title + markdown_table(headers, rows)


def review_section(results: dict[str, Any]) -> str:
    """How many images the person looks at to find the misplaced ones, in each of the grid's review orders."""
    headers = [
        "dataset",
        "m per cluster",
        "outliers first: corrected / looked at",
        "NMI after propagation",
        "likely misplaced first: corrected / looked at",
        "NMI after propagation",
        "looked at, misplaced / outliers",
    ]
    rows = []
    total = {"outliers": 0, "misplaced": 0}
    for name, result in results.items():
        for row in result["rows"]:
            other = row.get("misplaced_order")
            if other is None:
                continue
            total["outliers"] += row["looked"]
            total["misplaced"] += other["looked"]
            ratio = other["looked"] / row["looked"] if row["looked"] else float("nan")
            rows.append(
                [
                    name,
                    row["m"],
                    f"{row['corrections']} / {row['looked']}",
                    common.fmt(row.get("propagation")),
                    f"{other['corrections']} / {other['looked']}",
                    common.fmt(other["propagation"]),
                    common.fmt(ratio, 2),
                ]
            )
    if not rows:
        return ""
    overall = total["misplaced"] / total["outliers"] if total["outliers"] else float("nan")
    return (
        "### Review order: images looked at to find the misplaced ones\n\n"
        "The same simulated person reading each cluster in the grid's *Outliers first* order (the curve above) "
        "or in *Likely misplaced first* (`core/review.py`: the share of an image's neighbour weight in other "
        "clusters, outliers first among equals); looked at = images read, per cluster, up to the last one moved. "
        f"Over every row: {total['misplaced']} images looked at instead of {total['outliers']} "
        f"({common.fmt(overall, 2)}x).\n\n" + markdown_table(headers, rows)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=None, help="shared dataset names (default: all found)")
    parser.add_argument("--methods", nargs="*", default=None, help="re-cluster methods (default: all)")
    parser.add_argument("--no-finetune", action="store_true", help="skip the projection head")
    parser.add_argument("--results", type=Path, default=None, help="results folder (default benchmarks/results)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from imgcluster_gui.core.constraints import RECLUSTER_METHODS
    from imgcluster_gui.core.features.backbones import DEFAULT_BACKBONES
    from imgcluster_gui.core.preprocess import preprocess_features

    from .quality import project_toolkit

    args = build_parser().parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)  # the head's small matrices: one thread, measured 10x faster on the shared 2 cores
    except ImportError:
        pass
    methods = list(args.methods or RECLUSTER_METHODS)
    kit = project_toolkit()
    datasets = common.shared_datasets(args.datasets or DATASETS)
    if not datasets:
        print("no shared datasets found under", common.DATASETS_DIR, file=sys.stderr)
        return 1
    results: dict[str, Any] = {}
    for name, folder in datasets.items():
        paths, classes = common.labelled_images(folder)
        X_raw = kit.features(paths, list(DEFAULT_BACKBONES), kit.cache)
        X = np.asarray(preprocess_features(X_raw, l2=True), dtype=np.float32)  # as the pipeline does
        results[name] = run_dataset(name, X, np.asarray(classes), methods, finetune=not args.no_finetune)
    checks = [target_check(name, results[name], methods[0]) for name in TARGET_DATASETS if name in results]
    target_lines = "\n".join(f"- {text}" for _, text in checks) or "- no target dataset was run"
    sections = [
        "Simulated person: moves the worst-placed m images of each cluster (farthest from the centre among "
        "those of another class than the majority) to the cluster of their class. Columns: NMI against the "
        "folder names after only the edits, after the default propagation without its follow step (look-alikes "
        "of a lone move go with it), after each re-cluster method, and after fine-tuning a projection head "
        "(Linear D->256, cross-entropy) and re-clustering in its space. Two references: the perfect follow "
        "(every image of a moved image's class in the cluster it left goes with it, read from the oracle, then the "
        "propagation: the most the follow step could add) and the supervised ceiling (logistic regression on 80 % "
        "of the true labels, 5-fold cross-validated: what the features allow with every label). Features: "
        f"{' + '.join(DEFAULT_BACKBONES)} (the app's default). No corrected image was ever moved back "
        "(asserted on every run).",
        "### Target: 2 % corrected raises NMI by >= 0.10 (UMist, Fashion-MNIST-2k)\n\n" + target_lines,
        review_section(results),
        *[section(name, result, methods) for name, result in results.items()],
    ]
    sections = [text for text in sections if text]
    out = common.results_dir(args.results)
    device = common.device_line()
    common.save_markdown(out / "curation.md", "Curation curve (issue 14)", sections, device)
    common.write_json(out / "curation.json", {"device": device, "methods": methods, "results": results})
    print((out / "curation.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
