"""Near-duplicate stacks in the grid: the cover with its count badge, open / close, keep best, the View toggle."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QMainWindow, QMenu

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.view_controls import ViewControls

LEFT = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier


def _near(features: np.ndarray, source: int, targets: list[int], rng: np.random.Generator, noise: float = 0.01) -> None:
    for t in targets:
        features[t] = features[source] + rng.normal(0, noise, size=features.shape[1])


@pytest.fixture
def stacked_session(image_folder) -> ClusterSession:
    """3 clusters of 8; 1, 2, 3 are copies of 0 (3 the largest file), 9 of 8; 16 looks like 0 but is in cluster 2."""
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(3), 8)
    features = rng.normal(size=(24, 16)).astype(np.float32)  # random directions: nothing alike
    _near(features, 0, [1, 2, 3, 16], rng)
    _near(features, 8, [9], rng)
    big = Image.open(image_folder[3]).resize((120, 160))
    big.save(image_folder[3])
    return ClusterSession(image_folder, labels, features=features)


def _alike(features: np.ndarray, source: int, target: int, cosine: float, seed: int) -> None:
    """Make ``features[target]`` exactly ``cosine`` alike to ``features[source]`` (a burst frame, a similar shot)."""
    base = features[source] / np.linalg.norm(features[source])
    other = np.random.default_rng(seed).normal(size=features.shape[1])
    other -= (other @ base) * base
    features[target] = cosine * base + np.sqrt(1 - cosine**2) * other / np.linalg.norm(other)


def _view_menu(grid, qtbot) -> tuple[ViewControls, QMenu, QMainWindow]:
    """The window's View controls bound to ``grid``, the menu they fill, and the window owning their actions."""
    window = QMainWindow()
    qtbot.addWidget(window)
    controls = ViewControls(grid, lambda: None, window)
    menu = QMenu()
    controls.populate(menu, [], [])
    return controls, menu, window  # the caller keeps the window: its actions die with it


def _action(menu: QMenu, text: str):
    found = [a for a in menu.actions() if a.text() == text]
    assert found, f"no {text!r} in {[a.text() for a in menu.actions()]}"
    return found[0]


def test_a_stack_shows_its_best_image_with_a_count_badge(make_grid, stacked_session, qtbot):
    grid = make_grid(stacked_session, size=(600, 700))
    assert grid.stacks() == {} and 0 in grid.indices_of(0)
    grid.set_stacking(True, best="largest")
    assert grid.stacks() == {3: [0, 1, 2, 3], 8: [8, 9]}  # 16 is in another cluster: not stacked with 0
    shown = grid.indices_of(0)
    assert 3 in shown and not {0, 1, 2} & set(shown)
    assert grid.cell_rect(0).isNull()
    assert "Best of 4 near-duplicates: click ×4 to open" in grid.tooltip_at(grid.cell_rect(3).center())
    assert grid.header_text(0)[1].startswith("8 images")  # the stacked images still count
    image = grid.viewport().grab().toImage()
    badge = grid.cell_painter.stack_badge_rect(grid.cell_rect(3), 4)
    assert QColor(image.pixel(badge.left() + 2, badge.top() + 2)) == grid.cell_painter.colours["highlight"]
    plain = grid.cell_painter.stack_badge_rect(grid.cell_rect(4), 4)  # the same spot of a cell without a stack
    assert QColor(image.pixel(plain.left() + 2, plain.top() + 2)) != grid.cell_painter.colours["highlight"]
    grid.set_stacking(False)
    assert sorted(grid.indices_of(0)) == list(range(8)) and grid.stacks() == {}


