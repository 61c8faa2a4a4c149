"""ClusterGridWidget driven as a user would: drops, menus' actions, undo / redo, selection."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QUndoStack

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.cluster_grid import ClusterGridWidget, encode_indices
from imgcluster_gui.ui.thumbnails import ThumbnailLoader

MOVE = Qt.DropAction.MoveAction


@pytest.fixture
def grid(qtbot, session):
    loader = ThumbnailLoader(disk_cache=False)
    stack = QUndoStack()
    widget = ClusterGridWidget(session, stack, loader)
    widget.preview_on_activate = False
    widget.undo_stack_ref = stack  # keep the stack alive as long as the widget
    qtbot.addWidget(widget)
    widget.resize(700, 500)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    widget.dispose()
    loader.shutdown()


def snapshot(session: ClusterSession) -> tuple:
    return session.labels.tolist(), dict(session.cluster_names)


def rows_of(grid: ClusterGridWidget) -> dict[int, list[int]]:
    """What the views show: global indices per section."""
    return {c: s.model.global_indices().tolist() for c, s in grid.sections().items()}


def assert_views_follow(grid: ClusterGridWidget, session: ClusterSession) -> None:
    assert grid.cluster_order() == session.cluster_ids()
    assert rows_of(grid) == {c: session.indices_of(c).tolist() for c in session.cluster_ids()}
    for cluster, section in grid.sections().items():
        assert section.header.name_label.text() == session.name_of(cluster)
        assert section.header.info_label.text().startswith(f"{session.size_of(cluster)} image")


def drag(grid: ClusterGridWidget, source: int, rows: list[int], target: int) -> bool:
    """Drag rows of ``source``'s view onto ``target``'s view, through the models like Qt does."""
    source_model = grid.section(source).model
    mime = source_model.mimeData([source_model.index(r) for r in rows])
    target_model = grid.section(target).model
    return target_model.dropMimeData(mime, MOVE, -1, -1, QModelIndex())


def test_drop_moves_images_and_undo_redo_restore_exact_state(grid, session):
    original = snapshot(session)
    moved = grid.section(0).model.global_indices()[[1, 3, 5]].tolist()
    assert drag(grid, 0, [1, 3, 5], 2)
    assert session.labels[moved].tolist() == [2, 2, 2]
    assert_views_follow(grid, session)
    after = snapshot(session)
    stack = grid.undo_stack
    assert stack.count() == 1 and "Move 3 images" in stack.undoText()
    stack.undo()
    assert snapshot(session) == original
    assert_views_follow(grid, session)
    stack.redo()
    assert snapshot(session) == after
    assert_views_follow(grid, session)


def test_a_drop_that_changes_nothing_or_comes_from_elsewhere_is_refused(grid, session):
    model = grid.section(1).model
    own = model.mimeData([model.index(0)])
    assert not model.canDropMimeData(own, MOVE, -1, -1, QModelIndex())
    other_session = ClusterSession(session.paths, np.zeros(len(session), dtype=int))
    foreign = encode_indices(other_session, [0, 1])
    assert not model.canDropMimeData(foreign, MOVE, -1, -1, QModelIndex())
    assert not model.dropMimeData(foreign, MOVE, -1, -1, QModelIndex())
    assert grid.undo_stack.count() == 0


def test_dragging_every_image_out_removes_the_section_and_undo_brings_it_back(grid, session):
    all_rows = list(range(grid.section(2).model.rowCount()))
    assert drag(grid, 2, all_rows, 0)
    assert 2 not in grid.sections()
    assert_views_follow(grid, session)
    grid.undo_stack.undo()
    assert 2 in grid.sections()
    assert_views_follow(grid, session)


def test_header_drop_moves_into_that_cluster(grid, session, qtbot):
    received = []
    grid.section(1).header.dropped.connect(received.append)
    mime = grid.section(0).model.mimeData([grid.section(0).model.index(0)])
    image = grid.section(0).model.global_index(0)
    # The header's drop handler decodes the payload and emits; the grid pushes the move.
    from imgcluster_gui.ui.cluster_grid import decode_indices

    grid.section(1).header.dropped.emit(decode_indices(session, mime))
    assert session.labels[image] == 1 and grid.undo_stack.count() == 1
    assert_views_follow(grid, session)


def test_new_rename_merge_delete_through_the_undo_stack(grid, session, qtbot):
    original = snapshot(session)
    stack = grid.undo_stack
    with qtbot.assertNotEmitted(grid.selectionChanged):
        grid.select_indices([0, 9, 17])
        qtbot.wait(10)
    assert grid.selected_indices() == [0, 9, 17]
    new_id = grid.new_cluster_from_selection("Picked")
    assert session.indices_of(new_id).tolist() == [0, 9, 17] and session.name_of(new_id) == "Picked"
    grid.rename_cluster(1, "Greens")
    grid.merge_clusters([2], 1)
    grid.delete_cluster(0)
    assert session.cluster_ids() == [1, new_id, -1]
    assert session.name_of(1) == "Greens" and 0 not in session.cluster_names
    assert_views_follow(grid, session)
    states = []
    while stack.canUndo():
        states.append(snapshot(session))
        stack.undo()
        assert_views_follow(grid, session)
    assert snapshot(session) == original
    while stack.canRedo():
        stack.redo()
        assert_views_follow(grid, session)
    assert snapshot(session) == states[0]


def test_user_selection_is_reported_in_global_indices(grid, session, qtbot):
    view = grid.section(1).view
    model = grid.section(1).model
    with qtbot.waitSignal(grid.selectionChanged, timeout=2000) as signal:
        view.selectionModel().select(model.index(2), view.selectionModel().SelectionFlag.Select)
    assert signal.args == [[model.global_index(2)]]


def test_context_menu_offers_the_right_actions(grid, session):
    grid.select_indices([])
    menu = grid.build_context_menu(0)
    texts = {a.text(): a.isEnabled() for a in menu.actions() if a.text()}
    assert texts["New cluster from selection (0)…"] is False
    assert texts["Rename “Reds”…"] is True and texts["Delete “Reds” (images to Unassigned)"] is True
    grid.select_indices([3])
    menu = grid.build_context_menu(0)
    move_menu = next(a.menu() for a in menu.actions() if a.text().startswith("Move selection"))
    targets = [a.text() for a in move_menu.actions()]
    assert targets == ["Reds", "Cluster 1", "Cluster 2", "Unassigned"]
    move_menu.actions()[3].trigger()
    assert session.labels[3] == -1 and grid.cluster_order()[-1] == -1


def test_double_click_activates_and_previews_with_the_path(grid, session, qtbot):
    grid.preview_on_activate = True
    view = grid.section(2).view
    index = grid.section(2).model.index(0)
    rect = view.visualRect(index)
    grid.scroll_to_index(grid.section(2).model.global_index(0))
    shown = grid.scroll_area.viewport().rect()
    assert shown.contains(view.viewport().mapTo(grid.scroll_area.viewport(), rect.center()))
    with qtbot.waitSignal(grid.imageActivated, timeout=2000) as signal:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    image = grid.section(2).model.global_index(0)
    assert signal.args == [image]
    dialog = grid._previews[-1]
    assert dialog.path_label.text() == session.paths[image]
    assert dialog.image() is not None and dialog.error is None
    dialog.close()


def test_headers_show_size_and_silhouette_and_follow_metrics(grid, session):
    header = grid.section(1).header.info_label.text()
    assert header.startswith("8 images") and "silhouette" in header and "before edits" not in header
    session.move([0], 1)
    assert "before edits" in grid.section(1).header.info_label.text()
    session.recompute_metrics()
    assert "before edits" not in grid.section(1).header.info_label.text()


def test_thumbnails_arrive_and_views_repaint(grid, session, qtbot):
    loader = grid.loader
    first = session.paths[grid.section(0).model.global_index(0)]
    qtbot.waitUntil(lambda: loader.cached(first, grid.delegate.thumb_size) is not None, timeout=10000)


def test_set_session_swaps_everything(grid, session):
    other = ClusterSession(session.paths[:5], [4, 4, 7, 7, -1], {7: "Seven"})
    generation = grid.loader.generation
    grid.set_session(other)
    assert grid.loader.generation == generation + 1
    assert grid.cluster_order() == [4, 7, -1]
    session.move([0], 2)  # the old session no longer drives the grid
    assert grid.cluster_order() == [4, 7, -1]
    grid.set_session(None)
    assert grid.sections() == {} and grid.empty_label.isVisibleTo(grid)
