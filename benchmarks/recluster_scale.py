"""Re-cluster with corrections at scale: the corrections' region against spreading over the whole graph.

"Re-cluster with my corrections" (:func:`imgcluster_gui.core.constraints.recluster`, the default
propagation) spreads labels only over :func:`~imgcluster_gui.core.constraints.corrections_region`: the
corrected clusters, the images most of whose neighbours are in other clusters, and their neighbours.
The baseline, measured in the same run, is the same spreading over the whole graph
(``recluster(..., whole_graph=True)``, what the app did before).

The data: Gaussian clusters (64-d, unit noise 0.6 around unit-variance centres, L2-normalised by the
cosine graph), the 10-NN cosine graph (the default Leiden's), labels = the true clusters with 1 % of
the images put in a random other cluster (a clustering's mistakes), and a person who moved 50 of those
back where they belong. Each measurement runs in a fresh process (spawn) so its peak memory is its own.

    python -m benchmarks.recluster_scale [--smoke] [--whole-at-scale]

Rows: 20,000 images in 200 clusters (both ways) and 100,000 in 1,000 (the region; the whole graph with
``--whole-at-scale``, about 5 minutes here). Writes ``recluster_scale.md`` / ``.json`` to
``benchmarks/results/`` (``--smoke``: 2,000 in 20, ``recluster_scale_smoke.*``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import common
from .common import fmt, markdown_table

DIMENSIONS = 64
MISPLACED_SHARE = 0.01
CORRECTED = 50


def synthetic_session(n: int, clusters: int, seed: int = 0) -> dict[str, Any]:
    """Features, the true clusters, the clustering's labels and the moves a person made (see the docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIMENSIONS)).astype(np.float32)
    truth = rng.integers(0, clusters, n)
    X = centres[truth] + 0.6 * rng.normal(size=(n, DIMENSIONS)).astype(np.float32)
    labels = truth.copy()
    wrong = rng.choice(n, max(int(MISPLACED_SHARE * n), CORRECTED), replace=False)
    labels[wrong] = (truth[wrong] + rng.integers(1, clusters, wrong.size)) % clusters
    return {"X": X, "truth": truth, "labels": labels, "moves": wrong[:CORRECTED]}


def measure(n: int, clusters: int, whole_graph: bool, queue: Any) -> None:
    """One re-cluster in this (fresh) process: seconds, peak memory, the labels (put on ``queue``)."""
    from imgcluster_gui.core.clustering.community import DEFAULT_NEIGHBOURS
    from imgcluster_gui.core.constraints import recluster
    from imgcluster_gui.core.graph import build_knn_graph
    from imgcluster_gui.core.session import ClusterSession

    data = synthetic_session(n, clusters)
    graph = build_knn_graph(data["X"], n_neighbors=DEFAULT_NEIGHBOURS, metric="cosine", cache=False)
    session = ClusterSession([f"{i}.png" for i in range(n)], data["labels"].copy(), features=data["X"])
    for image in data["moves"]:
        session.move([int(image)], int(data["truth"][image]))
    constraints = session.constraints()
    before_mb = common.peak_rss_mb()
    started = time.perf_counter()
    labels = recluster(data["X"], session.labels, constraints, graph=graph, whole_graph=whole_graph)
    seconds = time.perf_counter() - started
    queue.put(
        {
            "seconds": seconds,
            "peak_mb": common.peak_rss_mb(),
            "peak_before_mb": before_mb,
            "labels": labels,
            "wrong_before": int(np.sum(session.labels != data["truth"])),
            "wrong_after": int(np.sum(labels != data["truth"])),
        }
    )


def in_fresh_process(n: int, clusters: int, whole_graph: bool) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure, args=(n, clusters, whole_graph, queue))
    process.start()
    result = queue.get()
    process.join()
    return dict(result)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2,000 images in 20 clusters only")
    parser.add_argument("--whole-at-scale", action="store_true", help="also spread over the whole 100,000 graph")
    parser.add_argument("--results", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    sizes = [(2_000, 20, True)] if args.smoke else [(20_000, 200, True), (100_000, 1_000, args.whole_at_scale)]
    rows: list[dict[str, Any]] = []
    for n, clusters, with_whole in sizes:
        region = in_fresh_process(n, clusters, whole_graph=False)
        row: dict[str, Any] = {"n": n, "clusters": clusters, "region": region}
        if with_whole:
            whole = in_fresh_process(n, clusters, whole_graph=True)
            row["whole"] = whole
            row["differing"] = int(np.sum(whole["labels"] != region["labels"]))
            row["speedup"] = whole["seconds"] / max(region["seconds"], 1e-9)
        rows.append(row)
        print(
            {k: v for k, v in row.items() if k not in ("region", "whole")},
            f"region {region['seconds']:.2f} s",
            flush=True,
        )
    headers = [
        "images / clusters",
        "region: seconds, peak MB (the re-cluster's own)",
        "whole graph (baseline): seconds, peak MB (own)",
        "whole / region time",
        "labels differing",
        "misplaced before -> after",
    ]
    table = []
    for row in rows:
        region, whole = row["region"], row.get("whole")
        table.append(
            [
                f"{row['n']:,} / {row['clusters']:,}",
                _cell(region),
                "not run" if whole is None else _cell(whole),
                "" if whole is None else f"{row['speedup']:.1f}x",
                "" if whole is None else str(row["differing"]),
                f"{region['wrong_before']} -> {region['wrong_after']}",
            ]
        )
    text = (
        "Re-cluster with my corrections (default propagation) over the corrections' region, against the same "
        "spreading over the whole graph (the baseline, measured in the same run). Synthetic Gaussian clusters "
        f"({DIMENSIONS}-d), 10-NN cosine graph, 1 % of the images misplaced, {CORRECTED} of them moved back by hand; "
        "each measurement in a fresh process (peak = the process's peak resident memory, the graph and data "
        "included).\n\n" + markdown_table(headers, table)
    )
    out = common.results_dir(args.results)
    stem = "recluster_scale_smoke" if args.smoke else "recluster_scale"
    device = common.device_line()
    common.save_markdown(out / f"{stem}.md", "Re-cluster at scale", [text], device)
    payload = [{**{k: v for k, v in row.items() if k not in ("region", "whole")}, **_summary(row)} for row in rows]
    common.write_json(out / f"{stem}.json", {"device": device, "rows": payload})
    print((out / f"{stem}.md").read_text())
    return 0


def _cell(measured: dict[str, Any]) -> str:
    own = measured["peak_mb"] - measured["peak_before_mb"]
    return f"{fmt(measured['seconds'], 2)} s, {measured['peak_mb']:.0f} MB (+{own:.0f})"


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ("region", "whole"):
        if key in row:
            out[key] = {k: v for k, v in row[key].items() if k != "labels"}
    return out


if __name__ == "__main__":
    sys.exit(main())
