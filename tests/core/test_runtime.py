"""The execution plan (engine, batch, decoding workers) and the OpenVINO engine's converted-model cache."""

from __future__ import annotations

import pytest
import torch

from imgcluster_gui.core.features import runtime
from imgcluster_gui.core.features.runtime import (
    COMPILE,
    EAGER,
    LARGE_FILE_BYTES,
    OPENVINO,
    OPENVINO_MIN_IMAGES,
    OpenVinoNetwork,
    choose_plan,
    engine_cache_file,
    mean_file_bytes,
)

CPU = torch.device("cpu")
needs_openvino = pytest.mark.skipif(not runtime.openvino_available(), reason="openvino is not installed")


@needs_openvino
def test_a_few_images_run_eagerly_a_folder_runs_on_openvino():
    small = choose_plan(OPENVINO_MIN_IMAGES - 1, CPU, model_key="k", cores=2)
    assert (small.engine, small.batch_size) == (EAGER, 1)  # converting would cost more than it saves
    folder = choose_plan(5000, CPU, model_key="k", cores=2)
    assert (folder.engine, folder.batch_size, folder.channels_last) == (OPENVINO, 8, False)
    assert folder.num_workers == 1  # small files: one decoding worker is enough, the network gets the cores


@needs_openvino
def test_a_network_already_converted_runs_on_openvino_even_for_one_image():
    path = engine_cache_file("some|model|key")
    path.parent.mkdir(parents=True)
    path.write_text("<net/>")
    plan = choose_plan(1, CPU, model_key="some|model|key", cores=2)
    assert plan.engine == OPENVINO and "on disk" in plan.reason
    assert choose_plan(1, CPU, model_key="another key", cores=2).engine == EAGER


def test_without_openvino_only_a_large_folder_is_compiled(monkeypatch):
    monkeypatch.setattr(runtime, "openvino_available", lambda: False)
    monkeypatch.setattr(runtime, "compiler_available", lambda: True)
    assert choose_plan(500, CPU, cores=2).engine == EAGER  # 20-45 s of compiling does not pay back
    assert choose_plan(5000, CPU, cores=2).engine == COMPILE
    monkeypatch.setattr(runtime, "compiler_available", lambda: False)
    assert choose_plan(5000, CPU, cores=2).engine == EAGER  # no C++ compiler: nothing to compile with
    with pytest.warns(UserWarning, match="OpenVINO is not installed"):
        assert choose_plan(5000, CPU, engine=OPENVINO, cores=2).engine == EAGER


def test_large_files_get_a_decoding_worker_per_core_and_tiny_runs_none():
    photos = choose_plan(400, CPU, engine=EAGER, mean_bytes=LARGE_FILE_BYTES * 6, cores=4)
    assert photos.num_workers == 4 and "large files" in photos.reason
    assert choose_plan(5000, CPU, engine=EAGER, mean_bytes=20_000, cores=4).num_workers == 1
    # Forking a worker costs more than decoding a few hundred small files here.
    assert choose_plan(400, CPU, engine=EAGER, mean_bytes=20_000, cores=4).num_workers == 0
    assert choose_plan(5, CPU, engine=EAGER, mean_bytes=LARGE_FILE_BYTES * 6, cores=4).num_workers == 0
    assert choose_plan(400, CPU, engine=EAGER, cores=1).num_workers == 0


def test_explicit_choices_are_kept_and_unknown_engines_refused():
    plan = choose_plan(400, CPU, engine=EAGER, batch_size=16, num_workers=3, channels_last=True, cores=2)
    assert (plan.batch_size, plan.num_workers, plan.channels_last) == (16, 3, True)
    with pytest.raises(ValueError, match="unknown engine"):
        choose_plan(10, CPU, engine="tensorrt")


def test_gpu_plan_uses_large_batches_channels_last_and_decodes_jpegs_on_the_gpu():
    # Planning needs no GPU: only the device's type is read.
    plan = choose_plan(10_000, torch.device("cuda"), cores=16)
    assert plan.engine == EAGER and plan.batch_size >= 64 and plan.channels_last and plan.decode_on_device
    assert plan.num_workers == 8
    with pytest.warns(UserWarning, match="CPU only"):
        assert choose_plan(10, torch.device("cuda"), engine=OPENVINO).engine == EAGER
    mps = choose_plan(10, torch.device("mps"))
    assert not mps.decode_on_device and not mps.channels_last


def test_mean_file_bytes_skips_missing_files(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "b").write_bytes(b"x" * 300)
    assert mean_file_bytes([tmp_path / "a", tmp_path / "b", tmp_path / "gone"]) == 200
    assert mean_file_bytes([]) == 0.0


@needs_openvino
def test_openvino_matches_eager_and_a_second_start_reads_the_converted_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).eval()
    x = torch.randn(5, 3, 32, 32)
    first = OpenVinoNetwork(lambda: net, 32, model_key="tiny|net")
    assert not first.from_disk and engine_cache_file("tiny|net").is_file()
    with torch.inference_mode():
        expected = net(x)
    torch.testing.assert_close(first(x), expected, rtol=1e-4, atol=1e-5)

    def must_not_build() -> torch.nn.Module:
        raise AssertionError("the converted network is on disk: nothing to build")

    second = OpenVinoNetwork(must_not_build, 32, model_key="tiny|net")
    assert second.from_disk
    torch.testing.assert_close(second(x[:2]), expected[:2], rtol=1e-4, atol=1e-5)  # the batch is dynamic


@pytest.mark.skipif(not runtime.openvino_available(), reason="OpenVINO is not installed")
def test_prepare_converts_once_and_a_first_small_run_then_uses_the_fast_engine(tmp_path, sample_images):
    """`imgcluster prepare` (run by `make run`'s install) converts ahead; a first run then skips the conversion."""
    from imgcluster_gui.cli import main
    from imgcluster_gui.core.features.extract import extract_features, prepare_networks

    assert main(["prepare", "--backbone", "efficientnet_lite0"]) == 0
    assert prepare_networks(["efficientnet_lite0"]) == {"efficientnet_lite0": "already converted"}
    paths = sorted(sample_images.rglob("*.png"))[:4]
    result = extract_features(paths, backbone="efficientnet_lite0", cache=False)
    assert result.engine == "openvino"  # 4 images alone would run eagerly (nothing converted yet)
    eager = extract_features(paths, backbone="efficientnet_lite0", cache=False, engine="eager")
    cosine = (result.features * eager.features).sum(1) / (
        (result.features**2).sum(1) ** 0.5 * (eager.features**2).sum(1) ** 0.5
    )
    assert cosine.min() >= 0.999
