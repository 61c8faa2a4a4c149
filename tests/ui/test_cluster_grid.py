"""ClusterGridWidget driven as a user would: drops, keys, clicks, menus' actions, undo / redo, selection."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QMouseEvent,
    QUndoStack,
    QWheelEvent,
)

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui import cluster_grid
from imgcluster_gui.ui.cluster_grid import DEFAULT_GRID_THUMBNAIL, ClusterGridWidget, decode_indices, encode_indices
from imgcluster_gui.ui.cluster_model import sort_members
from imgcluster_gui.ui.cluster_picker import ClusterPickerDialog
from imgcluster_gui.ui.thumbnail_delegate import CELL_PADDING, size_bucket
from imgcluster_gui.ui.thumbnails import ThumbnailLoader, decode_thumbnail

MOVE = Qt.DropAction.MoveAction
LEFT = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def grid(make_grid, session):
    return make_grid(session)


def snapshot(session: ClusterSession) -> tuple:
    return session.labels.tolist(), dict(session.cluster_names)


def assert_views_follow(grid: ClusterGridWidget, session: ClusterSession) -> None:
    """The grid shows every cluster of the session, with its images, name and size."""
    assert grid.cluster_order() == session.cluster_ids()
    for cluster in session.cluster_ids():
        assert sorted(grid.indices_of(cluster)) == session.indices_of(cluster).tolist()
        name, details = grid.header_text(cluster)
        assert name == session.name_of(cluster)
        assert details.startswith(f"{session.size_of(cluster)} image")


def centre(grid: ClusterGridWidget, image: int) -> QPoint:
    rect = grid.cell_rect(image)
    assert not rect.isNull() and grid.viewport().rect().contains(rect.center()), f"image {image} is not on screen"
    return rect.center()


def send_drag(grid: ClusterGridWidget, mime, pos: QPoint, drop: bool = True) -> tuple[bool, bool]:
    """Drag ``mime`` onto the grid's viewport at ``pos`` (and drop it), as Qt delivers it."""
    viewport = grid.viewport()
    enter = QDragEnterEvent(pos, MOVE, mime, LEFT, NO_MOD)
    QCoreApplication.sendEvent(viewport, enter)
    QCoreApplication.sendEvent(viewport, QDragMoveEvent(pos, MOVE, mime, LEFT, NO_MOD))
    if not drop:
        return enter.isAccepted(), False
    event = QDropEvent(QPointF(pos), MOVE, mime, LEFT, NO_MOD)
    QCoreApplication.sendEvent(viewport, event)
    return enter.isAccepted(), event.isAccepted()


def mouse(grid: ClusterGridWidget, kind: QEvent.Type, pos: QPoint, buttons=LEFT, modifiers=NO_MOD) -> None:
    button = LEFT if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    event = QMouseEvent(kind, QPointF(pos), QPointF(grid.viewport().mapToGlobal(pos)), button, buttons, modifiers)
    QCoreApplication.sendEvent(grid.viewport(), event)


# ============================================================================ edits and how the grid follows them


def test_drop_on_another_clusters_thumbnail_moves_the_photo_and_undo_redo_restore(grid, session):
    original = snapshot(session)
    entered, dropped = send_drag(grid, encode_indices(session, [1, 3, 5]), centre(grid, 9))  # a cell of cluster 1
    assert entered and dropped
    assert session.labels[[1, 3, 5]].tolist() == [1, 1, 1]
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


def test_drop_on_the_header_or_the_gap_after_the_last_row_moves_there_and_highlights_it(grid, session):
    mime = encode_indices(session, [0])
    send_drag(grid, mime, grid.header_rect(1).center(), drop=False)
    assert grid.drop_target() == 1  # the drop highlight shows the target cluster
    QCoreApplication.sendEvent(grid.viewport(), QDragLeaveEvent())
    assert grid.drop_target() is None
    assert send_drag(grid, mime, grid.header_rect(1).center()) == (True, True)
    assert session.labels[0] == 1 and grid.undo_stack.undoText() == "Move 1 image to Cluster 1"
    assert grid.drop_target() is None
    # Cluster 1 now has 9 images: its last row has one cell, the rest of the row is empty space of its block.
    last = grid.cell_rect(grid.indices_of(1)[-1])
    grid.verticalScrollBar().setValue(grid.verticalScrollBar().value() + last.top() - 50)
    last = grid.cell_rect(grid.indices_of(1)[-1])
    gap = QPoint(grid.viewport().width() - 20, last.center().y())
    assert grid.index_at(gap) is None and grid.cluster_at(gap) == 1
    assert send_drag(grid, encode_indices(session, [20]), gap) == (True, True)
    assert session.labels[20] == 1
    assert_views_follow(grid, session)


