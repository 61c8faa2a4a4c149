"""ClusterSession: edits, exact undo/redo, events, metrics, the modified flag, save / load, the run history (no Qt)."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imgcluster_gui.core.session import ClusterSession, Edit, RunHistory, RunRecord, SessionEvent, SessionFileError

UI = Path(__file__).resolve().parents[2] / "imgcluster_gui" / "ui"


def make_session(n: int = 30, k: int = 3, with_noise: bool = True) -> ClusterSession:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % k
    if with_noise:
        labels[-2:] = -1
    features = (np.eye(k, 5)[np.maximum(labels, 0)] * 4 + rng.normal(0, 0.3, size=(n, 5))).astype(np.float32)
    truth = [f"t{c}" for c in np.arange(n) % k]
    truth[0] = None  # an image without a known class
    return ClusterSession(
        [f"/data/img_{i:03d}.png" for i in range(n)],
        labels,
        {1: "Dogs"},
        embedding=features[:, :2],
        features=features,
        confidence=np.linspace(0, 1, n),
        ground_truth=truth,
        settings={"algorithm": "kmeans", "folder": Path("/data")},
        root="/data",
    )


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
    edits = [
        s.move([0, 1, 2], 2),
        s.new_cluster([3, 4], "  New   one "),
        s.rename(0, "Cats"),
        s.merge([1, 3], 0),
        s.delete_cluster(2),
        s.move([28], 0),
    ]
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


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda s: s.delete_cluster(-1), ValueError),
        (lambda s: s.new_cluster([]), ValueError),
        (lambda s: s.move([999], 0), IndexError),
        (lambda s: s.move([0], -5), ValueError),
        (lambda s: s.merge([0], 0), ValueError),
    ],
)
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
    s.move([0, 1], 2)  # 0 -> 2 and 1 -> 2; the first change also flips `modified`, after the edit's own event
    assert [e.kind for e in events] == ["labels", "modified"]
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


def test_the_files_a_run_skipped_are_saved_with_it_and_old_files_have_none(tmp_path):
    s = make_session()
    s.skipped = [("/photos/broken.jpg", "cannot identify image file"), ("/photos/DSC_1.NEF", "needs rawpy")]
    loaded = ClusterSession.load(s.save(tmp_path / "run.imgcluster"))
    assert loaded.skipped == s.skipped
    history = RunHistory()
    history.add(RunRecord(number=1, session=s, config={"algorithm": "kmeans"}, seconds=1.0, started=1.0, history=[]))
    again = RunHistory.load(history.save(tmp_path / "runs.imgcluster"))
    assert again.current.session.skipped == s.skipped  # a workspace keeps each run's own list
    data = s.to_dict()
    del data["skipped"]  # a file from before the list was saved
    assert ClusterSession.from_dict(data, s.arrays()).skipped == []


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

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
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
    files.append(
        _write_zip(
            tmp_path / "foreign.imgcluster", {**members, "session.json": json.dumps({**meta, "format": "x"}).encode()}
        )
    )
    files.append(
        _write_zip(
            tmp_path / "newer.imgcluster", {**members, "session.json": json.dumps({**meta, "version": 99}).encode()}
        )
    )
    files.append(
        _write_zip(
            tmp_path / "short.imgcluster",
            {**members, "session.json": json.dumps({**meta, "paths": meta["paths"][:-1]}).encode()},
        )
    )
    files.append(_write_zip(tmp_path / "nolabels.imgcluster", {k: v for k, v in members.items() if k != "labels.npy"}))
    files.append(_write_zip(tmp_path / "badnpy.imgcluster", {**members, "labels.npy": b"\x93NUMPY garbage"}))
    bad_edit = dict(
        meta,
        history=[
            {
                "description": "x",
                "indices": [999],
                "old_labels": [0],
                "new_labels": [1],
                "old_names": [],
                "new_names": [],
            }
        ],
    )
    files.append(
        _write_zip(tmp_path / "badedit.imgcluster", {**members, "session.json": json.dumps(bad_edit).encode()})
    )
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
    summaries = [
        {"n_clusters": 2, "resolution": 0.5},
        {"n_clusters": 3, "resolution": 1.0, "selected": True},
        {"n_clusters": 4, "resolution": 2.0},
    ]
    return ClusterSession(
        [f"/img/{i}.png" for i in range(12)], middle.copy(), granularity_labels=levels, granularity=summaries
    )


def test_regroup_switches_level_as_one_undoable_edit():
    session = _session_with_levels()
    assert session.n_granularity_levels == 3 and session.granularity_level() == 1
    events = []
    session.subscribe(events.append)
    edit = session.regroup(0)
    assert edit.description == "Regroup into 2 groups"
    assert session.labels.tolist() == [0] * 6 + [1] * 6 and session.granularity_level() == 0
    assert [e.kind for e in events] == ["labels", "modified"]  # one edit, then the flag flips
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
    session = ClusterSession(
        [f"/x/{i}.png" for i in range(8)],
        chosen,
        granularity_labels=np.stack([fewer, chosen, more], axis=1),
        granularity=[{"n_clusters": 1}, {"n_clusters": 2, "selected": True}, {"n_clusters": 4}],
    )
    session.move([2], 1)
    session.regroup(2, keep_hand_placed=False)
    assert session.hand_placed().size == 0
    session.regroup(0, keep_hand_placed=True)
    assert session.labels.tolist() == [0] * 8  # no stray group left at the one-group level
    session.move([5], 1)  # dragged by hand back into the group it started in: still placed by hand
    assert session.hand_placed().tolist() == [5]
    session.regroup(2, keep_hand_placed=True)
    assert session.labels[5] == 1 and session.labels[4] == 1 and session.labels[6] == 3


# ---------------------------------------------------------------------------- one unsaved-changes flag


def test_the_session_owns_the_modified_flag_and_says_when_it_flips(tmp_path):
    s = make_session()
    events = []
    s.subscribe(lambda e: events.append(e.kind))
    assert not s.modified and s.revision == 0
    s.apply(s.plan_move([0], 0))  # a no-op edit (image 0 is in cluster 0): nothing to save
    assert not s.modified and s.revision == 0 and events == []
    s.move([0], 1)
    assert s.modified and s.revision == 1 and events == ["labels", "modified"]
    s.rename(1, "Wolves")
    assert s.revision == 2 and events[2:] == ["names"]  # already modified: no second 'modified'
    s.save(tmp_path / "copy.imgcluster", mark_saved=False)  # the autosave: a copy, the work stays unsaved
    assert s.modified and events[3:] == []
    s.save(tmp_path / "work.imgcluster")
    assert not s.modified and events[3:] == ["modified"] and s.revision == 2
    s.revert(s.history[-1])  # undo is a change too
    assert s.modified and s.revision == 3 and events[4:] == ["names", "modified"]
    loaded = ClusterSession.load(tmp_path / "work.imgcluster")
    assert not loaded.modified
    heard = []
    loaded.subscribe(lambda e: heard.append(e.kind))
    loaded.mark_modified()  # e.g. a restored autosave
    assert loaded.modified and heard == ["modified"]
    loaded.save(tmp_path / "work.imgcluster")
    loaded.reset_edits()
    assert loaded.modified and heard[-2:] == ["reset", "modified"]


def test_a_new_pipeline_result_is_unsaved_work():
    from types import SimpleNamespace

    from imgcluster_gui.core.pipeline import PipelineConfig, PipelineResult

    labels = np.array([0, 0, 1, 1])
    result = PipelineResult(
        config=PipelineConfig(folder="/data"),
        scan=None,
        features=None,
        paths=[f"/data/{i}.png" for i in range(4)],
        X=np.eye(4, dtype=np.float32),
        labels=labels,
        k=2,
        auto_k=None,
        metrics={"silhouette": 0.5},
        external=None,
        ground_truth=None,
        embedding=None,
        confidence=None,
        timings={},
        estimator=SimpleNamespace(),
    )
    session = result.to_session()
    assert session.modified and session.metrics == {"silhouette": 0.5, "external": None}


# ---------------------------------------------------------------------------- views only read


def test_set_metrics_stores_only_metrics_of_the_current_labels():
    s = make_session()
    snapshot = s.labels.copy()
    scored = s.recompute_metrics(labels=snapshot)  # a worker's result, not stored
    s.move([0], 1)  # edits go on meanwhile
    events = []
    s.subscribe(lambda e: events.append(e.kind))
    assert s.set_metrics(scored, labels=snapshot) is False
    assert s.metrics == {} and events == [] and s.metrics_stale
    current = s.recompute_metrics(labels=s.labels.copy())
    assert s.set_metrics(current, labels=s.labels.copy()) is True
    assert s.metrics == current and events == ["metrics"] and not s.metrics_stale


def test_recomputed_metrics_keep_how_k_was_chosen():
    auto_k = {"method": "graph", "best_k": 3, "resolution": 1.0, "modularity": 0.4, "n_unsorted": 0}
    s = make_session()
    s.set_metrics({"silhouette": 0.1, "auto_k": auto_k})
    s.move([0], 1)
    assert s.recompute_metrics(labels=s.labels.copy())["auto_k"] == auto_k  # a worker's snapshot has it too
    assert s.recompute_metrics()["auto_k"] == auto_k and s.metrics["auto_k"] == auto_k


def test_set_embedding_checks_the_shape_records_the_method_and_emits():
    s = make_session()
    events = []
    s.subscribe(lambda e: events.append(e.kind))
    coords = np.arange(2 * len(s), dtype=np.float64).reshape(-1, 2)
    s.set_embedding(coords, method="tsne")
    assert s.embedding.dtype == np.float32 and np.array_equal(s.embedding, coords)
    assert s.settings["embedding"] == "tsne" and events == ["embedding"] and not s.modified
    with pytest.raises(ValueError, match="embedding"):
        s.set_embedding(np.zeros((len(s), 3)))
    s.embedding = None  # assigning is the same call
    assert s.embedding is None and events == ["embedding", "embedding"]
    s.set_setting("embedding", "pca", overwrite=False)
    assert s.settings["embedding"] == "tsne"
    s.set_setting("layout", "pca", overwrite=False)
    assert s.settings["layout"] == "pca"


_SESSION_WRITE = re.compile(
    r"\b_?session\.(?P<attr>\w+)(\[[^\]\n]*\])?\s*(\+|-|\*|/|\|)?=(?!=)"  # session.x = / session.x[k] =
    r"|\b_?session\.(?P<owner>\w+)\.(setdefault|update|append|extend|insert|pop|clear|remove)\("
)


def test_views_never_write_session_state():
    offenders = []
    for path in sorted(UI.glob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _SESSION_WRITE.search(line.split("#", 1)[0]):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == [], "views must change a session through its methods:\n" + "\n".join(offenders)
    assert _SESSION_WRITE.search("        session.embedding = coords")  # the check itself catches a write
    assert _SESSION_WRITE.search('self._session.settings["embedding"] = method')
    assert _SESSION_WRITE.search("session.settings.setdefault('embedding', m)")
    assert not _SESSION_WRITE.search("if session.metrics == other:")


# ---------------------------------------------------------------------------- the runs of a sitting


def test_run_history_numbers_the_runs_and_knows_the_current_one():
    runs = RunHistory()
    assert runs.next_number() == 1 and runs.current is None and runs.current_number is None
    first, second = make_session(), make_session()
    runs.add(RunRecord(number=runs.next_number(), session=first, config={"backbones": ["a", "b"]}, seconds=2.5))
    runs.add(RunRecord(number=runs.next_number(), session=second, source="file", title="old.imgcluster"))
    assert [r.number for r in runs] == [1, 2] and len(runs) == 2
    assert runs.current_number == 2 and runs.current.session is second
    assert runs.record_of(first).number == 1 and runs.record_of(object()) is None
    assert runs.set_current(1).session is first and runs.current_number == 1
    with pytest.raises(KeyError):
        runs.record(7)
    with pytest.raises(ValueError, match="taken"):
        runs.add(RunRecord(number=2, session=first))
    first.recompute_metrics()
    row = runs.record(1).row()
    assert row["backbone"] == "a + b" and row["k"] == 3 and row["n_images"] == 30 and row["seconds"] == 2.5
    assert row["silhouette"] == first.metrics["silhouette"] and row["nmi"] == first.metrics["external"]["nmi"]
    assert runs.record(2).row()["backbone"] == "old.imgcluster" and runs.record(2).row()["seconds"] is None
