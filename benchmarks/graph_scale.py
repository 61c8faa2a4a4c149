"""Neighbour graph and Leiden at scale: time and peak memory per stage, recall, exact/approximate crossover.

::

    python -m benchmarks.graph_scale [--smoke] [--only leiden100k,recall,crossover,threads,million]
                                     [--million-timeout S] [--no-hnsw-million] [--out DIR]

Features are synthesised from the default backbone's (EfficientNet-Lite0) per-dimension statistics on
real images (:func:`benchmarks.common.features_like`, as the ``scale`` section of ``benchmarks/speed.py``
does; the 256-d sets use Lite0's 256 highest-variance dimensions), L2-normalised like the pipeline.
Each stage set runs in its own process so its peak resident memory (``VmHWM``, reset before each
stage) is its own.

Sections
    leiden100k
        100,000 x 1280: ``build_knn_graph(method='auto')`` then ``LeidenClusterer()`` (registry
        defaults) on that graph. Targets: under 2 minutes and under 4 GB on a 2-core machine.
    million
        1,000,000 x 256 with the approximate graph ('ivf', then 'hnsw' unless ``--no-hnsw-million``)
        and Leiden's steps (fuzzy adjacency, igraph, Leiden) timed one by one; a stage still running
        at ``--million-timeout`` is cut and the stages measured so far are reported.
    recall
        recall@10 of 'ivf' and 'hnsw' against 'exact' on 20,000 points at 1280-d and 256-d, with
        build+search times; scikit-learn's ``NearestNeighbors(algorithm='brute', metric='cosine')``
        as the baseline of the exact faiss search.
    crossover
        exact against 'ivf' at N = 10k, 20k, 40k, 80k (1280-d and 256-d): where the approximate
        search starts to pay, and the ``N^2 x d`` value :data:`imgcluster_gui.core.graph.EXACT_BUDGET`
        should have. An exact search predicted above ``--exact-limit`` seconds is extrapolated (N^2).
    threads
        faiss search with 1 and 2 OpenMP threads, and the CPU a process burns while idle right after a
        search under ``OMP_WAIT_POLICY=PASSIVE`` (how :func:`imgcluster_gui.core.graph.faiss_module`
        imports faiss) against ``ACTIVE``.

Writes ``graph_scale.json`` and ``graph_scale.md`` to ``benchmarks/results/`` (``--smoke``: tiny sizes,
``graph_scale_smoke.*``).
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import os
import queue as queue_module
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import common
from .common import fmt, markdown_table

SECTIONS = ("leiden100k", "recall", "crossover", "threads", "million")  # run in this order: the longest last
TARGET_SECONDS_100K = 120.0
TARGET_MB_100K = 4000.0


@dataclass
class Sizes:
    leiden_n: int
    leiden_d: int
    leiden_k: int  # synthetic clusters
    million_n: int
    million_d: int
    million_k: int
    recall_n: int
    crossover_points: tuple[int, ...]
    threads_n: int
    idle_seconds: float

    @staticmethod
    def full() -> "Sizes":
        return Sizes(100_000, 1280, 100, 1_000_000, 256, 1000, 20_000, (10_000, 20_000, 40_000, 80_000), 20_000, 1.0)

    @staticmethod
    def smoke() -> "Sizes":
        return Sizes(1_000, 1280, 10, 2_000, 256, 20, 800, (500, 1_000), 800, 0.1)


# ============================================================================ isolated stage runner
@dataclass
class StageRun:
    """What one isolated worker reported: its stages (name -> dict) and how it ended."""

    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    result: Any = None
    status: str = "ok"  # ok | timeout | error
    error: str = ""
    seconds: float = 0.0


class _Reporter:
    """Times a stage and its own peak RSS (the kernel's high-water mark is reset before it)."""

    def __init__(self, channel) -> None:
        self.channel = channel

    def stage(self, name: str, fn: Callable[[], Any], **extra: Any) -> Any:
        common.reset_peak_rss()
        before = common.current_rss_mb() or 0.0
        start = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - start
        record = dict(
            seconds=seconds,
            peak_rss_mb=common.peak_rss_mb(),
            rss_before_mb=before,
            rss_after_mb=common.current_rss_mb() or 0.0,
            **extra,
        )
        self.channel.put(("stage", name, record))
        return value

    def note(self, name: str, **values: Any) -> None:
        self.channel.put(("note", name, values))


def _isolated_entry(channel, fn, args) -> None:  # runs in the child
    try:
        result = fn(_Reporter(channel), *args)
        channel.put(("done", None, result))
    except BaseException as exc:  # report, never hang the parent
        channel.put(("error", None, f"{type(exc).__name__}: {exc}"))


class _ListChannel(list):
    def put(self, item) -> None:
        self.append(item)


#: ``--smoke`` runs the workers in this process (a spawned child costs seconds of imports).
INLINE = False


def _collect(run: StageRun, kind: str, name: Any, payload: Any) -> bool:
    """File one message of a worker into ``run``; True when the worker has finished."""
    if kind == "stage":
        run.stages[name] = payload
    elif kind == "note":
        run.stages.setdefault(name, {}).update(payload)
    elif kind == "done":
        run.result = payload
        return True
    else:
        run.status, run.error = "error", str(payload)
        return True
    return False


def run_stages(fn: Callable[..., Any], *args: Any, timeout: float = 600.0, env: Optional[dict] = None) -> StageRun:
    """``fn(reporter, *args)`` in a fresh process; stages reported so far survive a timeout or a crash."""
    if INLINE:
        channel, run, started = _ListChannel(), StageRun(), time.perf_counter()
        _isolated_entry(channel, fn, args)
        for message in channel:
            _collect(run, *message)
        run.seconds = time.perf_counter() - started
        return run
    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    saved = {key: os.environ.get(key) for key in (env or {})}
    os.environ.update(env or {})  # a spawned child copies the parent's environment at start
    try:
        # Not a daemon: scikit-learn runs its n_jobs loops only outside daemonic children.
        process = context.Process(target=_isolated_entry, args=(channel, fn, args))
        process.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    run = StageRun()
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            run.status, run.error = "timeout", f"cut after {timeout:.0f} s"
            break
        try:
            kind, name, payload = channel.get(timeout=min(remaining, 5.0))
        except queue_module.Empty:
            if not process.is_alive():
                run.status, run.error = "error", f"the worker died (exit code {process.exitcode})"
                break
            continue
        if _collect(run, kind, name, payload):
            break
    run.seconds = time.perf_counter() - started
    if process.is_alive():
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
    else:
        process.join()
    return run


# ============================================================================ data
def lite0_statistics(smoke: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-dimension mean and std of the default backbone's features on real images (and where from)."""
    from .quality import backbone_features, project_toolkit

    kit = project_toolkit()
    datasets = common.shared_datasets(["coil20"])
    if datasets:
        paths, _ = common.labelled_images(datasets["coil20"], per_class=1 if smoke else 5)
        source = f"{len(paths)} COIL-20 images"
    else:
        paths = sorted((common.REPO_ROOT / "resources" / "sample_images").rglob("*.png"))[: 20 if smoke else 100]
        source = f"{len(paths)} of the repository's sample images"
    real = backbone_features(paths, [kit.default_backbone], kit.cache)
    return real.mean(axis=0), real.std(axis=0), f"{kit.default_backbone} on {source}"


def synthesise(
    mean: np.ndarray, std: np.ndarray, n: int, d: int, k: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` x ``d`` features like Lite0's (its ``d`` highest-variance dimensions), L2-normalised float32."""
    keep = np.sort(np.argsort(-std)[:d]) if d < mean.size else np.arange(mean.size)
    real = np.stack([mean[keep] - std[keep], mean[keep] + std[keep]])  # features_like reads mean / std only
    X, y = common.features_like(real, n, k, seed=seed)
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)  # preprocess_features(l2=True), in place
    return X, y


def recall_at(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact neighbours the approximate search found (order ignored)."""
    hits = 0
    for start in range(0, exact.shape[0], 8192):
        a, e = approx[start : start + 8192], exact[start : start + 8192]
        hits += int((a[:, :, None] == e[:, None, :]).any(axis=2).sum())
    return hits / exact.size


# ============================================================================ workers (children)
def _nmi(y: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(y, labels))


def _leiden100k_worker(rep: _Reporter, mean, std, n, d, k) -> dict[str, Any]:
    from imgcluster_gui.core import graph as graph_module
    from imgcluster_gui.core.clustering.registry import make_estimator

    graph_module.faiss_module()
    X, y = rep.stage("synthesise", lambda: synthesise(mean, std, n, d, k))
    knn = rep.stage("graph (auto)", lambda: graph_module.build_knn_graph(X, 15, method="auto", cache=False))
    rep.note(
        "graph (auto)",
        method=knn.method,
        threads=graph_module.default_threads(),
        exact_budget=graph_module.EXACT_BUDGET,
        n2d=float(n) * n * d,
    )
    estimator = make_estimator("leiden", random_state=0)
    rep.stage("Leiden (defaults)", lambda: estimator.fit(X, graph=knn))
    rep.note(
        "Leiden (defaults)",
        n_clusters=int(estimator.n_clusters_),
        n_unsorted=int(estimator.n_unsorted_),
        synthetic_k=k,
        nmi_vs_synthetic=_nmi(y, estimator.labels_),
    )
    return dict(method=knn.method)


def _million_worker(rep: _Reporter, mean, std, n, d, k, method) -> dict[str, Any]:
    from imgcluster_gui.core import graph as graph_module
    from imgcluster_gui.core.clustering.community import collect_small, leiden_membership, modularity, to_igraph

    graph_module.faiss_module()
    X, y = rep.stage("synthesise", lambda: synthesise(mean, std, n, d, k))
    knn = rep.stage(
        f"graph ({method})", functools.partial(graph_module.build_knn_graph, X, 15, method=method, cache=False)
    )
    missing = int(np.count_nonzero(knn.indices < 0))
    rep.note(f"graph ({method})", method=knn.method, missing_neighbours=missing)
    del X
    # LeidenClusterer.fit's steps one by one, so a cut run still says where the time went.
    adjacency = rep.stage("fuzzy adjacency", lambda: knn.adjacency("fuzzy", "union"))
    rep.note("fuzzy adjacency", edges=int(adjacency.nnz // 2))
    igraph = rep.stage("igraph", lambda: to_igraph(adjacency))
    total = float(adjacency.sum()) / 2.0
    raw = rep.stage("Leiden", lambda: leiden_membership(igraph, "modularity", 1.0, 0, -1, total))
    labels = collect_small(raw, 2)
    rep.stage("modularity", lambda: modularity(igraph, labels))
    rep.note(
        "Leiden",
        n_clusters=int(labels.max() + 1),
        n_unsorted=int(np.count_nonzero(labels < 0)),
        synthetic_k=k,
        nmi_vs_synthetic=_nmi(y, labels),
    )
    return dict(method=knn.method)


def _recall_worker(rep: _Reporter, mean, std, n, d, k) -> dict[str, Any]:
    from sklearn.neighbors import NearestNeighbors

    from imgcluster_gui.core import graph as graph_module

    graph_module.faiss_module()
    X, _ = synthesise(mean, std, n, d, k, seed=1)
    graphs = {}
    for method in ("exact", "ivf", "hnsw"):
        graphs[method] = rep.stage(
            method, functools.partial(graph_module.build_knn_graph, X, 10, method=method, cache=False)
        )
    model = NearestNeighbors(n_neighbors=11, algorithm="brute", metric="cosine", n_jobs=graph_module.default_threads())
    found = rep.stage("sklearn brute", lambda: model.fit(X).kneighbors(X, return_distance=False))
    sk_rows = np.array([[j for j in row if j != i][:10] for i, row in enumerate(found)])
    exact = graphs["exact"].indices
    return dict(
        recall={m: recall_at(graphs[m].indices, exact) for m in ("ivf", "hnsw")},
        sklearn_agreement=recall_at(sk_rows, exact),
    )


def _crossover_worker(rep: _Reporter, mean, std, points, d, k, exact_limit) -> dict[str, Any]:
    from imgcluster_gui.core import graph as graph_module

    graph_module.faiss_module()
    rows = []
    unit = None  # seconds per N^2 d of the exact search, from the last measured N
    for n in points:
        X, _ = synthesise(mean, std, n, d, k, seed=2)
        row: dict[str, Any] = dict(n=n, d=d, n2d=float(n) * n * d)
        predicted = None if unit is None else unit * row["n2d"]
        if predicted is not None and predicted > exact_limit:
            row.update(exact_s=predicted, exact_extrapolated=True)
        else:
            start = time.perf_counter()
            exact = graph_module.build_knn_graph(X, 15, method="exact", cache=False)
            row.update(exact_s=time.perf_counter() - start, exact_extrapolated=False)
            unit = row["exact_s"] / row["n2d"]
        start = time.perf_counter()
        ivf = graph_module.build_knn_graph(X, 15, method="ivf", cache=False)
        row["ivf_s"] = time.perf_counter() - start
        row["ivf_recall15"] = None if row["exact_extrapolated"] else recall_at(ivf.indices, exact.indices)
        row["auto_method"] = graph_module.choose_method(n, d)
        rep.note(f"N={n} d={d}", **row)
        rows.append(row)
    return dict(rows=rows)


def _threads_worker(rep: _Reporter, mean, std, n, d, k, policy, idle_seconds) -> dict[str, Any]:
    """Search times at 1 and 2 threads, and CPU burnt while idle just after a search."""
    import resource

    if policy == "graph.faiss_module()":
        from imgcluster_gui.core import graph as graph_module

        faiss = graph_module.faiss_module()
        environment_after = os.environ.get("OMP_WAIT_POLICY")
    else:
        os.environ["OMP_WAIT_POLICY"] = policy
        import faiss

        environment_after = os.environ.get("OMP_WAIT_POLICY")
    X, _ = synthesise(mean, std, n, d, k, seed=3)
    out: dict[str, Any] = dict(policy=policy, omp_wait_policy_after_import=environment_after)
    for method in ("exact", "ivf"):
        if method == "exact":
            index = faiss.IndexFlatIP(d)
        else:
            n_lists = int(max(1, min(4 * math.sqrt(n), n // 40)))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, n_lists, faiss.METRIC_INNER_PRODUCT)
            index.train(X)
            index.nprobe = min(n_lists, max(16, n_lists // 32))
        index.add(X)
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            index.search(X[:256], 16)  # warm-up
            start = time.perf_counter()
            index.search(X, 16)
            out[f"{method}_t{threads}_s"] = time.perf_counter() - start
    faiss.omp_set_num_threads(2)
    index.search(X[:4096], 16)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    time.sleep(idle_seconds)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    out["idle_cpu_share"] = ((after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)) / wall
    rep.note(policy, **out)
    return out


# ============================================================================ sections (parent)
def _stage_rows(label: str, run: StageRun) -> list[list[Any]]:
    rows = []
    for name, record in run.stages.items():
        if "seconds" not in record:
            continue
        extra = {
            k: v for k, v in record.items() if k not in ("seconds", "peak_rss_mb", "rss_before_mb", "rss_after_mb")
        }
        rows.append(
            [
                label,
                name,
                record["seconds"],
                record["peak_rss_mb"],
                record["rss_after_mb"],
                ", ".join(f"{k}={fmt(v, 3)}" for k, v in extra.items()),
            ]
        )
    if run.status != "ok":
        rows.append([label, f"({run.status})", None, None, None, run.error])
    return rows


def _peak(run: StageRun) -> float:
    return max((r.get("peak_rss_mb", 0.0) for r in run.stages.values()), default=0.0)


def _work_seconds(run: StageRun) -> float:
    return sum(r.get("seconds", 0.0) for name, r in run.stages.items() if name != "synthesise")


STAGE_HEADERS = ["run", "stage", "seconds", "peak RSS MB (stage)", "RSS after MB", "notes"]


def bench_leiden100k(sizes: Sizes, stats, timeout: float) -> dict[str, Any]:
    mean, std = stats
    run = run_stages(_leiden100k_worker, mean, std, sizes.leiden_n, sizes.leiden_d, sizes.leiden_k, timeout=timeout)
    work, peak = _work_seconds(run), _peak(run)
    met_time = run.status == "ok" and work < TARGET_SECONDS_100K
    met_memory = run.status == "ok" and peak < TARGET_MB_100K
    label = f"{sizes.leiden_n:,} x {sizes.leiden_d}"
    text = (
        f"## {label}: graph (method auto) + Leiden (defaults)\n\n"
        + markdown_table(STAGE_HEADERS, _stage_rows(label, run))
        + f"\n\nGraph + Leiden: **{work:.1f} s**, process peak RSS **{peak:.0f} MB** "
        f"(targets < {TARGET_SECONDS_100K:.0f} s: {'met' if met_time else 'NOT met'}; "
        f"< {TARGET_MB_100K:.0f} MB: {'met' if met_memory else 'NOT met'})."
    )
    return dict(
        markdown=text,
        data=dict(
            stages=run.stages,
            status=run.status,
            error=run.error,
            work_seconds=work,
            peak_rss_mb=peak,
            target_seconds_met=met_time,
            target_memory_met=met_memory,
        ),
    )


def bench_million(sizes: Sizes, stats, timeout: float, with_hnsw: bool) -> dict[str, Any]:
    mean, std = stats
    label = f"{sizes.million_n:,} x {sizes.million_d}"
    rows, data = [], {}
    for method in ("ivf", "hnsw") if with_hnsw else ("ivf",):
        run = run_stages(
            _million_worker, mean, std, sizes.million_n, sizes.million_d, sizes.million_k, method, timeout=timeout
        )
        rows += _stage_rows(f"{label}, {method}", run)
        data[method] = dict(
            stages=run.stages,
            status=run.status,
            error=run.error,
            work_seconds=_work_seconds(run),
            peak_rss_mb=_peak(run),
            wall_seconds=run.seconds,
        )
    text = (
        f"## {label}: approximate graph + Leiden's steps (each run cut at {timeout:.0f} s)\n\n"
        + markdown_table(STAGE_HEADERS, rows)
        + "\n\n"
        + "; ".join(
            f"{m}: {d['work_seconds']:.0f} s after synthesis, peak {d['peak_rss_mb']:.0f} MB"
            + ("" if d["status"] == "ok" else f" ({d['status']}: {d['error']})")
            for m, d in data.items()
        )
        + "."
    )
    return dict(markdown=text, data=data)


def bench_recall(sizes: Sizes, stats, timeout: float) -> dict[str, Any]:
    mean, std = stats
    rows, data = [], {}
    for d in (1280, 256):
        run = run_stages(_recall_worker, mean, std, sizes.recall_n, d, max(10, sizes.recall_n // 200), timeout=timeout)
        if run.status != "ok":
            rows.append([f"{sizes.recall_n:,} x {d}", run.status, None, None, None, run.error])
            data[d] = dict(status=run.status, error=run.error, stages=run.stages)
            continue
        exact_s = run.stages["exact"]["seconds"]
        sk_s = run.stages["sklearn brute"]["seconds"]
        for method in ("exact", "ivf", "hnsw", "sklearn brute"):
            seconds = run.stages[method]["seconds"]
            recall = (
                1.0
                if method == "exact"
                else run.result["sklearn_agreement"]
                if method == "sklearn brute"
                else run.result["recall"][method]
            )
            rows.append(
                [
                    f"{sizes.recall_n:,} x {d}",
                    method,
                    recall,
                    seconds,
                    exact_s / seconds,
                    (sk_s / seconds) if method == "exact" else None,
                ]
            )
        data[d] = dict(
            stages=run.stages,
            recall=run.result["recall"],
            sklearn_agreement=run.result["sklearn_agreement"],
            exact_speedup_vs_sklearn=sk_s / exact_s,
        )
    text = "## recall@10 against the exact search (build + search of all points, k = 10)\n\n" + markdown_table(
        [
            "data",
            "method",
            "recall@10 (sklearn: agreement with faiss exact)",
            "seconds",
            "speed-up vs faiss exact",
            "faiss exact speed-up vs sklearn brute",
        ],
        rows,
    )
    return dict(markdown=text, data=data)


def _crossing(rows: list[dict[str, Any]]) -> Optional[float]:
    """N where exact and ivf take the same time (log-log interpolation between measured N), None if never."""
    for a, b in zip(rows, rows[1:]):
        ra, rb = a["exact_s"] / a["ivf_s"], b["exact_s"] / b["ivf_s"]
        if ra <= 1.0 < rb:
            t = math.log(1.0 / ra) / math.log(rb / ra)
            return float(math.exp(math.log(a["n"]) + t * (math.log(b["n"]) - math.log(a["n"]))))
    if rows and rows[0]["exact_s"] > rows[0]["ivf_s"]:
        return float(rows[0]["n"])  # ivf already faster at the smallest N
    return None


def _sci(value: Optional[float]) -> str:
    return "n/a (no crossing in the measured range)" if value is None else f"{value:.2e}"


def bench_crossover(sizes: Sizes, stats, timeout: float, exact_limit: float) -> dict[str, Any]:
    from imgcluster_gui.core.graph import EXACT_BUDGET

    mean, std = stats
    rows, data = [], {}
    for d in (1280, 256):
        run = run_stages(_crossover_worker, mean, std, sizes.crossover_points, d, 50, exact_limit, timeout=timeout)
        measured = [r for name, r in run.stages.items() if name.startswith("N=")]
        for r in measured:
            rows.append(
                [
                    f"{r['n']:,}",
                    d,
                    f"{r['n2d']:.2e}",
                    r["exact_s"],
                    "extrapolated (N^2)" if r["exact_extrapolated"] else "measured",
                    r["ivf_s"],
                    r["exact_s"] / r["ivf_s"],
                    r["ivf_recall15"],
                    r["auto_method"],
                ]
            )
        if run.status != "ok":
            rows.append(["", d, "", None, run.status, None, None, None, run.error])
        crossing = _crossing(measured)
        real = [r for r in measured if not r["exact_extrapolated"]]
        unit = real[-1]["exact_s"] / real[-1]["n2d"] if real else None
        data[d] = dict(
            rows=measured,
            status=run.status,
            crossover_n=crossing,
            crossover_n2d=None if crossing is None else crossing**2 * d,
            exact_seconds_per_n2d=unit,
        )
    crossings = [v["crossover_n2d"] for v in data.values() if v["crossover_n2d"]]
    units = [v["exact_seconds_per_n2d"] for v in data.values() if v["exact_seconds_per_n2d"]]
    recommended = min(crossings) if crossings else None
    fifteen = 15.0 / max(units) if units else None
    data["current_exact_budget"] = EXACT_BUDGET
    data["recommended_exact_budget"] = recommended
    data["budget_for_15_s_exact"] = fifteen
    lines = [
        f"d={d}: exact = ivf at N ~ {fmt(v['crossover_n'], 0)} (N^2 d = {_sci(v['crossover_n2d'])}); "
        f"exact costs {fmt(v['exact_seconds_per_n2d'] and v['exact_seconds_per_n2d'] * 1e12, 3)} s per 1e12 N^2 d"
        for d, v in data.items()
        if isinstance(d, int)
    ]
    text = (
        "## Exact against ivf (k = 15, build + search of all points): the EXACT_BUDGET crossover\n\n"
        + markdown_table(
            ["N", "d", "N^2 d", "exact s", "exact", "ivf s", "exact / ivf", "ivf recall@15", "method='auto' today"],
            rows,
        )
        + "\n\n"
        + "\n".join(f"- {line}" for line in lines)
        + f"\n- EXACT_BUDGET today: {EXACT_BUDGET:.2e}; where ivf starts to pay (the lower of the two "
        f"crossovers): **{_sci(recommended)}**; the budget that keeps an exact search under 15 s on this "
        f"machine: {_sci(fifteen)}."
    )
    return dict(markdown=text, data=data)


def bench_threads(sizes: Sizes, stats, timeout: float) -> dict[str, Any]:
    mean, std = stats
    rows, data = [], {}
    # Inline (smoke), faiss is already imported in this process: only the project's import is run.
    for policy in ("graph.faiss_module()",) if INLINE else ("graph.faiss_module()", "ACTIVE"):
        run = run_stages(
            _threads_worker, mean, std, sizes.threads_n, 1280, 20, policy, sizes.idle_seconds, timeout=timeout
        )
        if run.status != "ok":
            rows.append([policy, run.status, None, None, None, None, None, run.error])
            continue
        r = run.result
        data[policy] = r
        rows.append(
            [
                policy,
                r["omp_wait_policy_after_import"] or "(unset: restored)",
                r["exact_t1_s"],
                r["exact_t2_s"],
                r["exact_t1_s"] / r["exact_t2_s"],
                r["ivf_t1_s"],
                r["ivf_t2_s"],
                r["ivf_t1_s"] / r["ivf_t2_s"],
                r["idle_cpu_share"],
            ]
        )
    text = (
        f"## faiss threads ({sizes.threads_n:,} x 1280, search of all points, k = 16)\n\n"
        + markdown_table(
            [
                "import",
                "OMP_WAIT_POLICY in os.environ after import",
                "exact 1 thread s",
                "exact 2 threads s",
                "speed-up",
                "ivf 1 thread s",
                "ivf 2 threads s",
                "speed-up",
                f"CPU share while idle {sizes.idle_seconds:.1f} s after a search",
            ],
            rows,
        )
        + "\n\n`graph.faiss_module()` imports faiss with `OMP_WAIT_POLICY=PASSIVE` (then restores the environment, "
        "so torch keeps its default): its OpenMP workers sleep between searches instead of spinning on the "
        "cores the GUI and the extraction need. The last column is CPU seconds per wall second the process "
        "used while sleeping just after a search (0 = no spinning)."
    )
    return dict(markdown=text, data=data)


# ============================================================================ main
def _write(
    out: Path,
    smoke: bool,
    device: dict,
    sizes: Sizes,
    threads: int,
    source: str,
    sections: list[str],
    data: dict[str, Any],
    started: float,
) -> None:
    intro = (
        f"Features synthesised from {source} (per-dimension statistics; 256-d = its 256 highest-variance "
        f"dimensions), L2-normalised. faiss threads {threads}. Each run in its own process; peak RSS is the "
        "kernel's high-water mark, reset before each stage. The machine's 2 cores may be shared "
        f"(load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())})."
    )
    suffix = "_smoke" if smoke else ""
    common.write_json(
        out / f"graph_scale{suffix}.json",
        dict(
            device=device,
            smoke=smoke,
            sizes=sizes.__dict__,
            faiss_threads=threads,
            feature_source=source,
            sections=data,
            load_average=os.getloadavg(),
            total_seconds=time.perf_counter() - started,
        ),
    )
    common.save_markdown(
        out / f"graph_scale{suffix}.md",
        "Neighbour graph and Leiden at scale" + (" (smoke run)" if smoke else ""),
        [intro] + sections,
        common.device_line(device),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.graph_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds: checks the script runs")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument(
        "--million-timeout",
        type=float,
        default=900.0,
        help="seconds each 1M run (ivf, hnsw) may take before it is cut (default 900)",
    )
    parser.add_argument("--no-hnsw-million", action="store_true", help="skip the 1M hnsw run")
    parser.add_argument(
        "--exact-limit",
        type=float,
        default=90.0,
        help="crossover: extrapolate an exact search predicted above this many seconds (default 90)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="limit of every other isolated run (s)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown or not only:
        print(
            f"unknown section(s): {', '.join(unknown) or '(none)'}; choose from {', '.join(SECTIONS)}", file=sys.stderr
        )
        return 2
    sizes = Sizes.smoke() if args.smoke else Sizes.full()
    global INLINE
    INLINE = args.smoke
    out = common.results_dir(args.out)
    device = common.device_label()
    from imgcluster_gui.core import graph as graph_module

    threads = graph_module.default_threads()
    print(
        f"Device: {common.device_line(device)}; faiss threads {threads}; "
        f"EXACT_BUDGET {graph_module.EXACT_BUDGET:.2e}"
        + ("  [SMOKE RUN: tiny sizes, the figures mean nothing]" if args.smoke else ""),
        flush=True,
    )
    started = time.perf_counter()
    mean, std, source = lite0_statistics(args.smoke)
    stats = (mean.astype(np.float32), std.astype(np.float32))
    print(f"Feature statistics: {source}", flush=True)
    sections, data = [], {}
    for name in SECTIONS:
        if name not in only:
            continue
        t0 = time.perf_counter()
        if name == "leiden100k":
            result = bench_leiden100k(sizes, stats, args.timeout)
        elif name == "million":
            result = bench_million(sizes, stats, args.million_timeout, not args.no_hnsw_million)
        elif name == "recall":
            result = bench_recall(sizes, stats, args.timeout)
        elif name == "crossover":
            result = bench_crossover(sizes, stats, args.timeout, args.exact_limit)
        else:
            result = bench_threads(sizes, stats, args.timeout)
        result["data"]["section_seconds"] = time.perf_counter() - t0
        sections.append(result["markdown"])
        data[name] = result["data"]
        print("\n" + result["markdown"] + f"\n\n_(section took {time.perf_counter() - t0:.1f} s)_", flush=True)
        # after each: a cut run keeps them
        _write(out, args.smoke, device, sizes, threads, source, sections, data, started)
    suffix = "_smoke" if args.smoke else ""
    print(
        f"\nWrote {out / f'graph_scale{suffix}.json'} and {out / f'graph_scale{suffix}.md'} "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
