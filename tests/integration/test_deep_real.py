"""Deep clustering methods on a small subset of a real labelled set (COIL-20); skipped where absent.

Pixels stand in for CNN features here so the test needs no backbone weights and stays fast on 2 CPU
cores; the full-size comparison on CNN features is `python -m benchmarks.deep`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score as nmi

from imgcluster_gui.core.clustering.deep import DMVC, IDEC, UCNN, DeepCluster
from tests.helpers import TinyCNN

torch.set_num_threads(1)  # 1 thread: fast here, and no OpenMP spin-waits when the CPU is shared


@pytest.fixture
def coil20(shared_dataset) -> Path:
    return shared_dataset("coil20")


def coil_subset(folder: Path, n_classes=5, per_class=12):
    """The first ``n_classes`` objects (sorted), ``per_class`` evenly spaced poses each, and 16x16 grey pixels."""
    paths, labels = [], []
    for label, sub in enumerate(sorted(p for p in folder.iterdir() if p.is_dir())[:n_classes]):
        files = sorted(sub.glob("*.png"))
        paths += files[:: max(1, len(files) // per_class)][:per_class]
        labels += [label] * per_class
    grey = [np.asarray(Image.open(p).convert("L").resize((16, 16)), np.float32).ravel() / 255 for p in paths]
    pixels = np.stack(grey)
    return paths, pixels, np.array(labels)


def test_idec_and_dmvc_match_kmeans_on_real_images(coil20):
    _, pixels, y = coil_subset(coil20)
    pixels = pixels / np.linalg.norm(pixels, axis=1, keepdims=True)
    baseline = nmi(y, KMeans(5, n_init=10, random_state=0).fit_predict(pixels))
    fast = dict(hidden=(128, 64), latent_dim=10, pretrain_steps=100, max_epochs=20, device="cpu")
    idec = IDEC(n_clusters=5, **fast).fit(pixels, y)
    assert nmi(y, idec.labels_) >= baseline - 0.05
    coarse = pixels.reshape(-1, 16, 16)[:, ::2, ::2].reshape(len(y), -1)
    both = np.hstack([pixels, coarse])
    dmvc = DMVC(n_clusters=5, **fast).fit(both, y, view_slices=[(0, 256), (256, 320)])
    assert nmi(y, dmvc.labels_) >= baseline - 0.05
    assert [r["nmi_true"] for r in dmvc.history_ if r["phase"] == "cluster"]


@pytest.mark.parametrize("cls", [DeepCluster, UCNN])
def test_image_methods_fine_tune_on_real_images(cls, coil20):
    paths, _, y = coil_subset(coil20, n_classes=4, per_class=6)
    model = cls(n_clusters=4, epochs=2, input_size=32, batch_size=8, device="cpu")
    model.fit(None, y, paths=paths, backbone=TinyCNN(pool=2))  # (N, 64) features
    assert model.labels_.shape == (24,) and len(np.unique(model.labels_)) >= 2
    assert model.history_[-1]["nmi_true"] is not None


@pytest.mark.integration
def test_idec_beats_kmeans_on_cnn_features_of_ten_coil20_objects(tmp_path, shared_dataset):
    """Through the whole pipeline (default backbone, registry): on 10 COIL-20 objects (36 poses each)
    k-means on the pretrained features cuts some turntable rings in two (NMI ~0.85); IDEC with its
    neighbourhood term follows each ring of neighbours (~0.93). The full-size table is benchmarks/deep.py."""
    import shutil

    from imgcluster_gui.core.pipeline import PipelineConfig, run_pipeline

    source = shared_dataset("coil20")
    for obj in sorted(p for p in source.iterdir() if p.is_dir())[:10]:
        (tmp_path / obj.name).mkdir()
        for f in sorted(obj.glob("*.png"))[::2]:
            shutil.copy(f, tmp_path / obj.name / f.name)
    base = dict(folder=str(tmp_path), n_clusters=10, embedding="none")
    kmeans_run = run_pipeline(PipelineConfig(**base, algorithm="kmeans"))
    idec_run = run_pipeline(
        PipelineConfig(
            **base,
            algorithm="idec",
            algorithm_params=dict(hidden=(128, 64), pretrain_steps=300, max_epochs=20, batch_size=128, device="cpu"),
        )
    )
    assert idec_run.features.n_extracted == 0  # the same pretrained features, from the cache
    assert len(idec_run.paths) == 360
    assert idec_run.external["nmi"] >= kmeans_run.external["nmi"] + 0.04, (kmeans_run.external, idec_run.external)
