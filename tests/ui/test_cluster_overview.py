"""The cluster overview: one row per cluster, sortable, each row a drop target for the grid's drag."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.cluster_model import encode_indices
from imgcluster_gui.ui.cluster_overview import (
    ClusterOverview,
    ClusterRole,
    DropTargetRole,
    members_of,
    summarise_cluster,
)
from imgcluster_gui.ui.thumbnails import ThumbnailLoader


@pytest.fixture
def overview(qtbot, session):
    widget = ClusterOverview()
    qtbot.addWidget(widget)
    widget.resize(300, 400)
    widget.set_session(session)
    widget.show()
    return widget


def _names_and_counts(widget: ClusterOverview) -> list[tuple[str, int]]:
    model = widget.model
    return [(model.summary(r).name, model.summary(r).size) for r in range(model.rowCount())]


def _drag_over(widget: ClusterOverview, mime: QMimeData, cluster: int) -> QDragMoveEvent:
    """What a real drag sends when it enters the list and moves over ``cluster``'s row."""
    centre = widget.row_rect(cluster).center()
    args = (Qt.DropAction.MoveAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget.view.viewport(), QDragEnterEvent(centre, *args))
    move = QDragMoveEvent(centre, *args)
    QApplication.sendEvent(widget.view.viewport(), move)
    return move


def _drop(widget: ClusterOverview, mime: QMimeData, cluster: int) -> QDropEvent:
    _drag_over(widget, mime, cluster)
    drop = QDropEvent(
        QPointF(widget.row_rect(cluster).center()),
        Qt.DropAction.MoveAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget.view.viewport(), drop)
    return drop


def test_rows_match_the_session(overview, session):
    assert overview.model.clusters() == session.cluster_ids() == [0, 1, 2]
    assert _names_and_counts(overview) == [("Reds", 8), ("Cluster 1", 8), ("Cluster 2", 8)]
    # Cohesion is the session's per-cluster silhouette, shown on the row.
    first = overview.model.summary(0)
    assert first.cohesion == pytest.approx(session.metrics["per_cluster_silhouette"][0])
    assert "8 images" in overview.model.details(first) and "silhouette" in overview.model.details(first)
    assert overview.summary_label.text() == "3 clusters"


def test_representative_is_the_member_nearest_the_centre(session):
    members = session.indices_of(1)
    rows = session.features[members] / np.linalg.norm(session.features[members], axis=1, keepdims=True)
    centre = rows.mean(axis=0)
    expected = int(members[np.argmax(rows @ (centre / np.linalg.norm(centre)))])
    summary = summarise_cluster(session, 1)
    assert summary.representative == expected


def test_cohesion_without_silhouettes_is_the_mean_cosine_to_the_centroid(image_folder):
    features = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [1, 1]], dtype=np.float32)
    session = ClusterSession(image_folder[:5], [0, 0, 1, 1, 1], features=features)
    tight, loose = summarise_cluster(session, 0).cohesion, summarise_cluster(session, 1).cohesion
    assert 0.99 < tight <= 1.0 and loose < tight
    assert summarise_cluster(ClusterSession(image_folder[:2], [0, 0]), 0).cohesion is None  # no features


def test_sorting_by_size_name_and_cohesion(qtbot, image_folder):
    labels = np.array([0] * 2 + [1] * 5 + [2] * 3 + [-1] * 4)
    rng = np.random.default_rng(0)
    spread = np.array([0.05, 2.0, 0.5])  # cluster 1 loose, cluster 0 tight
    centres = np.eye(3, 4) * 3
    features = centres[np.maximum(labels, 0)] + rng.normal(size=(labels.size, 4)) * spread[np.maximum(labels, 0), None]
    session = ClusterSession(
        image_folder[: labels.size], labels, cluster_names={0: "zebra", 1: "Apple", 2: "mango"}, features=features
    )
    widget = ClusterOverview()
    qtbot.addWidget(widget)
    widget.set_session(session)
    assert widget.model.clusters() == [0, 1, 2, -1]
    widget.sort_combo.setCurrentIndex(widget.sort_combo.findData("size"))  # as the person picks it
    assert widget.model.clusters() == [1, 2, 0, -1]  # Unassigned (4 images) stays last
    widget.set_sort("name")
    assert [widget.model.summary(r).name for r in range(4)] == ["Apple", "mango", "zebra", "Unassigned"]
    widget.set_sort("cohesion")
    assert widget.model.clusters() == [1, 2, 0, -1]  # weakest first
    widget.set_sort("cohesion", descending=True)
    assert widget.model.clusters() == [0, 2, 1, -1]


def test_click_activates_the_cluster(overview, qtbot):
    with qtbot.waitSignal(overview.clusterActivated, timeout=1000) as signal:
        qtbot.mouseClick(overview.view.viewport(), Qt.MouseButton.LeftButton, pos=overview.row_rect(2).center())
    assert signal.args == [2]