def test_a_drop_that_changes_nothing_or_comes_from_elsewhere_is_refused(grid, session):
    assert send_drag(grid, encode_indices(session, [9]), centre(grid, 10)) == (True, False)  # already there
    foreign = encode_indices(ClusterSession(session.paths, np.zeros(len(session), dtype=int)), [0, 1])
    assert decode_indices(session, foreign) is None
    assert send_drag(grid, foreign, centre(grid, 10)) == (False, False)
    assert grid.undo_stack.count() == 0 and session.labels.tolist() == np.repeat([0, 1, 2], 8).tolist()


def test_dragging_every_image_out_removes_the_block_and_undo_brings_it_back(grid, session):
    assert grid.move_indices(range(16, 24), 0)
    assert grid.cluster_order() == [0, 1] and grid.cluster_rect(2).isNull()
    assert_views_follow(grid, session)
    grid.undo_stack.undo()
    assert grid.cluster_order() == [0, 1, 2] and not grid.cluster_rect(2).isNull()
    assert_views_follow(grid, session)


def test_an_edit_rereads_only_the_clusters_it_touches(grid, session):
    before = dict(grid._members)  # the display order arrays the grid keeps per cluster
    assert grid.move_indices([1, 3], 2)
    assert grid._members[1] is before[1]  # untouched cluster: the same array, not re-sorted
    assert grid._members[0] is not before[0] and grid._members[2] is not before[2]
    assert grid.indices_of(2) == [1, 3, *range(16, 24)]
    assert_views_follow(grid, session)


def test_selection_of_images_that_stay_survives_an_edit(grid, session, qtbot):
    grid.select_indices([0, 2, 9, 17], scroll=False)
    assert grid.move_indices([1, 3], 2)  # not selected, from and to clusters with a selection
    assert grid.selected_indices() == [0, 2, 9, 17]
    with qtbot.waitSignal(grid.selectionChanged, timeout=2000) as signal:
        assert grid.move_indices([2], 1)  # a selected image moves: it leaves the selection
    assert signal.args == [[0, 9, 17]]
    grid.undo_stack.undo()
    grid.undo_stack.undo()
    assert grid.selected_indices() == [0, 9, 17]
    assert_views_follow(grid, session)


def test_new_merge_delete_add_and_remove_blocks(grid, session):
    grid.select_indices([9, 10], scroll=False)
    new_id = grid.new_cluster_from_selection("Picked")
    assert grid.cluster_order() == [0, 1, 2, new_id] and grid.indices_of(new_id) == [9, 10]
    grid.merge_clusters([2], 1)
    assert 2 not in grid.cluster_order() and len(grid.indices_of(1)) == 14
    grid.delete_cluster(new_id)  # images 9, 10 to Unassigned: a new block at the end
    assert grid.cluster_order() == [0, 1, -1] and grid.indices_of(-1) == [9, 10]
    assert_views_follow(grid, session)
    while grid.undo_stack.canUndo():
        grid.undo_stack.undo()
        assert_views_follow(grid, session)


def test_random_edits_keep_the_grid_consistent(make_grid):
    rng = np.random.default_rng(3)
    n = 90
    session = ClusterSession([f"/nonexistent/img_{i:03d}.png" for i in range(n)], rng.integers(0, 4, size=n))
    grid = make_grid(session)
    for step in range(40):
        if step % 7 == 3:
            grid.set_sort_mode(["index", "name", "index"][step % 3])
        if grid.undo_stack.canUndo() and rng.random() < 0.3:
            grid.undo_stack.undo()
        else:
            chosen = rng.choice(n, size=int(rng.integers(1, 12)), replace=False)
            grid.move_indices(chosen, int(rng.integers(-1, 5)))
        assert_views_follow(grid, session)
        for cluster in grid.cluster_order():  # every cell maps back to its image
            for image in grid.indices_of(cluster)[:3]:
                rect = grid.cell_rect(image)
                if grid.viewport().rect().contains(rect.center()):
                    assert grid.index_at(rect.center()) == image
    while grid.undo_stack.canUndo():
        grid.undo_stack.undo()
        assert_views_follow(grid, session)


def _tall_session(n_clusters: int = 6, per_cluster: int = 100) -> ClusterSession:
    paths = [f"/nonexistent/img_{i:04d}.png" for i in range(n_clusters * per_cluster)]  # placeholders only
    return ClusterSession(paths, np.repeat(np.arange(n_clusters), per_cluster))


