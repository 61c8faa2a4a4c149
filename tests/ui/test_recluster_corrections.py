"""Confirm cluster, "Re-cluster with my corrections" and the fine-tune, driven through the real window (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.cluster_model import sort_members
from imgcluster_gui.ui.main_window import MainWindow

from .conftest import PER_CLUSTER


@pytest.fixture
def window(isolated_window):
    return isolated_window


@pytest.fixture
def merged(session: ClusterSession) -> ClusterSession:
    """The conftest session with clusters 1 and 2 wrongly merged (all 16 in cluster 1)."""
    labels = session.labels.copy()
    labels[labels == 2] = 1
    return ClusterSession(session.paths, labels, features=session.features, root=session.root)


def _menu_action(window: MainWindow, text: str):
    for menu_action in window.menuBar().actions():
        for action in menu_action.menu().actions():
            if action.text().replace("&", "") == text:
                return action
    raise AssertionError(f"no menu entry {text!r}")


def test_confirm_from_the_context_menu_is_an_undoable_correction(window, session):
    window.show_session(session)
    menu = window.grid.build_context_menu(0)
    confirm = next(a for a in menu.actions() if a.text().startswith("Confirm"))
    assert confirm.isEnabled()
    confirm.trigger()
    assert set(session.constraints().anchors.tolist()) == set(range(PER_CLUSTER))
    assert window.undo_action.isEnabled() and "Confirm" in window.undo_action.text()
    window.undo_action.trigger()
    assert session.constraints().is_empty
    assert not next(
        a for a in window.grid.build_context_menu(-1).actions() if a.text().startswith("Confirm")
    ).isEnabled()


def test_recluster_with_my_corrections_keeps_them_and_undo_restores(window, merged, qtbot):
    window.show_session(merged)
    action = _menu_action(window, "Re-cluster with my corrections")
    assert action.isEnabled()
    action.trigger()  # no corrections yet: a message, nothing changes
    assert "No corrections yet" in window.status_label.text()
    assert window.undo_stacks.active_stack().count() == 0
    assert window.edit_controller.corrections_job is None

    group_two = np.arange(2 * PER_CLUSTER, 3 * PER_CLUSTER)
    window.grid.select_indices(group_two[:3].tolist())
    new = window.edit_controller.new_cluster_from_selection("Blues")
    before = merged.labels.copy()
    action.trigger()  # on a background thread: the window stays usable, Esc cancels it
    job = window.edit_controller.corrections_job
    assert job is not None and window.cancel_action.isEnabled()
    with qtbot.waitSignal(job.finished, timeout=60_000):
        pass
    assert window.edit_controller.corrections_job is None and not window.cancel_action.isEnabled()
    assert merged.labels[group_two[:3]].tolist() == [new] * 3  # the hand-placed images stayed
    assert (merged.labels[group_two] == new).all()  # and the rest of their group followed them
    assert (merged.labels[PER_CLUSTER : 2 * PER_CLUSTER] == 1).all()
    assert "Re-cluster with my corrections" in window.undo_action.text()
    # What changed group is selected, for the person to check (and the selection is announced to the other views).
    changed = np.flatnonzero(merged.labels != before)
    assert changed.size and sorted(window.grid.selected_indices()) == changed.tolist()
    assert "changed group are selected" in window.status_label.text()
    window.undo_action.trigger()
    assert np.array_equal(merged.labels, before)


def test_finetune_runs_in_the_background_and_is_one_undoable_edit(window, merged, qtbot):
    window.show_session(merged)
    window.edit_controller.finetune_with_corrections()  # too few corrections: says so
    assert window.edit_controller.corrections_job is None
    group_two = np.arange(2 * PER_CLUSTER, 3 * PER_CLUSTER)
    window.grid.select_indices(group_two[:2].tolist())
    new = window.edit_controller.new_cluster_from_selection("Blues")
    window.grid.select_indices([0, 1])
    window.edit_controller.new_cluster_from_selection("Reds again")
    before = merged.labels.copy()
    job = window.edit_controller.finetune_with_corrections()
    assert job is not None
    with qtbot.waitSignal(job.finished, timeout=120_000):
        pass
    assert (merged.labels[group_two] == new).all()
    assert "fine-tuned" in window.undo_action.text()
    assert sorted(window.grid.selected_indices()) == np.flatnonzero(merged.labels != before).tolist()
    window.undo_action.trigger()
    assert np.array_equal(merged.labels, before)


def test_cancel_stops_a_finetune_and_applies_nothing(window, merged, qtbot):
    """Esc / Cancel reaches the fine-tune too: enabled while it trains, and nothing of it is applied."""
    window.show_session(merged)
    group_two = np.arange(2 * PER_CLUSTER, 3 * PER_CLUSTER)
    window.grid.select_indices(group_two[:2].tolist())
    window.edit_controller.new_cluster_from_selection("Blues")
    window.grid.select_indices([0, 1])
    window.edit_controller.new_cluster_from_selection("Reds again")
    before = merged.labels.copy()
    undo_text = window.undo_action.text()
    assert not window.cancel_action.isEnabled()
    job = window.edit_controller.finetune_with_corrections()
    assert job is not None and window.cancel_action.isEnabled()
    with qtbot.waitSignal(job.finished, timeout=120_000):
        window.cancel_action.trigger()
    assert np.array_equal(merged.labels, before)
    assert window.undo_action.text() == undo_text  # no fine-tune edit pushed
    assert not window.cancel_action.isEnabled()


def test_a_recluster_is_not_applied_over_edits_made_while_it_ran(window, merged, qtbot):
    window.show_session(merged)
    group_two = np.arange(2 * PER_CLUSTER, 3 * PER_CLUSTER)
    window.grid.select_indices(group_two[:3].tolist())
    window.edit_controller.new_cluster_from_selection("Blues")
    job = window.edit_controller.recluster_with_corrections()
    assert job is not None
    assert window.edit_controller.recluster_with_corrections() is None  # one job on the corrections at a time
    assert "still running" in window.status_label.text()
    with qtbot.waitSignal(job.finished, timeout=60_000):
        window.grid.move_indices([0], 1)  # the person keeps working meanwhile
    after_move = merged.labels.copy()
    assert after_move[0] == 1
    assert "nothing applied" in window.status_label.text()
    assert "Re-cluster" not in window.undo_action.text()  # the last edit is still the person's move
    assert np.array_equal(merged.labels, after_move)


def test_cancel_stops_a_recluster_and_applies_nothing(window, merged, qtbot):
    window.show_session(merged)
    window.grid.select_indices(list(range(2 * PER_CLUSTER, 2 * PER_CLUSTER + 3)))
    window.edit_controller.new_cluster_from_selection("Blues")
    before = merged.labels.copy()
    job = window.edit_controller.recluster_with_corrections()
    with qtbot.waitSignal(job.finished, timeout=60_000):
        window.cancel_action.trigger()
    assert np.array_equal(merged.labels, before)
    assert "cancelled" in window.status_label.text().lower()


def test_likely_misplaced_first_shows_the_stray_image_first_and_follows_a_fix(window, session):
    """View > Sort images > Likely misplaced first: an image among another group's look-alikes heads its cluster."""
    stray = 2 * PER_CLUSTER  # a group-2 image left in cluster 0 (its features stay group 2's)
    labels = session.labels.copy()
    labels[stray] = 0
    wrong = ClusterSession(session.paths, labels, features=session.features, root=session.root)
    window.show_session(wrong)
    grid = window.grid
    outliers_first = window.view_controls.sort_actions["distance_desc"]
    misplaced_first = window.view_controls.sort_actions["misplaced"]
    assert "misplaced" in misplaced_first.text().replace("&", "").lower()
    misplaced_first.trigger()
    assert grid.sort_mode() == "misplaced" and window.view_controls.state()["sort"] == "misplaced"
    assert grid.indices_of(0)[0] == stray
    assert "1 image in 1 cluster has most of its neighbours in another cluster" in window.status_label.text()
    # Fixed by hand: the image leaves cluster 0, and cluster 2 (which it joined) is re-sorted with it in place.
    assert grid.move_indices([stray], 2)
    assert stray not in grid.indices_of(0) and stray in grid.indices_of(2)
    assert grid.indices_of(2)[0] != stray  # among its own kind, it is no longer the likely misplaced one
    outliers_first.trigger()
    assert grid.sort_mode() == "distance_desc"
    window.undo_action.trigger()
    assert grid.indices_of(0)[0] == stray  # outliers first: the stray is also the farthest from cluster 0's centre


def test_likely_misplaced_first_on_a_large_session_sorts_once_the_background_search_ends(
    window, session, qtbot, monkeypatch
):
    from imgcluster_gui.ui import cluster_grid

    monkeypatch.setattr(cluster_grid, "SEARCH_IN_BACKGROUND_ABOVE", 0)
    stray = 2 * PER_CLUSTER
    labels = session.labels.copy()
    labels[stray] = 0
    features = session.features + 1e-3  # not the conftest session's bytes: nothing cached for them
    wrong = ClusterSession(session.paths, labels, features=features, root=session.root)
    window.show_session(wrong)
    window.view_controls.sort_actions["misplaced"].trigger()
    job = window.grid.graph_job
    assert job is not None and "in the background" in window.status_label.text()
    outliers_first = sort_members(wrong.indices_of(0), "distance_desc", features=features).tolist()
    assert window.grid.indices_of(0) == outliers_first  # meanwhile: outliers first
    with qtbot.waitSignal(job.finished, timeout=30_000):
        pass
    assert window.grid.indices_of(0)[0] == stray
    assert "has most of its neighbours in another cluster" in window.status_label.text()