def test_a_drop_on_a_row_requests_the_move_into_its_cluster(overview, session, qtbot):
    overview.set_sort("size", descending=True)  # rows no longer in id order: the row's own cluster counts
    mime = encode_indices(session, [0, 1, 9])
    with qtbot.waitSignal(overview.dropRequested, timeout=1000) as signal:
        drop = _drop(overview, mime, 2)
    assert signal.args == [[0, 1, 9], 2]
    assert drop.isAccepted() and drop.dropAction() == Qt.DropAction.MoveAction
    assert overview.model.drop_target() is None  # the highlight goes with the drop
    assert np.all(session.labels[[0, 1, 9]] != 2)  # the window makes the move (undoable), not the view


def test_the_row_under_a_drag_is_highlighted_and_foreign_drags_are_refused(overview, session, qtbot):
    mime = encode_indices(session, [3])
    move = _drag_over(overview, mime, 1)
    assert move.isAccepted() and overview.model.drop_target() == 1
    row = overview.model.row_of(1)
    assert overview.model.index(row).data(DropTargetRole) is True
    # Dropping images on the cluster they are all in already moves nothing.
    emitted = []
    overview.dropRequested.connect(lambda *args: emitted.append(args))
    same = encode_indices(session, [0, 1])
    assert not _drop(overview, same, 0).isAccepted()
    foreign = encode_indices(ClusterSession(session.paths, session.labels), [0])  # another session's indices
    assert not _drop(overview, foreign, 1).isAccepted()
    assert emitted == []


def test_counts_and_names_follow_edits_and_keep_the_scroll_position(qtbot, image_folder):
    labels = np.arange(24) % 12  # 12 clusters of 2: the list scrolls
    session = ClusterSession(image_folder, labels)
    widget = ClusterOverview()
    qtbot.addWidget(widget)
    widget.resize(260, 180)
    widget.set_session(session)
    widget.show()
    bar = widget.view.verticalScrollBar()
    assert bar.maximum() > 0
    bar.setValue(bar.maximum() // 2)
    scrolled = bar.value()
    session.move([0, 12, 1], 5)
    assert widget.model.clusters() == list(range(1, 12))  # cluster 0 emptied: its row went
    assert widget.model.summary(widget.model.row_of(5)).size == 5
    assert widget.model.summary(widget.model.row_of(1)).size == 1
    assert bar.value() == scrolled
    session.rename(5, "Beach")
    assert widget.model.summary(widget.model.row_of(5)).name == "Beach"
    new = session.new_cluster([2, 3], "Dogs")
    assert widget.model.summary(widget.model.row_of(int(new.new_labels[0]))).name == "Dogs"
    assert bar.value() == scrolled


def test_sorted_by_size_a_move_reorders_the_rows(overview, session):
    overview.set_sort("size")
    session.move([16, 17, 18], 0)  # Reds 11, Cluster 1 8, Cluster 2 5
    assert overview.model.clusters() == [0, 1, 2]
    session.move(session.indices_of(0)[:6].tolist(), 2)  # Reds 5, Cluster 2 11
    assert overview.model.clusters() == [2, 1, 0]
    assert [overview.model.summary(r).size for r in range(3)] == [11, 8, 5]


def test_the_representative_thumbnail_is_requested_and_painted(qtbot, session, tmp_path):
    loader = ThumbnailLoader(disk_cache=False, threads=1)
    widget = ClusterOverview(loader)
    qtbot.addWidget(widget)
    widget.set_session(session)
    widget.resize(300, 300)
    widget.show()
    widget.view.viewport().grab()  # paints: the rows ask for their thumbnails
    paths = [session.paths[widget.model.summary(r).representative] for r in range(3)]
    qtbot.waitUntil(lambda: all(loader.cached(p) is not None for p in paths), timeout=5000)
    image = widget.view.viewport().grab().toImage()
    rect = widget.row_rect(0)
    # Cluster 0 images are red: the thumbnail box of its row is painted red now.
    from imgcluster_gui.ui.cluster_overview import ROW_PADDING, ROW_THUMBNAIL, SWATCH_WIDTH

    colour = image.pixelColor(rect.left() + SWATCH_WIDTH + 2 * ROW_PADDING + ROW_THUMBNAIL // 2, rect.center().y())
    assert colour.red() > 120 and colour.green() < 90
    assert widget.model.index(0).data(ClusterRole) == 0
    loader.shutdown()


def test_members_from_one_sort_match_the_session(session):
    session.move([0, 20, 5], 1)
    members = members_of(session.labels, session.cluster_ids())
    for cluster in session.cluster_ids():
        assert np.array_equal(members[cluster], session.indices_of(cluster))


def test_a_reset_reads_every_cluster_again(overview, session):
    session.merge([1, 2], 0)  # one cluster left
    assert overview.model.clusters() == [0] and overview.model.summary(0).size == 24
    session.reset_edits()
    assert _names_and_counts(overview) == [("Reds", 8), ("Cluster 1", 8), ("Cluster 2", 8)]
