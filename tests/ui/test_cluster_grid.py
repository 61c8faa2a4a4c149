"""ClusterGridWidget driven as a user would: drops, menus' actions, undo / redo, selection."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QModelIndex, QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QDragEnterEvent, QDragMoveEvent, QDropEvent, QUndoStack
from PySide6.QtTest import QAbstractItemModelTester

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.cluster_grid import (
    ClusterGridWidget,
    ClusterImagesModel,
    ThumbnailDelegate,
    decode_indices,
    encode_indices,
)
from imgcluster_gui.ui.thumbnail_delegate import CELL_PADDING
from imgcluster_gui.ui.thumbnails import ThumbnailLoader, decode_thumbnail

MOVE = Qt.DropAction.MoveAction


@pytest.fixture
def make_grid(qtbot):
    """``make_grid(session, loader=None)``: a shown grid, disposed (with its loader) after the test."""
    made = []

    def make(session: ClusterSession, loader: ThumbnailLoader | None = None) -> ClusterGridWidget:
        loader = loader or ThumbnailLoader(disk_cache=False)
        stack = QUndoStack()
        widget = ClusterGridWidget(session, stack, loader)
        widget.preview_on_activate = False
        widget.undo_stack_ref = stack  # keep the stack alive as long as the widget
        qtbot.addWidget(widget)
        widget.resize(700, 500)
        widget.show()
        qtbot.waitExposed(widget)
        made.append(widget)
        return widget

    yield make
    for widget in made:
        widget.dispose()
        widget.loader.shutdown()


@pytest.fixture
def grid(make_grid, session):
    return make_grid(session)


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


class ModelSpy:
    """Records a model's structure signals: resets and (first, last) of removed / inserted rows."""

    def __init__(self, model: ClusterImagesModel) -> None:
        self.resets = 0
        self.removed: list[tuple[int, int]] = []
        self.inserted: list[tuple[int, int]] = []
        self.changed = 0
        model.modelReset.connect(self._on_reset)
        model.rowsRemoved.connect(lambda _parent, first, last: self.removed.append((first, last)))
        model.rowsInserted.connect(lambda _parent, first, last: self.inserted.append((first, last)))
        model.layoutChanged.connect(self._on_changed)

    def _on_reset(self) -> None:
        self.resets += 1

    def _on_changed(self, *_args) -> None:
        self.changed += 1

    def n_removed(self) -> int:
        return sum(last - first + 1 for first, last in self.removed)

    def n_inserted(self) -> int:
        return sum(last - first + 1 for first, last in self.inserted)

    def clear(self) -> None:
        self.resets, self.changed, self.removed, self.inserted = 0, 0, [], []

    def quiet(self) -> bool:
        return not (self.resets or self.changed or self.removed or self.inserted)


