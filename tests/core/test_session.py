"""ClusterSession: edits, exact undo/redo, events, metrics, save / load (no Qt)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imgcluster_gui.core import session as session_module
from imgcluster_gui.core.session import ClusterSession, Edit, SessionEvent, SessionFileError


def make_session(n: int = 30, k: int = 3, with_noise: bool = True) -> ClusterSession:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % k
    if with_noise:
        labels[-2:] = -1
    features = (np.eye(k, 5)[np.maximum(labels, 0)] * 4 + rng.normal(0, 0.3, size=(n, 5))).astype(np.float32)
    truth = [f"t{c}" for c in np.arange(n) % k]
    truth[0] = None  # an image without a known class
    return ClusterSession([f"/data/img_{i:03d}.png" for i in range(n)], labels, {1: "Dogs"},
                          embedding=features[:, :2], features=features, confidence=np.linspace(0, 1, n),
                          ground_truth=truth, settings={"algorithm": "kmeans", "folder": Path("/data")},
                          root="/data")


def state(s: ClusterSession) -> tuple:
    return s.labels.tolist(), dict(s.cluster_names)


def test_reading_helpers():
    s = make_session()
    assert s.cluster_ids() == [0, 1, 2, -1]
    assert s.name_of(1) == "Dogs" and s.name_of(0) == "Cluster 0" and s.name_of(-1) == "Unassigned"
    assert s.indices_of(-1).tolist() == [28, 29]
    assert s.size_of(0) == 10
    assert s.next_cluster_id() == 3


def test_each_edit_changes_state_and_reverts_exactly():
    s = make_session()
    before = state(s)
    edits = [s.move([0, 1, 2], 2), s.new_cluster([3, 4], "  New   one "), s.rename(0, "Cats"),
             s.merge([1, 3], 0), s.delete_cluster(2), s.move([28], 0)]
    assert s.name_of(0) == "Cats" and 1 not in s.cluster_names  # merged-away names go
    assert s.cluster_ids() == [0, -1]
    assert s.n_edits == len(edits) and s.modified
    after = state(s)
    for edit in reversed(edits):
        s.revert(edit)
    assert state(s) == before and s.n_edits == 0
    for edit in edits:
        s.apply(edit)
    assert state(s) == after


def test_new_cluster_names_and_noop_edits():
    s = make_session()
    edit = s.new_cluster([5, 6], "Birds")
    cluster = int(edit.new_labels[0])
    assert cluster == 3 and s.name_of(3) == "Birds" and s.indices_of(3).tolist() == [5, 6]
    assert s.plan_move([5, 6], 3).is_noop
    assert s.plan_rename(3, "Birds").is_noop
    assert s.plan_rename(3, "").new_names == {3: None}  # empty = back to the default name


@pytest.mark.parametrize("call, error", [
    (lambda s: s.delete_cluster(-1), ValueError),
    (lambda s: s.new_cluster([]), ValueError),
    (lambda s: s.move([999], 0), IndexError),
    (lambda s: s.move([0], -5), ValueError),
    (lambda s: s.merge([0], 0), ValueError),
])
def test_bad_edits_are_refused_without_change(call, error):
    s = make_session()
    before = state(s)
    with pytest.raises(error):
        call(s)
    assert state(s) == before and s.n_edits == 0


def test_subscribers_get_precise_events():
    s = make_session()
    events: list[SessionEvent] = []
    unsubscribe = s.subscribe(events.append)
    s.move([0, 1], 2)  # 0 -> 2 and 1 -> 2
    assert [e.kind for e in events] == ["labels"]
    assert events[0].indices.tolist() == [0, 1] and events[0].clusters == {0, 1, 2}
    events.clear()
    s.rename(2, "Fish")
    assert [(e.kind, set(e.clusters)) for e in events] == [("names", {2})]
    events.clear()
    s.delete_cluster(1)  # labels and a dropped name
    assert [e.kind for e in events] == ["labels", "names"]
    unsubscribe()
    s.move([5], 0)
    assert len(events) == 2


def test_a_failing_subscriber_does_not_starve_the_others():
    s = make_session()
    heard = []

    def broken(event):
        raise RuntimeError("view bug")

    s.subscribe(broken)
    s.subscribe(heard.append)
    with pytest.raises(RuntimeError):
        s.move([0], 1)
    assert heard and s.labels[0] == 1


def test_recompute_metrics_uses_core_metrics_and_tracks_staleness():
    s = make_session()
    assert s.metrics_stale
    events = []
    s.subscribe(events.append)
    metrics = s.recompute_metrics()
    assert s.metrics == metrics and [e.kind for e in events] == ["metrics"]
    assert metrics["silhouette"] > 0.5 and set(metrics["per_cluster_silhouette"]) == {0, 1, 2}
    assert metrics["n_noise"] == 2
    assert metrics["external"]["n_samples"] == 29  # the image without a class is left out
    assert not s.metrics_stale
    s.move([0], 1)
    assert s.metrics_stale
    snapshot = s.labels.copy()
    other = s.recompute_metrics(labels=snapshot)  # worker-thread style: not stored
    assert s.metrics == metrics and other["per_cluster_size"][1] == metrics["per_cluster_size"][1] + 1


def test_metrics_without_features_give_sizes_and_a_reason():
    s = ClusterSession(["a", "b", "c"], [0, 0, 1])
    metrics = s.recompute_metrics()
    assert metrics["silhouette"] is None and metrics["reason"]
    assert metrics["per_cluster_size"] == {0: 2, 1: 1} and metrics["external"] is None


def test_reset_edits_restores_clustering_labels_and_names():
    s = make_session()
    before = state(s)
    s.rename(1, "Wolves")
    s.merge([1], 0)
    s.new_cluster([7], "X")
    events = []
    s.subscribe(events.append)
    s.reset_edits()
    assert state(s) == before and s.n_edits == 0 and events[-1].kind == "reset"


def test_save_load_round_trip_is_identical(tmp_path):
    s = make_session()
    s.paths[3] = os.fsdecode(b"/data/caf\xe9_latin1.png")  # an undecodable name (surrogate escape)
    s.recompute_metrics()
    s.move([0, 3], 2)
    s.rename(2, "Ünïcode ✓")
    target = s.save(tmp_path / "run.imgcluster")
    assert not s.modified and target.is_file()
    loaded = ClusterSession.load(target)
    assert loaded.paths == s.paths
    assert state(loaded) == state(s)
    np.testing.assert_array_equal(loaded.original_labels, s.original_labels)
    for name in ("embedding", "features", "confidence"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(s, name))
        assert getattr(loaded, name).dtype == getattr(s, name).dtype
    assert loaded.ground_truth == s.ground_truth and loaded.root == s.root
    assert loaded.settings == {"algorithm": "kmeans", "folder": "/data"}
    assert loaded.metrics["per_cluster_silhouette"] == s.metrics["per_cluster_silhouette"]
    assert loaded.metrics["external"] == s.metrics["external"]
    assert loaded.metrics_stale  # the metrics were computed before the two edits
    assert [e.description for e in loaded.history] == [e.description for e in s.history]
    # The restored history still undoes exactly.
    for edit in reversed(loaded.history[:]):
        loaded.revert(edit)
    np.testing.assert_array_equal(loaded.labels, loaded.original_labels)
    assert loaded.cluster_names == {1: "Dogs"}


def test_save_replaces_atomically_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "a.imgcluster"
    s = make_session()
    s.save(path)
    s.move([0], 1)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(session_module.np.lib.format, "write_array", disk_full)
    with pytest.raises(SessionFileError, match="No space left"):
        s.save(path)
    monkeypatch.undo()
    assert ClusterSession.load(path).labels[0] == 0  # the previous save is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.imgcluster"]  # no temporary left
    with pytest.raises(SessionFileError, match="Folder not found"):
        s.save(tmp_path / "missing" / "b.imgcluster")


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _corruptions(tmp_path: Path) -> list[Path]:
    good = make_session().save(tmp_path / "good.imgcluster")
    raw = good.read_bytes()
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(members["session.json"])
    files = []
    (tmp_path / "random.imgcluster").write_bytes(os.urandom(300))
    files.append(tmp_path / "random.imgcluster")
    (tmp_path / "truncated.imgcluster").write_bytes(raw[: len(raw) // 2])
    files.append(tmp_path / "truncated.imgcluster")
    (tmp_path / "empty.imgcluster").write_bytes(b"")
    files.append(tmp_path / "empty.imgcluster")
    files.append(_write_zip(tmp_path / "other.zip", {"readme.txt": b"hello"}))
    files.append(_write_zip(tmp_path / "badjson.imgcluster", {**members, "session.json": b"{not json"}))
    files.append(_write_zip(tmp_path / "foreign.imgcluster",
                            {**members, "session.json": json.dumps({**meta, "format": "x"}).encode()}))
    files.append(_write_zip(tmp_path / "newer.imgcluster",
                            {**members, "session.json": json.dumps({**meta, "version": 99}).encode()}))
    files.append(_write_zip(tmp_path / "short.imgcluster",
                            {**members, "session.json": json.dumps({**meta, "paths": meta["paths"][:-1]}).encode()}))
    files.append(_write_zip(tmp_path / "nolabels.imgcluster",
                            {k: v for k, v in members.items() if k != "labels.npy"}))
    files.append(_write_zip(tmp_path / "badnpy.imgcluster", {**members, "labels.npy": b"\x93NUMPY garbage"}))
    bad_edit = dict(meta, history=[{"description": "x", "indices": [999], "old_labels": [0], "new_labels": [1],
                                    "old_names": [], "new_names": []}])
    files.append(_write_zip(tmp_path / "badedit.imgcluster", {**members, "session.json": json.dumps(bad_edit).encode()}))
    files.append(tmp_path / "does-not-exist.imgcluster")
    files.append(tmp_path)  # a folder
    return files


def test_damaged_or_foreign_files_give_a_one_line_session_file_error(tmp_path):
    for path in _corruptions(tmp_path):
        with pytest.raises(SessionFileError) as info:
            ClusterSession.load(path)
        message = str(info.value)
        assert message and "\n" not in message, (path.name, message)
    with pytest.raises(SessionFileError, match="newer"):
        ClusterSession.load(tmp_path / "newer.imgcluster")


def test_constructor_validates_shapes():
    with pytest.raises(ValueError, match="labels"):
        ClusterSession(["a", "b"], [0])
    with pytest.raises(ValueError, match="embedding"):
        ClusterSession(["a", "b"], [0, 1], embedding=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=">= -1"):
        ClusterSession(["a"], [-3])


def test_edit_dict_round_trip():
    s = make_session()
    edit = s.plan_merge([1], 0)
    again = Edit.from_dict(json.loads(json.dumps(edit.to_dict())))
    assert again.description == edit.description and again.old_names == edit.old_names
    np.testing.assert_array_equal(again.indices, edit.indices)
    np.testing.assert_array_equal(again.old_labels, edit.old_labels)


def _session_with_levels() -> ClusterSession:
    # 12 images; levels: 2 groups, 3 groups (the clustering's result), 4 groups
    coarse = np.array([0] * 6 + [1] * 6)
    middle = np.array([0] * 4 + [2] * 2 + [1] * 6)
    fine = np.array([0] * 4 + [2] * 2 + [1] * 3 + [3] * 3)
    levels = np.stack([coarse, middle, fine], axis=1)
    summaries = [{"n_clusters": 2, "resolution": 0.5}, {"n_clusters": 3, "resolution": 1.0, "selected": True},
                 {"n_clusters": 4, "resolution": 2.0}]
    return ClusterSession([f"/img/{i}.png" for i in range(12)], middle.copy(), granularity_labels=levels,
                          granularity=summaries)


def test_regroup_switches_level_as_one_undoable_edit():
    session = _session_with_levels()
    assert session.n_granularity_levels == 3 and session.granularity_level() == 1
    events = []
    session.subscribe(events.append)
    edit = session.regroup(0)
    assert edit.description == "Regroup into 2 groups"
    assert session.labels.tolist() == [0] * 6 + [1] * 6 and session.granularity_level() == 0
    assert events and events[-1].kind == "labels"
    session.revert(edit)
    assert session.granularity_level() == 1 and session.n_edits == 0
    assert session.plan_regroup(1).is_noop
    with pytest.raises(IndexError):
        session.plan_regroup(3)
    with pytest.raises(ValueError, match="no granularity"):
        ClusterSession(["/a.png", "/b.png"], [0, 1]).plan_regroup(0)


def test_regroup_keeps_hand_placed_images_unless_told_otherwise():
    session = _session_with_levels()
    session.move([0], 1)  # a person puts image 0 with the second group
    assert session.hand_placed().tolist() == [0]
    assert session.granularity_level() == 1  # hand-placed images do not count against the level
    session.regroup(2)
    assert session.labels[0] == 1  # kept where the person put it
    assert session.labels[1:].tolist() == [0] * 3 + [2] * 2 + [1] * 3 + [3] * 3
    assert session.hand_placed().tolist() == [0]  # a regroup is not a hand placement
    session.regroup(2, keep_hand_placed=False)
    assert session.labels[0] == 0


def test_granularity_levels_survive_save_and_load(tmp_path):
    session = _session_with_levels()
    session.regroup(2)
    path = session.save(tmp_path / "levels.imgcluster")
    reopened = ClusterSession.load(path)
    np.testing.assert_array_equal(reopened.granularity_labels, session.granularity_labels)
    assert reopened.granularity == session.granularity
    assert reopened.granularity_level() == 2
    with pytest.raises(ValueError, match="level summaries"):
        ClusterSession(["/a.png", "/b.png"], [0, 1], granularity_labels=[[0], [1]], granularity=[])


def test_replacing_hand_placements_makes_those_images_follow_the_levels_again():
    chosen = np.repeat([0, 1], 4)
    fewer = np.zeros(8, dtype=np.int64)
    more = np.array([0, 0, 2, 2, 1, 1, 3, 3])
    session = ClusterSession([f"/x/{i}.png" for i in range(8)], chosen,
                             granularity_labels=np.stack([fewer, chosen, more], axis=1),
                             granularity=[{"n_clusters": 1}, {"n_clusters": 2, "selected": True}, {"n_clusters": 4}])
    session.move([2], 1)
    session.regroup(2, keep_hand_placed=False)
    assert session.hand_placed().size == 0
    session.regroup(0, keep_hand_placed=True)
    assert session.labels.tolist() == [0] * 8  # no stray group left at the one-group level
    session.move([5], 1)  # dragged by hand back into the group it started in: still placed by hand
    assert session.hand_placed().tolist() == [5]
    session.regroup(2, keep_hand_placed=True)
    assert session.labels[5] == 1 and session.labels[4] == 1 and session.labels[6] == 3
