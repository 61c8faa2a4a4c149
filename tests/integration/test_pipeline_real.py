"""End to end on real images: the default offline backbone on COIL-20 and the bundled sample folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgcluster_gui.core.pipeline import PipelineConfig, run_pipeline
from imgcluster_gui.core.progress import Cancelled, CancelToken

pytestmark = pytest.mark.integration


def test_coil20_full_default_finds_the_20_objects_without_k_and_kmeans_at_k20(shared_dataset):
    """All 1440 COIL-20 images, the default backbone: the automatic default (Leiden on the
    neighbour graph, no K given) finds K within 10% of the 20 objects with NMI >= 0.95 (issue 9),
    and k-means told K = 20 still reaches issue 2's bar of 0.88 (same cached features)."""
    folder = shared_dataset("coil20")
    automatic = run_pipeline(PipelineConfig(folder=str(folder), embedding="none"))
    assert automatic.config.algorithm == "leiden" and automatic.config.n_clusters is None
    assert len(automatic.paths) == 1440
    assert 18 <= automatic.k <= 22, automatic.k
    assert automatic.external["nmi"] >= 0.95, automatic.external
    # the granularity ladder holds the result and coarser and finer levels
    sizes = [level.n_clusters for level in automatic.levels]
    assert sizes == sorted(sizes) and min(sizes) < automatic.k < max(sizes)
    session = automatic.to_session()
    assert session.n_granularity_levels == len(sizes) and session.granularity_level() is not None

    kmeans = run_pipeline(PipelineConfig(folder=str(folder), algorithm="kmeans", n_clusters=20, embedding="none"))
    views = len(kmeans.config.backbones)  # the default features: two backbones, each counted
    assert kmeans.features.n_cached == 1440 * views  # the features are not extracted twice
    assert kmeans.k == 20
    assert kmeans.external["nmi"] >= 0.88, kmeans.external
    assert automatic.external["nmi"] > kmeans.external["nmi"]


def test_auto_k_lands_near_the_true_k_on_the_first_five_coil20_objects(tmp_path, shared_dataset):
    """Auto-K on a subset nobody chose: the first five COIL-20 objects by name, every third pose (24 each).

    The bands are what the methods achieve on 5-object subsets in general, not on this one: measured on 100
    seeded random 5-object subsets (the same poses), the silhouette sweep's best K was 4-8 in 94 of them
    (5 in 36: a turntable object's poses form an elongated ring that k-means may cut in two, or two similar
    objects merge) with NMI >= 0.85 in 96; Leiden on the neighbour graph (the default, no K) found 5-6 groups
    in 99 (5 in 59) with NMI >= 0.85 in 97; k-means with no K took Leiden's K from the same graph in all 100
    (NMI >= 0.75 in 99). On these five objects: sweep K 5 (NMI 0.93), Leiden 5 (1.00), graph k-means 5 (0.93).
    benchmarks/quality.py reports auto-K against the true K on the whole datasets.
    """
    folder = shared_dataset("coil20")
    objects = sorted(p for p in folder.iterdir() if p.is_dir())[:5]
    for obj in objects:
        (tmp_path / obj.name).mkdir()
        for f in sorted(obj.glob("*.png"))[::3]:
            shutil.copy(f, tmp_path / obj.name / f.name)
    # The silhouette sweep, an option (k_selection='silhouette'):
    sweep = run_pipeline(
        PipelineConfig(
            folder=str(tmp_path), algorithm="kmeans", k_selection="silhouette", k_min=2, k_max=12, embedding="none"
        )
    )
    assert len(sweep.paths) == 120 and sweep.auto_k is not None and sweep.auto_k.ks == list(range(2, 13))
    scores = list(zip(sweep.auto_k.ks, sweep.auto_k.silhouette))
    assert 4 <= sweep.auto_k.best_k <= 8 and sweep.k == sweep.auto_k.best_k, scores
    assert sweep.external["nmi"] >= 0.85, (sweep.external, scores)
    # The default, Leiden on the neighbour graph, and k-means with no K, which takes its K from the same graph.
    automatic = run_pipeline(PipelineConfig(folder=str(tmp_path), embedding="none"))
    assert automatic.config.algorithm == "leiden" and automatic.config.n_clusters is None
    assert 5 <= automatic.k <= 6 and automatic.external["nmi"] >= 0.85, (automatic.k, automatic.external)
    graph_k = run_pipeline(PipelineConfig(folder=str(tmp_path), algorithm="kmeans", embedding="none"))
    assert graph_k.auto_k.method == "graph" and graph_k.k == automatic.k, (graph_k.k, automatic.k)
    assert graph_k.external["nmi"] >= 0.75, graph_k.external


def _copy_subset(src: Path, dst: Path, per_class: int) -> Path:
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True)
        for f in sorted(cls.glob("*.png"))[:per_class]:
            shutil.copy(f, dst / cls.name / f.name)
    return dst


