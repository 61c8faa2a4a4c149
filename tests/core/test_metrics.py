"""Metrics checked against values worked out by hand, plus the degenerate cases that must not crash."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.core.metrics import cluster_accuracy, clustering_metrics, external_metrics, internal_metrics, purity

# Two clusters on a line: {0, 1} and {10, 11}.
LINE_X = np.array([[0.0], [1.0], [10.0], [11.0]])
LINE_LABELS = np.array([0, 0, 1, 1])


def test_internal_metrics_match_hand_computed_values():
    m = internal_metrics(LINE_X, LINE_LABELS)
    # Point 0: a = 1, b = mean(10, 11) = 10.5; point 1: a = 1, b = mean(9, 10) = 9.5; the other cluster mirrors.
    expected_silhouette = ((10.5 - 1) / 10.5 + (9.5 - 1) / 9.5) / 2
    assert m["silhouette"] == pytest.approx(expected_silhouette)
    assert m["per_cluster_silhouette"] == {0: pytest.approx(expected_silhouette), 1: pytest.approx(expected_silhouette)}
    # Between-cluster dispersion 2*5^2 + 2*5^2 = 100 over k-1 = 1; within 4 * 0.5^2 = 1 over n-k = 2.
    assert m["calinski_harabasz"] == pytest.approx(200.0)
    # Mean distance to own centroid 0.5 for both, centroids 10 apart.
    assert m["davies_bouldin"] == pytest.approx(0.1)
    assert m["silhouette_sample_size"] == 4 and m["n_noise"] == 0 and m["n_clusters"] == 2
    assert m["reason"] is None and m["per_cluster_size"] == {0: 2, 1: 2}


def test_noise_is_excluded_and_counted():
    X = np.vstack([LINE_X, [[500.0]], [[-500.0]]])
    labels = np.append(LINE_LABELS, [-1, -1])
    m = internal_metrics(X, labels)
    assert m["n_noise"] == 2 and m["n_samples"] == 4
    assert m["silhouette"] == pytest.approx(internal_metrics(LINE_X, LINE_LABELS)["silhouette"])


@pytest.mark.parametrize(
    "labels,reason",
    [
        ([0, 0, 0, 0], "at least 2 clusters, found 1"),
        ([-1, -1, -1, -1], "every sample is noise"),
        ([0, 1, 2, 3], "fewer clusters than samples"),
        ([0, -1, -1, -1], "at least 2 clusters"),
    ],
)
def test_degenerate_cases_give_none_with_a_reason(labels, reason):
    m = internal_metrics(LINE_X, np.array(labels))
    assert m["silhouette"] is None and m["calinski_harabasz"] is None and m["davies_bouldin"] is None
    assert reason in m["reason"]


def test_large_n_silhouette_is_sampled_reported_and_close_to_exact():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [6, 0], [0, 6]])
    sizes = [500, 300, 7]  # a tiny cluster must still get a per-cluster value
    X = np.vstack([c + rng.normal(size=(n, 2)) for c, n in zip(centers, sizes)])
    labels = np.repeat([0, 1, 2], sizes)
    exact = internal_metrics(X, labels, sample_size=None)
    sampled = internal_metrics(X, labels, sample_size=100, random_state=1)
    assert exact["silhouette_sample_size"] == 807
    assert 100 <= sampled["silhouette_sample_size"] <= 110
    assert set(sampled["per_cluster_silhouette"]) == {0, 1, 2}
    assert sampled["silhouette"] == pytest.approx(exact["silhouette"], abs=0.05)
    assert sampled["calinski_harabasz"] == exact["calinski_harabasz"]  # CH always uses everything
    assert internal_metrics(X, labels, sample_size=100, random_state=1) == sampled  # seeded


def test_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="n_samples"):
        internal_metrics(LINE_X, [0, 1])


def test_permuted_labels_score_perfectly_with_strings():
    y_true = ["cat", "cat", "dog", "dog", "bird", "bird"]
    y_pred = [2, 2, 0, 0, 1, 1]
    m = external_metrics(y_true, y_pred)
    assert m["acc"] == 1.0 and m["nmi"] == pytest.approx(1.0) and m["ari"] == pytest.approx(1.0)
    assert m["purity"] == 1.0 and m["n_classes"] == 3 and m["n_clusters"] == 3


def test_accuracy_and_purity_hand_computed():
    y_true = ["a", "a", "a", "b", "b", "c"]
    # Clusters: 0 = {a, a}, 1 = {a, b, b}, 2 = {c}: best matching 0->a, 1->b, 2->c gets 2 + 2 + 1.
    assert cluster_accuracy(y_true, [0, 0, 1, 1, 1, 2]) == pytest.approx(5 / 6)
    assert purity(y_true, [0, 0, 1, 1, 1, 2]) == pytest.approx(5 / 6)
    # One cluster for everything: only one class can be matched; purity is the majority share.
    assert cluster_accuracy(y_true, [0] * 6) == pytest.approx(3 / 6)
    # More clusters than classes: ACC matches 3 clusters at most, purity rewards over-splitting.
    singletons = [0, 1, 2, 3, 4, 5]
    assert cluster_accuracy(y_true, singletons) == pytest.approx(3 / 6)
    assert purity(y_true, singletons) == 1.0


def test_noise_counts_as_wrong_in_acc_and_purity():
    y_true = [1, 1, 2, 2]
    m = external_metrics(y_true, [0, 0, 1, -1])
    assert m["acc"] == pytest.approx(3 / 4) and m["purity"] == pytest.approx(3 / 4)
    assert m["n_noise"] == 1 and m["n_clusters"] == 2
    assert external_metrics(y_true, [-1, -1, -1, -1])["acc"] == 0.0


def test_external_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same length"):
        external_metrics(["a", "b"], [0])
    with pytest.raises(ValueError, match="None"):
        external_metrics(["a", None], [0, 1])
    with pytest.raises(ValueError, match="no samples"):
        external_metrics([], [])


def test_clustering_metrics_scores_internal_and_the_known_classes_only():
    truth = ["a", None, "b", "b"]
    m = clustering_metrics(LINE_X, LINE_LABELS, truth)
    assert {k: v for k, v in m.items() if k != "external"} == internal_metrics(LINE_X, LINE_LABELS)
    expected = external_metrics(["a", "b", "b"], [0, 1, 1])
    assert m["external"] == {**expected, "n_labelled": 3}
    assert clustering_metrics(LINE_X, LINE_LABELS, [None, None, "a", None])["external"] is None  # one known: none
    assert clustering_metrics(LINE_X, LINE_LABELS)["external"] is None
    with pytest.raises(ValueError, match="ground_truth"):
        clustering_metrics(LINE_X, LINE_LABELS, ["a"])


def test_clustering_metrics_without_features_keep_the_internal_keys():
    m = clustering_metrics(None, [0, 0, 1, -1])
    assert set(m) == set(internal_metrics(LINE_X, LINE_LABELS)) | {"external"}
    assert m["silhouette"] is None and m["reason"] and m["per_cluster_size"] == {0: 2, 1: 1}
    assert m["n_clusters"] == 2 and m["n_noise"] == 1 and m["n_samples"] == 3


def test_the_pipeline_and_the_session_after_edits_give_identical_metrics_for_the_same_labels(tmp_path, sample_images):
    """One function scores a run and its edits: undoing back to the run's labels gives the run's metrics exactly."""
    import shutil

    from imgcluster_gui.core.pipeline import PipelineConfig, run_pipeline

    folder = tmp_path / "imgs"
    rows = ["path,label"]
    for cls in ("bag", "trouser", "sneaker"):
        (folder / cls).mkdir(parents=True)
        for position, source in enumerate(sorted((sample_images / cls).glob("*.png"))[:5]):
            shutil.copy(source, folder / cls / source.name)
            if position:  # one image per class has no known class
                rows.append(f"{cls}/{source.name},{cls}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    # K from the silhouette sweep: the metrics also carry how K was chosen.
    result = run_pipeline(
        PipelineConfig(
            folder=str(folder),
            algorithm="kmeans",
            k_selection="silhouette",
            k_max=5,
            embedding="none",
            labels_csv=str(folder / "labels.csv"),
        )
    )
    assert result.external["n_labelled"] == 12 and result.auto_k is not None
    session = result.to_session()
    from_the_run = {**result.metrics, "external": result.external, "auto_k": session.metrics["auto_k"]}
    assert session.metrics == from_the_run
    moved = session.move([0], int(session.labels[0]) + 1)
    assert session.recompute_metrics() != from_the_run
    session.revert(moved)
    session.move([1], int(session.labels[1]) + 1)
    session.move([1], int(result.labels[1]))  # a second hand edit puts it back: the run's labels again
    np.testing.assert_array_equal(session.labels, result.labels)
    assert session.n_edits == 2 and session.metrics_stale
    assert session.recompute_metrics() == from_the_run
    assert session.recompute_metrics(labels=result.labels) == from_the_run  # the panel's worker path
