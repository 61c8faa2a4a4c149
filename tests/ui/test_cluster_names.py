"""Suggested cluster names in the window: grid headers, the Clusters dock, its menu, the View toggle, undo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from imgcluster_gui.core.naming import top_k_probabilities
from imgcluster_gui.core.session import ClusterSession

from .conftest import N_CLUSTERS, PER_CLUSTER

GOLDEN, TENCH = 207, 0


@pytest.fixture
def named_session(image_folder: list[str]) -> ClusterSession:
    """3 clusters of 8: golden retrievers (custom name "Reds"), tench, and a mix (no class dominates)."""
    labels = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    P = np.full((labels.size, 1000), 0.5 / 999)
    P[labels == 0, GOLDEN] = 0.5
    P[labels == 1, TENCH] = 0.5
    P[labels == 2] = 1 / 1000
    P /= P.sum(axis=1, keepdims=True)
    classes, probs = top_k_probabilities(P, 5)
    features = np.eye(N_CLUSTERS, 6)[labels].astype(np.float32)
    return ClusterSession(
        image_folder,
        labels,
        cluster_names={0: "Reds"},
        features=features,
        root=str(Path(image_folder[0]).parent),
        imagenet_top_classes=classes,
        imagenet_top_probs=probs,
    )


@pytest.fixture
def window(isolated_window):
    return isolated_window


def _row(window, cluster: int):
    model = window.cluster_overview.model
    return model.summary(model.row_of(cluster)), model.index(model.row_of(cluster))


def _toggle(window):
    return next(a for a in window.view_menu.actions() if a.text() == "Suggest &names from ImageNet classes")


def test_headers_and_dock_show_the_suggestion_with_its_source(window, named_session):
    window.show_session(named_session)
    grid = window.grid
    assert grid.header_text(1)[0] == "tench"
    assert grid.header_text(2)[0] == "Cluster 2"  # "mixed": the default name, the reason in the tooltip
    tip = grid.tooltip_at(grid.header_rect(1).center())
    assert "suggested from ImageNet classes: tench 50 %" in tip
    assert "no single ImageNet class dominates" in grid.tooltip_at(grid.header_rect(2).center())
    assert grid.header_text(0)[0] == "Reds"
    assert "classes: golden retriever 50 % (your name replaces it)" in grid.tooltip_at(grid.header_rect(0).center())
    summary, index = _row(window, 1)
    assert summary.name == "tench" and summary.suggested  # painted in italics
    assert "Suggested from ImageNet classes: tench" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert not _row(window, 0)[0].suggested  # a person's name looks like one


def test_view_toggle_turns_suggestions_off_and_on(window, named_session):
    window.show_session(named_session)
    toggle = _toggle(window)
    assert toggle.isCheckable() and toggle.isChecked()  # default on
    toggle.trigger()
    assert not toggle.isChecked()
    assert window.grid.header_text(1)[0] == "Cluster 1"
    assert _row(window, 1)[0].name == "Cluster 1"
    assert named_session.shown_names()[1] == "Cluster 1"  # exports follow what is shown
    toggle.trigger()
    assert window.grid.header_text(1)[0] == "tench" and _row(window, 1)[0].name == "tench"


def test_use_suggested_name_is_an_undoable_rename(window, named_session):
    window.show_session(named_session)
    menu = window.cluster_overview.context_menu(0)
    texts = [a.text() for a in menu.actions()]
    assert "Rename “Reds”…" in texts
    use = next(a for a in menu.actions() if a.text() == "Use suggested name “golden retriever”")
    assert use.isEnabled()
    use.trigger()
    assert named_session.name_of(0) == "golden retriever" and 0 not in named_session.cluster_names
    assert window.grid.header_text(0)[0] == "golden retriever" and _row(window, 0)[0].suggested
    window.undo_action.trigger()
    assert named_session.name_of(0) == "Reds" and window.grid.header_text(0)[0] == "Reds"
    # Without a custom name there is nothing to go back from; a mixed cluster has no suggestion to use.
    assert not next(a for a in window.cluster_overview.context_menu(1).actions() if "suggested" in a.text()).isEnabled()
    assert not next(a for a in window.cluster_overview.context_menu(2).actions() if "suggested" in a.text()).isEnabled()


def test_rename_overrides_and_clearing_brings_the_suggestion_back(window, named_session):
    window.show_session(named_session)
    window.grid.rename_cluster(1, "Fish")
    assert window.grid.header_text(1)[0] == "Fish" and _row(window, 1)[0].name == "Fish"
    window.grid.rename_cluster(1, "")
    assert window.grid.header_text(1)[0] == "tench" and _row(window, 1)[0].name == "tench"
    window.undo_action.trigger()
    assert window.grid.header_text(1)[0] == "Fish"


def test_suggestions_follow_a_move(window, named_session):
    window.show_session(named_session)
    window.grid.move_indices(list(range(PER_CLUSTER, 2 * PER_CLUSTER)), 2)  # the tench join the mix
    assert named_session.suggested_name(2).text == "tench"
    assert window.grid.header_text(2)[0] == "tench" and _row(window, 2)[0].name == "tench"


def test_grid_menu_offers_the_suggestion_and_exports_write_shown_names(window, named_session, tmp_path):
    """The grid's own menu has "Use suggested name"; CSV export writes the suggestion for an unnamed cluster."""
    import csv

    window.show_session(named_session)
    menu = window.grid.build_context_menu(0)
    use = next(a for a in menu.actions() if a.text() == "Use suggested name “golden retriever”")
    use.trigger()
    assert named_session.name_of(0) == "golden retriever" and 0 not in named_session.cluster_names
    written = window.export_csv(str(tmp_path / "labels.csv"))
    with open(written, newline="", encoding="utf-8") as fh:
        names = {row["cluster_name"] for row in csv.DictReader(fh)}
    assert "golden retriever" in names