def test_edits_keep_what_is_on_screen_in_place(make_grid, qtbot):
    session = _tall_session()  # 6 blocks of 100, about 4,000 px each
    grid = make_grid(session)
    bar = grid.verticalScrollBar()
    columns = grid.columns()
    watched = 300 + 3 * columns  # the first image of the 4th row of cells of cluster 3
    bar.setValue(bar.value() + grid.cell_rect(watched).top() + 10)  # that row at the top of the viewport
    where = grid.cell_rect(watched).top()
    assert where == -10

    def edit_keeps_it(edit) -> None:
        edit()
        assert grid.cell_rect(watched).top() == where
        assert_views_follow(grid, session)

    edit_keeps_it(lambda: grid.move_indices(range(450, 460), 5))  # below the viewport
    edit_keeps_it(lambda: grid.move_indices(range(0, 100), 4))  # a whole cluster above goes
    assert 0 not in grid.cluster_order()
    edit_keeps_it(grid.undo_stack.undo)  # and comes back
    edit_keeps_it(lambda: grid.move_indices(range(100, 160), 2))  # clusters above shrink and grow
    edit_keeps_it(lambda: grid.move_indices(range(300, 300 + 2 * columns), 5))  # rows above it, same cluster
    edit_keeps_it(lambda: grid.move_indices(range(500, 520), 3))  # rows into its cluster, above it
    edit_keeps_it(lambda: grid.set_expanded(1, False))  # a cluster above collapses
    while grid.undo_stack.canUndo():
        edit_keeps_it(grid.undo_stack.undo)


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
    assert_views_follow(grid, session)
    states = []
    while stack.canUndo():
        states.append(snapshot(session))
        stack.undo()
        assert_views_follow(grid, session)
    assert snapshot(session) == original
    while stack.canRedo():
        stack.redo()
    assert snapshot(session) == states[0]


def test_edits_go_to_the_undo_stack_set_last(grid, session):
    run_stack = QUndoStack()
    grid.set_undo_stack(run_stack)
    assert grid.move_indices([0], 2)
    assert run_stack.count() == 1 and grid.undo_stack_ref.count() == 0
    run_stack.undo()
    assert session.labels[0] == 0


def test_headers_show_size_and_silhouette_and_follow_metrics(grid, session):
    name, details = grid.header_text(1)
    assert details.startswith("8 images") and "silhouette" in details and "before edits" not in details
    session.move([0], 1)
    assert "before edits" in grid.header_text(1)[1] and grid.header_text(1)[1].startswith("9 images")
    session.recompute_metrics()
    assert "before edits" not in grid.header_text(1)[1]


def test_set_session_swaps_everything(grid, session):
    other = ClusterSession(session.paths[:5], [4, 4, 7, 7, -1], {7: "Seven"})
    generation = grid.loader.generation
    grid.set_session(other)
    assert grid.loader.generation == generation + 1
    assert grid.cluster_order() == [4, 7, -1] and grid.header_text(7)[0] == "Seven"
    session.move([0], 2)  # the old session no longer drives the grid
    assert grid.cluster_order() == [4, 7, -1]
    grid.set_session(None)
    assert grid.cluster_order() == [] and grid.empty_message()


# ============================================================================ thumbnail size, captions, headers


