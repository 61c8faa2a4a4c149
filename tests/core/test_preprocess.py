"""PCA / whitening / L2: shapes, dtype, caps reported, and distances that mean cosine after L2."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.core.preprocess import pca_cap, preprocess_features


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 16)).astype(np.float64) * 3.0


def test_default_is_l2_normalised_float32_copy(features):
    out = preprocess_features(features)
    assert out.dtype == np.float32 and out.shape == features.shape
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # Same direction as the input rows: L2 only rescales.
    cos = np.sum(out * features, axis=1) / np.linalg.norm(features, axis=1)
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)


def test_no_l2_returns_a_copy_not_the_callers_buffer():
    X = np.ones((3, 2), dtype=np.float32)
    out = preprocess_features(X, l2=False)
    out[0, 0] = 5
    assert X[0, 0] == 1


def test_pca_reduces_then_l2_normalises(features):
    out, notes = preprocess_features(features, pca_dims=5, return_notes=True)
    assert out.shape == (40, 5) and out.dtype == np.float32 and notes == []
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_pca_dims_are_capped_and_the_cap_is_reported(features):
    out, notes = preprocess_features(features[:10], pca_dims=64, return_notes=True)
    assert out.shape == (10, 10)
    assert len(notes) == 1 and "capped at 10" in notes[0]
    with pytest.warns(UserWarning, match="capped at 16"):
        assert preprocess_features(features, pca_dims=64).shape == (40, 16)


def test_whitening_gives_unit_variance_components(features):
    out = preprocess_features(features, pca_dims=4, whiten=True, l2=False)
    np.testing.assert_allclose(out.var(axis=0, ddof=1), 1.0, rtol=1e-4)
    # Whitening alone keeps every informative component; with n <= d one fewer than n.
    assert preprocess_features(features, whiten=True, l2=False).shape == (40, 16)
    assert pca_cap(5, 16, whiten=True) == 4
    wide, _ = preprocess_features(features[:5], whiten=True, l2=False, return_notes=True)
    assert wide.shape == (5, 4) and np.isfinite(wide).all()


def test_zero_rows_stay_zero_and_single_sample_skips_pca():
    X = np.zeros((3, 4))
    X[1] = [3, 4, 0, 0]
    out = preprocess_features(X)
    np.testing.assert_allclose(out[1], [0.6, 0.8, 0, 0], rtol=1e-6)
    assert not out[0].any()
    single, notes = preprocess_features(np.ones((1, 4)), whiten=True, return_notes=True)
    assert single.shape == (1, 4) and "PCA skipped" in notes[0]


def test_same_seed_same_result():
    big = np.random.default_rng(1).normal(size=(300, 600)).astype(np.float32)  # randomised SVD territory
    a = preprocess_features(big, pca_dims=20, random_state=3)
    b = preprocess_features(big, pca_dims=20, random_state=3)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "X,message",
    [
        (np.ones(5), "2-D"),
        (np.ones((0, 3)), "empty"),
        (np.array([[1.0, np.nan], [1.0, 2.0]]), "NaN or infinite values in 1 of 2 rows"),
        (np.array([["a", "b"]]), "numbers"),
    ],
)
def test_bad_input_is_a_clear_value_error(X, message):
    with pytest.raises(ValueError, match=message):
        preprocess_features(X)


@pytest.mark.parametrize("dims", [0, -3, 2.5, True])
def test_bad_pca_dims_rejected(features, dims):
    with pytest.raises(ValueError, match="pca_dims"):
        preprocess_features(features, pca_dims=dims)


def test_umap_reduce_tightens_two_groups_and_checks_its_input():
    pytest.importorskip("umap")
    from imgcluster_gui.core.preprocess import umap_reduce

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(2, 32)) * 2.0
    X = np.vstack([centres[i] + rng.normal(size=(60, 32)) for i in (0, 1)]).astype(np.float32)
    reduced = umap_reduce(preprocess_features(X), n_components=4, random_state=0)
    assert reduced.shape == (120, 4) and reduced.dtype == np.float32
    np.testing.assert_array_equal(reduced, umap_reduce(preprocess_features(X), n_components=4, random_state=0))

    # Within-group spread over the gap between the groups: smaller after UMAP than in the raw features.
    def spread_ratio(data):
        a, b = data[:60], data[60:]
        within = (a.std(axis=0).mean() + b.std(axis=0).mean()) / 2
        return within / np.linalg.norm(a.mean(axis=0) - b.mean(axis=0))

    assert spread_ratio(reduced) < spread_ratio(X)
    with pytest.raises(ValueError, match="positive integer"):
        umap_reduce(X, n_components=0)


def test_pipeline_and_cli_reduce_with_umap_before_grouping(sample_images):
    pytest.importorskip("umap")
    from imgcluster_gui.cli import _config_from_args, build_parser
    from imgcluster_gui.core.pipeline import PipelineConfig, run_pipeline

    assert PipelineConfig(folder="x").umap_dims is None  # off unless asked
    config = _config_from_args(build_parser().parse_args(["cluster", str(sample_images), "--umap", "5"]))
    assert config.umap_dims == 5
    config.embedding = "none"
    result = run_pipeline(config)
    assert result.X.shape == (len(result.paths), 5)
    assert result.k >= 2
