"""Phone and camera formats (core/formats.py): HEIC/HEIF and AVIF, camera RAW through rawpy, sidecars on export.

Every file here is real: HEIC written by pillow-heif, AVIF by Pillow, and DNGs built byte by byte
(``tests/robustness/corpus.py``'s ``minimal_dng``: a 16-bit Bayer mosaic LibRaw develops, optionally with an
embedded JPEG preview as cameras write them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from imgcluster_gui.core import formats
from imgcluster_gui.core.dataset import IMAGE_EXTENSIONS, ImageLoadError, load_image, scan_folder
from imgcluster_gui.core.export import export_folders, undo_export
from imgcluster_gui.core.session.persistence import image_file_problem
from tests.robustness.corpus import minimal_dng

pytest.importorskip("pillow_heif")
rawpy = pytest.importorskip("rawpy")

RED = (210, 20, 30)


def _picture(size: tuple[int, int] = (60, 40)) -> Image.Image:
    """A picture whose left half is dark and right half bright, with a red square top-left (orientation shows)."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, size[0] // 2 :] = 220
    pixels[: size[1] // 4, : size[0] // 4] = RED
    return Image.fromarray(pixels)


def _save_heic(path: Path, orientation: int = 1, size: tuple[int, int] = (60, 40)) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    _picture(size).save(path, "HEIF", exif=exif.tobytes(), quality=95)
    return path


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


# ---------------------------------------------------------------------------- HEIC / HEIF / AVIF


def test_heic_is_scanned_and_decoded_instead_of_skipped(tmp_path):
    _save_heic(tmp_path / "IMG_0001.HEIC")
    _picture().save(tmp_path / "IMG_0001.HEIF.jpg")  # its JPEG twin, for the colours
    scan = scan_folder(tmp_path)
    assert [p.name for p in scan.paths] == ["IMG_0001.HEIC", "IMG_0001.HEIF.jpg"] and scan.skipped == []
    heic = load_image(scan.paths[0])
    assert heic.mode == "RGB" and heic.size == (60, 40)
    assert _mean_difference(heic, load_image(scan.paths[1])) < 12  # the same picture, through HEVC and JPEG


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_heic_orientation_is_applied_once_like_a_jpeg(tmp_path, orientation):
    heic = load_image(_save_heic(tmp_path / "turned.heic", orientation))
    jpeg_path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    _picture().save(jpeg_path, "JPEG", exif=exif.tobytes(), quality=95)
    jpeg = load_image(jpeg_path)
    assert heic.size == jpeg.size == ((40, 60) if orientation in (6, 8) else (60, 40))
    assert _mean_difference(heic, jpeg) < 12  # turned the same way (a double turn would differ by ~100)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow reads no AVIF")
def test_avif_is_scanned_and_decoded(tmp_path):
    _picture().save(tmp_path / "picture.avif", "AVIF", quality=90)
    scan = scan_folder(tmp_path)
    assert [p.name for p in scan.paths] == ["picture.avif"]
    assert load_image(scan.paths[0]).size == (60, 40)


def test_a_heic_cut_short_is_skipped_with_a_heif_reason(tmp_path):
    data = _save_heic(tmp_path / "whole.heic").read_bytes()
    (tmp_path / "whole.heic").unlink()
    (tmp_path / "cut.heic").write_bytes(data[: len(data) // 2])
    skipped = scan_folder(tmp_path).skipped
    assert [s.reason.split(" (")[0] for s in skipped] == ["corrupt or truncated HEIF file"]
    with pytest.raises(ImageLoadError, match="corrupt or truncated HEIF file"):
        load_image(tmp_path / "cut.heic")


def test_the_heic_size_limit_is_read_from_the_header_before_decoding(tmp_path):
    path = _save_heic(tmp_path / "big.heic", size=(64, 48))
    [skipped] = scan_folder(tmp_path, max_pixels=1000).skipped
    assert skipped.reason.startswith("image too large: 64x48")
    with pytest.raises(ImageLoadError, match="image too large"):
        load_image(path, max_pixels=1000)


# ---------------------------------------------------------------------------- camera RAW


def test_a_dng_without_a_preview_is_developed_at_half_size(tmp_path):
    path = tmp_path / "IMG_0002.DNG"
    path.write_bytes(minimal_dng(96, 64))
    assert [p.name for p in scan_folder(tmp_path).paths] == ["IMG_0002.DNG"]
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (48, 32)
    grey = np.asarray(image.convert("L"), np.float32)
    assert grey[:, :4].mean() + 60 < grey[:, -4:].mean()  # the mosaic's left-to-right ramp, developed


def test_a_raw_is_read_by_libraw_not_as_the_small_tiff_pillow_would_take(tmp_path):
    path = tmp_path / "camera.dng"
    path.write_bytes(minimal_dng(96, 64, preview=Image.new("RGB", (32, 24), RED)))
    with Image.open(path) as tiff:
        assert tiff.size == (32, 24)  # what Pillow sees: the preview in IFD0
    assert load_image(path).size == (48, 32)  # LibRaw: the sensor, developed (the 32x24 preview is too small)


def test_the_embedded_jpeg_preview_is_used_when_it_is_large_enough(tmp_path):
    path = tmp_path / "camera.nef.dng"
    path.write_bytes(minimal_dng(96, 64, preview=Image.new("RGB", (64, 48), RED)))
    for draft in (None, (40, 40), (48, 48)):
        image = load_image(path, draft_size=draft)
        assert image.size == (64, 48)
        assert np.abs(np.asarray(image, np.float32) - RED).mean() < 8, draft  # the preview's red, no demosaic
    developed = load_image(path, draft_size=(256, 256))  # larger than the preview: the sensor data instead
    assert developed.size == (48, 32) and np.asarray(developed)[..., 0].mean() < 180


def test_the_camera_orientation_turns_both_the_preview_and_the_developed_image(tmp_path):
    (tmp_path / "preview.dng").write_bytes(minimal_dng(96, 64, orientation=6, preview=_picture((64, 48))))
    (tmp_path / "sensor.dng").write_bytes(minimal_dng(96, 64, orientation=6))
    preview = load_image(tmp_path / "preview.dng")
    assert preview.size == (48, 64)
    # Turned 90 degrees clockwise: the picture's top-left red square is now at the top right.
    assert np.abs(np.asarray(preview)[2, -2].astype(float) - RED).mean() < 30
    sensor = load_image(tmp_path / "sensor.dng")
    assert sensor.size == (32, 48)
    grey = np.asarray(sensor.convert("L"), np.float32)
    assert grey[:4].mean() + 60 < grey[-4:].mean()  # the ramp now runs top to bottom


def test_bad_raw_files_are_skipped_with_reasons_that_name_the_problem(tmp_path):
    good = minimal_dng()
    (tmp_path / "random.cr2").write_bytes(os.urandom(4096))
    (tmp_path / "strip.arw.dng").write_bytes(minimal_dng(declared=(4000, 40)))
    (tmp_path / "bomb.dng").write_bytes(minimal_dng(declared=(60_000, 60_000)))
    (tmp_path / "cut.dng").write_bytes(good[:-1500])
    scan = scan_folder(tmp_path)
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert reasons["random.cr2"] == "not a camera RAW file LibRaw can read (unknown or damaged header)"
    assert reasons["strip.arw.dng"].startswith("extreme aspect ratio: 4000x40")
    assert reasons["bomb.dng"].startswith("image too large: 60000x60000")
    assert [p.name for p in scan.paths] == ["cut.dng"]  # its header is whole: the decoder finds the damage
    with pytest.raises(ImageLoadError, match=r"^truncated or corrupt camera RAW data \(.+\)$"):
        load_image(tmp_path / "cut.dng")
    for name in reasons:  # the decoder refuses them the same way, never with another exception
        with pytest.raises(ImageLoadError):
            load_image(tmp_path / name)
    if hasattr(os, "mkfifo"):  # LibRaw is handed the file only once it is known to be a regular one
        os.mkfifo(tmp_path / "pipe.cr3")
        with pytest.raises(ImageLoadError, match="FIFO"):
            load_image(tmp_path / "pipe.cr3")


def test_without_rawpy_raw_files_are_skipped_with_the_install_hint(tmp_path, monkeypatch):
    (tmp_path / "IMG_0003.CR3").write_bytes(minimal_dng())
    _picture().save(tmp_path / "photo.png")
    monkeypatch.setitem(sys.modules, "rawpy", None)  # `import rawpy` now fails as on a default install
    assert not formats.raw_available()
    scan = scan_folder(tmp_path)
    assert [p.name for p in scan.paths] == ["photo.png"]
    assert [(Path(s.path).name, s.reason) for s in scan.skipped] == [("IMG_0003.CR3", formats.RAW_MISSING_REASON)]
    assert formats.RAW_MISSING_REASON == "camera RAW needs the optional 'raw' extra: pip install imgcluster-gui[raw]"
    with pytest.raises(ImageLoadError) as error:
        load_image(tmp_path / "IMG_0003.CR3")
    assert str(error.value) == formats.RAW_MISSING_REASON


def test_a_raw_file_whose_name_is_not_utf8_is_read_all_the_same(tmp_path):
    name = os.fsdecode(b"caf\xe9-latin1.dng")  # a Latin-1 name on a UTF-8 system: surrogate escapes in Python
    (tmp_path / name).write_bytes(minimal_dng(96, 64))
    scan = scan_folder(tmp_path)
    assert scan.skipped == [] and [p.name for p in scan.paths] == [name]
    assert load_image(scan.paths[0]).size == (48, 32)


def test_every_raw_and_heif_extension_is_an_image_extension():
    assert formats.RAW_EXTENSIONS | formats.HEIF_EXTENSIONS | formats.AVIF_EXTENSIONS <= IMAGE_EXTENSIONS
    assert {".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf"} <= formats.RAW_EXTENSIONS
    table = {f.name: f for f in formats.supported_formats()}
    assert table["HEIC/HEIF"].available and table["camera RAW"].available
    assert "raw" in table["camera RAW"].needs


# ---------------------------------------------------------------------------- one run, export


@pytest.mark.slow  # a real backbone on a dozen images
def test_a_folder_of_mixed_formats_is_one_run_of_features(tmp_path):
    from imgcluster_gui.core.features.extract import extract_features

    _picture().save(tmp_path / "a.jpg")
    _picture().save(tmp_path / "b.png")
    _save_heic(tmp_path / "c.heic", orientation=6)
    (tmp_path / "d.dng").write_bytes(minimal_dng(96, 64))
    (tmp_path / "e.dng").write_bytes(minimal_dng(96, 64, preview=_picture((64, 48))))
    if features.check("avif"):
        _picture().save(tmp_path / "f.avif")
    scan = scan_folder(tmp_path)
    assert scan.skipped == [] and len(scan.paths) == (6 if features.check("avif") else 5)
    result = extract_features(scan.paths, cache=False, device="cpu", num_workers=0)
    assert result.failed == [] and result.features.shape[0] == len(scan.paths)
    assert np.isfinite(result.features).all()


def test_folder_export_keeps_raw_and_heic_bytes_and_takes_the_xmp_sidecars_along(tmp_path):
    source = tmp_path / "card"
    (source / "day2").mkdir(parents=True)
    raw_bytes = minimal_dng()
    raws = [source / "IMG_0001.CR2", source / "day2" / "IMG_0001.CR2"]  # the same name twice (two days)
    for raw in raws:
        raw.write_bytes(raw_bytes)
    (source / "IMG_0001.CR2.xmp").write_text("<x:xmpmeta darktable/>")
    (source / "day2" / "IMG_0001.xmp").write_text("<x:xmpmeta lightroom/>")
    heic = _save_heic(source / "phone.heic")
    jpeg = source / "IMG_0001.JPG"  # a RAW+JPEG pair: the .xmp belongs to the RAW only
    _picture().save(jpeg)
    (source / "IMG_0001.xmp").write_text("<x:xmpmeta shared/>")
    paths = [*raws, heic, jpeg]
    target = tmp_path / "sorted"
    result = export_folders(target, paths, np.zeros(len(paths), int), {0: "Trip"})
    assert result.failed == [] and result.n_done == 4  # images; the sidecars go along without counting
    folder = target / "Trip"
    assert (folder / "IMG_0001.CR2").read_bytes() == raw_bytes
    assert (folder / "IMG_0001_1.CR2").read_bytes() == raw_bytes
    assert (folder / "phone.heic").read_bytes() == heic.read_bytes()
    assert (folder / "IMG_0001.CR2.xmp").read_text() == "<x:xmpmeta darktable/>"
    assert (folder / "IMG_0001_1.xmp").read_text() == "<x:xmpmeta lightroom/>"  # renamed with its RAW
    assert (folder / "IMG_0001.xmp").read_text() == "<x:xmpmeta shared/>"  # the first RAW's Lightroom-style one
    assert (folder / "IMG_0001.JPG").read_bytes() == jpeg.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "IMG_0001.CR2",
            "IMG_0001.CR2.xmp",
            "IMG_0001.xmp",
            "IMG_0001_1.CR2",
            "IMG_0001_1.xmp",
            "phone.heic",
            "IMG_0001.JPG",
        ]
    )
    undone = undo_export(result.manifest_path)
    assert undone.problems == [] and not folder.exists()  # the copies, sidecars included, are gone again
    assert (source / "IMG_0001.CR2.xmp").exists() and (source / "day2" / "IMG_0001.xmp").exists()


def test_moving_a_raw_file_moves_its_sidecar_and_undo_puts_both_back(tmp_path):
    source = tmp_path / "card"
    source.mkdir()
    raw = source / "DSC_0001.NEF"
    raw.write_bytes(minimal_dng())
    sidecar = source / "DSC_0001.NEF.xmp"
    sidecar.write_text("<x:xmpmeta/>")
    result = export_folders(tmp_path / "out", [raw], np.zeros(1, int), mode="move", allow_move=True)
    assert result.failed == [] and not raw.exists() and not sidecar.exists()
    assert sorted(p.name for p in (tmp_path / "out" / "Cluster 0").iterdir()) == ["DSC_0001.NEF", "DSC_0001.NEF.xmp"]
    assert undo_export(result.manifest_path).problems == []
    assert raw.read_bytes() == minimal_dng() and sidecar.read_text() == "<x:xmpmeta/>"


def test_raw_files_are_exportable_images_and_random_bytes_named_raw_are_not(tmp_path):
    (tmp_path / "good.raf").write_bytes(minimal_dng())
    (tmp_path / "bad.orf").write_bytes(os.urandom(2048))
    assert image_file_problem(tmp_path / "good.raf") is None
    assert (
        image_file_problem(tmp_path / "bad.orf") == "not a camera RAW file LibRaw can read (unknown or damaged header)"
    )


def test_sidecar_names_follow_the_renamed_image():
    assert formats.sidecar_name(Path("IMG_1.CR2.xmp"), "IMG_1.CR2", "IMG_1_2.CR2") == "IMG_1_2.CR2.xmp"
    assert formats.sidecar_name(Path("IMG_1.XMP"), "IMG_1.CR2", "IMG_1_2.CR2") == "IMG_1_2.XMP"


_FORK_AFTER_DEVELOP = """
import multiprocessing, queue, sys
from imgcluster_gui.core.dataset import load_image

def develop(path, results):
    results.put(load_image(path).size)

if __name__ == "__main__":
    path = sys.argv[1]
    assert load_image(path).size == (300, 200)  # LibRaw's OpenMP on this (the main) thread first
    context = multiprocessing.get_context("fork")  # how a DataLoader starts its workers on Linux
    results = context.Queue()
    worker = context.Process(target=develop, args=(path, results))
    worker.start()
    try:
        print(results.get(timeout=120))  # a hang here: OpenMP's pool was forked without its threads
    except queue.Empty:
        print("hung")
    finally:
        worker.join(5)
        if worker.is_alive():
            worker.kill()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork-started workers exist only where fork does")
def test_a_worker_forked_after_a_develop_on_the_main_thread_can_develop_too(tmp_path):
    # In a fresh interpreter: what this process ran before (torch's own OpenMP pool, started by other tests)
    # is not what is tested here.
    import subprocess

    path = tmp_path / "big.dng"
    path.write_bytes(minimal_dng(600, 400))
    script = tmp_path / "fork_after_develop.py"
    script.write_text(_FORK_AFTER_DEVELOP)
    proc = subprocess.run(
        [sys.executable, str(script), str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "(300, 200)", "the forked worker hung in LibRaw's develop"