def test_thumbnail_size_changes_the_columns_and_the_grid_never_scrolls_sideways(grid, session, qtbot):
    assert grid.thumbnail_size() == DEFAULT_GRID_THUMBNAIL == 128
    width = grid.viewport().width()
    assert grid.columns() == width // (128 + 2 * CELL_PADDING)
    row = [grid.cell_rect(i) for i in grid.indices_of(0)[: grid.columns()]]
    assert row[0].left() == 0 and row[-1].right() == width - 1  # cells spread to fill the width
    with qtbot.waitSignal(grid.thumbnailSizeChanged, timeout=1000) as signal:
        grid.set_thumbnail_size(64)
    assert signal.args == [64] and grid.columns() == width // (64 + 2 * CELL_PADDING)
    grid.set_thumbnail_size(1000)
    assert grid.thumbnail_size() == 320
    grid.set_thumbnail_size(10)
    assert grid.thumbnail_size() == 64
    grid.setFocus()
    qtbot.keyClick(grid, Qt.Key.Key_Plus, CTRL)
    assert grid.thumbnail_size() == 80
    qtbot.keyClick(grid, Qt.Key.Key_Minus, CTRL)
    assert grid.thumbnail_size() == 64
    qtbot.keyClick(grid, Qt.Key.Key_0, CTRL)
    assert grid.thumbnail_size() == 128
    wheel = QWheelEvent(
        QPointF(50, 50), QPointF(grid.viewport().mapToGlobal(QPoint(50, 50))), QPoint(), QPoint(0, 120),
        Qt.MouseButton.NoButton, CTRL, Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QCoreApplication.sendEvent(grid.viewport(), wheel)
    assert grid.thumbnail_size() == 160 and grid.verticalScrollBar().value() == 0  # zoomed, not scrolled
    # A selection from the scatter plot far down: scrolled there, vertically only.
    grid.select_indices([23])
    assert grid.viewport().rect().contains(grid.cell_rect(23))
    assert grid.verticalScrollBar().value() > 0 and grid.horizontalScrollBar().value() == 0
    assert grid.horizontalScrollBar().maximum() == 0


def test_captions_are_elided_at_the_end_and_can_be_dates_or_none(grid, session, tmp_path):
    painter, metrics = grid.cell_painter, grid._metrics
    long_name = str(tmp_path / "ILSVRC2012_val_00000001_with_a_long_tail.JPEG")
    caption = painter.caption(long_name, 80, metrics)
    assert caption.endswith("…") and caption.startswith("ILSVRC") and "JPEG" not in caption
    assert painter.caption(session.paths[0], 400, metrics) == Path(session.paths[0]).name
    with_captions = grid.cell_rect(0).height()
    grid.set_caption_mode("none")
    assert grid.cell_rect(0).height() == grid.thumbnail_size() + 2 * CELL_PADDING < with_captions
    assert painter.caption(session.paths[0], 400, metrics) == ""
    grid.set_caption_mode("date")
    date = painter.caption(session.paths[0], 400, metrics)
    assert len(date) == 10 and date[4] == "-" and date[:2] == "20"
    with pytest.raises(ValueError):
        grid.set_caption_mode("exif")


def test_headers_show_the_name_in_full_when_there_is_room_and_never_elide_the_count(grid, session):
    long_name = "silhouettes of people at the beach, " * 3
    session.rename(1, long_name)
    name, details = grid.header_layout(1, 10_000)
    assert name == long_name.strip() and "8 images" in details and "silhouette" in details
    name, details = grid.header_layout(1, 260)
    assert name.endswith("…") and name.startswith("silhou") and details.strip(" ·").startswith("8 images")
    name, details = grid.header_layout(0, grid.header_room())  # "Reds" fits the grid's header in full
    assert name == "Reds" and "8 images" in details


# ============================================================================ mouse


def test_click_ctrl_click_shift_click_select_and_report_global_indices(make_grid, session, qtbot):
    grid = make_grid(session, size=(700, 1100))  # every cell on screen
    viewport = grid.viewport()
    with qtbot.waitSignal(grid.selectionChanged, timeout=2000) as signal:
        qtbot.mouseClick(viewport, LEFT, NO_MOD, centre(grid, 9))
    assert signal.args == [[9]]
    qtbot.mouseClick(viewport, LEFT, CTRL, centre(grid, 11))
    assert grid.selected_indices() == [9, 11]
    qtbot.mouseClick(viewport, LEFT, CTRL, centre(grid, 9))
    assert grid.selected_indices() == [11]
    qtbot.mouseClick(viewport, LEFT, SHIFT, centre(grid, 14))  # from the last cell clicked (9) on
    assert grid.selected_indices() == [9, 10, 11, 12, 13, 14]
    qtbot.mouseClick(viewport, LEFT, NO_MOD, centre(grid, 12))  # a click on a selected cell: it alone
    assert grid.selected_indices() == [12]


def test_rubber_band_on_empty_space_selects_the_cells_it_meets(grid, session, qtbot):
    start = QPoint(40, grid.header_rect(0).center().y())  # on cluster 0's header, right of its arrow
    end = centre(grid, 1)  # the second cell of the first row
    mouse(grid, QEvent.Type.MouseButtonPress, start)
    mouse(grid, QEvent.Type.MouseMove, end)
    assert grid.selected_indices() == [0, 1]
    mouse(grid, QEvent.Type.MouseMove, QPoint(end.x(), grid.cell_rect(5).center().y()))
    assert grid.selected_indices() == [0, 1, 4, 5]
    with qtbot.waitSignal(grid.selectionChanged, timeout=2000):
        mouse(grid, QEvent.Type.MouseButtonRelease, end, buttons=Qt.MouseButton.NoButton)
    assert grid.selected_indices() == [0, 1, 4, 5]
    grid.setFocus()
    qtbot.keyClick(grid, Qt.Key.Key_Escape)  # Esc clears it
    assert grid.selected_indices() == []
    # Held at the bottom edge, the band scrolls the view and grows with it.
    mouse(grid, QEvent.Type.MouseButtonPress, start)
    mouse(grid, QEvent.Type.MouseMove, QPoint(end.x(), grid.viewport().height() - 2))
    bar = grid.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=5000)
    mouse(grid, QEvent.Type.MouseButtonRelease, end, buttons=Qt.MouseButton.NoButton)
    assert not grid._autoscroll_timer.isActive()
    assert 21 in grid.selected_indices() and 3 not in grid.selected_indices()  # column 0-1 of every row


