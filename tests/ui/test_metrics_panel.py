"""The metrics panel's per-cluster chart: bars named like the clusters, and a layout that stays put under edits."""

from __future__ import annotations

import numpy as np
import pytest

from imgcluster_gui.ui.metrics_panel import MetricsPanel


@pytest.fixture
def panel(qtbot, session):
    widget = MetricsPanel()
    qtbot.addWidget(widget)
    widget.resize(420, 900)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_session(session)
    return widget


def _settle(qtbot, panel: MetricsPanel) -> None:
    qtbot.waitUntil(lambda: not panel.is_refreshing(), timeout=60_000)


def _view(panel: MetricsPanel) -> list[list[float]]:
    return [list(map(float, axis)) for axis in panel.silhouette_plot.getViewBox().viewRange()]


def test_bars_are_labelled_with_the_cluster_names(panel, session):
    assert panel.bar_clusters() == [0, 1, 2]
    assert panel.bar_labels() == ["Reds", "Cluster 1", "Cluster 2"]
    assert "Reds: " in panel.silhouette_plot.toolTip()


def test_a_rename_relabels_the_bar_and_a_long_name_is_shortened(panel, session):
    session.rename(1, "Greens")
    assert panel.bar_labels() == ["Reds", "Greens", "Cluster 2"]
    session.rename(2, "A very long name for the blues")
    assert panel.bar_labels()[2].endswith("…") and len(panel.bar_labels()[2]) <= 14
    assert "A very long name for the blues: " in panel.silhouette_plot.toolTip()


def test_a_move_keeps_the_view_range_and_the_bar_order(qtbot, panel, session):
    before_view = _view(panel)
    before_heights = panel.bar_heights()
    bars = panel.bars
    session.move([0, 1], 2)  # two reds into cluster 2: every silhouette changes
    _settle(qtbot, panel)
    assert panel.bar_heights() != before_heights  # the new numbers are drawn...
    assert panel.bars is bars  # ...in place,
    assert panel.bar_clusters() == [0, 1, 2] and panel.bar_labels() == ["Reds", "Cluster 1", "Cluster 2"]
    np.testing.assert_allclose(_view(panel), before_view)  # and the view did not move


def test_a_new_set_of_clusters_lays_the_chart_out_again(qtbot, panel, session):
    session.merge([1], 2)
    _settle(qtbot, panel)
    assert panel.bar_clusters() == [0, 2]
    assert panel.bar_labels() == ["Reds", "Cluster 2"]
    x_range = _view(panel)[0]
    assert x_range[0] == pytest.approx(-0.6) and x_range[1] == pytest.approx(1.6)


def test_summary_boxes_stack_in_a_narrow_dock_so_no_value_is_cut(panel, qtbot):
    from PySide6.QtWidgets import QBoxLayout

    panel.resize(330, 500)  # the default right column
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.external_box.isVisible()  # the session has ground truth
    assert panel._summary_layout.direction() == QBoxLayout.Direction.TopToBottom
    qtbot.waitUntil(lambda: panel.external_box.geometry().right() <= panel.width(), timeout=2000)
    panel.resize(700, 500)
    qtbot.waitUntil(lambda: panel._summary_layout.direction() == QBoxLayout.Direction.LeftToRight, timeout=2000)
