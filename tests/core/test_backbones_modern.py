"""The modern encoders (DINOv2, CLIP, SigLIP through timm): random-weight builds, the library's
preprocessing, and the download-once cache. Nothing here touches the network: ``urlopen`` is replaced."""

from __future__ import annotations

import io
import math
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from imgcluster_gui import cli
from imgcluster_gui.core.features import backbones as B
from imgcluster_gui.core.progress import Cancelled

torch.set_num_threads(2)

MODERN = ["dinov2_vits14", "dinov2_vitb14", "clip_vitb16", "siglip_vitb16"]
needs_timm = pytest.mark.skipif(not B.has_timm(), reason="timm is not installed (pip install imgcluster-gui[modern])")


@pytest.fixture(autouse=True)
def _no_huggingface_cache(monkeypatch):
    """The person's own huggingface_hub cache is never read by these tests."""
    monkeypatch.setattr(B, "_hf_hub_cached_file", lambda entry: None)


class FakeResponse:
    """What ``urlopen`` returns: headers, and the body in chunks (``served`` bytes of it at most)."""

    def __init__(self, body: bytes, length: int, served: int | None = None) -> None:
        self.headers = {"Content-Length": str(length)}
        self._body = io.BytesIO(body[: len(body) if served is None else served])

    def read(self, n: int = -1) -> bytes:
        return self._body.read(n)

    def __enter__(self) -> "FakeResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakeHub:
    """A stand-in for the hub: serves one file by URL, counts the GETs, or is unreachable."""

    def __init__(self, files: dict[str, bytes], *, served: int | None = None, online: bool = True) -> None:
        self.files, self.served, self.online = files, served, online
        self.gets: list[str] = []
        self.heads: list[str] = []

    def __call__(self, request: urllib.request.Request, timeout: float = 0) -> FakeResponse:
        if not self.online:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        body = self.files[request.full_url]
        if request.get_method() == "HEAD":
            self.heads.append(request.full_url)
            return FakeResponse(b"", len(body))
        self.gets.append(request.full_url)
        return FakeResponse(body, len(body), self.served)


