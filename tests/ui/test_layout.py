"""The window's layout: the grid first, every panel in the View menu, a reset, restored layouts checked."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from imgcluster_gui.ui import layout
from imgcluster_gui.ui.main_window import MainWindow
from imgcluster_gui.ui.settings import AppSettings


@pytest.fixture
def settings_env(tmp_path, monkeypatch):
    """Settings and autosave in temporary folders; questions answered Yes."""
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("IMGCLUSTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)


def _window(qtbot, width: int = 1400, height: int = 880) -> MainWindow:
    window = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(window)
    window.resize(width, height)
    window.show()
    qtbot.waitExposed(window)
    QApplication.processEvents()
    return window


@pytest.mark.parametrize(("width", "height"), [(1400, 880), (1280, 800)])
def test_grid_gets_most_of_the_width(qtbot, settings_env, width, height):
    window = _window(qtbot, width, height)
    share = window.centralWidget().width() / window.width()
    # Before the grid-first layout the grid had 16 % at 1400x880 (the scatter and a 400 px metrics dock beside it).
    assert share >= (0.55 if width == 1400 else 0.5), share
    assert window.layout_problems() == []
    window.close()


def test_view_menu_reaches_every_panel_and_resets(qtbot, settings_env):
    window = _window(qtbot)
    texts = [a.text().replace("&", "") for a in window.view_menu.actions()]
    menu_actions = {a.objectName(): a for a in window.view_menu.actions()}
    for dock in layout.layout_docks(window).values():
        assert f"show_{dock.objectName()}" in menu_actions, dock.windowTitle()
    # Metrics is open behind the Scatter tab: choosing it brings it to the front (Qt's own action closed it).
    show_metrics = menu_actions["show_metrics_dock"]
    assert show_metrics.isChecked() and window.metrics_dock.visibleRegion().isEmpty()
    show_metrics.trigger()
    QApplication.processEvents()
    assert not window.metrics_dock.isHidden() and not window.metrics_dock.visibleRegion().isEmpty()
    assert show_metrics.isChecked()
    show_metrics.trigger()  # in front: now it closes
    assert window.metrics_dock.isHidden() and not show_metrics.isChecked()
    window.reset_layout()
    assert show_metrics.isChecked()
    assert "Scatter" in texts and "Reset layout" in texts
    # Close the scatter, float the metrics far away: Reset layout brings both back, docked.
    window.scatter_dock.toggleViewAction().trigger()
    window.metrics_dock.setFloating(True)
    window.metrics_dock.move(-5000, -5000)
    QApplication.processEvents()
    assert window.scatter_dock.isHidden()
    window.view_controls.reset_layout_action.trigger()
    QApplication.processEvents()
    assert not window.scatter_dock.isHidden() and not window.metrics_dock.isFloating()
    assert window.dockWidgetArea(window.scatter_dock) == layout.RIGHT
    assert window.tabifiedDockWidgets(window.scatter_dock) == [window.metrics_dock]
    assert window.layout_problems() == []
    window.close()


def test_a_saved_layout_that_does_not_fit_is_not_restored(qtbot, settings_env, monkeypatch):
    first = _window(qtbot)
    first.metrics_dock.setFloating(True)
    first.metrics_dock.move(-6000, -6000)  # off every screen
    QApplication.processEvents()
    assert any("Metrics" in p and "off screen" in p for p in first.layout_problems())
    first.log_dock.toggleViewAction().trigger()
    first.close()  # saves the layout

    # Whatever the platform makes of the restored state, a layout with a problem is replaced by the default.
    checked = []
    real_problems = layout.layout_problems

    def problems_once(window):
        checked.append(window)
        return ["the Metrics panel is clipped (40 of 300 px wide)"] if len(checked) == 1 else real_problems(window)

    monkeypatch.setattr(layout, "layout_problems", problems_once)
    second = _window(qtbot)
    qtbot.waitUntil(lambda: "default layout is back" in second.log_panel.text(), timeout=3000)
    assert not second.log_dock.isHidden()  # the default layout shows every panel
    assert not second.metrics_dock.isFloating()
    second.close()


def test_a_layout_that_fits_is_restored(qtbot, settings_env):
    first = _window(qtbot)
    first.log_dock.toggleViewAction().trigger()  # the person closed the log: a choice, kept
    first.close()
    second = _window(qtbot)
    QApplication.processEvents()
    assert second.log_dock.isHidden()
    assert "default layout is back" not in second.log_panel.text()
    second.close()


def test_selection_count_in_status_bar(qtbot, settings_env, session):
    window = _window(qtbot)
    window.show_session(session)
    window.scatter.selectionChanged.emit([0, 1, 9])  # what a lasso on the scatter sends
    qtbot.waitUntil(lambda: window.selection_label.text() == "3 selected", timeout=2000)
    assert sorted(window.grid.selected_indices()) == [0, 1, 9]
    window.scatter.selectionChanged.emit([])
    qtbot.waitUntil(lambda: window.selection_label.text() == "", timeout=2000)
    window.close()


def test_thumbnail_size_slider_shortcuts_and_menu_drive_the_grid(qtbot, settings_env, session):
    window = _window(qtbot)
    window.show_session(session)
    controls, grid = window.view_controls, window.grid
    assert controls.slider.value() == grid.thumbnail_size() == 128
    columns = grid.columns()
    controls.slider.setValue(256)
    assert grid.thumbnail_size() == 256 and grid.columns() < columns
    controls.smaller_action.trigger()  # Ctrl+- anywhere in the window
    assert grid.thumbnail_size() == round(256 / 1.25) == controls.slider.value()
    controls.default_size_action.trigger()  # Ctrl+0
    assert grid.thumbnail_size() == 128
    # Ctrl+wheel on the grid moves the slider too.
    grid.set_thumbnail_size(192)
    assert controls.slider.value() == 192
    controls.caption_actions["none"].trigger()
    assert grid.caption_mode() == "none"
    controls.sort_actions["name"].trigger()
    assert grid.sort_mode() == "name"
    window.close()

    # The choices come back at the next start.
    again = _window(qtbot)
    assert again.grid.thumbnail_size() == 192 == again.view_controls.slider.value()
    assert again.grid.caption_mode() == "none" and again.grid.sort_mode() == "name"
    again.close()


def test_overview_click_jumps_and_drop_moves(qtbot, settings_env, session):
    window = _window(qtbot, 1400, 600)
    window.show_session(session)
    grid = window.grid
    grid.set_thumbnail_size(320)  # so the last cluster starts off screen
    last = grid.cluster_order()[-1]
    assert grid.cluster_rect(last).top() > grid.viewport().height() or grid.verticalScrollBar().maximum() == 0
    window.cluster_overview.clusterActivated.emit(last)
    assert grid.cluster_rect(last).top() == 0 or grid.verticalScrollBar().value() == grid.verticalScrollBar().maximum()
    assert grid.horizontalScrollBar().value() == 0
    moved = int(session.indices_of(0)[0])
    window.cluster_overview.dropRequested.emit([moved], last)
    assert int(session.labels[moved]) == last
    window.undo_action.trigger()
    assert int(session.labels[moved]) == 0
    window.close()


def test_status_bar_and_run_panel_describe_the_run_on_screen(qtbot, settings_env, session):
    from imgcluster_gui.core.session import ClusterSession

    def made_with(algorithm: str, k: int) -> ClusterSession:
        copy = ClusterSession(
            session.paths, session.labels, features=session.features, root=session.root, settings=dict(session.settings)
        )
        copy.settings.update(algorithm=algorithm, n_clusters=k, backbones=["efficientnet_lite0"], folder=session.root)
        return copy

    window = _window(qtbot)
    assert window.status_label.text() == "Choose a folder and press Run."
    first, second = made_with("kmeans", 3), made_with("agglomerative", 4)
    window.show_session(first)
    window.show_session(second)
    assert window.status_label.text() == ""  # no stale prompt once a result is on screen
    numbers = [r.number for r in window.run_list.records()]
    assert window.session_label.text().startswith(f"Run {numbers[1]} ·") and "24 images in 3 groups" in (
        window.session_label.text()
    )
    window.run_list.runActivated.emit(numbers[0])  # the person picks run 1 in the run list
    assert window.session is first
    assert window.session_label.text().startswith(f"Run {numbers[0]} ·")
    assert window.side_panel.algorithm_combo.currentData() == "kmeans"
    assert window.side_panel.k_spin.value() == 3 and not window.side_panel.auto_k_check.isChecked()
    window.run_list.runActivated.emit(numbers[1])
    assert window.side_panel.algorithm_combo.currentData() == "agglomerative" and window.side_panel.k_spin.value() == 4
    # Counts follow an edit.
    window.grid.move_indices([0, 1, 2, 3, 4, 5, 6, 7], 1)
    assert "in 2 groups" in window.session_label.text()
    window.close()
