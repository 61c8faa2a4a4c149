"""'More like this': the grid's context menu opens the nearest images from every cluster; select them, preview."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtTest import QTest

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.cluster_grid import ClusterGridWidget
from imgcluster_gui.ui.preview import PreviewDialog
from imgcluster_gui.ui.similar_dialog import SimilarDialog
from imgcluster_gui.ui.thumbnails import ThumbnailLoader


@pytest.fixture
def similar_session(image_folder) -> ClusterSession:
    """3 clusters of 8 with random features, except: 17 (cluster 2) is nearest to 0, then 5 (cluster 0), then 12."""
    rng = np.random.default_rng(7)
    features = rng.normal(size=(24, 32)).astype(np.float32)
    features[17] = features[0] + rng.normal(0, 0.05, 32)
    features[5] = features[0] + rng.normal(0, 0.3, 32)
    features[12] = features[0] + rng.normal(0, 0.8, 32)
    return ClusterSession(image_folder, np.repeat(np.arange(3), 8), features=features)


@pytest.fixture
def grid(make_grid, similar_session):
    return make_grid(similar_session)


def _similar_from_menu(grid: ClusterGridWidget, image: int) -> SimilarDialog:
    menu = grid.build_context_menu(int(grid.session().labels[image]), image)
    action = next(a for a in menu.actions() if a.text() == "More like this…")
    assert action.isEnabled()
    action.trigger()
    dialog = grid._similar
    assert isinstance(dialog, SimilarDialog)
    return dialog


def test_more_like_this_lists_the_nearest_images_of_every_cluster(grid, similar_session, qtbot):
    dialog = _similar_from_menu(grid, 0)
    qtbot.waitExposed(dialog)
    listed = dialog.indices()
    assert listed[:3] == [17, 5, 12] and 0 not in listed  # across clusters, nearest first, itself left out
    first = dialog.list.item(0)
    X = similar_session.features / np.linalg.norm(similar_session.features, axis=1, keepdims=True)
    assert first.text().startswith(f"{X[0] @ X[17]:.3f}")
    assert "Cluster 2" in first.toolTip() and "distance" in first.toolTip()
    qtbot.waitUntil(lambda: not first.icon().isNull(), timeout=5000)  # the thumbnail arrives from the loader


def test_select_in_grid_and_preview(grid, similar_session, qtbot):
    dialog = _similar_from_menu(grid, 0)
    qtbot.waitExposed(dialog)
    dialog.list.item(1).setSelected(True)
    dialog.list.item(0).setSelected(True)
    with qtbot.waitSignal(grid.selectionChanged, timeout=1000) as selection:
        qtbot.mouseClick(dialog.select_button, Qt.MouseButton.LeftButton)
    assert selection.args == [[5, 17]] and grid.selected_indices() == [5, 17]
    assert grid.current_index() == 17  # the most similar one, scrolled to
    dialog.list.clearSelection()
    dialog.select_in_grid()  # nothing highlighted: every image listed
    assert grid.selected_indices() == sorted(dialog.indices())
    rect = dialog.list.visualItemRect(dialog.list.item(1))
    QTest.mouseClick(dialog.list.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    QTest.mouseDClick(dialog.list.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    previews = dialog.findChildren(PreviewDialog)
    assert previews and previews[-1].paths[previews[-1]._current] == similar_session.paths[5]
    for preview in previews:
        preview.close()


def test_no_features_no_similar_images(qtbot, image_folder):
    session = ClusterSession(image_folder, np.zeros(len(image_folder), dtype=np.int64))
    widget = ClusterGridWidget(session, QUndoStack(), ThumbnailLoader(disk_cache=False))
    qtbot.addWidget(widget)
    menu = widget.build_context_menu(0, 0)
    assert not next(a for a in menu.actions() if a.text() == "More like this…").isEnabled()
    assert widget.open_similar(0) is None
    widget.loader.shutdown()