def _random_state(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return B._architecture(B._entry(name)).state_dict()


def _safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


# ============================================================================ architectures
@needs_timm
@pytest.mark.parametrize("name", MODERN)
def test_each_modern_encoder_builds_with_random_weights_and_gives_its_declared_features(name):
    spec = B.get_backbone(name)
    assert spec.family == "timm" and set(spec.layers) == {B.PENULTIMATE, "mid"}
    # The widths written for a computer without timm are the library's own.
    assert dict(B._entry(name).dims_without_library) == spec.feature_dims
    net = B._architecture(B._entry(name)).eval()
    patch = net.patch_embed.patch_size[0]
    x = torch.rand(2, 3, 2 * patch, 2 * patch)  # a 2x2 patch grid: the architecture, cheaply
    with torch.inference_mode():
        for layer_id, layer in B._entry(name).layers.items():
            out = layer.make(net).eval()(x)
            assert out.dtype == torch.float32 and out.shape == (2, spec.feature_dims[layer_id])
            assert torch.isfinite(out).all()
        # The embedding is the model's own pooled output (class token / attention pool, then its head).
        expected = net.forward_head(net.forward_features(x))
        assert torch.allclose(B.TimmEmbedding(net)(x), expected)


@needs_timm
def test_clip_embedding_is_the_projected_512_d_image_embedding_and_dinov2_the_class_token():
    assert B.get_backbone("clip_vitb16").feature_dims[B.PENULTIMATE] == 512  # CLIP's projection kept
    assert B.get_backbone("dinov2_vits14").feature_dims == {B.PENULTIMATE: 384, "mid": 384}
    assert B.get_backbone("dinov2_vitb14").feature_dims[B.PENULTIMATE] == 768


# ============================================================================ preprocessing
@needs_timm
@pytest.mark.parametrize("name", MODERN)
def test_preprocessing_is_timms_pretrained_config(name):
    import timm

    cfg = timm.models.get_pretrained_cfg(B._entry(name).timm_model)
    prep = B.resolve_preprocessing(name)
    assert prep.input_size == cfg.input_size[-1]
    assert prep.resize_size == math.floor(cfg.input_size[-1] / cfg.crop_pct)
    assert prep.mean == pytest.approx(cfg.mean) and prep.std == pytest.approx(cfg.std)
    assert prep.interpolation == cfg.interpolation
    assert B.get_backbone(name).preprocessing == prep


@needs_timm
def test_preprocessing_follows_the_library_config_not_a_copy(monkeypatch):
    import timm

    original = timm.models.get_pretrained_cfg

    def changed(model_name):
        cfg = original(model_name)
        return cfg.__class__(**{**cfg.to_dict(), "mean": (0.1, 0.2, 0.3), "input_size": (3, 448, 448)})

    monkeypatch.setattr(timm.models, "get_pretrained_cfg", changed)
    prep = B.resolve_preprocessing("dinov2_vits14")
    assert prep.mean == pytest.approx((0.1, 0.2, 0.3)) and prep.input_size == 448
    assert B.resolve_preprocessing("dinov2_vits14").std == pytest.approx(B.IMAGENET_STD)
    assert B.resolve_preprocessing("siglip_vitb16").std == pytest.approx((0.5, 0.5, 0.5))


# ============================================================================ download once, then offline
@needs_timm
def test_weights_are_downloaded_once_with_size_and_progress_then_used_offline(monkeypatch):
    name = "dinov2_vits14"
    state = _random_state(name)
    body = _safetensors_bytes(state)
    url = B.modern_weights_url(name)
    hub = FakeHub({url: body})
    monkeypatch.setattr(urllib.request, "urlopen", hub)

    before = B.get_backbone(name)
    assert not before.offline and before.group == "download"
    assert before.status == f"download once ({B.describe_size(before.download_bytes)})"
    assert abs(before.download_bytes - len(body)) < 0.01 * len(body)  # the estimate is the file's size

    events = []
    model = B.build_feature_model(name, progress=events.append)
    notes = [e.note for e in events if e.note]
    assert len(notes) == 1 and B.describe_size(len(body)) in notes[0] and url in notes[0]  # size said first
    assert events.index(next(e for e in events if e.note)) < events.index(next(e for e in events if e.done))
    moves = [e for e in events if e.fraction is not None]
    assert moves[-1].fraction == pytest.approx(1.0) and moves[-1].unit == "MB"
    assert moves[-1].done == moves[-1].total == len(body) // 1_000_000
    cached = B.modern_weights_file(name)
    assert cached.is_file() and cached.is_relative_to(Path(B.cache_dir()))  # the app's platformdirs cache
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temporary file left

    # The downloaded weights are the ones in use.
    x = torch.rand(1, 3, 28, 28)
    reference = B._architecture(B._entry(name)).eval()
    reference.load_state_dict(state)
    with torch.inference_mode():
        assert torch.allclose(model(x), reference(x), atol=1e-5)

    # Second use: no network at all, and the registry says it works offline now.
    hub.online = False
    B.build_feature_model(name)
    after = B.get_backbone(name)
    assert hub.gets == [url] and after.offline and after.status == "works offline"
    assert str(cached) in after.availability


@needs_timm
def test_offline_without_the_file_says_in_one_line_how_to_get_it(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeHub({}, online=False))
    with pytest.raises(B.WeightsUnavailableError) as info:
        B.build_feature_model("dinov2_vitb14")
    message = str(info.value)
    assert "\n" not in message
    assert B.modern_weights_url("dinov2_vitb14") in message
    assert B.describe_size(B.download_size("dinov2_vitb14")) in message and "MB" in message
    assert "--weights FILE" in message and "name resolution" in message
    assert not B.modern_weights_file("dinov2_vitb14").exists()


@needs_timm
def test_an_interrupted_or_cancelled_download_leaves_nothing_in_the_cache(monkeypatch):
    name = "dinov2_vits14"
    body = _safetensors_bytes(_random_state(name))
    url = B.modern_weights_url(name)
    monkeypatch.setattr(urllib.request, "urlopen", FakeHub({url: body}, served=len(body) // 2))
    with pytest.raises(B.WeightsUnavailableError, match="stopped after"):
        B.fetch_weights(name)
    folder = B.modern_weights_file(name).parent
    assert not folder.exists() or list(folder.iterdir()) == []

    monkeypatch.setattr(urllib.request, "urlopen", FakeHub({url: body}))

    def cancel_midway(event):
        if event.done is not None and event.done >= 20:
            raise Cancelled("cancelled by user")

    with pytest.raises(Cancelled):
        B.fetch_weights(name, progress=cancel_midway)
    assert list(folder.iterdir()) == []


@needs_timm
def test_a_downloaded_page_that_is_not_weights_is_refused_and_removed(monkeypatch):
    url = B.modern_weights_url("clip_vitb16")
    monkeypatch.setattr(urllib.request, "urlopen", FakeHub({url: b"<html>rate limited</html>"}))
    with pytest.raises(B.WeightsUnavailableError, match="did not give a weights file"):
        B.fetch_weights("clip_vitb16")
    assert not B.modern_weights_file("clip_vitb16").exists()


@needs_timm
def test_huggingface_hubs_own_copy_is_used_without_downloading(monkeypatch, tmp_path):
    name = "dinov2_vits14"
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(_safetensors_bytes(_random_state(name)))
    monkeypatch.setattr(B, "_hf_hub_cached_file", lambda entry: copy if entry.name == name else None)
    monkeypatch.setattr(urllib.request, "urlopen", FakeHub({}, online=False))
    assert B.get_backbone(name).offline
    assert B.fetch_weights(name) == copy
    B.build_feature_model(name)


# ============================================================================ a user's weights file
@needs_timm
def test_a_user_weights_file_is_loaded_weights_only_like_the_torchvision_ones(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", FakeHub({}, online=False))  # never needed
    name = "dinov2_vits14"
    state = _random_state(name)
    pth = tmp_path / "dino.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, pth)
    safetensors_file = tmp_path / "dino.safetensors"
    safetensors_file.write_bytes(_safetensors_bytes(state))
    x = torch.rand(1, 3, 28, 28)
    reference = B._architecture(B._entry(name)).eval()
    reference.load_state_dict(state)
    for path in (pth, safetensors_file):
        spec = B.get_backbone(name, weights_path=path)
        assert spec.offline and spec.status == "works offline"
        with torch.inference_mode():
            assert torch.allclose(B.build_feature_model(name, weights_path=path)(x), reference(x), atol=1e-5)

    # Meta's original DINOv2 checkpoint layout (mask_token, no timm renames) is converted by timm's own filter.
    original = dict(state, mask_token=torch.zeros(1, state["cls_token"].shape[-1]))
    meta_file = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(original, meta_file)
    B.build_feature_model(name, weights_path=meta_file)

    wrong = tmp_path / "wrong.pth"
    torch.save(_random_state("siglip_vitb16"), wrong)
    with pytest.raises(B.WeightsFileError, match="does not fit backbone 'dinov2_vits14'"):
        B.build_feature_model(name, weights_path=wrong)
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": state, "optimizer": object.__new__(FakeHub)}, pickled)
    with pytest.raises(B.WeightsFileError, match="refused"):
        B.build_feature_model(name, weights_path=pickled)


# ============================================================================ without timm
def test_without_timm_the_entries_say_what_to_install(monkeypatch):
    monkeypatch.setattr(B, "has_timm", lambda: False)
    for name in MODERN:
        spec = B.get_backbone(name)
        assert not spec.offline and spec.group == "install" and spec.download_bytes is None
        assert spec.status == "needs pip install imgcluster-gui[modern]"
        assert spec.feature_dims[B.PENULTIMATE] > 0 and set(spec.feature_dims) == set(spec.layers)
        with pytest.raises(B.WeightsUnavailableError, match=r"pip install imgcluster-gui\[modern\]"):
            B.build_feature_model(name)
    assert B.get_backbone(B.DEFAULT_BACKBONE).status == "works offline"


# ============================================================================ the CLI
@needs_timm
def test_cli_backbones_lists_the_modern_encoders_as_download_once_with_their_size(capsys):
    assert cli.main(["backbones"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name in MODERN:
        size = B.describe_size(B.download_size(name))
        assert f"download once ({size})" in lines[name], lines[name]
    assert "works offline" in lines[f"{B.DEFAULT_BACKBONE}"]


@needs_timm
def test_a_damaged_cached_file_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeHub({}, online=False))
    cached = B.modern_weights_file("dinov2_vits14")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x00" * 100)  # e.g. a disk that filled up while another program copied it
    with pytest.raises(B.WeightsUnavailableError, match="are damaged; delete the file") as info:
        B.build_feature_model("dinov2_vits14")
    assert str(cached) in str(info.value)
