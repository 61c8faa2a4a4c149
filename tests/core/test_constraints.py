"""Corrections as constraints (core/constraints.py) and the re-cluster that keeps them (issue 14)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from imgcluster_gui.core.constraints import (
    RECLUSTER_METHODS,
    CannotLink,
    Constraints,
    constraints_for_paths,
    constraints_from_history,
    follow_lone_moves,
    recluster,
)
from imgcluster_gui.core.graph import build_knn_graph
from imgcluster_gui.core.session import ClusterSession
from tests.helpers import gaussian_blobs


def _merged_blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray, ClusterSession]:
    """Four blobs, the clustering put blobs 2 and 3 together (cluster 2)."""
    X, truth = gaussian_blobs(n, 4, 16, spread=2.0, seed=seed)
    labels = truth.copy()
    labels[truth == 3] = 2
    return X, truth, ClusterSession([f"/images/{i}.png" for i in range(n)], labels, features=X)


def test_moves_new_clusters_and_confirms_become_anchors_and_cannot_links():
    _, truth, session = _merged_blobs()
    blob3 = np.flatnonzero(truth == 3)
    session.new_cluster(blob3[:3])
    new = int(session.labels[blob3[0]])
    session.move(blob3[3:5], new)
    session.confirm(0)
    constraints = session.constraints()

    confirmed = np.flatnonzero(session.labels == 0)
    assert set(constraints.anchors.tolist()) == set(blob3[:5].tolist()) | set(confirmed.tolist())
    assert constraints.counts() == {0: confirmed.size, new: 5}
    assert constraints.confirmed == [0]
    assert sorted(group.size for group in constraints.must_link) == [5, confirmed.size]
    # Each move out of cluster 2 is a cannot-link with the images that stayed there.
    assert len(constraints.cannot_link) == 2
    for link in constraints.cannot_link:
        assert link.cluster == 2
        assert not set(link.moved.tolist()) & set(link.left.tolist())
        assert set(link.left.tolist()) <= set(np.flatnonzero(session.labels == 2).tolist()) | set(blob3[3:5].tolist())


def test_a_merge_leaves_nobody_behind_and_a_move_back_cancels_the_cannot_link():
    _, _, session = _merged_blobs()
    session.merge([1], 0)
    assert session.constraints().cannot_link == []
    image = int(np.flatnonzero(session.labels == 2)[0])
    session.move([image], 0)
    assert len(session.constraints().cannot_link) == 1
    session.move([image], 2)  # the person changed their mind: back with the ones it left
    assert [link.cluster for link in session.constraints().cannot_link] == [0]  # only "not with cluster 0" is left


def test_a_recluster_is_not_a_correction_and_undo_restores_the_labels():
    X, truth, session = _merged_blobs()
    blob3 = np.flatnonzero(truth == 3)
    session.new_cluster(blob3[:4])
    before = session.labels.copy()
    edit = session.apply(session.plan_recluster())
    assert edit.is_regroup and edit.indices.size > 0
    assert set(session.hand_placed().tolist()) == set(blob3[:4].tolist())
    session.revert(edit)
    assert np.array_equal(session.labels, before)


@pytest.mark.parametrize(
    "method, options, share",
    [
        # The default prior (the current labels count as much as a correction: the best measured on the curation
        # curve) lets 5 corrections pull their nearest neighbours out of a merged group of 120, not all of them.
        ("propagation", {}, 0.2),
        ("propagation", {"prior_weight": 0.2}, 0.9),
        ("leiden", {}, 0.9),
        ("copkmeans", {}, 0.9),
    ],
)
def test_recluster_follows_the_corrections_to_the_images_like_them(method, options, share):
    X, truth, session = _merged_blobs()
    blob3 = np.flatnonzero(truth == 3)
    session.new_cluster(blob3[:5])
    new_labels = recluster(X, session.labels, session.constraints(), method=method, **options)
    new = int(session.labels[blob3[0]])
    assert np.mean(new_labels[blob3] == new) > share  # the rest of blob 3 joined the images moved by hand
    assert np.mean(new_labels[truth == 2] == 2) > 0.9  # blob 2 stayed


@pytest.mark.parametrize("method", RECLUSTER_METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_corrected_image_is_ever_moved_back(method, seed):
    # Random hand edits against the data (moves to the wrong blob, new clusters, Unassigned, a confirm):
    # whatever the features say, a re-cluster leaves every one of them where the person put it.
    X, truth, session = _merged_blobs(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        images = rng.choice(truth.size, size=int(rng.integers(1, 6)), replace=False)
        target = int(rng.choice([-1, 0, 1, 2]))
        session.move(images, target)
    session.new_cluster(rng.choice(truth.size, size=3, replace=False))
    session.confirm(int(session.labels[session.labels >= 0][0]))
    constraints = session.constraints()
    placed = session.hand_placed()
    new_labels = recluster(X, session.labels, constraints, method=method, random_state=seed)
    assert np.array_equal(new_labels[placed], session.labels[placed])
    assert np.array_equal(new_labels[constraints.anchors], constraints.anchor_labels)
    # And through the session, as the app does it: applied, then a second re-cluster on top.
    session.apply(session.plan_recluster(method=method))
    session.apply(session.plan_recluster(method=method))
    assert np.array_equal(session.labels[placed], new_labels[placed])


def test_a_freed_image_never_goes_back_to_the_cluster_it_was_moved_out_of():
    X, truth, _ = _merged_blobs()
    image = int(np.flatnonzero(truth == 0)[0])
    labels = truth.copy()
    labels[image] = 1  # where a later regroup put it back (so it is free again)
    others = np.flatnonzero(truth == 0)[1:]
    constraints = Constraints(
        truth.size, np.array([others[0]]), np.array([0]), [CannotLink(np.array([image]), others, 0)]
    )
    assert constraints.forbidden() == {image: {0}}
    for method in RECLUSTER_METHODS:
        assert recluster(X, labels, constraints, method=method)[image] != 0


def test_no_corrections_change_nothing_and_unassigned_free_images_stay_unassigned():
    X, truth, session = _merged_blobs()
    assert np.array_equal(recluster(X, session.labels, session.constraints()), session.labels)
    labels = session.labels.copy()
    labels[:3] = -1
    session2 = ClusterSession(session.paths, labels, features=X)
    session2.move([int(np.flatnonzero(truth == 3)[0])], 0)
    assert (recluster(X, labels, session2.constraints())[:3] == -1).all()


def test_constraints_are_saved_with_the_session_and_old_files_open(tmp_path):
    X, truth, session = _merged_blobs()
    session.move(np.flatnonzero(truth == 3)[:4], 1)
    session.confirm(0)
    path = session.save(tmp_path / "corrected.imgcluster")
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("session.json"))
    assert document["constraints"] == session.constraints().to_dict()
    restored = Constraints.from_dict(document["constraints"], truth.size)
    assert np.array_equal(restored.anchors, session.constraints().anchors)
    # A file without the key (older versions) opens, and the corrections come back from its history.
    old = tmp_path / "old.imgcluster"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "session.json":
                stripped = dict(document)
                stripped.pop("constraints")
                data = json.dumps(stripped).encode()
            target.writestr(item, data)
    loaded = ClusterSession.load(old)
    assert loaded.constraints().to_dict() == session.constraints().to_dict()
    with pytest.raises(ValueError):
        Constraints.from_dict({"anchors": [truth.size], "anchor_labels": [0]}, truth.size)


def test_a_saved_sessions_corrections_carry_over_to_a_new_run_by_path():
    X, truth, session = _merged_blobs()
    blob3 = np.flatnonzero(truth == 3)
    session.new_cluster(blob3[:5])
    new = int(session.labels[blob3[0]])
    # The new run sees the images in reverse order, plus two the session never had, numbered differently.
    order = np.arange(truth.size)[::-1]
    paths = [session.paths[i] for i in order] + ["/images/extra_a.png", "/images/extra_b.png"]
    run_labels = np.concatenate([(session.original_labels[order] + 7), [9, 9]])
    constraints, start = constraints_for_paths(session, paths, run_labels)
    position = {i: p for p, i in enumerate(order)}
    assert sorted(constraints.anchors.tolist()) == sorted(position[i] for i in blob3[:5])
    assert (constraints.anchor_labels == new).all()
    assert np.array_equal(start[: truth.size], session.labels[order])
    X_run = np.concatenate([X[order], X[blob3[:2]]])
    labels = recluster(X_run, start, constraints)
    assert np.array_equal(labels[constraints.anchors], constraints.anchor_labels)


def test_history_constraints_ignore_regroups():
    labels = np.array([0, 0, 1, 1])
    from imgcluster_gui.core.session.edits import REGROUP_PREFIX, Edit

    regroup = Edit(f"{REGROUP_PREFIX}1 group", np.array([2, 3]), np.array([1, 1]), np.array([0, 0]))
    assert constraints_from_history([regroup], np.array([0, 0, 0, 0])).is_empty
    assert constraints_from_history([], labels).is_empty


def test_cli_constraints_keep_a_saved_sessions_corrections(tmp_path):
    from types import SimpleNamespace

    from imgcluster_gui.cli import UsageError, _keep_corrections, build_parser

    X, truth, session = _merged_blobs()
    blob3 = np.flatnonzero(truth == 3)
    session.new_cluster(blob3[:5])
    saved = session.save(tmp_path / "corrected.imgcluster")
    assert build_parser().parse_args(["cluster", "f", "--constraints", str(saved)]).constraints == str(saved)
    result = SimpleNamespace(
        paths=list(session.paths), X=X, labels=session.original_labels.copy(), ground_truth=None, warnings=[], k=3
    )
    _keep_corrections(result, str(saved))
    assert (result.labels[blob3[:5]] == session.labels[blob3[0]]).all()
    assert result.k == 4 and "kept 5 hand-corrected" in result.warnings[-1]
    with pytest.raises(UsageError):
        _keep_corrections(result, str(tmp_path / "missing.imgcluster"))


def _cluster_of_two_kinds(seed: int = 0) -> tuple[np.ndarray, np.ndarray, ClusterSession]:
    """Blobs 0 (60 images), 1 (60) and 2 (20); the clustering put the small blob 2 inside cluster 0."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 32)) * 3.0
    truth = np.repeat([0, 1, 2], [60, 60, 20])
    X = centres[truth] + rng.normal(size=(truth.size, 32))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    labels = np.where(truth == 2, 0, truth)
    return X, truth, ClusterSession([f"/images/{i}.png" for i in range(truth.size)], labels, features=X)