def test_double_click_activates_and_previews_with_the_path(grid, session, qtbot):
    grid.preview_on_activate = True
    grid.scroll_to_index(16)
    with qtbot.waitSignal(grid.imageActivated, timeout=2000) as signal:
        qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, centre(grid, 16))
        qtbot.mouseDClick(grid.viewport(), LEFT, NO_MOD, centre(grid, 16))
    assert signal.args == [16]
    dialog = grid._previews[-1]
    assert dialog.path_label.text() == session.paths[16]
    assert dialog.paths == [session.paths[i] for i in grid.indices_of(2)]  # it steps through the cluster
    qtbot.keyClick(dialog, Qt.Key.Key_Right)
    assert dialog.path_label.text() == session.paths[17] and grid.current_index() == 17  # the grid follows
    dialog.close()


def test_the_headers_arrow_collapses_and_a_double_click_renames(grid, session, qtbot, monkeypatch):
    header = grid.header_rect(0)
    block_height, next_top = grid.cluster_rect(0).height(), grid.cluster_rect(1).top()
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, QPoint(8, header.center().y()))
    assert not grid.is_expanded(0) and grid.cell_rect(0).isNull()
    assert grid.cluster_rect(1).top() == next_top - (block_height - grid.cluster_rect(0).height())
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, QPoint(8, header.center().y()))
    assert grid.is_expanded(0)
    monkeypatch.setattr(cluster_grid.QInputDialog, "getText", staticmethod(lambda *args, **kwargs: ("Blues", True)))
    qtbot.mouseDClick(grid.viewport(), LEFT, NO_MOD, QPoint(200, grid.header_rect(2 - 1).center().y()))
    assert session.name_of(1) == "Blues" and grid.undo_stack.count() == 1
    grid.set_all_expanded(False)
    assert not any(grid.is_expanded(c) for c in grid.cluster_order())
    grid.set_all_expanded(True)
    assert all(grid.is_expanded(c) for c in grid.cluster_order())


def test_context_menu_offers_the_right_actions(grid, session, qtbot, monkeypatch):
    grid.select_indices([])
    menu = grid.build_context_menu(0)
    texts = {a.text(): a.isEnabled() for a in menu.actions() if a.text()}
    assert texts["New cluster from selection (0)…"] is False and texts["Move to cluster…"] is False
    assert texts["Rename “Reds”…"] is True and texts["Delete “Reds” (images to Unassigned)"] is True
    assert "Open file location" not in texts  # not on an image
    grid.select_indices([3])
    menu = grid.build_context_menu(0, 3)
    actions = {a.text(): a for a in menu.actions() if a.text()}
    move_menu = actions["Move selection (1) to"].menu()
    assert [a.text() for a in move_menu.actions()] == ["Reds", "Cluster 1", "Cluster 2", "Unassigned"]
    # The file actions come from ui/file_actions.py, imported when used.
    calls = []

    class Failed:  # what file_actions returns when it could not do it
        message = "No file manager found"

        def __bool__(self) -> bool:
            return False

    fake = types.ModuleType("imgcluster_gui.ui.file_actions")
    fake.open_file_location = lambda path: calls.append(("location", path))
    fake.open_with_default_app = lambda path: calls.append(("open", path)) or Failed()
    monkeypatch.setitem(sys.modules, "imgcluster_gui.ui.file_actions", fake)
    actions["Open file location"].trigger()
    with qtbot.waitSignal(grid.statusMessage, timeout=1000) as message:
        actions["Open with default application"].trigger()
    assert calls == [("location", session.paths[3]), ("open", session.paths[3])]
    assert message.args == ["No file manager found"]
    move_menu.actions()[3].trigger()
    assert session.labels[3] == -1 and grid.cluster_order()[-1] == -1


