"""The scatter plot: colours follow the session, click/lasso selection, background re-embedding."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.ui.scatter import ScatterView, cluster_colour, points_in_polygon

WAIT_MS = 30_000


def _session(n_per_cluster: int = 10) -> ClusterSession:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = np.repeat(np.arange(3), n_per_cluster)
    embedding = centres[labels] + rng.normal(scale=0.5, size=(len(labels), 2))
    features = np.hstack([embedding, rng.normal(scale=0.1, size=(len(labels), 6))]).astype(np.float32)
    paths = [f"/images/img_{i:03d}.png" for i in range(len(labels))]
    return ClusterSession(paths, labels, embedding=embedding, features=features, root="/images")


@pytest.fixture
def view(qtbot):
    widget = ScatterView()
    qtbot.addWidget(widget)
    widget.resize(600, 500)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def test_points_are_coloured_by_cluster_and_recoloured_after_an_edit(view):
    session = _session()
    view.set_session(session)
    colours = view.point_colours()
    assert len(colours) == len(session.paths)
    assert colours[0] == cluster_colour(0).name() and colours[15] == cluster_colour(1).name()
    session.move([0, 1], 2)
    colours = view.point_colours()
    assert colours[0] == colours[1] == cluster_colour(2).name()
    _assert_drawn_as(view, [0, 1], 25)
    _assert_drawn_as(view, [2], 5)  # untouched points keep their own
    session.delete_cluster(1)
    assert set(view.point_colours()[10:20]) == {cluster_colour(-1).name()}


def _assert_drawn_as(view, indices, like: int) -> None:
    """The spots are painted from an atlas fragment of the same colour as point ``like``'s (what is on screen)."""
    view.points.updateSpots()
    atlas = view.points.fragmentAtlas.pixmap.toImage()
    rects = view.points.data["sourceRect"]

    def centre_colour(index: int) -> str:
        rect = rects[index]
        assert rect["w"] > 0
        return atlas.pixelColor(int(rect["x"] + rect["w"] // 2), int(rect["y"] + rect["h"] // 2)).name()

    expected = centre_colour(like)
    assert expected == view.point_colours()[like]
    assert [centre_colour(i) for i in indices] == [expected] * len(list(indices))


def test_an_edit_recolours_only_what_it_moved_and_undo_restores(view):
    session = _session(n_per_cluster=200)
    view.set_session(session)
    before = view.point_colours()
    edit = session.move(list(range(0, 50)), 1)
    after = view.point_colours()
    assert after[:50] == [cluster_colour(1).name()] * 50 and after[50:] == before[50:]
    _assert_drawn_as(view, range(0, 50), 250)
    session.revert(edit)
    assert view.point_colours() == before
    _assert_drawn_as(view, range(0, 50), 60)


def test_lasso_selects_the_points_inside_and_emits(view, qtbot):
    session = _session()
    view.set_session(session)
    square_around_cluster_1 = [(7.0, -3.0), (13.0, -3.0), (13.0, 3.0), (7.0, 3.0)]
    with qtbot.waitSignal(view.selectionChanged) as signal:
        picked = view.select_in_polygon(square_around_cluster_1)
    assert picked == list(range(10, 20))
    assert signal.args[0] == list(range(10, 20))
    # Ctrl adds to the selection.
    view.select_in_polygon([(-3.0, -3.0), (3.0, -3.0), (3.0, 3.0), (-3.0, 3.0)], Qt.KeyboardModifier.ControlModifier)
    assert view.selected_indices() == list(range(0, 20))


def test_click_picks_the_nearest_point_within_reach(view):
    session = _session()
    view.set_session(session)
    x, y = session.embedding[5]
    assert view.select_at(float(x), float(y)) == 5
    assert view.selected_indices() == [5]
    assert view.select_at(1000.0, 1000.0) is None  # far from every point: clears
    assert view.selected_indices() == []


def test_selection_from_the_grid_is_shown_without_echo(view, qtbot):
    view.set_session(_session())
    with qtbot.assertNotEmitted(view.selectionChanged):
        view.set_selection([3, 4, 99, -1])
    assert view.selected_indices() == [3, 4]


def test_hover_shows_the_path_and_cluster_name(view):
    session = _session()
    session.rename(0, "Bags")
    view.set_session(session)
    view.show_hover(2, 20, 20)
    assert view.hovered_index() == 2
    assert "/images/img_002.png" in view.hover_text.text() and "Bags" in view.hover_text.text()


def test_changing_the_method_recomputes_off_the_gui_thread(view, qtbot):
    session = _session()
    before = session.embedding.copy()
    view.set_session(session)
    with qtbot.waitSignal(view.embeddingChanged, timeout=WAIT_MS) as signal:
        job = view.recompute("tsne")
        assert job is not None and view.is_computing()
    assert signal.args == ["tsne"]
    assert view.method() == "tsne"
    assert session.settings["embedding"] == "tsne"
    assert session.embedding.shape == before.shape and not np.allclose(session.embedding, before)
    np.testing.assert_allclose(view.positions(), session.embedding, rtol=1e-6)


def test_the_view_only_reads_the_session_and_follows_its_embedding_events(view, qtbot):
    session = _session()
    view.set_session(session)
    events = []
    session.subscribe(lambda e: events.append(e.kind))
    with qtbot.waitSignal(view.embeddingChanged, timeout=WAIT_MS):
        view.recompute("pca")
    assert events == ["embedding"] and not session.modified  # stored through the model's method, one event
    np.testing.assert_allclose(view.positions(), session.embedding, rtol=1e-6)
    moved = session.embedding + 100.0
    session.set_embedding(moved, method="tsne")  # replaced by someone else: the view redraws
    np.testing.assert_allclose(view.positions(), moved, rtol=1e-6)
    assert view.method() == "tsne" and view.method_combo.currentData() == "tsne"


def test_session_without_features_keeps_its_embedding(view):
    session = _session()
    session.features = None
    view.set_session(session)
    assert view.recompute("tsne") is None
    assert "no features" in view.status.text()


def test_points_in_polygon_even_odd():
    points = np.array([[0.5, 0.5], [2.0, 2.0], [0.0, 0.9], [-1.0, 0.5]])
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    assert points_in_polygon(points, square).tolist() == [True, False, True, False]
    assert not points_in_polygon(points, square[:2]).any()  # a line is no area