def test_second_run_extracts_nothing_and_new_images_only_are_extracted(tmp_path, sample_images):
    folder = _copy_subset(sample_images, tmp_path / "imgs", per_class=6)
    config = PipelineConfig(folder=str(folder), n_clusters=5, embedding="pca")
    first = run_pipeline(config)
    views = len(config.backbones)  # counts are per image and backbone (the default features have two)
    assert first.features.n_extracted == 30 * views and first.features.n_cached == 0
    second = run_pipeline(config)
    assert second.features.n_extracted == 0 and second.features.n_cached == 30 * views
    np.testing.assert_allclose(first.X, second.X, rtol=1e-5, atol=1e-6)
    extra = sorted((sample_images / "bag").glob("*.png"))[10:13]
    for f in extra:
        shutil.copy(f, folder / "bag" / f.name)
    third = run_pipeline(config)
    assert third.features.n_extracted == 3 * views and third.features.n_cached == 30 * views
    assert result_has_embedding(third)


def result_has_embedding(result) -> bool:
    return result.embedding is not None and result.embedding.shape == (len(result.paths), 2)


def _counting_after_cancel(token: CancelToken, on_progress) -> tuple[list[str], object]:
    """``token``'s callback around ``on_progress``, and the stages of the progress calls made after the
    cancel (notes aside, which never raise): exactly one -- the call that raised -- when the run stops
    at its next progress call, more when something swallows the cancel and carries on."""
    after_cancel: list[str] = []
    callback = token.callback(on_progress)

    def progress(event):
        if token.cancelled and event.note is None:
            after_cancel.append(event.stage)
        callback(event)

    return after_cancel, progress


@pytest.mark.parametrize("stage_word", ["Features", "Clustering"])
def test_cancel_during_a_stage_raises_cleanly_and_leaves_app_state_usable(tmp_path, sample_images, stage_word):
    folder = _copy_subset(sample_images, tmp_path / "imgs", per_class=8)
    token = CancelToken()
    stages = []

    def on_progress(event):
        stages.append(event.stage)
        if event.stage.startswith(stage_word) and event.fraction:
            token.cancel()

    after_cancel, progress = _counting_after_cancel(token, on_progress)
    with pytest.raises(Cancelled):
        run_pipeline(PipelineConfig(folder=str(folder), n_clusters=5), progress=progress)
    assert any(s.startswith(stage_word) for s in stages)
    # It stopped at the next progress call, still in that stage (not one or more stages later).
    assert len(after_cancel) == 1 and after_cancel[0].startswith(stage_word), after_cancel
    # A later run works and (for a cancel during extraction) re-extracts what was never completed.
    result = run_pipeline(PipelineConfig(folder=str(folder), n_clusters=5))
    assert len(result.paths) == 40
    assert result.features.n_extracted + result.features.n_cached == 40 * len(result.config.backbones)


def test_skipped_files_are_reported_with_a_reason(tmp_path, sample_images):
    folder = _copy_subset(sample_images, tmp_path / "imgs", per_class=4)
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    result = run_pipeline(PipelineConfig(folder=str(folder), n_clusters=5, embedding="none"))
    skipped = {Path(s.path).name: s.reason for s in result.skipped}
    assert {"notes.txt", "empty.png"} <= set(skipped)
    assert all(reason for reason in skipped.values())
    assert len(result.paths) == 20


def test_cancel_during_deep_training_keeps_the_last_complete_epoch(tmp_path, sample_images):
    """A cancel after IDEC's first clustering epoch raises PartialCancelled carrying a usable result."""
    from imgcluster_gui.core.pipeline import PartialCancelled

    folder = _copy_subset(sample_images, tmp_path / "imgs", per_class=8)
    watched = []
    token = CancelToken()

    def on_progress(event):
        history = getattr(watched[0], "history_", None) if watched else None
        if history and any(row.get("phase") == "cluster" for row in history):
            token.cancel()

    config = PipelineConfig(
        folder=str(folder),
        n_clusters=5,
        algorithm="idec",
        embedding="tsne",
        algorithm_params=dict(pretrain_steps=20, max_epochs=200, tol=0.0, device="cpu"),
    )
    after_cancel, progress = _counting_after_cancel(token, on_progress)
    with pytest.raises(PartialCancelled) as info:
        run_pipeline(config, progress=progress, on_estimator=watched.append)
    result = info.value.result
    assert isinstance(info.value, Cancelled)
    assert result.estimator is watched[0] and result.estimator.partial_
    assert result.labels.shape == (40,) and result.k >= 2
    assert result.embedding.shape == (40, 2)  # a quick PCA layout instead of the slow t-SNE
    assert any("Cancelled during training" in w for w in result.warnings)
    # Training stopped at the first progress call after the cancel, and kept every epoch before that one.
    assert len(after_cancel) == 1, after_cancel
    stopped_in = re.search(r"Clustering, epoch (\d+)/200$", after_cancel[0])
    assert stopped_in, after_cancel
    kept = [row["epoch"] for row in result.estimator.history_ if row.get("phase") == "cluster"]
    assert kept == list(range(int(stopped_in.group(1)))), (kept, after_cancel)
    # The trained network travels with the saved session and reproduces the embedding.
    from imgcluster_gui.core.session import ClusterSession

    session_file = tmp_path / "run.imgcluster"
    result.to_session().save(session_file)
    reopened = ClusterSession.load(session_file)
    assert reopened.has_trained_model and not reopened.model_warning
    model = reopened.load_trained_model(device="cpu")
    np.testing.assert_allclose(model.transform(result.X), result.estimator.transform(result.X), rtol=1e-4, atol=1e-5)