def test_clicking_the_badge_opens_and_closes_the_stack(make_grid, stacked_session, qtbot):
    grid = make_grid(stacked_session, size=(600, 700))
    grid.set_stacking(True, best="largest")
    badge = grid.cell_painter.stack_badge_rect(grid.cell_rect(3), 4)
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, badge.center())
    shown = grid.indices_of(0)
    assert shown[shown.index(3) : shown.index(3) + 4] == [3, 0, 1, 2]  # the stack's images follow its cover
    assert grid.selected_indices() == []  # the badge opens the stack, it does not select
    menu = grid.build_context_menu(0, 3)
    _action(menu, "Collapse stack").trigger()
    assert 0 not in grid.indices_of(0)
    _action(grid.build_context_menu(0, 3), "Expand stack (4)").trigger()
    assert 0 in grid.indices_of(0)
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, grid.cell_painter.stack_badge_rect(grid.cell_rect(3), 4).center())
    assert 0 not in grid.indices_of(0)
    grid.scroll_to_index(1)  # an image under a closed stack: the stack opens to show it
    assert not grid.cell_rect(1).isNull()


def test_keep_best_selects_the_rest_and_the_move_is_undoable(make_grid, stacked_session, qtbot):
    grid = make_grid(stacked_session, size=(600, 700))
    grid.set_stacking(True, best="largest")
    with qtbot.waitSignal(grid.selectionChanged, timeout=1000) as selection:
        _action(grid.build_context_menu(0, 3), "Keep best, select the rest").trigger()
    assert selection.args == [[0, 1, 2]] and grid.selected_indices() == [0, 1, 2]
    grid.setFocus()
    qtbot.keyClick(grid, Qt.Key.Key_Delete)  # the existing move: to Unassigned
    assert stacked_session.labels[[0, 1, 2]].tolist() == [-1, -1, -1]
    assert grid.stacks() == {0: [0, 1, 2], 8: [8, 9]}  # still alike: one stack in Unassigned, 3 alone
    assert grid.selected_indices() == []
    grid.undo_stack.undo()
    assert stacked_session.labels[[0, 1, 2]].tolist() == [0, 0, 0]
    assert grid.stacks()[3] == [0, 1, 2, 3]


def test_sharpest_cover_and_bursts_from_capture_times(make_grid, stacked_session, qtbot, image_folder):
    sharp = np.kron(np.indices((8, 6)).sum(axis=0) % 2 * 255, np.ones((5, 5))).astype(np.uint8)
    Image.fromarray(sharp).convert("RGB").save(image_folder[1])  # a checkerboard: by far the sharpest
    grid = make_grid(stacked_session, size=(600, 700))
    grid.set_stacking(True)
    assert grid.stack_best() == "sharpest" and 1 in grid.stacks()
    with pytest.raises(ValueError, match="stack"):
        grid.set_stacking(True, best="prettiest")
    photo_meta = pytest.importorskip("imgcluster_gui.core.photo_meta")
    features = stacked_session.features.copy()
    _alike(features, 20, 21, 0.84, seed=2)  # a burst frame, not a copy
    table = photo_meta.empty_table(24)
    table[:, photo_meta.SOURCE] = photo_meta.SOURCE_EXIF
    table[:, photo_meta.OFFSET] = 0
    table[:, photo_meta.WALL] = np.arange(24) * 3600.0
    without = ClusterSession(stacked_session.paths, stacked_session.labels, features=features, photo_meta=table)
    grid.set_session(without)
    assert not any(21 in members for members in grid.stacks().values())  # an hour apart: no burst
    table[21, photo_meta.WALL] = table[20, photo_meta.WALL] + 2.0
    burst = ClusterSession(stacked_session.paths, stacked_session.labels, features=features, photo_meta=table)
    grid.set_session(burst)
    assert any(members == [20, 21] for members in grid.stacks().values())


def test_view_menu_toggle_and_saved_state(make_grid, stacked_session, qtbot):
    grid = make_grid(stacked_session, size=(600, 700))
    controls, menu, _window = _view_menu(grid, qtbot)
    toggle = _action(menu, "Stack &near-duplicates")
    toggle.trigger()
    assert grid.is_stacking() and 8 in grid.stacks()
    controls.stack_best_actions["largest"].trigger()
    assert grid.stack_best() == "largest" and 3 in grid.stacks()
    state = controls.state()
    assert state["stacks"] is True and state["stack_best"] == "largest"
    toggle.trigger()
    assert not grid.is_stacking()
    controls.restore(state)
    assert grid.is_stacking() and grid.stack_best() == "largest"


