"""``imgcluster extract --ray``: the Ray Data pipeline (scan by shard, decode, actor forward pass) writes the same
features as the local extraction, on a local Ray instance the test starts (2 CPUs, no dashboard)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # Ray start-up + two extractions: 8 min measured on 2 cores shared at load ~20

ray = pytest.importorskip(
    "ray", reason="Ray is an optional extra: pip install 'imgcluster-gui[ray]' (or 'ray[data]') to run this test"
)
pytest.importorskip("ray.data", reason="Ray Data is missing: pip install 'ray[data]'")


@pytest.fixture
def image_folder(tmp_path, sample_images):
    """40 of the repository's sample images in 2 sub-folders (two scan shards), plus one file no decoder reads.

    The bundled images rather than ../shared's COIL-20: they are in every checkout, so CI runs this test too.
    """
    folder = tmp_path / "photos"
    for name in ("bag", "trouser"):
        (folder / name).mkdir(parents=True)
        for path in sorted((sample_images / name).glob("*.png"))[:20]:
            shutil.copy(path, folder / name / path.name)
    (folder / "trouser" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return folder


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_pipeline_writes_the_features_of_the_local_path(image_folder, local_ray, tmp_path):
    from imgcluster_gui.core.dataset import scan_folder
    from imgcluster_gui.core.features.distributed import extract_to_store_ray
    from imgcluster_gui.core.features.extract import extract_features
    from imgcluster_gui.core.features.store import FeatureStore

    ray_store = extract_to_store_ray(image_folder, tmp_path / "ray_store", chunk_size=16)
    local = extract_features(scan_folder(image_folder).paths, device="cpu", num_workers=0, cache=False)

    assert sorted(ray_store.paths) == sorted(str(p) for p in local.paths) and len(ray_store) == 40
    reason = {s.path: s.reason for s in ray_store.failed}
    assert list(reason) == [str(image_folder / "trouser" / "zz_broken.png")]
    row_of = {str(p): i for i, p in enumerate(local.paths)}
    reference = local.features[[row_of[p] for p in ray_store.paths]]
    stored = np.asarray(ray_store.features())
    cosine = (stored * reference).sum(1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.999

    # A rerun resumes: nothing left to extract, the store unchanged.
    again = extract_to_store_ray(image_folder, tmp_path / "ray_store", chunk_size=16)
    assert len(again) == 40 and len(FeatureStore.open(tmp_path / "ray_store").failed) == 1