def test_look_alikes_follow_one_image_dragged_out_of_a_mixed_cluster():
    X, truth, session = _cluster_of_two_kinds()
    small = np.flatnonzero(truth == 2)
    session.new_cluster([int(small[0])])  # one drag: "this kind does not belong here"
    new = int(session.labels[small[0]])
    followed = recluster(X, session.labels, session.constraints())
    assert np.mean(followed[small] == new) > 0.9
    assert np.all(followed[truth == 0] == 0) and np.all(followed[truth == 1] == 1)  # the cores stayed
    alone = recluster(X, session.labels, session.constraints(), follow=False)
    assert np.mean(alone[small] == new) < 0.5  # without the follow, spreading alone does not carry them


def test_nothing_follows_an_image_picked_out_one_by_one_or_a_misfit():
    X, truth, session = _cluster_of_two_kinds()
    small = np.flatnonzero(truth == 2)
    for image in small[:3]:  # three separate drags out of cluster 0: the person picks misfits by hand
        session.move([int(image)], 1)
    adjacency = build_knn_graph(X, n_neighbors=15, metric="cosine", cache=False).adjacency(weighting="fuzzy")
    assert np.array_equal(follow_lone_moves(X, adjacency, session.labels, session.constraints()), session.labels)
    _, _, session = _cluster_of_two_kinds()
    session.move([int(small[0])], 1)  # the same image in one drag: now its look-alikes do follow
    followed = follow_lone_moves(X, adjacency, session.labels, session.constraints())
    assert np.mean(followed[small[1:]] == 1) > 0.9
    # One image unlike every sub-group of its cluster, dragged out: it goes alone.
    X2, truth2, session2 = _cluster_of_two_kinds(seed=1)
    misfit = np.flatnonzero(truth2 == 0)[0]
    X2[misfit] = -X2[np.flatnonzero(truth2 == 2)].mean(axis=0)
    X2[misfit] /= np.linalg.norm(X2[misfit])
    session2 = ClusterSession(session2.paths, session2.labels, features=X2)
    session2.move([int(misfit)], 1)
    adjacency2 = build_knn_graph(X2, n_neighbors=15, metric="cosine", cache=False).adjacency(weighting="fuzzy")
    assert np.array_equal(follow_lone_moves(X2, adjacency2, session2.labels, session2.constraints()), session2.labels)