def test_hover_cards_name_the_file_its_cluster_and_a_decoding_error(make_grid, session, qtbot, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    other = ClusterSession([session.paths[0], str(broken)], [0, 0], {0: "Reds"})
    grid = make_grid(other)
    card = grid.tooltip_at(centre(grid, 0))
    assert Path(session.paths[0]).name in card and "Reds" in card
    grid.viewport().grab()  # painting asks for the thumbnails
    bucket = size_bucket(grid.thumbnail_size())
    qtbot.waitUntil(lambda: grid.loader.error_of(str(broken), bucket) is not None, timeout=10000)
    assert "Cannot show" in grid.tooltip_at(centre(grid, 1))
    assert "silhouette" in grid.tooltip_at(grid.header_rect(0).center()) or "Reds" in grid.tooltip_at(
        grid.header_rect(0).center()
    )


# ============================================================================ keyboard


def test_arrows_move_the_current_cell_across_clusters_and_shift_ctrl_extend(grid, session, qtbot):
    assert grid.columns() == 4  # 8 images per cluster: two rows each
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, centre(grid, 0))
    key = lambda k, mod=NO_MOD: qtbot.keyClick(grid, k, mod)  # noqa: E731
    key(Qt.Key.Key_Right)
    assert grid.current_index() == 1 and grid.selected_indices() == [1]
    key(Qt.Key.Key_Down)
    assert grid.current_index() == 5
    key(Qt.Key.Key_Down)  # from cluster 0's last row into cluster 1's first, same column
    assert grid.current_index() == 9 and grid.selected_indices() == [9]
    key(Qt.Key.Key_Up)
    assert grid.current_index() == 5
    key(Qt.Key.Key_Right, SHIFT)
    key(Qt.Key.Key_Right, SHIFT)
    assert grid.selected_indices() == [5, 6, 7]
    key(Qt.Key.Key_Right, SHIFT)  # into the next cluster
    assert grid.selected_indices() == [5, 6, 7, 8]
    key(Qt.Key.Key_Right, CTRL)  # Ctrl: the current cell moves, the selection stays
    assert grid.current_index() == 9 and grid.selected_indices() == [5, 6, 7, 8]
    key(Qt.Key.Key_Space, CTRL)  # and Ctrl+Space toggles it
    assert grid.selected_indices() == [5, 6, 7, 8, 9]
    key(Qt.Key.Key_End)
    assert grid.current_index() == 23 and grid.selected_indices() == [23]
    assert grid.viewport().rect().contains(grid.cell_rect(23))
    key(Qt.Key.Key_Home)
    assert grid.current_index() == 0 and grid.verticalScrollBar().value() == 0
    key(Qt.Key.Key_PageDown)
    assert grid.current_index() > 4 and grid.viewport().rect().contains(grid.cell_rect(grid.current_index()))
    key(Qt.Key.Key_PageUp)
    assert grid.current_index() < 4
    grid.set_expanded(1, False)  # collapsed clusters are skipped
    grid.select_indices([5])
    key(Qt.Key.Key_Down)
    assert grid.current_index() == 17


def test_ctrl_a_selects_the_cluster_then_everything(grid, session, qtbot):
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, centre(grid, 10))
    with qtbot.waitSignal(grid.selectionChanged, timeout=2000) as signal:
        qtbot.keyClick(grid, Qt.Key.Key_A, CTRL)
    assert signal.args == [list(range(8, 16))]
    qtbot.keyClick(grid, Qt.Key.Key_A, CTRL)
    assert grid.selected_indices() == list(range(24))


def test_delete_digits_and_the_picker_move_the_selection_through_the_undo_stack(grid, session, qtbot):
    original = snapshot(session)
    grid.setFocus()
    grid.select_indices([0, 1])
    qtbot.keyClick(grid, Qt.Key.Key_Delete)
    assert session.labels[[0, 1]].tolist() == [-1, -1] and grid.cluster_order()[-1] == -1
    assert grid.undo_stack.count() == 1
    grid.undo_stack.undo()  # one undo restores
    assert snapshot(session) == original
    grid.select_indices([2])
    qtbot.keyClick(grid, Qt.Key.Key_Backspace)
    assert session.labels[2] == -1
    grid.select_indices([3, 4])
    qtbot.keyClick(grid, Qt.Key.Key_3)  # the 3rd cluster in display order
    assert session.labels[[3, 4]].tolist() == [2, 2]
    grid.select_indices([5])
    qtbot.keyClick(grid, Qt.Key.Key_4)  # the 4th: Unassigned (now shown last)
    assert session.labels[5] == -1
    qtbot.keyClick(grid, Qt.Key.Key_9)  # no 9th cluster: nothing happens
    assert grid.undo_stack.count() == 3  # Backspace, 3, 4 (the undone Delete was replaced)
    # Ctrl+M: the type-ahead picker.
    grid.select_indices([6])
    qtbot.keyClick(grid, Qt.Key.Key_M, CTRL)
    picker = grid._picker
    assert isinstance(picker, ClusterPickerDialog) and picker.isVisible()
    assert picker.visible_entries() == ["Cluster 1 (8)", "Cluster 2 (10)", "Unassigned (2)"]  # not its own
    qtbot.keyClicks(picker.filter_edit, "clu 2")
    assert picker.visible_entries() == ["Cluster 2 (10)"]
    qtbot.keyClick(picker.filter_edit, Qt.Key.Key_Return)
    assert session.labels[6] == 2 and grid.undo_stack.count() == 4
    while grid.undo_stack.canUndo():
        grid.undo_stack.undo()
    assert snapshot(session) == original


