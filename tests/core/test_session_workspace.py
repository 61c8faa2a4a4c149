"""A session file holds every run of the run list (a workspace): round trip, sharing, old files, damage (no Qt)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imgcluster_gui.core.session import (
    ClusterSession,
    RunHistory,
    RunRecord,
    SessionFileError,
    load_workspace,
    save_workspace,
)


def make_session(k: int, n: int = 30, seed: int = 0) -> ClusterSession:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    # The features of the folder, whatever the clustering (runs of one folder share them).
    features = (np.eye(3, 5)[np.arange(n) % 3] * 4 + rng.normal(0, 0.3, size=(n, 5))).astype(np.float32)
    session = ClusterSession(
        [f"/photos/img_{i:03d}.jpg" for i in range(n)],
        labels,
        {0: "Beach"},
        embedding=features[:, :2],
        features=features,
        settings={"algorithm": "kmeans", "n_clusters": k, "folder": "/photos"},
        root="/photos",
        granularity_labels=np.stack([labels // 2, labels], axis=1),
        granularity=[{"n_clusters": len(set((labels // 2).tolist()))}, {"n_clusters": k, "selected": True}],
    )
    session.recompute_metrics()
    return session


def three_edited_runs() -> RunHistory:
    """Three runs of one folder (same features), each with its own hand edit; run 2 is current."""
    history = RunHistory()
    first, second, third = make_session(3), make_session(4), make_session(5)
    first.rename(1, "Mountains")
    second.move([0, 1, 2], 3)
    third.merge([1, 2], 0)
    for number, (session, algorithm) in enumerate(
        [(first, "kmeans"), (second, "leiden"), (third, "agglomerative")], start=1
    ):
        history.add(
            RunRecord(
                number=number,
                session=session,
                config={"algorithm": algorithm, "backbones": ["efficientnet_lite0"], "n_clusters": None},
                seconds=1.5 * number,
                started=1_700_000_000.0 + number,
                history=[{"epoch": 1, "loss": 0.5}] if number == 3 else [],
            )
        )
    history.set_current(2)
    return history


def test_every_run_and_its_edits_round_trip_and_the_current_run_comes_back(tmp_path):
    history = three_edited_runs()
    assert history.modified
    target = save_workspace(tmp_path / "sitting.imgcluster", history)
    assert not history.modified  # saving the workspace saves every run

    loaded = load_workspace(target)
    assert [r.number for r in loaded] == [1, 2, 3] and loaded.current_number == 2 and not loaded.modified
    for before, after in zip(history, loaded):
        a, b = before.session, after.session
        assert b.paths == a.paths and b.cluster_names == a.cluster_names
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_array_equal(b.original_labels, a.original_labels)
        np.testing.assert_array_equal(b.features, a.features)
        np.testing.assert_array_equal(b.embedding, a.embedding)
        np.testing.assert_array_equal(b.granularity_labels, a.granularity_labels)
        assert b.granularity == a.granularity and b.settings == a.settings
        assert [e.description for e in b.history] == [e.description for e in a.history]
        assert b.metrics["silhouette"] == pytest.approx(a.metrics["silhouette"])
        assert after.config == before.config and after.seconds == before.seconds
        assert after.started == before.started and after.history == before.history
        assert after.row() == before.row()
    first, second, third = (r.session for r in loaded)
    assert first.name_of(1) == "Mountains"
    assert second.labels[:3].tolist() == [3, 3, 3]
    assert set(third.cluster_ids()) == {0, 3, 4}
    # Each run's history still undoes exactly, back to its own clustering.
    for session in (first, second, third):
        for edit in reversed(session.history[:]):
            session.revert(edit)
        np.testing.assert_array_equal(session.labels, session.original_labels)
    assert first.name_of(1) == "Cluster 1"


def test_arrays_shared_by_the_runs_of_a_folder_are_stored_once(tmp_path):
    history = three_edited_runs()
    target = save_workspace(tmp_path / "sitting.imgcluster", history)
    with zipfile.ZipFile(target) as archive:
        document = json.loads(archive.read("session.json"))
        features_members = {run["arrays"]["features"] for run in document["runs"]}
        feature_bytes = archive.getinfo(features_members.pop()).file_size
        total = sum(info.file_size for info in archive.infolist())
    assert document["version"] == 2 and len(document["paths"]) == 1  # one folder, its paths once
    assert not features_members  # the three runs point at one features member
    one_run = make_session(3).save(tmp_path / "one.imgcluster").stat().st_size
    assert feature_bytes < total < 3 * one_run
    # Loaded runs do not share what an edit could change in place.
    loaded = load_workspace(target)
    sessions = [r.session for r in loaded]
    assert sessions[0].features is sessions[1].features
    assert sessions[0].granularity_labels is not sessions[1].granularity_labels


def test_the_autosave_copy_keeps_the_work_unsaved_and_the_state_key_follows_edits(tmp_path):
    history = three_edited_runs()
    key = history.state_key()
    save_workspace(tmp_path / "autosave.imgcluster", history, mark_saved=False)
    assert history.modified and history.state_key() == key
    history.record(1).session.rename(2, "Forest")
    assert history.state_key() != key
    key = history.state_key()
    history.set_current(3)
    assert history.state_key() != key
    assert RunHistory.load(history.save(tmp_path / "again.imgcluster")).current_number == 3


def test_an_old_one_run_file_opens_as_one_run(tmp_path):
    session = make_session(3)
    session.move([4], 2)
    old = session.save(tmp_path / "old.imgcluster")
    with zipfile.ZipFile(old) as archive:
        assert json.loads(archive.read("session.json"))["version"] == 1  # one run: still the old format
    loaded = load_workspace(old)
    assert len(loaded) == 1 and loaded.current_number == 1
    record = loaded.current
    assert record.source == "file" and record.title == "old.imgcluster" and record.config["algorithm"] == "kmeans"
    np.testing.assert_array_equal(record.session.labels, session.labels)
    # ClusterSession.load of a workspace gives its current run.
    history = three_edited_runs()
    workspace = save_workspace(tmp_path / "sitting.imgcluster", history)
    np.testing.assert_array_equal(ClusterSession.load(workspace).labels, history.record(2).session.labels)


def _rewrite(source: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["session.json"])
    change(members, document)
    members["session.json"] = json.dumps(document).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def test_a_damaged_workspace_gives_a_one_line_session_file_error(tmp_path):
    good = save_workspace(tmp_path / "good.imgcluster", three_edited_runs())
    with zipfile.ZipFile(good) as archive:
        labels_member = json.loads(archive.read("session.json"))["runs"][1]["arrays"]["labels"]

    def drop_member(members, _document):
        del members[labels_member]

    def garble_member(members, _document):
        members[labels_member] = b"\x93NUMPY garbage"

    def bad_paths_index(_members, document):
        document["runs"][0]["paths"] = 7

    def no_runs(_members, document):
        document["runs"] = []

    def duplicate_number(_members, document):
        document["runs"][1]["number"] = 1

    def short_labels(members, document):
        document["paths"][0] = document["paths"][0][:-1]

    def newer(_members, document):
        document["version"] = 99

    cases = [drop_member, garble_member, bad_paths_index, no_runs, duplicate_number, short_labels, newer]
    for change in cases:
        broken = _rewrite(good, tmp_path / f"{change.__name__}.imgcluster", change)
        with pytest.raises(SessionFileError) as info:
            load_workspace(broken)
        message = str(info.value)
        assert message and "\n" not in message and broken.name in message or "newer" in message, message
    with pytest.raises(SessionFileError, match="run 2"):
        load_workspace(tmp_path / "drop_member.imgcluster")
    with pytest.raises(SessionFileError, match="no run"):
        save_workspace(tmp_path / "empty.imgcluster", RunHistory())


def test_the_trained_networks_of_two_deep_runs_are_both_kept(tmp_path):
    pytest.importorskip("torch")
    from imgcluster_gui.core.clustering.deep import IDEC
    from tests.helpers import gaussian_blobs

    X, _ = gaussian_blobs(90, 3, 8, centre_scale=3.0, seed=0)
    fast = dict(hidden=(16, 8), latent_dim=3, pretrain_steps=20, max_epochs=3, batch_size=64, device="cpu")
    history = RunHistory()
    for number, seed in ((1, 0), (2, 1)):
        model = IDEC(n_clusters=3, random_state=seed, **fast).fit(X)
        session = ClusterSession([f"/img/{i}.png" for i in range(len(X))], model.labels_, features=X)
        session.trained_model = model  # what PipelineResult.to_session sets for a deep run
        history.add(RunRecord(number=number, session=session, config={"algorithm": "idec"}))
    target = save_workspace(tmp_path / "deep.imgcluster", history)
    assert len(list((tmp_path / "deep.imgcluster.models").glob("*.pt"))) == 2  # one run's save spares the other's
    for before, after in zip(history, load_workspace(target)):
        assert after.session.model_warning is None
        network = after.session.load_trained_model()
        np.testing.assert_array_equal(network.predict(X), before.session.trained_model.predict(X))