def test_spreading_near_the_corrections_gives_the_whole_graphs_labels_and_leaves_far_clusters_alone():
    """The corrections' region (core/constraints.py) is what makes a big re-cluster fast; it must not change it."""
    from imgcluster_gui.core.constraints import corrections_region

    rng = np.random.default_rng(3)
    clusters, per = 30, 40
    truth = np.repeat(np.arange(clusters), per)
    X = (rng.normal(size=(clusters, 16)) * 3)[truth] + rng.normal(size=(truth.size, 16))
    labels = truth.copy()
    strays = rng.choice(truth.size, 12, replace=False)  # a clustering's mistakes, far from any correction too
    labels[strays] = (truth[strays] + 1) % clusters
    session = ClusterSession([f"{i}.png" for i in range(truth.size)], labels.copy(), features=X)
    for image in strays[:5]:
        session.move([int(image)], int(truth[image]))
    constraints = session.constraints()
    graph = build_knn_graph(X, n_neighbors=10, metric="cosine", cache=False)
    near = recluster(X, session.labels, constraints, graph=graph, n_neighbors=10)
    whole = recluster(X, session.labels, constraints, graph=graph, n_neighbors=10, whole_graph=True)
    np.testing.assert_array_equal(near, whole)
    assert np.sum(near != truth) < np.sum(session.labels != truth)  # the strays nobody moved are re-assigned too
    region = corrections_region(graph.adjacency(weighting="fuzzy"), session.labels, session.labels, constraints)
    untouched = np.setdiff1d(np.arange(truth.size), region)
    assert untouched.size > truth.size // 2  # most clusters were neither corrected nor unsettled
    np.testing.assert_array_equal(near[untouched], session.labels[untouched])


def test_a_recluster_reads_the_runs_graph_from_the_cache(monkeypatch):
    """The default Leiden built the graph; the re-cluster (no graph given) must not search the neighbours again."""
    from imgcluster_gui.core import graph as graph_module
    from imgcluster_gui.core.clustering.registry import make_estimator

    X, truth = gaussian_blobs(90, 3, 8, seed=4)
    labels = np.asarray(make_estimator("leiden", random_state=0).fit(X).labels_, dtype=np.int64)  # caches its graph
    session = ClusterSession([f"{i}.png" for i in range(len(truth))], labels.copy(), features=X)
    session.move([0], int(labels[40]))

    def no_search(*args, **kwargs):
        raise AssertionError("the neighbour graph was searched again")

    monkeypatch.setattr(graph_module, "nearest_neighbors", no_search)
    monkeypatch.setattr(graph_module, "_build_index", no_search)
    new = recluster(X, session.labels, session.constraints())
    assert new[0] == labels[40]