def test_enter_opens_the_preview_and_space_asks_for_quick_look(grid, session, qtbot):
    qtbot.mouseClick(grid.viewport(), LEFT, NO_MOD, centre(grid, 2))
    with qtbot.waitSignal(grid.imageActivated, timeout=1000) as activated:
        qtbot.keyClick(grid, Qt.Key.Key_Return)
    assert activated.args == [2]
    with qtbot.waitSignal(grid.quickLookRequested, timeout=1000) as quick_look:
        qtbot.keyClick(grid, Qt.Key.Key_Space)
    assert quick_look.args == [2]


def test_picker_filters_as_you_type_and_arrows_choose(session, qtbot):
    picker = ClusterPickerDialog(session)
    qtbot.addWidget(picker)
    assert picker.visible_entries() == ["Reds (8)", "Cluster 1 (8)", "Cluster 2 (8)", "Unassigned (0)"]
    qtbot.keyClicks(picker.filter_edit, "cluster")
    assert picker.visible_entries() == ["Cluster 1 (8)", "Cluster 2 (8)"]
    qtbot.keyClick(picker.filter_edit, Qt.Key.Key_Down)
    qtbot.keyClick(picker.filter_edit, Qt.Key.Key_Return)
    assert picker.result() == picker.DialogCode.Accepted and picker.chosen_cluster() == 2
    picker = ClusterPickerDialog(session)
    qtbot.addWidget(picker)
    qtbot.keyClicks(picker.filter_edit, "no such cluster")
    qtbot.keyClick(picker.filter_edit, Qt.Key.Key_Return)
    assert picker.visible_entries() == [] and picker.chosen_cluster() is None and not picker.ok_button.isEnabled()


# ============================================================================ drag auto-scroll


