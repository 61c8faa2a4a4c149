"""Time and peak memory of every stage from 1,000 to 1,000,000 feature rows, each stage in its own process.

::

    python -m benchmarks.scale_memory [--smoke] [--sizes 1000,10000,100000,1000000] [--dim 1280]
                                      [--timeout S] [--only store,graph,leiden,kmeans,embedding,session] [--out DIR]

Rows are synthetic 1280-d float32 blobs with cluster structure (``N / 100`` clusters, 10 to 100; non-negative like
post-ReLU CNN features, L2-normalised like the pipeline's features), written chunk by chunk into a
:class:`~imgcluster_gui.core.features.store.FeatureStore` on disk: the generator never holds more than one chunk.
Every later stage starts a fresh process (:func:`benchmarks.graph_scale.run_stages`: the kernel's peak-RSS mark is
reset before each stage) that opens the store memory-mapped, so each peak is the stage's own and shows what that
stage keeps in RAM:

store write / store read
    Append the rows in chunks of 8,192 (the streaming extraction's write path) / open the store and walk every row
    block by block, plus the path list.
kNN graph
    :func:`~imgcluster_gui.core.graph.build_knn_graph` (``method='auto'``: exact up to ``EXACT_BUDGET``, IVF above),
    15 neighbours; saved for the next stage.  ``benchmarks/graph_scale.py`` studies this stage in depth (recall,
    crossover, threads); here it is one step of the chain.
Leiden
    ``LeidenClusterer()`` (registry defaults) on the saved graph.
k-means
    :func:`~imgcluster_gui.core.clustering.fast_kmeans.fast_kmeans` with K = the synthetic cluster count, one init.
2-D embedding
    :func:`~imgcluster_gui.core.embedding.embed_2d` ``'pca'`` (the pipeline's default layout).
session save / load
    :func:`~imgcluster_gui.core.session.persistence.save_session` / ``load_session`` of a session holding the
    paths, labels, embedding and features (the file the GUI writes).

A stage still running at ``--timeout`` seconds is cut and reported as such; the stages that need its output are
reported as not reached.  Peak RSS counts the pages of a memory-mapped store a stage touched (file-backed, which the
kernel can drop under pressure); ``anon MB after`` is the stage's own heap at its end.  Writes
``scale_memory.json`` / ``scale_memory.md`` to ``benchmarks/results/`` (``--smoke``: ``scale_memory_smoke.*``).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import common, graph_scale
from .common import fmt, markdown_table

#: Called after every stage row (main() rewrites the results files there).
_ON_ROW: Optional[Any] = None
STAGES = ("store", "graph", "leiden", "kmeans", "embedding", "session")
FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000)
SMOKE_SIZES = (500, 2_000)
WRITE_CHUNK = 8192
N_NEIGHBORS = 15


def n_clusters_for(n: int) -> int:
    """Synthetic clusters (and k-means' K) of an ``n``-row set: about 100 rows each, 10 to 100."""
    return min(100, max(10, n // 100))


def anon_rss_mb() -> float:
    """This process's anonymous (heap) resident memory in MB; memory-mapped file pages are not in it."""
    return float(common._proc_status().get("RssAnon", 0.0))


# ============================================================================ stage workers (children)
def _write_worker(rep: Any, store_dir: str, n: int, d: int, seed: int) -> dict[str, Any]:
    from imgcluster_gui.core.features.store import FeatureStore

    def write() -> int:
        rng = np.random.default_rng(seed)
        k = n_clusters_for(n)
        centres = np.abs(rng.standard_normal((k, d), dtype=np.float32))
        store = FeatureStore.create(store_dir, d, "float32", "synthetic", {"backbones": ["synthetic"]})
        for start in range(0, n, WRITE_CHUNK):
            rows = min(WRITE_CHUNK, n - start)
            y = rng.integers(0, k, rows)
            block = np.maximum(centres[y] + 0.6 * rng.standard_normal((rows, d), dtype=np.float32), 0.0)
            block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
            store.append([f"/synthetic/c{label:05d}/img{start + i:08d}.jpg" for i, label in enumerate(y)], block)
        return len(store)

    rows = rep.stage("store write", write)
    rep.note(
        "store write", anon_mb_after=anon_rss_mb(), disk_mb=(Path(store_dir) / "features.bin").stat().st_size / 1e6
    )
    return dict(rows=rows)


def _read_worker(rep: Any, store_dir: str) -> dict[str, Any]:
    from imgcluster_gui.core.features.store import FeatureStore

    def read() -> float:
        store = FeatureStore.open(store_dir)
        total = 0.0
        for _, block in store.iter_blocks():
            total += float(np.einsum("ij,ij->", block, block))  # touches every row
        return total + len(store.paths) * 0.0

    rep.stage("store read", read)
    rep.note("store read", anon_mb_after=anon_rss_mb())
    return {}


def _graph_worker(rep: Any, store_dir: str, graph_file: str) -> dict[str, Any]:
    from imgcluster_gui.core import graph as graph_module
    from imgcluster_gui.core.features.store import FeatureStore

    graph_module.faiss_module()
    X = FeatureStore.open(store_dir).features()
    knn = rep.stage("kNN graph", lambda: graph_module.build_knn_graph(X, N_NEIGHBORS, method="auto", cache=False))
    rep.note("kNN graph", method=knn.method, anon_mb_after=anon_rss_mb())
    np.savez(graph_file, indices=knn.indices, distances=knn.distances, method=np.asarray(knn.method))
    return {}


def _load_graph(graph_file: str) -> Any:
    from imgcluster_gui.core.graph import KnnGraph

    with np.load(graph_file) as stored:
        return KnnGraph(
            indices=stored["indices"].astype(np.int64),
            distances=stored["distances"].astype(np.float32),
            metric="cosine",
            method=str(stored["method"]),
        )


def _leiden_worker(rep: Any, store_dir: str, graph_file: str, labels_file: str) -> dict[str, Any]:
    import igraph  # noqa: F401  (imported before the stage: its peak is Leiden's work, not the libraries)
    import leidenalg  # noqa: F401

    from imgcluster_gui.core.clustering.registry import make_estimator
    from imgcluster_gui.core.features.store import FeatureStore

    X = FeatureStore.open(store_dir).features()
    knn = _load_graph(graph_file)
    estimator = make_estimator("leiden", random_state=0)
    rep.stage("Leiden", lambda: estimator.fit(X, graph=knn))
    rep.note("Leiden", groups=int(estimator.n_clusters_), anon_mb_after=anon_rss_mb())
    np.save(labels_file, np.asarray(estimator.labels_, dtype=np.int64))
    return {}


def _kmeans_worker(rep: Any, store_dir: str, n_clusters: int, labels_file: str) -> dict[str, Any]:
    from imgcluster_gui.core.clustering.fast_kmeans import fast_kmeans
    from imgcluster_gui.core.features.store import FeatureStore

    X = FeatureStore.open(store_dir).features()
    fit = rep.stage("k-means", lambda: fast_kmeans(X, n_clusters, n_init=1, random_state=0))
    rep.note("k-means", k=n_clusters, anon_mb_after=anon_rss_mb())
    if not Path(labels_file).exists():  # Leiden's labels win when it ran; else the session gets these
        np.save(labels_file, np.asarray(fit.labels, dtype=np.int64))
    return {}


def _embedding_worker(rep: Any, store_dir: str, embedding_file: str) -> dict[str, Any]:
    import sklearn.decomposition  # noqa: F401  (imported before the stage, as in a running app)

    from imgcluster_gui.core.embedding import embed_2d
    from imgcluster_gui.core.features.store import FeatureStore

    X = FeatureStore.open(store_dir).features()
    coords = rep.stage("2-D embedding (PCA)", lambda: embed_2d(X, "pca"))
    rep.note("2-D embedding (PCA)", anon_mb_after=anon_rss_mb())
    np.save(embedding_file, coords)
    return {}


def _session_worker(rep: Any, store_dir: str, labels_file: str, embedding_file: str, session_file: str) -> dict:
    from imgcluster_gui.core.features.store import FeatureStore
    from imgcluster_gui.core.session import ClusterSession
    from imgcluster_gui.core.session.persistence import load_session, save_session

    store = FeatureStore.open(store_dir)
    n = len(store)
    labels = np.load(labels_file) if Path(labels_file).exists() else np.zeros(n, np.int64)
    embedding = np.load(embedding_file) if Path(embedding_file).exists() else None
    session = ClusterSession(store.paths, labels, embedding=embedding, features=store.features())
    rep.stage("session save", functools.partial(save_session, session, session_file))
    rep.note("session save", file_mb=Path(session_file).stat().st_size / 1e6, anon_mb_after=anon_rss_mb())
    del session  # the load's peak is its own
    loaded = rep.stage("session load", lambda: load_session(ClusterSession, session_file))
    rep.note("session load", anon_mb_after=anon_rss_mb(), images=len(loaded.paths))
    return {}


# ============================================================================ driver
def _row(n: int, name: str, record: Optional[dict[str, Any]], status: str) -> dict[str, Any]:
    record = record or {}
    return dict(
        n=n,
        stage=name,
        status=status,
        seconds=record.get("seconds"),
        peak_rss_mb=record.get("peak_rss_mb"),
        # The process's high-water mark includes what it held before the stage (interpreter, torch via the
        # algorithm registry); the rise is what the stage itself added.
        peak_rise_mb=None if "peak_rss_mb" not in record else record["peak_rss_mb"] - record.get("rss_before_mb", 0.0),
        anon_mb_after=record.get("anon_mb_after"),
        notes={k: v for k, v in record.items() if k not in ("seconds", "peak_rss_mb", "rss_before_mb", "rss_after_mb")},
    )


def _run(rows: list[dict[str, Any]], n: int, expected: list[str], fn: Any, *args: Any, timeout: float) -> bool:
    """One child for ``fn``; a row per expected stage (cut / not reached where it did not finish)."""
    run = graph_scale.run_stages(fn, *args, timeout=timeout)
    for name in expected:
        record = run.stages.get(name)
        finished = record is not None and "seconds" in record
        status = "ok" if finished else (run.status if run.status != "ok" else "not reached")
        if not finished and run.error:
            status = f"{status}: {run.error}"
        rows.append(_row(n, name, record, status))
        row = rows[-1]
        if _ON_ROW is not None:
            _ON_ROW()  # the tables are rewritten after every stage: a run cut by hand keeps what it measured
        print(
            f"  {n:>9,} {name:<22} {status:<12} {fmt(row['seconds'])} s  peak {fmt(row['peak_rss_mb'])} MB "
            f"(+{fmt(row['peak_rise_mb'])} over the stage's start)",
            flush=True,
        )
    return run.status == "ok"


def bench_size(
    n: int, d: int, only: set[str], timeout: float, workdir: Path, rows: Optional[list[dict[str, Any]]] = None
) -> list[dict[str, Any]]:
    """Every selected stage at ``n`` rows (each in a child), appended to ``rows``; a missing input: 'not reached'."""
    folder = workdir / f"n{n}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    store = str(folder / "store")
    graph_file, labels_file = str(folder / "graph.npz"), str(folder / "labels.npy")
    embedding_file, session_file = str(folder / "embedding.npy"), str(folder / "session.imgcluster")
    rows = [] if rows is None else rows
    if not _run(rows, n, ["store write"], _write_worker, store, n, d, 0, timeout=timeout):
        return rows
    if "store" in only:
        _run(rows, n, ["store read"], _read_worker, store, timeout=timeout)
    graph_ok = False
    if "graph" in only or "leiden" in only:
        graph_ok = _run(rows, n, ["kNN graph"], _graph_worker, store, graph_file, timeout=timeout)
    if "leiden" in only:
        if graph_ok:
            _run(rows, n, ["Leiden"], _leiden_worker, store, graph_file, labels_file, timeout=timeout)
        else:
            rows.append(_row(n, "Leiden", None, "not reached: no graph"))
    if "kmeans" in only:
        _run(rows, n, ["k-means"], _kmeans_worker, store, n_clusters_for(n), labels_file, timeout=timeout)
    if "embedding" in only:
        _run(rows, n, ["2-D embedding (PCA)"], _embedding_worker, store, embedding_file, timeout=timeout)
    if "session" in only:
        _run(
            rows,
            n,
            ["session save", "session load"],
            _session_worker,
            store,
            labels_file,
            embedding_file,
            session_file,
            timeout=timeout,
        )
    shutil.rmtree(folder, ignore_errors=True)
    return rows


def growth(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Per stage: the exponent of time, peak rise and heap (anon) in N between the two largest sizes it finished."""
    table = []
    for name in dict.fromkeys(r["stage"] for r in rows):
        done = sorted((r for r in rows if r["stage"] == name and r["status"] == "ok"), key=lambda r: r["n"])
        if len(done) < 2:
            table.append(
                [name, "n/a", "n/a", "n/a", f"largest finished: {done[-1]['n']:,}" if done else "none finished"]
            )
            continue
        a, b = done[-2], done[-1]
        ratio = math.log(b["n"] / a["n"])
        t_exp = math.log(max(b["seconds"], 1e-6) / max(a["seconds"], 1e-6)) / ratio
        m_exp = math.log(max(b["peak_rise_mb"], 1.0) / max(a["peak_rise_mb"], 1.0)) / ratio  # the stage's own
        h_exp = math.log(max(b["anon_mb_after"] or 1.0, 1.0) / max(a["anon_mb_after"] or 1.0, 1.0)) / ratio
        table.append([name, f"{t_exp:.2f}", f"{m_exp:.2f}", f"{h_exp:.2f}", f"{a['n']:,} -> {b['n']:,}"])
    return table


def write_results(
    rows: list[dict[str, Any]], args: argparse.Namespace, out: Path, smoke: bool, load: Optional[str] = None
) -> Path:
    device = common.device_line()
    stem = "scale_memory_smoke" if smoke else "scale_memory"
    load = load or ", ".join(f"{v:.1f}" for v in os.getloadavg())
    payload = dict(
        device=device, dim=args.dim, timeout_s=args.timeout, rows=rows, measured=time.strftime("%F %R UTC"), load=load
    )
    common.write_json(out / f"{stem}.json", payload)
    table = markdown_table(
        ["N", "stage", "status", "seconds", "peak RSS MB", "rise over start MB", "anon MB after", "notes"],
        [
            [
                f"{r['n']:,}",
                r["stage"],
                r["status"],
                fmt(r["seconds"]),
                fmt(r["peak_rss_mb"]),
                fmt(r["peak_rise_mb"]),
                fmt(r["anon_mb_after"]),
                ", ".join(
                    f"{k}={fmt(v) if isinstance(v, float) else v}"
                    for k, v in r["notes"].items()
                    if k != "anon_mb_after"
                ),
            ]
            for r in rows
        ],
    )
    grow = markdown_table(["stage", "time ~ N^a", "peak rise ~ N^b", "anon after ~ N^c", "between"], growth(rows))
    sections = [
        f"Synthetic {args.dim}-d float32 rows (N/100 clusters, 10 to 100), L2-normalised, in a memory-mapped "
        "FeatureStore. "
        f"Each stage in its own process; peak RSS = the kernel's high-water mark reset before the stage (it "
        f"counts store pages the stage touched). Timeout per stage: {args.timeout:.0f} s. Load average when written: "
        f"{load} (the machine's cores are shared: times are upper bounds).",
        "## Per stage\n\n" + table,
        "## Growth (exponent between the two largest finished sizes)\n\n" + grow,
    ]
    return common.save_markdown(out / f"{stem}.md", "Scale and memory per stage", sections, device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 64-d (a quick check of the machinery)")
    parser.add_argument("--sizes", help="comma-separated row counts (default 1000,10000,100000,1000000)")
    parser.add_argument("--dim", type=int, default=None, help="feature dimensions (default 1280; smoke 64)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per stage before it is cut")
    parser.add_argument("--only", help=f"comma-separated stages of {','.join(STAGES)} (default all)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SMOKE_SIZES if args.smoke else FULL_SIZES)
    args.dim = args.dim or (64 if args.smoke else 1280)
    only = set(args.only.split(",")) if args.only else set(STAGES)
    unknown = only - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stage(s) {sorted(unknown)}; choose from {STAGES}")
    out = common.results_dir(args.out)
    rows: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="imgcluster-scale-", dir=common.tempfile_dir()))
    global _ON_ROW
    _ON_ROW = functools.partial(write_results, rows, args, out, args.smoke)
    try:
        for n in sizes:
            print(f"N = {n:,} x {args.dim}", flush=True)
            bench_size(n, args.dim, only, args.timeout, workdir, rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"Wrote {write_results(rows, args, out, args.smoke)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
