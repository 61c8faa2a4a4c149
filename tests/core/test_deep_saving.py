"""Trained deep networks saved with the session (issue 4): reload reproduces the embedding and labels,
damaged / missing files give a clear message without losing the session, fine-tuned features never
reach the feature cache, DeepCluster clusters with the project's k-means."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from imgcluster_gui.core.clustering.deep import IDEC, UCNN, ConcatKMeans, DeepCluster
from imgcluster_gui.core.clustering.deep.saving import ModelFileError, load_model, read_payload
from imgcluster_gui.core.session import ClusterSession, SessionFileError
from tests.helpers import TinyCNN, gaussian_blobs

torch.set_num_threads(1)  # 1 thread: fast here, and no OpenMP spin-waits when the CPU is shared
FAST = dict(hidden=(32, 16), latent_dim=4, pretrain_steps=30, max_epochs=5, batch_size=64, device="cpu")
IMAGE_FAST = dict(input_size=32, batch_size=8, device="cpu")


def blobs(n=120, d=12, k=3, seed=0):
    """``k`` unit-spread blobs, centres ~N(0, 3^2) per axis."""
    return gaussian_blobs(n, k, d, centre_scale=3.0, seed=seed)


def colour_images(folder, n_per_class=6):
    rng = np.random.default_rng(0)
    paths = []
    for label, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
        for i in range(n_per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            path = folder / f"c{label}_{i}.png"
            Image.fromarray(pixels).save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def idec():
    X, _ = blobs()
    return IDEC(n_clusters=3, **FAST).fit(X), X


def session_of(model, X):
    session = ClusterSession(
        [f"/img/{i}.png" for i in range(len(X))], model.labels_, features=X, settings={"algorithm": "idec"}
    )
    session.trained_model = model  # what PipelineResult.to_session sets for a deep run
    return session


def session_json(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("session.json"))


# ------------------------------------------------------------------------------------ estimators
def test_idec_file_reloads_safely_and_reproduces_embedding_and_labels(idec, tmp_path):
    model, X = idec
    path = model.save(tmp_path / "idec.pt")
    assert not list(tmp_path.glob("*.tmp"))
    torch.load(path, weights_only=True)  # plain tensors and values only: loading runs no pickled code
    loaded = load_model(path)
    assert type(loaded) is IDEC and loaded.get_params() == model.get_params()
    np.testing.assert_allclose(loaded.transform(X), model.embedding_, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(loaded.predict(X), model.labels_)
    with pytest.raises(ModelFileError, match="IDEC model, not DeepCluster"):
        DeepCluster.load(path)


@pytest.mark.parametrize("cls,kwargs", [(DeepCluster, dict(epochs=1, pca_dims=4)), (UCNN, dict(epochs=1))])
def test_fine_tuned_network_and_head_are_saved_and_reload(tmp_path, cls, kwargs):
    paths = colour_images(tmp_path)
    model = cls(n_clusters=2, **kwargs, **IMAGE_FAST).fit(None, paths=paths, backbone=TinyCNN())
    path = model.save(tmp_path / "net.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["method"] == cls.__name__ and payload["network"]
    with pytest.raises(ModelFileError, match="backbone="):
        load_model(path)  # trained from a module, not a registry name: the architecture must be given
    loaded = load_model(path, backbone=TinyCNN())
    assert type(loaded) is cls
    trained = {k: v for k, v in model.network_.state_dict().items()}
    for key, value in loaded.network_.state_dict().items():
        torch.testing.assert_close(value, trained[key])
    assert not torch.equal(
        loaded.network_.state_dict()["backbone.body.0.weight"], TinyCNN().state_dict()["body.0.weight"]
    )  # fine-tuned, not the pretrained weights
    if cls is DeepCluster:
        assert payload["head"] is not None
        torch.testing.assert_close(loaded.head_.weight, model.head_.weight.detach())
    np.testing.assert_allclose(loaded.transform(paths), model.transform(paths), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(paths), model.labels_)


def test_deepcluster_uses_the_project_kmeans_deterministically_and_pic_still_works(tmp_path, monkeypatch):
    from imgcluster_gui.core.clustering import kmeans as classic
    from imgcluster_gui.core.clustering.deep import common

    calls = []
    original = classic.FastKMeans.fit

    def spy(self, X, *args, **kwargs):
        calls.append(X.shape)
        return original(self, X, *args, **kwargs)

    def no_sklearn(*args, **kwargs):
        raise AssertionError("DeepCluster must not use scikit-learn's k-means")

    monkeypatch.setattr(classic.FastKMeans, "fit", spy)
    monkeypatch.setattr(common, "KMeans", no_sklearn)
    paths = colour_images(tmp_path)
    first = DeepCluster(n_clusters=2, epochs=1, pca_dims=4, **IMAGE_FAST).fit(None, paths=paths, backbone=TinyCNN())
    assert len(calls) == 2  # one assignment per epoch plus the final one
    again = DeepCluster(n_clusters=2, epochs=1, pca_dims=4, **IMAGE_FAST).fit(None, paths=paths, backbone=TinyCNN())
    np.testing.assert_array_equal(first.labels_, again.labels_)
    pic = DeepCluster(n_clusters=2, epochs=1, pca_dims=4, clusterer="pic", **IMAGE_FAST)
    pic.fit(None, paths=paths, backbone=TinyCNN())
    assert len(calls) == 4 and pic.labels_.shape == (len(paths),)


def test_fine_tuned_features_never_touch_the_feature_cache(tmp_path, monkeypatch):
    from imgcluster_gui.core.features.cache import FeatureCache

    def forbidden(*args, **kwargs):
        raise AssertionError("a fine-tuning method used the feature cache")

    for name in ("__init__", "put_many", "get_many"):
        monkeypatch.setattr(FeatureCache, name, forbidden)
    paths = colour_images(tmp_path)
    for cls, kwargs in ((DeepCluster, dict(epochs=1, pca_dims=4)), (UCNN, dict(epochs=1))):
        model = cls(n_clusters=2, **kwargs, **IMAGE_FAST).fit(None, paths=paths, backbone=TinyCNN())
        loaded = load_model(model.save(tmp_path / f"{cls.__name__}.pt"), backbone=TinyCNN())
        loaded.transform(paths)


# ------------------------------------------------------------------------------------ sessions
def test_session_without_a_model_round_trips_like_before(tmp_path):
    X, y = blobs(30)
    session = ClusterSession([f"/img/{i}.png" for i in range(30)], y, features=X)
    session.trained_model = ConcatKMeans(n_clusters=3).fit(X)  # a 'deep' method without a network
    target = session.save(tmp_path / "plain.imgcluster")
    assert "trained_model" not in session_json(target)
    assert not (tmp_path / "plain.imgcluster.models").exists()
    loaded = ClusterSession.load(target)
    np.testing.assert_array_equal(loaded.labels, y)
    assert not loaded.has_trained_model and loaded.model_warning is None
    with pytest.raises(SessionFileError, match="no saved trained network"):
        loaded.load_trained_model()


def test_session_with_a_model_round_trips_and_reproduces_the_embedding(idec, tmp_path):
    model, X = idec
    session = session_of(model, X)
    target = session.save(tmp_path / "run.imgcluster")
    reference = session_json(target)["trained_model"]
    assert reference["method"] == "IDEC" and reference["file"].startswith("run.imgcluster.models/")
    files = list((tmp_path / "run.imgcluster.models").glob("*"))
    assert [f.name for f in files] == [reference["file"].split("/")[1]]  # no temporary files left

    loaded = ClusterSession.load(target)
    assert loaded.has_trained_model and loaded.model_warning is None and loaded.trained_model is None
    network = loaded.load_trained_model()
    np.testing.assert_allclose(network.transform(loaded.features), model.embedding_, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(network.predict(loaded.features), loaded.labels)

    # Saving again (autosave) does not rewrite an unchanged network; a copy elsewhere takes it along.
    before = files[0].stat().st_mtime_ns
    session.save(target)
    assert files[0].stat().st_mtime_ns == before and session_json(target)["trained_model"] == reference
    moved = ClusterSession.load(target)
    copy = moved.save(tmp_path / "sub_copy.imgcluster")
    np.testing.assert_array_equal(ClusterSession.load(copy).load_trained_model().predict(X), model.labels_)

    # A new network replaces the old file (no stale networks left beside the session).
    session.trained_model = IDEC(n_clusters=3, **{**FAST, "random_state": 1}).fit(X)
    session.save(target)
    names = [f.name for f in (tmp_path / "run.imgcluster.models").glob("*")]
    assert names == [session_json(target)["trained_model"]["file"].split("/")[1]] and names[0] != files[0].name
    session.trained_model = None
    session.save(target)
    assert "trained_model" not in session_json(target) and not (tmp_path / "run.imgcluster.models").exists()


@pytest.mark.parametrize("damage", ["missing", "truncated", "same_size", "garbage_unchecked"])
def test_missing_or_damaged_model_file_gives_a_clear_error_and_the_session_still_loads(idec, tmp_path, damage):
    model, X = idec
    target = session_of(model, X).save(tmp_path / "run.imgcluster")
    model_file = tmp_path / session_json(target)["trained_model"]["file"]
    data = model_file.read_bytes()
    if damage == "missing":
        model_file.unlink()
    elif damage == "truncated":
        model_file.write_bytes(data[: len(data) // 2])
    elif damage == "same_size":
        model_file.write_bytes(data[:100] + bytes(b ^ 0xFF for b in data[100:200]) + data[200:])
    else:  # the reference lost its checksum (hand-edited): the reader itself must refuse the file
        model_file.write_bytes(b"not a torch file" * 10)
        with zipfile.ZipFile(target) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        meta = json.loads(members["session.json"])
        meta["trained_model"] = {"file": meta["trained_model"]["file"], "method": "IDEC"}
        members["session.json"] = json.dumps(meta).encode()
        with zipfile.ZipFile(target, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)

    loaded = ClusterSession.load(target)  # the clusters are never lost
    np.testing.assert_array_equal(loaded.labels, model.labels_)
    expected = {
        "missing": "missing",
        "truncated": "damaged",
        "same_size": "damaged",
        "garbage_unchecked": "damaged or not a trained-model file",
    }[damage]
    if damage in ("missing", "truncated"):
        assert expected in loaded.model_warning
    with pytest.raises(SessionFileError, match=expected) as error:
        loaded.load_trained_model()
    assert "\n" not in str(error.value)
    # Saving the session again still works; the unusable network is left out with a warning.
    if damage == "missing":
        loaded.save(tmp_path / "again.imgcluster")
        assert "missing" in loaded.model_warning and "trained_model" not in session_json(tmp_path / "again.imgcluster")


def test_a_network_that_cannot_be_written_does_not_stop_the_session_save(idec, tmp_path, monkeypatch):
    from imgcluster_gui.core.clustering.deep import saving

    def full_disk(*args, **kwargs):
        raise ModelFileError("Cannot write the trained model: No space left on device")

    monkeypatch.setattr(saving, "save_model", full_disk)
    model, X = idec
    session = session_of(model, X)
    target = session.save(tmp_path / "run.imgcluster")
    assert "No space left" in session.model_warning and "trained_model" not in session_json(target)
    np.testing.assert_array_equal(ClusterSession.load(target).labels, model.labels_)


def test_reader_refuses_foreign_files_with_one_line(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ModelFileError, match="not an imgcluster trained-model file"):
        read_payload(foreign)
    with pytest.raises(ModelFileError, match="not found"):
        read_payload(tmp_path / "nothing.pt")