def test_a_move_removes_and_inserts_rows_without_resetting_models(grid, session):
    spies = {c: ModelSpy(grid.section(c).model) for c in (0, 1, 2)}
    sections = grid.sections()
    moved = grid.section(0).model.global_indices()[[1, 3, 5]].tolist()  # images 1, 3, 5
    assert drag(grid, 0, [1, 3, 5], 2)
    source, target, other = spies[0], spies[2], spies[1]
    assert source.resets == 0 and target.resets == 0
    assert source.removed == [(5, 5), (3, 3), (1, 1)] and source.n_removed() == 3 and not source.inserted
    # Cluster 2 holds images 16..23: 1, 3 and 5 come first, in one range.
    assert target.inserted == [(0, 2)] and target.n_inserted() == 3 and not target.removed
    assert other.quiet()
    assert grid.section(2).model.global_indices()[:3].tolist() == moved
    assert grid.sections() == sections  # the same section widgets (and views) throughout
    assert_views_follow(grid, session)
    for cluster in (0, 2):  # each view is as tall as its rows again
        view = grid.section(cluster).view
        columns = view.columns_for(view.viewport().width())
        rows = -(-view.model().rowCount() // columns)
        assert view.height() == rows * view.gridSize().height() + 2 * view.frameWidth() + 2


def test_selection_of_images_that_stay_survives_an_edit(grid, session, qtbot):
    grid.select_indices([0, 2, 9, 17], scroll=False)
    assert drag(grid, 0, [1, 3], 2)  # images 1 and 3: not selected, from and to clusters with a selection
    assert grid.selected_indices() == [0, 2, 9, 17]
    with qtbot.waitSignal(grid.selectionChanged, timeout=2000) as signal:
        assert grid.move_indices([2], 1)  # a selected image moves: it leaves the selection
    assert signal.args == [[0, 9, 17]]
    assert grid.selected_indices() == [0, 9, 17]
    grid.undo_stack.undo()
    grid.undo_stack.undo()
    assert grid.selected_indices() == [0, 9, 17]
    assert_views_follow(grid, session)


def test_undo_and_redo_restore_rows_incrementally(grid, session):
    assert drag(grid, 0, [1, 3, 5], 2)
    spies = {c: ModelSpy(grid.section(c).model) for c in (0, 1, 2)}
    grid.undo_stack.undo()
    assert spies[0].resets == 0 and spies[2].resets == 0 and spies[1].quiet()
    assert spies[0].inserted == [(1, 1), (3, 3), (5, 5)] and not spies[0].removed
    assert spies[2].removed == [(0, 2)] and not spies[2].inserted
    assert_views_follow(grid, session)
    for spy in spies.values():
        spy.clear()
    grid.undo_stack.redo()
    assert spies[0].removed == [(5, 5), (3, 3), (1, 1)] and spies[2].inserted == [(0, 2)]
    assert spies[0].resets == spies[2].resets == 0 and spies[1].quiet()
    assert_views_follow(grid, session)


def test_new_merge_delete_add_and_remove_sections_only(grid, session):
    spies = {c: ModelSpy(grid.section(c).model) for c in (0, 1, 2)}
    grid.select_indices([9, 10], scroll=False)
    new_id = grid.new_cluster_from_selection("Picked")  # 9, 10 out of cluster 1 into a new section
    assert grid.cluster_order() == [0, 1, 2, new_id]
    assert spies[1].removed == [(1, 2)] and spies[1].resets == 0
    assert spies[0].quiet() and spies[2].quiet()
    kept = grid.section(0)
    grid.merge_clusters([2], 1)  # section 2 goes, cluster 1 gets its 8 images in one range
    assert 2 not in grid.sections() and spies[1].inserted == [(6, 13)] and spies[1].resets == 0
    grid.delete_cluster(new_id)  # images 9, 10 to Unassigned: a new section at the end
    assert grid.cluster_order() == [0, 1, -1] and grid.section(-1).model.global_indices().tolist() == [9, 10]
    assert grid.section(0) is kept and spies[0].quiet()
    assert_views_follow(grid, session)
    while grid.undo_stack.canUndo():
        grid.undo_stack.undo()
        assert_views_follow(grid, session)
    assert grid.section(0) is kept and spies[0].quiet() and spies[1].resets == 0


def test_a_scattered_change_resets_the_model_but_keeps_the_selection(grid, session, monkeypatch):
    from imgcluster_gui.ui import cluster_grid

    monkeypatch.setattr(cluster_grid, "MAX_INCREMENTAL_RANGES", 2)
    spy = ModelSpy(grid.section(0).model)
    grid.select_indices([0, 6], scroll=False)
    assert grid.move_indices([1, 3, 5], 2)  # three ranges: more than 2
    assert spy.resets == 1 and not spy.removed
    assert grid.selected_indices() == [0, 6]
    assert_views_follow(grid, session)


def test_random_edits_keep_every_model_consistent_without_resets(make_grid, qtbot, qtlog):
    rng = np.random.default_rng(3)
    n = 90
    session = ClusterSession([f"/nonexistent/img_{i:03d}.png" for i in range(n)], rng.integers(0, 4, size=n))
    grid = make_grid(session)
    testers, spies = [], {}
    for cluster, section in grid.sections().items():
        # Qt's own checker: after each insertion / removal the rows around it must be unchanged.
        testers.append(QAbstractItemModelTester(section.model, QAbstractItemModelTester.FailureReportingMode.Warning))
        spies[cluster] = ModelSpy(section.model)
    for _step in range(40):
        if grid.undo_stack.canUndo() and rng.random() < 0.3:
            grid.undo_stack.undo()
        else:
            chosen = rng.choice(n, size=int(rng.integers(1, 12)), replace=False)
            grid.move_indices(chosen, int(rng.integers(0, 4)))
        assert_views_follow(grid, session)
    while grid.undo_stack.canUndo():
        grid.undo_stack.undo()
        assert_views_follow(grid, session)
    assert all(spy.resets == 0 for spy in spies.values())
    assert not [r.message for r in qtlog.records if "FAIL" in r.message]


def _tall_session(n_clusters: int = 6, per_cluster: int = 100) -> ClusterSession:
    paths = [f"/nonexistent/img_{i:04d}.png" for i in range(n_clusters * per_cluster)]  # placeholders only
    return ClusterSession(paths, np.repeat(np.arange(n_clusters), per_cluster))


def test_edits_keep_what_is_on_screen_in_place(make_grid, qtbot):
    session = _tall_session()  # 6 sections of 100, about 2,000 px each
    grid = make_grid(session)
    qtbot.wait(50)  # laid out at its final width
    bar = grid.scroll_area.verticalScrollBar()

    def cell_top(image: int) -> int:
        """Where image ``image``'s cell is in the viewport (its section must be shown)."""
        section = grid.section(int(session.labels[image]))
        view, row = section.view, section.model.row_of(image)
        line = row // view.columns_for(view.viewport().width())
        content_top = view.viewport().mapTo(grid.container, QPoint(0, 0)).y()
        return content_top + line * view.gridSize().height() - bar.value()

    view = grid.section(3).view
    columns = view.columns_for(view.viewport().width())
    watched = 300 + 3 * columns  # the first image of the 4th row of cells of section 3
    bar.setValue(cell_top(watched) + bar.value() + 10)  # that row at the top of the viewport
    qtbot.wait(20)
    where = cell_top(watched)
    assert where == -10

    def edit_keeps_it(edit) -> None:
        edit()
        qtbot.wait(20)
        assert cell_top(watched) == where
        assert_views_follow(grid, session)

    edit_keeps_it(lambda: grid.move_indices(range(450, 460), 5))  # below the viewport
    edit_keeps_it(lambda: grid.move_indices(range(0, 100), 4))  # a whole section above goes
    assert 0 not in grid.sections()
    edit_keeps_it(grid.undo_stack.undo)  # and comes back
    assert 0 in grid.sections()
    edit_keeps_it(lambda: grid.move_indices(range(100, 160), 2))  # sections above shrink and grow
    edit_keeps_it(lambda: grid.move_indices(range(300, 300 + 2 * columns), 5))  # rows above it, same section
    edit_keeps_it(lambda: grid.move_indices(range(500, 520), 3))  # rows into its section, above it
    while grid.undo_stack.canUndo():
        edit_keeps_it(grid.undo_stack.undo)


def _send_drop(widget, mime) -> tuple[bool, bool]:
    """Drag ``mime`` onto ``widget`` and drop it, as Qt delivers it; (enter accepted, drop accepted)."""
    pos = widget.rect().center()
    buttons, modifiers = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(pos, MOVE, mime, buttons, modifiers)
    QCoreApplication.sendEvent(widget, enter)
    QCoreApplication.sendEvent(widget, QDragMoveEvent(pos, MOVE, mime, buttons, modifiers))
    drop = QDropEvent(QPointF(pos), MOVE, mime, buttons, modifiers)
    QCoreApplication.sendEvent(widget, drop)
    return enter.isAccepted(), drop.isAccepted()


def test_header_drop_moves_into_that_cluster(grid, session, qtbot):
    source = grid.section(0).model
    image = source.global_index(0)
    mime = source.mimeData([source.index(0)])  # the payload a drag from the view carries
    header = grid.section(1).header
    assert decode_indices(session, mime).tolist() == [image]
    entered, dropped = _send_drop(header, mime)
    assert entered and dropped
    assert session.labels[image] == 1
    assert grid.undo_stack.count() == 1 and grid.undo_stack.undoText() == "Move 1 image to Cluster 1"
    assert grid.section(1).model.row_of(image) >= 0 and grid.section(0).model.row_of(image) == -1
    assert_views_follow(grid, session)
    grid.undo_stack.undo()
    assert session.labels[image] == 0
    assert_views_follow(grid, session)
    # A payload of another result is refused: nothing moves, nothing is pushed.
    foreign = encode_indices(ClusterSession(session.paths, np.zeros(len(session), dtype=int)), [3])
    entered, dropped = _send_drop(header, foreign)
    assert not entered and not dropped
    assert session.labels[3] == 0 and grid.undo_stack.count() == 1 and grid.undo_stack.index() == 0


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


def _thumbnail_pixel(grid: ClusterGridWidget, cluster: int, row: int) -> QColor:
    """The colour at the centre of ``row``'s thumbnail box, in a fresh rendering of its view."""
    view = grid.section(cluster).view
    rect = view.visualRect(grid.section(cluster).model.index(row))
    centre = QPoint(rect.center().x(), rect.y() + CELL_PADDING + grid.delegate.thumb_size // 2)
    return view.viewport().grab().toImage().pixelColor(centre)


def test_thumbnails_arrive_and_views_repaint(make_grid, session, qtbot, monkeypatch):
    gate = threading.Event()

    def held_decoder(path: str, size: int):
        gate.wait(10)  # every cell is painted as a placeholder first
        return decode_thumbnail(path, size)

    painted: list[tuple[str, bool]] = []  # (path, its thumbnail was available) per paint
    original_paint = ThumbnailDelegate.paint

    def counting_paint(self, painter, option, index):
        path = index.model().path_at(index.row())
        painted.append((path, self.loader.cached(path, self.thumb_size) is not None))
        original_paint(self, painter, option, index)

    monkeypatch.setattr(ThumbnailDelegate, "paint", counting_paint)
    loader = ThumbnailLoader(disk_cache=False, decoder=held_decoder)
    grid = make_grid(session, loader)
    size = grid.delegate.thumb_size
    first = session.paths[grid.section(0).model.global_index(0)]
    qtbot.waitUntil(lambda: (first, False) in painted, timeout=5000)
    placeholder = _thumbnail_pixel(grid, 0, 0)
    assert placeholder.name() == grid.delegate._colours["placeholder"].name()
    painted.clear()
    gate.set()
    qtbot.waitUntil(lambda: loader.cached(first, size) is not None, timeout=10000)
    # The grid repaints the cell by itself once its thumbnail is in (no grab, no scrolling here).
    qtbot.waitUntil(lambda: (first, True) in painted, timeout=5000)
    shown = _thumbnail_pixel(grid, 0, 0)
    assert shown.name() != placeholder.name()
    assert shown.red() > 120 and shown.green() < 90 and shown.blue() < 90  # the red image of cluster 0


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
