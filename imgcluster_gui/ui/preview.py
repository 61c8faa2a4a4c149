"""A larger preview of one image, with its path (opened by double-clicking a thumbnail)."""

from __future__ import annotations

import os
from typing import Optional

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..core.dataset import ImageLoadError, load_image
from .thumbnails import pil_to_qimage

PREVIEW_MAX_SIDE = 1600  # decode (JPEG draft) no larger than a big screen needs


class PreviewDialog(QDialog):
    """Shows ``path`` scaled to fit the dialog, the full path (selectable) and the image size.

    Parameters
    ----------
    path : str
        The image file.
    caption : str, optional
        Extra text under the path (e.g. the cluster name).
    parent : QWidget, optional
    """

    def __init__(self, path: str, caption: Optional[str] = None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.path = str(path)
        self.setWindowTitle(os.path.basename(self.path) or self.path)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._image: Optional[QImage] = None
        self.error: Optional[str] = None

        self.image_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.image_label.setMinimumSize(200, 200)
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.path_label = QLabel(self.path)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setWordWrap(True)
        self.info_label = QLabel()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.image_label, 1)
        layout.addWidget(self.path_label)
        layout.addWidget(self.info_label)
        layout.addWidget(buttons)

        self._load(caption)
        self.resize(QSize(720, 640))

    def _load(self, caption: Optional[str]) -> None:
        # One image, decoded in draft mode: fast enough on the GUI thread for a dialog that opens on request.
        try:
            image = load_image(self.path, draft_size=(PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
        except ImageLoadError as exc:
            self.error = str(exc)
            self.image_label.setText(f"Cannot show this image: {exc}")
            self.info_label.setText(caption or "")
            return
        if max(image.size) > PREVIEW_MAX_SIDE:
            image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
        self._image = pil_to_qimage(image)
        details = f"{image.width} x {image.height} px shown"
        self.info_label.setText(f"{caption}  ·  {details}" if caption else details)
        self._show_scaled()

    def image(self) -> Optional[QImage]:
        """The decoded image, or None when it could not be read (see :attr:`error`)."""
        return self._image

    def _show_scaled(self) -> None:
        if self._image is None:
            return
        area = self.image_label.size()
        pixmap = QPixmap.fromImage(self._image)  # GUI thread: QPixmap is allowed here
        if pixmap.width() > area.width() or pixmap.height() > area.height():
            pixmap = pixmap.scaled(area, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self.image_label.setPixmap(pixmap)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._show_scaled()
