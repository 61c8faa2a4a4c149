"""The benchmark scripts still run: each one's ``--smoke`` mode prints its tables and writes its JSON.

The smoke figures say nothing about speed or quality (tiny inputs); the full runs are on demand
(``python -m benchmarks.quality`` / ``python -m benchmarks.speed``), never in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# benchmarks/ is a folder of scripts beside the package, not installed: they import because tests/conftest.py
# puts the repository root on sys.path, and run as `python -m benchmarks.<name>` from it.
from benchmarks import common
from benchmarks.speed import inertia_of

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_module(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _table_headers(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("| ") and line.endswith(" |")]


def test_markdown_table_formats_every_cell():
    table = common.markdown_table(["a", "b"], [[1.23456, None], ["x | y", float("nan")]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1.235 | n/a |", "| x \\| y | n/a |"]


def test_gaussian_mixture_shapes_and_labels():
    X, y = common.gaussian_mixture(500, 8, 5, seed=3)
    assert X.shape == (500, 8) and X.dtype == np.float32
    assert y.shape == (500,) and set(np.unique(y)) <= set(range(5))
    X2, _ = common.gaussian_mixture(500, 8, 5, seed=3)
    np.testing.assert_array_equal(X, X2)


def test_features_like_keeps_float32_and_scale():
    rng = np.random.default_rng(0)
    real = np.abs(rng.normal(1.0, 0.5, (200, 16))).astype(np.float32)
    X, y = common.features_like(real, 25_000, 4, seed=0)
    assert X.dtype == np.float32 and X.shape == (25_000, 16) and y.shape == (25_000,)
    assert (X >= 0).all()
    # Same order of magnitude as the real features it imitates.
    assert 0.2 < X.mean() / real.mean() < 5


def test_inertia_is_zero_for_points_on_their_centres_and_grows_with_spread():
    X = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)
    labels = np.repeat(np.arange(3), 4)
    assert inertia_of(X, labels) == pytest.approx(0.0)
    assert inertia_of(X, np.zeros(12, dtype=int)) > 0


def test_large_jpegs_are_written_once(tmp_path):
    from PIL import Image

    paths = common.make_large_jpegs(tmp_path, 2, size=(320, 240))
    assert [p.exists() for p in paths] == [True, True]
    with Image.open(paths[0]) as image:
        assert image.size == (320, 240)
    mtime = paths[0].stat().st_mtime_ns
    assert common.make_large_jpegs(tmp_path, 2, size=(320, 240)) == paths
    assert paths[0].stat().st_mtime_ns == mtime  # reused, not rewritten


@pytest.mark.slow
def test_speed_smoke_prints_tables_and_writes_json(tmp_path):
    proc = _run_module(
        "benchmarks.speed",
        "--smoke",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
        "--only",
        "extraction,cache,clustering,scale",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Device:" in proc.stdout
    assert any("naive loop img/s" in line for line in _table_headers(proc.stdout)), proc.stdout[-2000:]
    assert any("speed-up vs sklearn" in line for line in _table_headers(proc.stdout)), proc.stdout[-2000:]
    report = json.loads((tmp_path / "speed_smoke.json").read_text())
    assert report["smoke"] is True
    assert set(report["sections"]) == {"extraction", "cache", "clustering", "scale"}
    record = report["sections"]["extraction"]["records"][0]
    assert record["naive_ips"] > 0 and record["ceiling_ips"] > 0
    assert (tmp_path / "speed_smoke.md").read_text().startswith("# Speed benchmarks")


def test_speed_rejects_an_unknown_section(tmp_path):
    proc = _run_module("benchmarks.speed", "--smoke", "--only", "warp", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown section" in proc.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_quality_smoke_prints_scores_on_a_real_dataset(tmp_path, shared_dataset):
    shared_dataset("coil20")  # skips where absent: the benchmark reads ../shared/datasets/coil20 itself
    proc = _run_module(
        "benchmarks.quality", "--smoke", "--threads", "1", "--algorithms", "kmeans", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    headers = _table_headers(proc.stdout)
    assert any("| features | algorithm | K | NMI |" in line for line in headers), proc.stdout[-2000:]
    report = json.loads((tmp_path / "quality_smoke.json").read_text())
    scores = report["datasets"]["coil20"]["scores"]
    assert "raw pixels | kmeans" in scores
    nmi_mean, nmi_std = scores["raw pixels | kmeans"]["nmi"]
    assert 0.0 <= nmi_mean <= 1.0 and nmi_std >= 0.0
    assert report["datasets"]["coil20"]["auto_k"]["true_k"] == 20


@pytest.mark.slow
@pytest.mark.integration
def test_quality_no_k_section_alone_writes_its_own_files(tmp_path, shared_dataset):
    shared_dataset("coil20")  # skips where absent: the benchmark reads ../shared/datasets/coil20 itself
    proc = _run_module("benchmarks.quality", "--smoke", "--threads", "1", "--only", "nok", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any("| dataset | true K | method | K found |" in line for line in _table_headers(proc.stdout)), proc.stdout[
        -2000:
    ]
    assert "target coil20:" in proc.stdout
    assert not (tmp_path / "quality_smoke.json").exists()  # the full run's files are left alone
    report = json.loads((tmp_path / "quality_nok_smoke.json").read_text())
    result = report["no_k"]["coil20"]
    assert result["true_k"] == 20
    for key in ("leiden", "finch", "silhouette_sweep", "kmeans_true_k"):
        assert 0.0 <= result[key]["nmi"][0] <= 1.0
    assert set(result["at_true_k"]) == {"leiden", "kmeans", "spectral"}
    assert result["at_true_k"]["leiden"]["found_k"] == [20]
    assert isinstance(result["targets"]["met"], bool)


def test_quality_rejects_an_unknown_section(tmp_path):
    proc = _run_module("benchmarks.quality", "--smoke", "--only", "warp", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown section" in proc.stderr


@pytest.mark.slow
def test_graph_scale_smoke_prints_every_section_and_writes_json(tmp_path):
    proc = _run_module("benchmarks.graph_scale", "--smoke", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    headers = _table_headers(proc.stdout)
    assert any("| run | stage | seconds | peak RSS MB (stage) |" in line for line in headers), proc.stdout[-2000:]
    assert any("recall@10" in line for line in headers), proc.stdout[-2000:]
    report = json.loads((tmp_path / "graph_scale_smoke.json").read_text())
    assert report["smoke"] is True
    sections = report["sections"]
    assert set(sections) == {"leiden100k", "recall", "crossover", "threads", "million"}
    assert sections["leiden100k"]["status"] == "ok"
    assert {"synthesise", "graph (auto)", "Leiden (defaults)"} <= set(sections["leiden100k"]["stages"])
    assert sections["leiden100k"]["peak_rss_mb"] > 0
    for d in ("1280", "256"):
        assert 0.0 <= sections["recall"][d]["recall"]["ivf"] <= 1.0
        assert 0.0 <= sections["recall"][d]["recall"]["hnsw"] <= 1.0
    assert sections["crossover"]["current_exact_budget"] > 0
    assert sections["million"]["ivf"]["status"] == "ok"
    assert (tmp_path / "graph_scale_smoke.md").read_text().startswith("# Neighbour graph and Leiden at scale")


def test_graph_scale_rejects_an_unknown_section(tmp_path):
    proc = _run_module("benchmarks.graph_scale", "--smoke", "--only", "warp", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown section" in proc.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_features_smoke_scores_backbones_and_post_processing(tmp_path, shared_dataset, shared_weights):
    shared_dataset("coil20")  # skips where absent: the benchmark reads ../shared/datasets itself
    shared_weights("mobilenet_v2_imagenet_coral.pth")
    env_cache = tmp_path / "cache"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", IMGCLUSTER_CACHE_DIR=str(env_cache))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.features", "--smoke", "--threads", "1", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    headers = _table_headers(proc.stdout)
    assert any(line.startswith("| features | img/s | coil20 no K |") for line in headers), proc.stdout[-2000:]
    assert any(line.startswith("| post-processing |") for line in headers), proc.stdout[-2000:]
    report = json.loads((tmp_path / "features_smoke.json").read_text())
    assert report["smoke"] is True and report["baseline"] == "efficientnet_lite0 penultimate, 15-NN"
    rows = report["rows"]
    # Every feature set with each graph size, and Leiden at the true K beside k-means.
    expected = {"efficientnet_lite0 penultimate", "mobilenet_v2 mid", "efficientnet_lite0 + mobilenet_v2"}
    assert {f"{name}, {k}-NN" for name in expected for k in (10, 15)} <= set(rows)
    assert report["neighbours"] == [10, 15] and report["post_neighbours"] == 10
    assert report["weights_files"] == {"mobilenet_v2": "mobilenet_v2_imagenet_coral.pth"}
    for row in rows.values():
        assert 0.0 <= row["nok"]["coil20"] <= 1.0 and 0.0 <= row["truek"]["coil20"] <= 1.0
        assert 0.0 <= row["kmeans"]["coil20"] <= 1.0
    assert all(s["ips"] > 0 for s in report["speed"].values())
    # The one-pass extraction is the project's: same penultimate features as extract_features.
    assert all(record["agreement"] > 0.999 for record in report["extraction"].values())
    post = report["post"]["coil20"]
    assert {"efficientnet_lite0 + flip averaging", "efficientnet_lite0 + GeM p=3"} <= set(post)
    assert report["chosen"] in rows
    assert list((env_cache / "featbench").glob("coil20-*.npz"))  # the re-run cache


def test_curation_references_read_the_oracle_and_the_supervised_ceiling():
    from benchmarks.curation import nmi, perfect_follow, simulate_corrections, supervised_ceiling
    from imgcluster_gui.core.session import ClusterSession

    rng = np.random.default_rng(0)
    truth = np.repeat(np.array(["a", "b", "c"]), 20)
    X = rng.normal(size=(60, 8)).astype(np.float32) + 6.0 * np.eye(8, dtype=np.float32)[np.repeat([0, 1, 2], 20)]
    automatic = np.repeat([0, 1], 30)  # class b split across both clusters, c hidden inside cluster 1
    session = ClusterSession([f"{i}.png" for i in range(60)], automatic.copy(), features=X)
    simulate_corrections(session, X, truth, per_cluster=1)
    constraints = session.constraints()
    oracle = perfect_follow(automatic, session.labels, constraints, truth)
    # Every class-mate of a moved image that was still in its source cluster went where the image went.
    for image, target in zip(constraints.anchors, constraints.anchor_labels):
        mates = (automatic == automatic[image]) & (truth == truth[image])
        assert np.all(oracle[mates] == target)
    assert nmi(truth, oracle) > nmi(truth, session.labels)
    # Separable blobs: a classifier trained on the true labels gets (almost) all of them.
    assert supervised_ceiling(X, truth) > 0.95
    shuffled = rng.permutation(truth)
    assert supervised_ceiling(X, shuffled) < 0.3


def test_recluster_scale_smoke_compares_the_region_with_the_whole_graph(tmp_path):
    proc = _run_module("benchmarks.recluster_scale", "--smoke", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any("whole graph (baseline)" in line for line in _table_headers(proc.stdout)), proc.stdout[-2000:]
    report = json.loads((tmp_path / "recluster_scale_smoke.json").read_text())
    (row,) = report["rows"]
    assert row["n"] == 2000 and row["differing"] == 0
    assert row["region"]["seconds"] > 0 and row["whole"]["seconds"] > 0
