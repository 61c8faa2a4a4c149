"""Near-duplicate groups, bursts, the hash as a second signal, which image to keep, the list export, similar images."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image, ImageFilter

from imgcluster_gui.core import duplicates
from imgcluster_gui.core.duplicates import (
    best_of_group,
    duplicate_pairs,
    find_duplicate_groups,
    hamming_distances,
    sharpness,
    similarity_to,
)
from imgcluster_gui.core.export import export_duplicates_csv
from imgcluster_gui.core.similar import most_similar


def _at_cosine(base: np.ndarray, other: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector at exactly ``cosine`` from unit ``base``, in the plane of ``base`` and ``other``."""
    ortho = other - (other @ base) * base
    ortho /= np.linalg.norm(ortho)
    return cosine * base + np.sqrt(1 - cosine**2) * ortho


def _features(n: int = 40, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    return X / np.linalg.norm(X, axis=1, keepdims=True)  # random directions: far apart in 32 dims


def test_groups_are_the_near_identical_images_inside_one_cluster():
    X = _features()
    X[1] = _at_cosine(X[0], X[1], 0.97)
    X[2] = _at_cosine(X[0], X[2], 0.95)
    X[11] = _at_cosine(X[10], X[11], 0.99)
    X[21] = _at_cosine(X[20], X[21], 0.80)  # alike, but below the threshold
    labels = np.zeros(40, dtype=np.int64)
    labels[10] = 3  # 10 and 11 are in different clusters: never one group
    assert find_duplicate_groups(X, labels, threshold=0.9) == [[0, 1, 2]]
    assert find_duplicate_groups(X, None, threshold=0.9) == [[0, 1, 2], [10, 11]]
    assert find_duplicate_groups(X, None, threshold=0.75) == [[0, 1, 2], [10, 11], [20, 21]]
    pairs = duplicate_pairs(X, 0.9)
    assert [g.tolist() for g in pairs.groups(np.where(np.arange(40) == 2, 5, 0))] == [[0, 1], [10, 11]]


def test_a_burst_needs_close_capture_times():
    X = _features()
    X[5] = _at_cosine(X[4], X[5], 0.86)  # a burst frame: less alike than a copy
    times = np.full(40, np.nan)
    assert find_duplicate_groups(X, threshold=0.9, times=times) == []  # unknown times: not a burst
    times[4], times[5] = 1000.0, 1002.5
    assert find_duplicate_groups(X, threshold=0.9, times=times, burst_seconds=10) == [[4, 5]]
    times[5] = 1000.0 + 3600
    assert find_duplicate_groups(X, threshold=0.9, times=times, burst_seconds=10) == []
    pairs = duplicate_pairs(X, 0.9, times=np.where(np.arange(40) == 5, 1001.0, times))
    assert pairs.kind.tolist() == [duplicates.KIND_BURST]


def test_the_hash_confirms_or_adds_pairs():
    X = _features()
    X[1] = _at_cosine(X[0], X[1], 0.95)
    X[3] = _at_cosine(X[2], X[3], 0.70)
    hashes = np.random.default_rng(3).integers(1, 2**63, size=40, dtype=np.int64).astype(np.uint64)  # far apart
    hashes[1] = hashes[0] ^ np.uint64(0xFFFF_FFFF)  # ... 0 and 1 disagree by 32 bits
    hashes[3] = hashes[2] ^ np.uint64(0b111)  # ... 2 and 3 agree (3 bits)
    assert find_duplicate_groups(X, threshold=0.9) == [[0, 1]]
    assert find_duplicate_groups(X, threshold=0.9, hashes=hashes, hash_rule="both") == []
    assert find_duplicate_groups(X, threshold=0.9, hashes=hashes, hash_rule="either") == [[0, 1], [2, 3]]
    assert hamming_distances(hashes[[0, 2]], hashes[[1, 3]]).tolist() == [32, 3]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        duplicate_pairs(_features(), 1.5)
    with pytest.raises(ValueError, match="capture times"):
        duplicate_pairs(_features(), 0.9, times=[1.0, 2.0])
    assert len(duplicate_pairs(np.ones((1, 4)), 0.9)) == 0  # one image: no pair


def _photo(path, size=(200, 150), blur=0.0):
    rng = np.random.default_rng(1)
    pixels = (rng.random((size[1] // 10, size[0] // 10, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST)  # sharp edges
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    image.save(path)
    return str(path)


def test_best_of_group_is_the_sharpest_or_the_largest(tmp_path):
    sharp = _photo(tmp_path / "sharp.png")
    blurred = _photo(tmp_path / "blurred.png", blur=3)
    large_blurred = _photo(tmp_path / "large.png", size=(400, 300), blur=4)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    paths = [blurred, sharp, large_blurred, str(broken)]
    assert sharpness(sharp) > sharpness(blurred) > 0
    assert np.isnan(sharpness(broken))
    assert best_of_group([0, 1, 2, 3], paths, "sharpest") == 1
    assert best_of_group([0, 1, 2, 3], paths, "largest") == 2
    scores = np.full(4, np.nan)
    assert best_of_group([0, 2], paths, "sharpest", scores=scores) in (0, 2)
    assert np.isfinite(scores[[0, 2]]).all() and np.isnan(scores[[1, 3]]).all()  # measured once, remembered
    with pytest.raises(ValueError, match="criterion"):
        best_of_group([0], paths, "prettiest")


def test_perceptual_hashes_of_copies_agree(tmp_path):
    pytest.importorskip("imagehash")
    original = _photo(tmp_path / "a.png", size=(320, 240), blur=1)
    Image.open(original).convert("RGB").save(tmp_path / "a.jpg", quality=40)
    other = tmp_path / "b.png"
    Image.open(original).transpose(Image.Transpose.ROTATE_180).save(other)
    broken = tmp_path / "c.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    hashes = duplicates.perceptual_hashes([original, tmp_path / "a.jpg", other, broken])
    distance = hamming_distances(hashes[[0, 0]], hashes[[1, 2]])
    assert distance[0] <= 6 < distance[1]
    assert hashes[3] == 0  # undecodable: no hash


def test_duplicates_list_export(tmp_path):
    X = _features(6)
    X[1] = _at_cosine(X[0], X[1], 0.95)
    paths = [f"=img{i}.jpg" for i in range(6)]  # relative, so the first character is "="
    groups = find_duplicate_groups(X, threshold=0.9)
    sims = [similarity_to(X, g, g[0]) for g in groups]
    out = export_duplicates_csv(tmp_path / "dups.csv", paths, groups, [0], sims, labels=[2] * 6)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["group_id"], r["status"], r["cluster_id"]) for r in rows] == [
        ("1", "kept", "2"),
        ("1", "duplicate", "2"),
    ]
    assert rows[0]["path"].startswith("'=")  # a formula-like path is escaped
    assert float(rows[0]["similarity"]) == 1.0 and abs(float(rows[1]["similarity"]) - 0.95) < 1e-3


def test_most_similar_ranks_every_image_against_one():
    X = _features(30)
    X[7] = _at_cosine(X[3], X[7], 0.9)
    X[9] = _at_cosine(X[3], X[9], 0.6)
    found = most_similar(X, 3, top=3)
    assert found.indices[:2].tolist() == [7, 9] and 3 not in found.indices.tolist()
    assert np.allclose(found.similarities[:2], [0.9, 0.6], atol=1e-5)
    assert np.allclose(found.distances, 1 - found.similarities)
    assert len(most_similar(X, 0, top=100)) == 29
    with pytest.raises(IndexError):
        most_similar(X, 30)


def test_stacks_hide_a_closed_stack_behind_its_cover_and_open_it_after_the_cover():
    stacks = duplicates.Stacks(10, [[2, 5, 7], [8]], [5, 8])  # a group of one is no stack
    assert stacks.count(5) == 3 and stacks.count(2) == 0 and stacks.cover(7) == 5 and stacks.cover(8) is None
    order = np.array([9, 0, 2, 1, 5, 3, 4, 6, 7, 8])
    assert stacks.arrange(order).tolist() == [9, 0, 1, 5, 3, 4, 6, 8]
    assert stacks.set_expanded(7, True) and not stacks.set_expanded(2, True)
    assert stacks.arrange(order).tolist() == [9, 0, 1, 5, 2, 7, 3, 4, 6, 8]
    assert stacks.arrange(np.array([2, 7, 1])).tolist() == [2, 7, 1]  # the cover is not in this order: unstacked
    assert duplicates.Stacks(3).arrange(np.array([2, 0])).tolist() == [2, 0]


def test_pairs_read_the_runs_graph_from_the_cache(monkeypatch):
    """The stacks of a shown run reuse the neighbour graph its Leiden built: no second search (a minute at 100k)."""
    from imgcluster_gui.core import graph as graph_module
    from imgcluster_gui.core.clustering.registry import make_estimator

    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)  # L2-normalised, as the pipeline's features
    X[1] = X[0] + 1e-4
    make_estimator("leiden", random_state=0).fit(X)  # builds and caches the 10-NN graph

    def no_search(*args, **kwargs):
        raise AssertionError("the neighbour graph was searched again")

    monkeypatch.setattr(graph_module, "_build_index", no_search)
    groups = duplicate_pairs(X, 0.99).groups(np.zeros(120, dtype=np.int64))
    assert [sorted(np.asarray(group).tolist()) for group in groups] == [[0, 1]]
