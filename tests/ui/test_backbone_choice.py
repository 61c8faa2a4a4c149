"""The backbone list says where each backbone's weights are (issue 15, part 4).

The real side panel, offscreen: sections "Works offline" / "Download once" (with each download's
size) / "Needs a package", and a "Which backbone?" hint from the measured table when there is one.
"""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QSettings, Qt

from imgcluster_gui.core.features import backbones as B
from imgcluster_gui.ui import side_panel
from imgcluster_gui.ui.side_panel import SidePanel


@pytest.fixture
def make_panel(qtbot, tmp_path, monkeypatch):
    """Build a side panel with a fresh settings file, no huggingface_hub cache and no measured table."""
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setattr(B, "_hf_hub_cached_file", lambda entry: None)
    monkeypatch.setattr(side_panel, "FEATURES_TABLE", tmp_path / "no-such-table.json")

    def make() -> SidePanel:
        widget = SidePanel()
        qtbot.addWidget(widget)
        return widget

    return make


def _sections(panel: SidePanel) -> dict[str, list[tuple[str, str, str]]]:
    """Header text -> [(backbone name, item text, tooltip)] in list order."""
    sections: dict[str, list[tuple[str, str, str]]] = {}
    current = None
    for row in range(panel.backbone_list.count()):
        item = panel.backbone_list.item(row)
        name = item.data(Qt.ItemDataRole.UserRole)
        if name is None:
            current = item.text()
            assert not item.flags() & Qt.ItemFlag.ItemIsUserCheckable  # a header cannot be ticked
            sections[current] = []
        else:
            assert current is not None, "every backbone sits under a section header"
            sections[current].append((name, item.text(), item.toolTip()))
    return sections


def test_backbones_are_grouped_by_where_their_weights_are(make_panel, monkeypatch):
    panel = make_panel()
    sections = _sections(panel)
    assert list(sections)[:2] == ["Works offline", "Download once"]
    offline = {name for name, _, _ in sections["Works offline"]}
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= offline
    for name, text, tooltip in sections.get("Download once", []):
        spec = B.get_backbone(name)
        size = B.describe_size(spec.download_bytes)
        assert text.endswith(f"({size})") and "MB" in size, text
        assert size in tooltip and "weights file" in tooltip
    if B.has_timm():
        downloads = {name for name, _, _ in sections["Download once"]}
        assert {"dinov2_vits14", "dinov2_vitb14", "clip_vitb16", "siglip_vitb16"} <= downloads
        dino = next(tip for name, _, tip in sections["Download once"] if name == "dinov2_vits14")
        assert "Input 518 px" in dino  # what it costs on a CPU is visible before choosing it

    # Ticking still gives backbone names only (never a header), and the choice survives a restart.
    panel.set_backbones(["efficientnet_lite0", "resnet18"])
    assert panel.backbones() == ["efficientnet_lite0", "resnet18"]
    header = panel.backbone_list.item(0)
    header.setCheckState(Qt.CheckState.Checked)  # even forced, a header is not a backbone
    assert panel.backbones() == ["efficientnet_lite0", "resnet18"]
    other = make_panel()
    other.restore_state(panel.state())
    assert other.backbones() == ["efficientnet_lite0", "resnet18"]

    # Without timm the modern encoders move to "Needs a package" and say what to install.
    monkeypatch.setattr(B, "has_timm", lambda: False)
    sections = _sections(make_panel())
    needing = {name: text for name, text, _ in sections["Needs a package"]}
    assert "pip install imgcluster-gui[modern]" in needing["dinov2_vits14"]
    assert "dinov2_vits14" not in {name for name, _, _ in sections.get("Download once", [])}


def test_which_backbone_hint_falls_back_to_a_plain_sentence(make_panel):
    panel = make_panel()
    assert panel.backbone_hint.text().startswith("Which backbone?")
    assert "EfficientNet-Lite0" in panel.backbone_hint.text() and "not measured" in panel.backbone_hint.text()
    assert "DINOv2" in panel.backbone_hint.toolTip()


