"""'More like this': the images nearest to one image across every cluster, in a small icon list.

Opened from the grid's context menu (:meth:`ClusterGridWidget.open_similar`).  The neighbours are
the exact cosine nearest neighbours of the session's features (:func:`~imgcluster_gui.core.similar.most_similar`);
each icon's caption gives the similarity, its tooltip the file, the cluster and the distance.
Double-click opens the preview (stepping through these images in this order); "Select in grid"
selects them in the grid (and scrolls to the first).  The dialog never edits the session.
"""

from __future__ import annotations

import os
from typing import Optional

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.session import ClusterSession
from ..core.similar import SimilarImages, most_similar
from .preview import PreviewDialog
from .thumbnails import ThumbnailLoader

DEFAULT_TOP = 24
ICON_SIZE = 128
_INDEX_ROLE = Qt.ItemDataRole.UserRole


class SimilarDialog(QDialog):
    """The ``top`` images most like image ``index`` of ``session`` (non-modal).

    Parameters
    ----------
    session : ClusterSession
        Must have ``features``.
    index : int
        The image asked about.
    loader : ThumbnailLoader
        The grid's loader (thumbnails decoded off the GUI thread, shared with the grid).
    parent : QWidget, optional
    top : int

    Signals
    -------
    selectRequested(list)
        "Select in grid": the global indices of the images listed.
    """

    selectRequested = Signal(list)

    def __init__(
        self,
        session: ClusterSession,
        index: int,
        loader: ThumbnailLoader,
        parent: Optional[QWidget] = None,
        top: int = DEFAULT_TOP,
    ) -> None:
        super().__init__(parent)
        if session.features is None:
            raise ValueError("this session has no features to compare images with")
        self.session = session
        self.index = int(index)
        self.loader = loader
        self.result: SimilarImages = most_similar(session.features, self.index, top=top)
        self._previews: list[PreviewDialog] = []
        self.setWindowTitle(f"More like {os.path.basename(session.paths[self.index])}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        self.summary = QLabel(
            f"The {len(self.result)} images most like <b>{_escape(os.path.basename(session.paths[self.index]))}</b> "
            f"(in {_escape(session.name_of(int(session.labels[self.index])))}), from every cluster; "
            "the number is the cosine similarity (1 = the same)."
        )
        self.summary.setWordWrap(True)
        self.list = QListWidget()
        self.list.setObjectName("similar_list")
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.setGridSize(QSize(ICON_SIZE + 24, ICON_SIZE + 44))
        self.list.setWordWrap(True)
        self._items: dict[str, QListWidgetItem] = {}
        for index, similarity in zip(self.result.indices.tolist(), self.result.similarities.tolist()):
            path = session.paths[index]
            cluster = session.name_of(int(session.labels[index]))
            item = QListWidgetItem(f"{similarity:.3f}\n{os.path.basename(path)}")
            item.setData(_INDEX_ROLE, int(index))
            item.setToolTip(
                f"<b>{_escape(os.path.basename(path))}</b><br>{_escape(os.path.dirname(path))}<br>"
                f"in {_escape(cluster)} · similarity {similarity:.3f} · distance {1 - similarity:.3f}"
            )
            self.list.addItem(item)
            self._items[path] = item
            self._set_icon(path, loader.request(path, ICON_SIZE))
        loader.thumbnailReady.connect(self._on_thumbnail_ready)
        self.list.itemDoubleClicked.connect(self._open_preview)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.select_button = QPushButton("Select in grid")
        self.select_button.setToolTip("Select these images in the grid (the highlighted ones, or all)")
        self.select_button.setEnabled(len(self.result) > 0)
        buttons.addButton(self.select_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.select_button.clicked.connect(self.select_in_grid)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.list, 1)
        layout.addWidget(buttons)
        self.resize(5 * (ICON_SIZE + 24) + 40, 2 * (ICON_SIZE + 44) + 120)

    def indices(self) -> list[int]:
        """The images listed, most similar first."""
        return [int(i) for i in self.result.indices]

    def select_in_grid(self) -> list[int]:
        """Emit ``selectRequested`` with the highlighted images (all listed when none is highlighted)."""
        chosen = [int(item.data(_INDEX_ROLE)) for item in self.list.selectedItems()]
        chosen = sorted(chosen, key=self.indices().index) if chosen else self.indices()
        self.selectRequested.emit(chosen)
        return chosen

    def _set_icon(self, path: str, image: Optional[QImage]) -> None:
        item = self._items.get(path)
        if item is not None and image is not None:
            item.setIcon(QIcon(QPixmap.fromImage(image)))

    def _on_thumbnail_ready(self, path: str) -> None:
        if path in self._items:
            self._set_icon(path, self.loader.cached(path, ICON_SIZE))

    def _open_preview(self, item: QListWidgetItem) -> PreviewDialog:
        listed = self.indices()
        dialog = PreviewDialog(
            [self.session.paths[i] for i in listed],
            listed.index(int(item.data(_INDEX_ROLE))),
            self.loader,
            self,
            names=[self.session.name_of(int(self.session.labels[i])) for i in listed],
        )
        self._previews.append(dialog)
        dialog.finished.connect(lambda _r, d=dialog: self._previews.remove(d) if d in self._previews else None)
        dialog.show()
        return dialog

    def done(self, result: int) -> None:  # noqa: D102 - QDialog API
        try:
            self.loader.thumbnailReady.disconnect(self._on_thumbnail_ready)
        except (RuntimeError, TypeError):  # already disconnected
            pass
        super().done(result)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