def test_stack_similarity_from_the_view_menu_regroups_and_is_saved(make_grid, stacked_session, qtbot):
    features = stacked_session.features.copy()
    _alike(features, 20, 21, 0.86, seed=3)  # alike, not a copy
    session = ClusterSession(stacked_session.paths, stacked_session.labels, features=features)
    grid = make_grid(session, size=(600, 700))
    controls, menu, _window = _view_menu(grid, qtbot)
    _action(menu, "Stack &near-duplicates").trigger()
    assert not any(21 in members for members in grid.stacks().values())  # 0.86 < the default threshold
    submenu = _action(menu, "Stack s&imilarity").menu()
    _action(submenu, "Near-duplicates and &similar shots (may stack a stranger)").trigger()
    assert grid.stack_threshold() < 0.86 and any(members == [20, 21] for members in grid.stacks().values())
    assert 8 in grid.stacks()  # the copies still stack
    state = controls.state()
    assert state["stack_similarity"] == "loose"
    controls.stack_similarity_actions["strict"].trigger()
    assert not any(21 in members for members in grid.stacks().values())
    controls.restore(state)
    assert any(members == [20, 21] for members in grid.stacks().values())
    with pytest.raises(ValueError, match="cosine"):
        grid.set_stack_threshold(1.5)


def test_a_closed_stack_moves_as_a_whole_and_an_open_one_image_by_image(make_grid, stacked_session, qtbot):
    grid = make_grid(stacked_session, size=(600, 700))
    grid.set_stacking(True, best="largest")
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, grid.cell_rect(3).center())  # the closed stack's cover
    assert grid.selected_indices() == [3] and grid.acted_on_indices() == [0, 1, 2, 3]
    assert "Move selection (4) to" in [a.text() for a in grid.build_context_menu(0, 3).actions()]
    assert grid.move_selection_to(1)
    assert stacked_session.labels[[0, 1, 2, 3]].tolist() == [1, 1, 1, 1]  # the hidden copies went with it
    grid.undo_stack.undo()
    assert stacked_session.labels[[0, 1, 2, 3]].tolist() == [0, 0, 0, 0]
    grid.set_stack_expanded(3, True)  # open: what is selected is what moves
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, grid.cell_rect(3).center())
    assert grid.acted_on_indices() == [3]
    assert grid.move_selection_to(1)
    assert stacked_session.labels[[0, 1, 2, 3]].tolist() == [0, 0, 0, 1]


def test_a_large_session_without_a_cached_graph_stacks_after_a_background_search(
    make_grid, stacked_session, qtbot, monkeypatch
):
    """Above SEARCH_IN_BACKGROUND_ABOVE images a missing neighbour graph is searched off the GUI thread."""
    from imgcluster_gui.ui import cluster_grid

    monkeypatch.setattr(cluster_grid, "SEARCH_IN_BACKGROUND_ABOVE", 0)  # this small session counts as large
    # Bytes no other test used: the in-memory graph cache outlives a test, and this one needs a miss.
    jitter = np.random.default_rng(11).normal(0, 1e-5, size=stacked_session.features.shape).astype(np.float32)
    features = stacked_session.features + jitter
    stacked_session = ClusterSession(stacked_session.paths, stacked_session.labels, features=features)
    grid = make_grid(stacked_session, size=(600, 700))
    messages: list[str] = []
    grid.statusMessage.connect(messages.append)
    grid.set_stacking(True, best="largest")
    job = grid.graph_job
    assert job is not None  # the search runs in the background ...
    assert grid.stacks() == {} and sorted(grid.indices_of(0)) == list(range(8))  # ... and the grid stays as it was
    assert any("in the background" in m for m in messages)
    with qtbot.waitSignal(job.finished, timeout=30_000):
        pass
    assert grid.graph_job is None
    assert grid.stacks() == {3: [0, 1, 2, 3], 8: [8, 9]}  # stacked once it ended, from the graph it found
    grid.set_stacking(False)
    grid.set_stacking(True)  # the graph is cached now: no second search
    assert grid.graph_job is None and grid.stacks() == {3: [0, 1, 2, 3], 8: [8, 9]}