def test_which_backbone_hint_quotes_the_measured_table(make_panel, monkeypatch, tmp_path):
    """The layout benchmarks/features.py writes: rows "<backbone> <layer>", speeds by backbone, the choice."""
    table = tmp_path / "features.json"
    rows = {
        "efficientnet_lite0 penultimate": {"backbones": "efficientnet_lite0", "mean_nok": 0.70, "mean_truek": 0.8},
        "efficientnet_lite2 penultimate": {"backbones": "efficientnet_lite2", "mean_nok": 0.75, "mean_truek": 0.8},
        "efficientnet_lite2 mid": {"backbones": "efficientnet_lite2", "mean_nok": 0.99},  # not the backbone's own
        "efficientnet_lite0 + efficientnet_lite2": {  # a concatenation is a choice of its own
            "backbones": "efficientnet_lite0+efficientnet_lite2",
            "mean_nok": 0.72,
        },
    }
    speed = {"efficientnet_lite0": {"ips": 38.2, "images": 96}, "efficientnet_lite2": {"ips": 14.1, "images": 96}}
    table.write_text(json.dumps({"rows": rows, "speed": speed, "chosen": "efficientnet_lite2 penultimate"}))
    monkeypatch.setattr(side_panel, "FEATURES_TABLE", table)
    panel = make_panel()
    text, tip = panel.backbone_hint.text(), panel.backbone_hint.toolTip()
    assert "Best measured: EfficientNet-Lite2 (NMI 0.75, 14 img/s)" in text
    assert "Fastest: EfficientNet-Lite0 (NMI 0.70, 38 img/s)" in text
    assert "EfficientNet-Lite2 (NMI 0.75" in tip and "EfficientNet-Lite0 (NMI 0.70" in tip
    assert "EfficientNet-Lite0 + EfficientNet-Lite2 (NMI 0.72, 10 img/s)" in tip
    assert "choice for the default: efficientnet_lite2 penultimate" in tip
    if B.has_timm():
        assert "Not measured here: DINOv2 ViT-S/14" in tip

    # A damaged table is not an error: the plain sentence is shown.
    table.write_text("{not json")
    assert make_panel().backbone_hint.text() == side_panel._STATIC_HINT


def test_which_backbone_hint_says_why_the_default_is_not_the_best_mean(tmp_path):
    table = tmp_path / "features.json"
    rows = {
        "efficientnet_lite0 penultimate": {"backbones": "efficientnet_lite0", "mean_nok": 0.84},
        "efficientnet_lite2 penultimate": {
            "backbones": "efficientnet_lite2",
            "mean_nok": 0.80,
            "nok": {"imagenette-1k": 0.931, "umist": 0.7},
        },
    }
    table.write_text(json.dumps({"rows": rows, "chosen": "efficientnet_lite2 penultimate"}))
    text, tip = side_panel.backbone_hint(B.list_backbones(), table)
    assert (
        text == "Which backbone? Default: EfficientNet-Lite2, chosen for real photos (NMI 0.93). "
        "Hover for every measured option."
    )
    assert "EfficientNet-Lite0 (NMI 0.84)" in tip  # the best mean is in the tooltip


def test_which_backbone_hint_reads_the_default_graph_rows_and_concatenations(tmp_path):
    """Rows per graph size: only the default pipeline's k counts; a concatenation is one choice; weights files said."""
    table = tmp_path / "features.json"
    rows = {
        "efficientnet_lite0 penultimate, 10-NN": {"backbones": "efficientnet_lite0", "mean_nok": 0.80},
        "efficientnet_lite0 penultimate, 15-NN": {"backbones": "efficientnet_lite0", "mean_nok": 0.99},  # other k
        "efficientnet_lite1 + efficientnet_lite2, 10-NN": {
            "backbones": "efficientnet_lite1+efficientnet_lite2",
            "mean_nok": 0.83,
        },
        "mobilenet_v2 penultimate, 10-NN": {"backbones": "mobilenet_v2", "mean_nok": 0.78},
    }
    speed = {
        "efficientnet_lite0": {"ips": 27.0},
        "efficientnet_lite1": {"ips": 20.0},
        "efficientnet_lite2": {"ips": 20.0},
        "mobilenet_v2": {"ips": 43.0},
    }
    table.write_text(
        json.dumps(
            {"rows": rows, "speed": speed, "post_neighbours": 10, "weights_files": {"mobilenet_v2": "coral.pth"}}
        )
    )
    specs = B.list_backbones()
    text, tip = side_panel.backbone_hint(specs, table)
    assert "Best measured: EfficientNet-Lite1 + EfficientNet-Lite2 (NMI 0.83, 10 img/s)" in text
    # The faster MobileNetV2 row needed the benchmark's weights file: not recommended, but listed in the tooltip.
    assert "Fastest: EfficientNet-Lite0 (NMI 0.80, 27 img/s)" in text and "MobileNetV2" not in text
    assert "MobileNetV2 (measured with a weights file) (NMI 0.78, 43 img/s)" in tip
    assert "EfficientNet-Lite0 (NMI 0.80, 27 img/s)" in tip and "0.99" not in tip
    assert "10-NN graph" in tip


