"""Matching two runs' groups: overlap table, Hungarian matching, renumbering labels and whole sessions."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.core.clustering.community import align_labels as community_align
from imgcluster_gui.core.compare import (
    align_labels,
    align_session,
    compare_labels,
    match_clusters,
    overlap_matrix,
)
from imgcluster_gui.core.session import ClusterSession


def test_overlap_matrix_counts_pairs_and_keeps_unassigned_last():
    a = np.array([0, 0, 1, 1, -1, 2])
    b = np.array([5, 5, 5, -1, -1, 3])
    matrix, ids_a, ids_b = overlap_matrix(a, b)
    assert ids_a.tolist() == [0, 1, 2, -1]
    assert ids_b.tolist() == [3, 5, -1]
    assert matrix.tolist() == [[0, 2, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]]
    assert matrix.sum() == a.size


def test_overlap_matrix_refuses_labellings_of_different_length():
    with pytest.raises(ValueError, match="different numbers"):
        overlap_matrix([0, 1], [0, 1, 2])


def test_permuted_labelling_is_aligned_back_exactly():
    rng = np.random.default_rng(0)
    reference = rng.integers(-1, 6, size=200)
    permutation = {0: 4, 1: 0, 2: 5, 3: 1, 4: 3, 5: 2}
    permuted = np.array([permutation.get(int(x), -1) for x in reference])
    aligned, mapping = align_labels(reference, permuted)
    np.testing.assert_array_equal(aligned, reference)
    assert mapping == {new: old for old, new in permutation.items()}


def test_split_group_keeps_its_id_on_the_larger_part():
    reference = np.array([7] * 10 + [2] * 5)
    # Group 7 split into 0 (7 images) and 1 (3 images); group 2 is now 3.
    new = np.array([0] * 7 + [1] * 3 + [3] * 5)
    aligned, mapping = align_labels(reference, new)
    assert mapping[0] == 7 and mapping[3] == 2
    assert mapping[1] not in {7, 2}
    assert aligned[:7].tolist() == [7] * 7 and aligned[10:].tolist() == [2] * 5


def test_merged_groups_take_the_larger_ones_id():
    reference = np.array([4] * 6 + [9] * 3 + [1] * 5)
    new = np.array([0] * 9 + [1] * 5)  # 4 and 9 merged
    assert match_clusters(reference, new) == {0: 4, 1: 1}


def test_unassigned_is_never_matched_or_renumbered():
    reference = np.array([-1, -1, -1, 0, 0])
    new = np.array([2, 2, 2, -1, -1])
    aligned, mapping = align_labels(reference, new)
    assert -1 not in mapping.values() and -1 not in mapping
    assert aligned[3:].tolist() == [-1, -1]
    assert aligned[0] not in (0, -1)


def test_groups_sharing_no_image_are_not_matched():
    assert match_clusters([0, 0, 1, 1], [-1, -1, 3, 3]) == {3: 1}
    assert match_clusters([-1, -1], [0, 0]) == {}


def test_fresh_ids_avoid_reference_ids_and_reserved_ones():
    reference = np.array([0, 0, 3, 3])
    new = np.array([0, 1, 2, 2])
    aligned, mapping = align_labels(reference, new, reserved=[5])
    # 2 -> 3 (both images), 0 -> 0; 1 is unmatched and gets an id after 0, 3 and the reserved 5.
    assert mapping[2] == 3 and mapping[0] == 0
    assert mapping[1] == 6
    assert aligned.tolist() == [0, 6, 3, 3]


def test_keep_ids_keeps_a_free_own_id_for_an_unmatched_group():
    reference = np.array([0, 0, 0, 0])
    new = np.array([0, 0, 4, 4])
    assert align_labels(reference, new, keep_ids=True)[1] == {0: 0, 4: 4}
    # Taken by the reference: a fresh one instead.
    assert align_labels(np.array([0, 0, 4, 4]), np.array([1, 1, 1, 0]), keep_ids=True)[1] == {1: 0, 0: 4}


@pytest.mark.parametrize("seed", range(25))
def test_random_alignment_properties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))

    def labelling() -> np.ndarray:  # scattered ids (not 0..K-1) and some unassigned images
        ids = rng.choice(20, size=int(rng.integers(1, 8)), replace=False)
        return rng.choice(np.append(ids, -1), size=n)

    reference, new = labelling(), labelling()
    aligned, mapping = align_labels(reference, new)
    # A renumbering: the same partition, one id per group, -1 untouched.
    assert len(set(mapping.values())) == len(mapping)
    np.testing.assert_array_equal(aligned == -1, new == -1)
    pairs = {(int(x), int(y)) for x, y in zip(new, aligned)}
    assert len(pairs) == len(set(new.tolist()))
    matched = match_clusters(reference, new)
    ref_ids = set(reference.tolist()) - {-1}
    for group, target in mapping.items():
        if group in matched:
            assert target == matched[group] and target in ref_ids
        else:  # fresh ids never collide with a reference id
            assert target not in ref_ids and target >= 0
    # The matching is optimal: it agrees on at least as many images as the greedy one of the ladder.
    agree = int(np.count_nonzero((aligned == reference) & (reference >= 0)))
    greedy = community_align(reference, new)
    assert agree >= int(np.count_nonzero((greedy == reference) & (reference >= 0)))
    again, _ = align_labels(reference, aligned)
    np.testing.assert_array_equal(again, aligned)  # aligning an aligned labelling changes nothing


def _session(labels, **kwargs) -> ClusterSession:
    paths = [f"/img/{i}.png" for i in range(len(labels))]
    return ClusterSession(paths, labels, **kwargs)


def test_align_session_renumbers_every_per_cluster_field():
    shown = _session([3, 3, 3, 8, 8, 8, -1, -1], cluster_names={3: "Cats"})
    levels = np.array([[0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 2, 2]]).T
    new = _session(
        [1, 1, 1, 0, 0, 0, 2, 2],
        cluster_names={2: "Other"},
        metrics={"per_cluster_silhouette": {0: 0.5, 1: 0.25, 2: 0.1}, "per_cluster_size": {0: 3, 1: 3, 2: 2}},
        granularity_labels=levels,
        granularity=[{"n_clusters": 1}, {"n_clusters": 3, "selected": True}],
    )
    mapping = align_session(shown, new)
    assert mapping == {1: 3, 0: 8, 2: 9}
    assert new.labels.tolist() == [3, 3, 3, 8, 8, 8, 9, 9]
    np.testing.assert_array_equal(new.original_labels, new.labels)
    assert new.granularity_labels[:, 1].tolist() == new.labels.tolist()
    assert new.granularity_labels[:, 0].tolist() == [8] * 8
    assert new.cluster_names == {9: "Other"}
    assert new.metrics["per_cluster_silhouette"] == {8: 0.5, 3: 0.25, 9: 0.1}
    assert new.metrics["per_cluster_size"] == {8: 3, 3: 3, 9: 2}
    assert not new.metrics_stale and new.granularity_level() == 1
    assert new.settings["cluster_renumbering"] == {"0": 8, "1": 3, "2": 9}


def test_align_session_leaves_other_images_and_edited_sessions_alone():
    shown = _session([0, 0, 1, 1])
    other = ClusterSession([f"/other/{i}.png" for i in range(4)], [1, 1, 0, 0])
    assert align_session(shown, other) is None and other.labels.tolist() == [1, 1, 0, 0]
    edited = _session([1, 1, 0, 0])
    edited.move([0], 0)
    assert align_session(shown, edited) is None
    assert align_session(None, _session([1, 1, 0, 0])) is None


def test_compare_labels_counts_moved_images_and_scores():
    a = np.array([0, 0, 0, 1, 1, 1])
    b = np.array([5, 5, 4, 4, 4, 4])  # image 2 moved from A's 0 to the match of A's 1
    result = compare_labels(a, b)
    assert result.mapping == {5: 0, 4: 1}
    assert result.moved.tolist() == [2]
    assert 0 < result.nmi < 1 and result.ari < 1
    same = compare_labels(a, np.array([2, 2, 2, 7, 7, 7]))
    assert same.moved.size == 0 and same.nmi == pytest.approx(1.0) and same.ari == pytest.approx(1.0)


def test_regroup_keeps_the_shown_groups_ids():
    # The ladder's numbering disagrees with the shown labels (a run aligned to another one, or a hand edit).
    shown = np.array([5, 5, 5, 5, 2, 2, 2, 2])
    coarse = np.array([0, 0, 0, 0, 0, 0, 0, 0])
    fine = np.array([1, 1, 0, 0, 3, 3, 3, 3])
    session = _session(
        shown,
        granularity_labels=np.stack([coarse, shown, fine], axis=1),
        granularity=[{"n_clusters": 1}, {"n_clusters": 2, "selected": True}, {"n_clusters": 3}],
    )
    session.regroup(2)
    labels = session.labels.tolist()
    assert labels[4:] == [2, 2, 2, 2]  # the unchanged group kept its id (and colour)
    assert {labels[0], labels[2]} & {5} and len({labels[0], labels[2]}) == 2
    assert session.granularity_level() == 2
    session.regroup(1)  # back: the original numbering again
    assert session.labels.tolist() == shown.tolist() and session.granularity_level() == 1
