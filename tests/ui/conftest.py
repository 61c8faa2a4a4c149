"""Fixtures for the Qt tests: a small folder of real image files and a session over it."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import: no display needed

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcluster_gui.core.session import ClusterSession

N_CLUSTERS = 3
PER_CLUSTER = 8


@pytest.fixture
def image_folder(tmp_path: Path) -> list[str]:
    """24 small PNG/JPEG files (3 colour groups of 8), sorted paths."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for cluster in range(N_CLUSTERS):
        base = np.zeros(3)
        base[cluster] = 200
        for k in range(PER_CLUSTER):
            pixels = np.clip(base + rng.normal(0, 20, size=(40, 30, 3)), 0, 255).astype(np.uint8)
            suffix = "jpg" if k % 2 else "png"
            path = folder / f"c{cluster}_{k:02d}.{suffix}"
            Image.fromarray(pixels).save(path)
            paths.append(str(path))
    return sorted(paths)


@pytest.fixture
def session(image_folder: list[str]) -> ClusterSession:
    """A session over ``image_folder``: 3 clusters of 8, features and ground truth from the colours."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    centres = np.eye(N_CLUSTERS, 6) * 5
    features = (centres[labels] + rng.normal(0, 0.5, size=(labels.size, 6))).astype(np.float32)
    result = ClusterSession(
        image_folder,
        labels,
        cluster_names={0: "Reds"},
        embedding=features[:, :2],
        features=features,
        ground_truth=[f"class{c}" for c in labels],
        settings={"algorithm": "kmeans", "n_clusters": N_CLUSTERS},
        root=str(Path(image_folder[0]).parent),
    )
    result.recompute_metrics()
    return result


@pytest.fixture
def isolated_window(qtbot, tmp_path, monkeypatch):
    """A shown main window with its settings, data and cache in temporary folders; every yes/no question gets Yes.

    "Yes" also answers the Save / Discard / Cancel question on close as Discard, so no modal is left open.
    """
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QMessageBox

    from imgcluster_gui.ui.main_window import MainWindow
    from imgcluster_gui.ui.settings import AppSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("IMGCLUSTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    window = MainWindow(settings=AppSettings(), autosave=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()


@pytest.fixture
def make_grid(qtbot):
    """``make_grid(session, loader=None)``: a shown grid, disposed (with its loader) after the test."""
    made = []

    from PySide6.QtGui import QUndoStack

    from imgcluster_gui.ui.cluster_grid import ClusterGridWidget
    from imgcluster_gui.ui.thumbnails import ThumbnailLoader

    def make(session: ClusterSession, loader: "ThumbnailLoader | None" = None, size=(600, 500)) -> "ClusterGridWidget":
        loader = loader or ThumbnailLoader(disk_cache=False)
        stack = QUndoStack()
        widget = ClusterGridWidget(session, stack, loader)
        widget.preview_on_activate = False
        widget.undo_stack_ref = stack  # keep the stack alive as long as the widget
        qtbot.addWidget(widget)
        widget.resize(*size)
        widget.show()
        qtbot.waitExposed(widget)
        made.append(widget)
        return widget

    yield make
    for widget in made:
        widget.dispose()
        widget.loader.shutdown()