def test_which_backbone_hint_reads_other_nestings_of_per_backbone_rows(tmp_path):
    table = tmp_path / "features.json"
    table.write_text(
        json.dumps(
            {
                "imagenette-1k": [
                    {"backbone": "efficientnet_lite0", "layer": "penultimate", "nmi": 0.90, "img_per_s": 40},
                    {"backbone": "efficientnet_lite0", "layer": "mid", "nmi": 0.99, "img_per_s": 40},
                ],
                "flowers": {"efficientnet_lite0": {"nmi": [0.50, 0.01], "img_per_s": 36}},
            }
        )
    )
    specs = B.list_backbones()
    text, _tip = side_panel.backbone_hint(specs, table)
    assert text == "Which backbone? Best measured: EfficientNet-Lite0 (NMI 0.70, 38 img/s)."


def test_umap_dims_reach_the_run_and_come_back(make_panel, image_folder):
    panel = make_panel()
    panel.set_folder(str(image_folder[0].rsplit("/", 1)[0]))
    assert panel.umap_spin.isEnabled()  # umap-learn is in the test extra
    assert panel.config().umap_dims is None  # off by default (the measured table: it over-splits without K)
    panel.umap_spin.setValue(10)
    assert panel.config().umap_dims == 10
    again = make_panel()
    again.restore_state(panel.state())
    assert again.umap_spin.value() == 10
    settings = dict(panel.config().to_dict(), umap_dims=None)
    assert again.show_config(settings) and again.umap_spin.value() == 0  # the run on screen had none


def test_without_torchvision_its_backbones_and_deep_image_methods_are_listed_but_not_choosable(make_panel, monkeypatch):
    from dataclasses import replace

    from imgcluster_gui.core.clustering import registry
    from imgcluster_gui.core.clustering.deep.images import missing_requirement

    # The CPU desktop bundle's situation: torchvision cannot be imported.
    monkeypatch.setattr(B, "has_torchvision", lambda: False)
    reason = missing_requirement()
    assert "needs torchvision, which this installation does not have" in reason
    for algorithm in ("deepcluster", "ucnn"):
        monkeypatch.setitem(
            registry._REGISTRY, algorithm, replace(registry.get_algorithm(algorithm), unavailable=reason)
        )
    panel = make_panel()
    needs = {name: (text, tip) for name, text, tip in _sections(panel)["Needs a package"]}
    for name in ("resnet18", "resnet50", "vit_b_16"):
        text, tooltip = needs[name]
        assert text.endswith("(needs torchvision, which this installation does not have)"), text
        assert "Not usable in this installation" in tooltip and "weights file" not in tooltip
        row = next(r for r in range(panel.backbone_list.count()) if panel.backbone_list.item(r).data(256) == name)
        assert not panel.backbone_list.item(row).flags() & Qt.ItemFlag.ItemIsUserCheckable
    panel.set_backbones(["efficientnet_lite0", "resnet18"])  # e.g. remembered from a full installation
    assert panel.backbones() == ["efficientnet_lite0"]

    combo = panel.algorithm_combo
    index = combo.findData("deepcluster")
    assert "(needs torchvision)" in combo.itemText(index)
    assert reason in combo.itemData(index, Qt.ItemDataRole.ToolTipRole)
    assert not combo.model().item(index).isEnabled()
    before = combo.currentData()
    panel.set_algorithm("deepcluster")
    assert combo.currentData() == before != "deepcluster"