def test_a_drag_held_near_the_bottom_edge_scrolls_faster_nearer_the_edge(grid, session, qtbot):
    bar = grid.verticalScrollBar()
    mime = encode_indices(session, [0])
    height = grid.viewport().height()
    send_drag(grid, mime, QPoint(100, height // 2), drop=False)
    assert not grid._autoscroll_timer.isActive() and bar.value() == 0  # away from the edges: no scrolling
    QCoreApplication.sendEvent(grid.viewport(), QDragMoveEvent(QPoint(100, height - 35), MOVE, mime, LEFT, NO_MOD))
    assert grid._autoscroll_timer.isActive()
    grid._autoscroll_tick()
    slow = bar.value()
    QCoreApplication.sendEvent(grid.viewport(), QDragMoveEvent(QPoint(100, height - 2), MOVE, mime, LEFT, NO_MOD))
    grid._autoscroll_tick()
    fast = bar.value() - slow
    assert 0 < slow < fast
    qtbot.waitUntil(lambda: bar.value() > slow + 2 * fast, timeout=2000)  # the timer keeps scrolling
    QCoreApplication.sendEvent(grid.viewport(), QDragLeaveEvent())
    assert not grid._autoscroll_timer.isActive()


# ============================================================================ sort inside clusters


def test_sort_by_name_and_by_distance_to_the_centre_leave_the_labels_alone(make_grid, session):
    names = ClusterSession(["/x/b.png", "/x/a.png", "/x/C.png", "/x/d.png"], [0, 0, 0, 1])
    grid = make_grid(names)
    assert grid.indices_of(0) == [0, 1, 2]
    grid.set_sort_mode("name")
    assert grid.indices_of(0) == [1, 0, 2] and grid.sort_mode() == "name"
    assert grid.index_at(grid.cell_rect(1).center()) == 1 and grid.cell_rect(1).left() == 0
    grid.set_session(session)
    labels = session.labels.copy()
    features = session.features[:8]
    distances = np.linalg.norm(features - features.mean(axis=0), axis=1)
    grid.set_sort_mode("distance")
    assert grid.indices_of(0) == np.argsort(distances).tolist()  # outliers last
    grid.set_sort_mode("distance_desc")
    assert grid.indices_of(0) == np.argsort(-distances).tolist()  # outliers first, to review
    assert grid.move_indices([grid.indices_of(0)[0]], 1)  # edits keep the order: re-sorted with the new members
    assert (
        grid.indices_of(1) == sort_members(session.indices_of(1), "distance_desc", features=session.features).tolist()
    )
    grid.undo_stack.undo()
    np.testing.assert_array_equal(session.labels, labels)
    grid.set_sort_mode("index")
    assert grid.indices_of(0) == list(range(8))
    with pytest.raises(ValueError):
        grid.set_sort_mode("random")


# ============================================================================ thumbnails


def _thumbnail_pixel(grid: ClusterGridWidget, image: int) -> QColor:
    """The colour at the centre of ``image``'s thumbnail box, in a fresh rendering of the viewport."""
    rect = grid.cell_rect(image)
    point = QPoint(rect.center().x(), rect.y() + CELL_PADDING + grid.thumbnail_size() // 2)
    return grid.viewport().grab().toImage().pixelColor(point)


def test_thumbnails_are_requested_for_visible_cells_only_and_repainted_when_they_arrive(make_grid, session, qtbot):
    gate = threading.Event()
    requested: list[str] = []

    def held_decoder(path: str, size: int):
        requested.append(path)
        gate.wait(10)  # every cell is painted as a placeholder first
        return decode_thumbnail(path, size)

    loader = ThumbnailLoader(disk_cache=False, decoder=held_decoder, threads=1)
    grid = make_grid(session, loader)
    bucket = size_bucket(grid.thumbnail_size())
    placeholder = _thumbnail_pixel(grid, 0)
    assert placeholder.name() == grid.cell_painter.colours["placeholder"].name()
    shown = set(grid.visible_paths())
    assert session.paths[23] not in shown  # below the viewport
    gate.set()
    qtbot.waitUntil(lambda: loader.cached(session.paths[0], bucket) is not None, timeout=10000)
    qtbot.waitUntil(lambda: loader.pending_count() == 0, timeout=10000)
    assert set(requested) <= shown
    colour = _thumbnail_pixel(grid, 0)
    assert colour.red() > 120 and colour.green() < 90 and colour.blue() < 90  # the red image of cluster 0
    # A new size shows the thumbnails it has (scaled) at once, and asks for its own bucket.
    grid.set_thumbnail_size(250)
    colour = _thumbnail_pixel(grid, 0)
    assert colour.red() > 120 and colour.green() < 90
    qtbot.waitUntil(lambda: loader.cached(session.paths[0], size_bucket(250)) is not None, timeout=10000)


def test_a_palette_change_repaints_with_the_new_colours(grid, session):
    palette = grid.palette()
    palette.setColor(palette.ColorRole.Base, QColor("#202020"))
    grid.setPalette(palette)
    assert grid.cell_painter.colours["base"].name() == "#202020"
    image = grid.viewport().grab().toImage()
    assert image.pixelColor(grid.viewport().width() - 3, grid.viewport().height() - 3).name() in {
        "#202020",
        grid.cell_painter.colours["header"].name(),
        grid.cell_painter.colours["placeholder"].name(),
    }


def test_dragging_a_selected_cell_drags_the_whole_selection(grid, session, qtbot, monkeypatch):
    grid.select_indices([0, 2, 9], scroll=False)
    started = []
    monkeypatch.setattr(grid, "_start_drag", lambda: started.append(grid.selected_indices()))  # QDrag.exec blocks
    press = centre(grid, 2)
    mouse(grid, QEvent.Type.MouseButtonPress, press)
    assert grid.selected_indices() == [0, 2, 9]  # a press on a selected cell keeps the selection (a drag may start)
    mouse(grid, QEvent.Type.MouseMove, press + QPoint(30, 30))
    mouse(grid, QEvent.Type.MouseButtonRelease, press + QPoint(30, 30), buttons=Qt.MouseButton.NoButton)
    assert started == [[0, 2, 9]] and grid.selected_indices() == [0, 2, 9]
    pixmap = grid._drag_pixmap(np.asarray([0, 2, 9]))  # the first thumbnail and a count badge, not 3 renderings
    assert not pixmap.isNull() and pixmap.width() <= 128


def test_a_new_thumbnail_size_or_width_keeps_the_top_image_on_screen(make_grid, qtbot):
    session = _tall_session()
    grid = make_grid(session)
    bar = grid.verticalScrollBar()
    watched = 300 + 4 * grid.columns()  # the first image of a row in the middle of cluster 3, put at the top
    bar.setValue(bar.value() + grid.cell_rect(watched).top())
    changes = (
        lambda: grid.set_thumbnail_size(200),
        lambda: grid.resize(900, 500),
        lambda: grid.set_caption_mode("none"),
    )
    for change in changes:
        change()
        assert grid.cell_rect(watched).top() == 0  # its row is still the top row
