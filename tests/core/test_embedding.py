"""2-D embeddings: shape and dtype for every method and size, seeds, structure kept, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.core import embedding
from imgcluster_gui.core.embedding import available_methods, embed_2d
from tests.helpers import gaussian_blobs


def _blobs(n_per: int = 20, d: int = 80):
    """Three far-apart blobs (centres ~N(0, 10^2) per axis, unit spread)."""
    return gaussian_blobs(3 * n_per, 3, d, centre_scale=10.0)


def _separated(Y: np.ndarray, labels: np.ndarray) -> bool:
    """Every point is nearer its own group's 2-D centre than any other group's."""
    centres = np.stack([Y[labels == k].mean(axis=0) for k in np.unique(labels)])
    nearest = np.argmin(((Y[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    return bool((nearest == labels).all())


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_blobs_stay_apart_and_seed_fixes_the_layout(method):
    X, labels = _blobs()
    Y = embed_2d(X, method=method, random_state=0)
    assert Y.shape == (60, 2) and Y.dtype == np.float32
    assert _separated(Y, labels)
    np.testing.assert_array_equal(Y, embed_2d(X, method=method, random_state=0))


def test_umap_when_installed():
    pytest.importorskip("umap")
    assert "umap" in available_methods()
    X, labels = _blobs()
    Y = embed_2d(X, method="umap", random_state=0)
    assert Y.shape == (60, 2) and Y.dtype == np.float32 and _separated(Y, labels)


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 6])
def test_tiny_inputs_never_fail(method, n):
    if method == "umap":
        pytest.importorskip("umap")
    X, _ = _blobs(n_per=2, d=5)
    Y = embed_2d(X[:n], method=method)
    assert Y.shape == (n, 2) and np.isfinite(Y).all()


def test_one_feature_gets_a_zero_second_axis():
    Y = embed_2d(np.array([[1.0], [2.0], [4.0]]))
    assert Y.shape == (3, 2) and not Y[:, 1].any() and np.ptp(Y[:, 0]) > 0


def test_progress_is_reported():
    seen = []
    embed_2d(_blobs()[0], method="tsne", progress=lambda e: seen.append((e.fraction, e.stage)))
    assert seen[0][0] == 0.0 and seen[-1][0] == 1.0
    assert any("PCA to 50" in s for _, s in seen)  # 80 features: t-SNE runs on 50 PCA components


def test_unknown_method_and_missing_umap_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown embedding method 'mds'"):
        embed_2d(np.zeros((4, 3)), method="mds")
    monkeypatch.setattr(embedding, "_umap_installed", lambda: False)
    assert available_methods() == ["pca", "tsne"]
    with pytest.raises(ValueError, match="umap-learn"):
        embed_2d(np.zeros((4, 3)), method="umap")


@pytest.mark.parametrize("X,message", [(np.zeros(4), "2-D"), (np.array([[np.nan, 1.0]] * 3), "NaN")])
def test_bad_input(X, message):
    with pytest.raises(ValueError, match=message):
        embed_2d(X)
