"""The on-disk feature store: append / memory-mapped read, crash safety, resumable streaming extraction, and the
pipeline and CLI reading it (``imgcluster extract --store``, ``imgcluster cluster --features``)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from imgcluster_gui.core.features.store import (
    PATHS_NAME,
    ROWS_NAME,
    FeatureStore,
    FeatureStoreError,
    extract_to_store,
    pending_paths,
)
from imgcluster_gui.core.progress import Cancelled
from tests.helpers import CancelAt


def _rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_rows_and_paths_round_trip_memory_mapped(tmp_path):
    store = FeatureStore.create(tmp_path / "s", 8, model_key="m")
    first, second = _rows(3, 8), _rows(2, 8, seed=1)
    odd = "/photos/caf\udce9.jpg"  # an undecodable byte kept as a surrogate escape
    store.append(["/a.jpg", "/b.jpg", odd], first)
    store.append(["/c.jpg", "/d.jpg"], second)

    reopened = FeatureStore.open(tmp_path / "s")
    features = reopened.features()
    assert isinstance(features, np.memmap) and features.dtype == np.float32  # no copy in RAM
    np.testing.assert_array_equal(features, np.vstack([first, second]))
    assert reopened.paths == ["/a.jpg", "/b.jpg", odd, "/c.jpg", "/d.jpg"]
    blocks = list(reopened.iter_blocks(block_rows=2))
    assert [start for start, _ in blocks] == [0, 2, 4]
    np.testing.assert_array_equal(np.vstack([b for _, b in blocks]), features)


def test_float16_store_halves_the_disk_and_reads_back_float32(tmp_path):
    store = FeatureStore.create(tmp_path / "s", 16, dtype="float16")
    rows = _rows(4, 16)
    store.append([f"/{i}.png" for i in range(4)], rows)
    assert (tmp_path / "s" / ROWS_NAME).stat().st_size == 4 * 16 * 2
    features = FeatureStore.open(tmp_path / "s").features()
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, rows, rtol=1e-3, atol=1e-3)


def test_a_chunk_half_written_by_a_crash_is_dropped_on_open(tmp_path):
    store = FeatureStore.create(tmp_path / "s", 4)
    store.append(["/a", "/b"], _rows(2, 4))
    # A crash between appending the bytes and committing the index leaves longer files than the index says.
    with open(tmp_path / "s" / ROWS_NAME, "ab") as handle:
        handle.write(b"\0" * 24)
    with open(tmp_path / "s" / PATHS_NAME, "ab") as handle:
        handle.write(b'"/partial')

    reopened = FeatureStore.open(tmp_path / "s")
    assert len(reopened) == 2 and reopened.paths == ["/a", "/b"]
    assert (tmp_path / "s" / ROWS_NAME).stat().st_size == 2 * 4 * 4
    reopened.append(["/c"], _rows(1, 4, seed=3))  # appending goes on after the last whole chunk
    assert FeatureStore.open(tmp_path / "s").paths == ["/a", "/b", "/c"]


def test_refusals_name_the_problem(tmp_path):
    with pytest.raises(FeatureStoreError, match="not a feature store"):
        FeatureStore.open(tmp_path)
    store = FeatureStore.create(tmp_path / "s", 4, model_key="lite0")
    with pytest.raises(FeatureStoreError, match="already holds"):
        FeatureStore.create(tmp_path / "s", 4)
    with pytest.raises(FeatureStoreError, match="4-d"):
        FeatureStore.open_or_create(tmp_path / "s", 8, model_key="lite0")
    with pytest.raises(FeatureStoreError, match="another model"):
        FeatureStore.open_or_create(tmp_path / "s", 4, model_key="resnet")
    with pytest.raises(ValueError, match=r"\(1, 4\)"):
        store.append(["/a"], _rows(2, 4))
    # Damage: an index naming more rows than the file holds (a truncated copy) is refused, not read as zeros.
    index = json.loads((tmp_path / "s" / "store.json").read_text())
    index["n_rows"] = 5
    (tmp_path / "s" / "store.json").write_text(json.dumps(index))
    with pytest.raises(FeatureStoreError, match="damaged"):
        FeatureStore.open(tmp_path / "s")


def _images(tmp_path, sample_images, per_class: int = 4) -> list:
    folder = tmp_path / "imgs"
    for cls in ("bag", "trouser"):
        (folder / cls).mkdir(parents=True)
        for f in sorted((sample_images / cls).glob("*.png"))[:per_class]:
            shutil.copy(f, folder / cls / f.name)
    return folder


def test_streaming_extraction_resumes_after_a_cancel_and_matches_one_call(tmp_path, sample_images, monkeypatch):
    from imgcluster_gui.core.dataset import scan_folder
    from imgcluster_gui.core.features import extract as extract_module

    folder = _images(tmp_path, sample_images)
    (folder / "bag" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # passes no decoder
    paths = scan_folder(folder, check_content=False).paths
    calls: list[int] = []
    real = extract_module.extract_features

    def counting(chunk, **kwargs):
        calls.append(len(chunk))
        return real(chunk, **kwargs)

    monkeypatch.setattr(extract_module, "extract_features", counting)
    store_dir = tmp_path / "store"
    # Cancel as the second chunk starts: the first chunk is committed, nothing of the second is.
    cancel = CancelAt(after=1, stage="Features: next chunk")
    with pytest.raises(Cancelled):
        extract_to_store(paths, store_dir, device="cpu", num_workers=0, chunk_size=4, progress=cancel)
    assert len(FeatureStore.open(store_dir)) == 4 and calls == [4]

    store = extract_to_store(paths, store_dir, device="cpu", num_workers=0, chunk_size=4)
    assert calls == [4, 4, 1]  # only the images not yet stored
    assert pending_paths(store, paths) == []
    assert [s.path for s in store.failed] == [str(folder / "bag" / "zz_broken.png")]
    assert sorted(store.paths) == sorted(str(p) for p in paths if p.name != "zz_broken.png")

    whole = real(paths, device="cpu", num_workers=0, cache=False)
    row_of = {str(p): i for i, p in enumerate(whole.paths)}
    stored = store.features()
    for i, path in enumerate(store.paths):
        np.testing.assert_allclose(stored[i], whole.features[row_of[path]], rtol=1e-5, atol=1e-5)


def test_cli_extract_then_cluster_from_the_store(tmp_path, sample_images, capsys):
    from imgcluster_gui.cli import main

    folder = _images(tmp_path, sample_images, per_class=5)
    store_dir = tmp_path / "store"
    assert main(["extract", str(folder), "--store", str(store_dir), "--device", "cpu", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "10 images x 1280" in text and "--features" in text

    out = tmp_path / "labels.csv"
    assert main(["cluster", str(folder), "--features", str(store_dir), "--k", "2", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "10 used" in text and "0 extracted, 10 from cache" in text
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and len({r["cluster_id"] for r in rows}) == 2

    assert main(["cluster", str(folder), "--features", str(tmp_path / "nothing"), "--quiet"]) == 2
    assert "not a feature store" in capsys.readouterr().err
    assert main(["cluster", str(folder), "--features", str(store_dir), "--backbone", "mobilenet_v2", "--quiet"]) == 2
    assert "holds efficientnet_lite0 features, not mobilenet_v2" in capsys.readouterr().err


def test_graph_and_pca_layout_read_a_large_store_without_whole_matrix_copies(tmp_path, monkeypatch):
    from sklearn.decomposition import PCA

    from imgcluster_gui.core import embedding, graph

    rng = np.random.default_rng(0)
    rows = np.abs(rng.standard_normal((3000, 32))).astype(np.float32)
    rows[:1500, :4] += 2.0  # two groups along a main axis
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    store = FeatureStore.create(tmp_path / "s", 32)
    store.append([f"/{i}.jpg" for i in range(3000)], rows)
    features = FeatureStore.open(tmp_path / "s").features()  # a read-only memory map

    searched, metric = graph.prepare(features, "cosine")
    assert metric == "cosine" and np.shares_memory(searched, features)  # unit rows are searched in place
    knn = graph.build_knn_graph(features, 10, cache=False)
    assert knn.indices.shape == (3000, 10)

    # The blockwise-covariance layout (used above 2**26 values) on a small set, its axes fitted on every 3rd row.
    monkeypatch.setattr(embedding, "STREAMING_PCA_VALUES", 1000)
    monkeypatch.setattr(embedding, "PCA_FIT_ROWS", 1000)
    layout = embedding.embed_2d(features, "pca")
    reference = PCA(n_components=2, random_state=0).fit_transform(rows)
    assert layout.shape == (3000, 2) and layout.dtype == np.float32
    assert np.corrcoef(layout[:, 0], reference[:, 0])[0, 1] > 0.99  # same axis, same sign


def test_scale_benchmark_smoke_writes_a_row_per_stage(tmp_path, capsys):
    from benchmarks import scale_memory

    assert scale_memory.main(["--smoke", "--sizes", "300", "--only", "store,kmeans", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "scale_memory_smoke.json").read_text())
    assert [(r["stage"], r["status"]) for r in report["rows"]] == [
        ("store write", "ok"),
        ("store read", "ok"),
        ("k-means", "ok"),
    ]
    assert all(r["peak_rss_mb"] > 0 for r in report["rows"])
    assert "## Growth" in (tmp_path / "scale_memory_smoke.md").read_text()
