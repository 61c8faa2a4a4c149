"""Scanning folders full of bad input, decoding every image mode to RGB, and reading ground truth."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcluster_gui.core import dataset
from imgcluster_gui.core.dataset import (
    DatasetError,
    ImageLoadError,
    labels_from_csv,
    labels_from_subfolders,
    load_image,
    scan_folder,
)
from imgcluster_gui.core.progress import Cancelled


def _png_bytes(size=(8, 6), color=(10, 200, 30), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes(size=(64, 48), color=(200, 30, 30), **save_kwargs) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    # Noise makes the entropy-coded data long enough that a truncation cuts real scan data.
    pixels = np.clip(np.array(color) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", **save_kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header that claims a huge size, followed by a few bytes of pixel data (a 'bomb')."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """A folder with good images, broken files and things that are not images."""
    root = tmp_path / "photos"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / ".git").mkdir()
    (root / "cats" / "a.png").write_bytes(_png_bytes())
    (root / "cats" / "b.jpg").write_bytes(_jpeg_bytes())
    (root / "dogs" / "no_extension").write_bytes(_png_bytes())  # kept: content is a PNG
    (root / "dogs" / "fake.jpg").write_text("this is text, not a JPEG")  # skipped: content is text
    (root / "dogs" / "empty.png").write_bytes(b"")  # skipped: zero bytes
    (root / "notes.txt").write_text("hello")
    (root / "bomb.png").write_bytes(_png_declaring(100_000, 100_000))
    (root / ".git" / "object.png").write_bytes(_png_bytes())  # hidden folder: not entered
    (root / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble file: hidden
    return root


def _reasons(result) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in result.skipped}


def test_scan_keeps_images_by_content_and_explains_every_skip(messy_folder):
    result = scan_folder(messy_folder)
    assert [p.relative_to(messy_folder).as_posix() for p in result.paths] == [
        "cats/a.png",
        "cats/b.jpg",
        "dogs/no_extension",
    ]
    reasons = _reasons(result)
    assert "empty" in reasons["empty.png"]
    assert "not an image" in reasons["fake.jpg"] and "'.jpg'" in reasons["fake.jpg"]
    assert reasons["notes.txt"] == "not an image"
    assert "too large" in reasons["bomb.png"]
    assert "hidden folder" in reasons[".git"]
    assert "hidden file" in reasons["._a.png"]
    assert "object.png" not in reasons  # nothing inside .git is looked at
    assert result.root == messy_folder


def test_scan_is_deterministic_and_sorted(tmp_path):
    for name in ["b.png", "a.png", "c/z.png", "c/a.png", "B.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(_png_bytes())
    first = scan_folder(tmp_path).paths
    assert first == sorted(first)
    assert first == scan_folder(tmp_path).paths
    assert len(first) == 5


def test_non_recursive_and_extension_only_modes(messy_folder):
    top = scan_folder(messy_folder, recursive=False)
    assert top.paths == []  # only notes.txt, the bomb and hidden entries sit at the top
    by_name = scan_folder(messy_folder, check_content=False)
    names = [p.name for p in by_name.paths]
    # Trusting extensions keeps the fake and the empty .jpg/.png and loses the extension-less PNG.
    assert "fake.jpg" in names and "empty.png" in names and "no_extension" not in names


@pytest.mark.parametrize("case", ["missing", "file", "empty"])
def test_unusable_root_is_a_one_line_dataset_error(tmp_path, case):
    target = tmp_path / "x"
    if case == "file":
        target.write_text("not a folder")
    elif case == "empty":
        target.mkdir()
    with pytest.raises(DatasetError) as info:
        scan_folder(target)
    message = str(info.value)
    assert "\n" not in message and str(target) in message
    assert {"missing": "not found", "file": "is a file", "empty": "empty"}[case] in message


def test_symlink_loop_ends_and_is_reported(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "img.png").write_bytes(_png_bytes())
    os.symlink(root, root / "sub" / "loop")  # sub/loop -> root: a cycle
    os.symlink(root / "sub", root / "alias")  # a second way into sub
    default = scan_folder(root)
    assert [p.name for p in default.paths] == ["img.png"]
    assert "not followed" in _reasons(default)["loop"]
    followed = scan_folder(root, follow_symlinks=True)
    assert [p.name for p in followed.paths] == ["img.png"]  # sub is entered once, by whichever way comes first
    reasons = _reasons(followed)
    assert "already scanned" in reasons["loop"]
    assert any("already scanned" in r for r in reasons.values())


def test_broken_symlink_and_fifo_are_skipped(tmp_path):
    (tmp_path / "ok.png").write_bytes(_png_bytes())
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    os.mkfifo(tmp_path / "pipe.png")  # opening a FIFO would block the scan forever
    os.symlink(tmp_path / "ok.png", tmp_path / "link.png")  # a link to a file is kept
    result = scan_folder(tmp_path)
    assert [p.name for p in result.paths] == ["link.png", "ok.png"]
    reasons = _reasons(result)
    assert reasons["dangling.png"] == "broken symbolic link"
    assert reasons["pipe.png"] == "not a regular file"


def test_unicode_and_non_utf8_names_are_kept_and_loadable(tmp_path):
    (tmp_path / "café_日本.png").write_bytes(_png_bytes())
    raw_name = os.fsencode(tmp_path) + b"/raw_\xff\xfe.png"  # not valid UTF-8 (possible on Linux)
    with open(raw_name, "wb") as fh:
        fh.write(_png_bytes(color=(1, 2, 3)))
    result = scan_folder(tmp_path)
    assert len(result.paths) == 2
    assert sorted(os.fsencode(p.name) for p in result.paths) == sorted([b"raw_\xff\xfe.png", "café_日本.png".encode()])
    for path in result.paths:
        assert load_image(path).mode == "RGB"


def test_permission_denied_file_and_folder_are_reported_not_fatal(tmp_path, monkeypatch):
    # Tests may run as root, for whom chmod 000 changes nothing: simulate the OS refusing instead.
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.png").write_bytes(_png_bytes())
    (tmp_path / "secret.png").write_bytes(_png_bytes())
    (tmp_path / "fine.png").write_bytes(_png_bytes())
    real_open, real_scandir = open, os.scandir

    def refusing_open(path, *args, **kwargs):
        if Path(path).name == "secret.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def refusing_scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(dataset, "open", refusing_open, raising=False)
    monkeypatch.setattr(dataset.os, "scandir", refusing_scandir)
    result = scan_folder(tmp_path)
    assert [p.name for p in result.paths] == ["fine.png"]
    reasons = _reasons(result)
    assert reasons["secret.png"] == "permission denied"
    assert "permission denied" in reasons["locked"]
    with pytest.raises(ImageLoadError, match="permission denied"):
        load_image(tmp_path / "secret.png")


def test_scan_reports_progress_and_can_be_cancelled(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes(_png_bytes())
    seen = []
    scan_folder(tmp_path, progress=lambda e: seen.append(e.fraction) if e.fraction is not None else None)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)

    def cancel(event):
        if event.fraction:
            raise Cancelled()

    with pytest.raises(Cancelled):
        scan_folder(tmp_path, progress=cancel)


# ---------------------------------------------------------------- load_image


def test_truncated_png_and_jpeg_raise_image_load_error(tmp_path):
    png = _png_bytes(size=(200, 200))
    jpeg = _jpeg_bytes(size=(200, 200))
    (tmp_path / "t.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "t.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    for name in ("t.png", "t.jpg"):
        assert scan_folder(tmp_path).paths  # headers are intact: the scan keeps them (cheap check)
        with pytest.raises(ImageLoadError, match="truncated"):
            load_image(tmp_path / name)


def test_not_an_image_missing_and_folder_give_reasons(tmp_path):
    (tmp_path / "fake.jpg").write_text("text")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "fake.jpg")
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_is_rejected_without_touching_pillow_globals(tmp_path):
    limit_before = Image.MAX_IMAGE_PIXELS
    (tmp_path / "bomb.png").write_bytes(_png_declaring(100_000, 100_000))
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(tmp_path / "bomb.png")
    (tmp_path / "small.png").write_bytes(_png_bytes(size=(20, 20)))
    with pytest.raises(ImageLoadError, match="20x20"):
        load_image(tmp_path / "small.png", max_pixels=100)
    assert "too large" in _reasons(scan_folder(tmp_path, max_pixels=100))["small.png"]
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 1)  # red; every other pixel is index 0 = black, declared transparent
    im.save(tmp_path / "p.png", transparency=0)
    rgb = load_image(tmp_path / "p.png")
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 0, 0)
    assert rgb.getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize(
    "mode,color,expected",
    [
        ("RGBA", (0, 0, 255, 0), (255, 255, 255)),  # fully transparent blue -> white
        ("RGBA", (0, 0, 255, 255), (0, 0, 255)),
        ("LA", (0, 128), (127, 127, 127)),  # half-transparent black on white -> mid grey
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, color, expected):
    Image.new(mode, (3, 3), color).save(tmp_path / "x.png")
    pixel = load_image(tmp_path / "x.png").getpixel((1, 1))
    assert all(abs(a - b) <= 1 for a, b in zip(pixel, expected)), pixel


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", "JPEG", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    r, g, b = load_image(tmp_path / "cmyk.jpg").getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta+yellow full = red


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = np.asarray(load_image(tmp_path / "deep.png"))
    assert rgb.shape == (1, 4, 3)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])  # clipping would give 0, 255, 255, 255


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # stored left half red
    pixels[:, 20:] = (0, 0, 255)  # stored right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", "JPEG", quality=95, exif=exif.tobytes())
    upright = load_image(tmp_path / "rot.jpg")
    assert upright.size == (20, 40)  # portrait once rotated
    top, bottom = upright.getpixel((10, 5)), upright.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the stored left edge is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_draft_decodes_large_jpeg_at_reduced_size(tmp_path):
    (tmp_path / "big.jpg").write_bytes(_jpeg_bytes(size=(800, 600)))
    full = load_image(tmp_path / "big.jpg")
    small = load_image(tmp_path / "big.jpg", draft_size=(100, 100))
    assert full.size == (800, 600)
    assert small.size[0] < 800 and small.size[0] >= 100 and small.size[1] >= 100
    # A PNG has no draft mode: the size asked for is ignored, the image is still whole.
    (tmp_path / "a.png").write_bytes(_png_bytes(size=(300, 200)))
    assert load_image(tmp_path / "a.png", draft_size=(50, 50)).size == (300, 200)


# ---------------------------------------------------------------- ground truth


def test_labels_from_subfolders(tmp_path):
    paths = [
        tmp_path / "cats" / "a.png",
        tmp_path / "dogs" / "deep" / "b.png",
        tmp_path / "c.png",
        Path("/elsewhere/d.png"),
    ]
    assert labels_from_subfolders(tmp_path, paths) == ["cats", "dogs", None, None]
    assert labels_from_subfolders(tmp_path, [tmp_path / "a.png", tmp_path / "b.png"]) is None


def test_labels_from_csv_relative_absolute_bom_and_semicolons(tmp_path):
    images = [tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "b.png", tmp_path / "imgs" / "c.png"]
    csv_file = tmp_path / "truth.csv"
    csv_file.write_text(f"\ufeffPath;Label\nimgs/a.png;cat\n{images[1]};dog\n", encoding="utf-8")
    assert labels_from_csv(csv_file, images) == ["cat", "dog", None]


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "empty"),
        ("file,class_name\na.png,cat\n", "header row with columns 'path' and 'label'"),
        ("path,label\na.png,cat\na.png,dog\n", "line 3"),
        ("path,label,extra\n,cat,1\n", "empty path"),
        ("path,label,extra\na.png\n", "line 2"),
    ],
)
def test_malformed_labels_csv_is_a_clear_error(tmp_path, content, message):
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(content)
    with pytest.raises(DatasetError, match=message):
        labels_from_csv(csv_file, [tmp_path / "a.png"])
    with pytest.raises(DatasetError, match="not found"):
        labels_from_csv(tmp_path / "missing.csv", [])


@pytest.mark.integration
def test_scan_and_labels_on_a_real_dataset(shared_dataset):
    root = shared_dataset("orl")
    result = scan_folder(root)
    assert len(result.paths) == 400 and not result.skipped
    labels = labels_from_subfolders(root, result.paths)
    assert len(set(labels)) == 40
    assert load_image(result.paths[0]).mode == "RGB"


# ------------------------------------------------------------------ issue 10: corrupt data, shapes, reasons


def _png_with(width: int, height: int, idat: bytes, ihdr_crc: int | None = None, idat_crc: int | None = None) -> bytes:
    """A PNG with a valid (or deliberately broken) header and the given IDAT payload."""

    def chunk(kind: bytes, data: bytes, crc: int | None) -> bytes:
        real = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", real if crc is None else crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr, ihdr_crc)
        + chunk(b"IDAT", idat, idat_crc)
        + chunk(b"IEND", b"", None)
    )


def test_corrupt_png_pixel_data_is_an_error_never_a_black_image(tmp_path):
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    rows = b"".join(b"\x00" + rng.integers(0, 256, 48, dtype=np.uint8).tobytes() for _ in range(16))
    compressed = zlib.compress(rows)
    cases = {
        "garbage.png": _png_with(16, 16, garbage),  # the header is fine; the pixel data is noise
        "garbage_bad_crc.png": _png_with(16, 16, garbage, idat_crc=1),
        "half_stream.png": _png_with(16, 16, compressed[: len(compressed) // 2]),  # IDAT cut short
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    result = scan_folder(tmp_path)
    assert sorted(p.name for p in result.paths) == sorted(cases)  # a header parse cannot tell: the decode must
    for name in cases:
        with pytest.raises(ImageLoadError, match=r"^(corrupt image data|truncated image file): ") as info:
            load_image(tmp_path / name)
        assert "broken data stream" in str(info.value) or "truncated" in str(info.value)
    (tmp_path / "good.png").write_bytes(_png_with(16, 16, compressed))
    assert np.asarray(load_image(tmp_path / "good.png")).max() > 0


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A few-hundred-byte JPEG whose frame header claims ``width`` x ``height``."""
    data = bytearray(_jpeg_bytes(size=(8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_extreme_aspect_ratio_is_refused_from_the_header_with_bounded_memory(tmp_path):
    import tracemalloc

    strip = io.BytesIO()
    Image.new("RGB", (1, 10_000), (90, 90, 90)).save(strip, "PNG")  # a real, decodable 1x10000 strip
    files = {
        "tall.png": _png_declaring(1, 60_000),
        "wide.jpg": _jpeg_declaring(65_000, 2),
        "strip.png": strip.getvalue(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert len(data) < 2000  # tiny files that would become multi-GiB pictures at the resize
    (tmp_path / "panorama.png").write_bytes(_png_bytes(size=(500, 10)))  # 50:1 is still an image
    result = scan_folder(tmp_path)
    assert [p.name for p in result.paths] == ["panorama.png"]
    reasons = _reasons(result)
    tracemalloc.start()
    try:
        for name in files:
            assert reasons[name].startswith("extreme aspect ratio:") and "50:1" in reasons[name]
            with pytest.raises(ImageLoadError, match="extreme aspect ratio"):
                load_image(tmp_path / name, draft_size=(256, 256))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * 1024 * 1024
    assert load_image(tmp_path / "panorama.png").size == (500, 10)


def test_corrupt_headers_and_links_to_fifos_get_their_own_reasons(tmp_path):
    rows = zlib.compress(b"\x00" * 49 * 16)
    (tmp_path / "bad_crc.png").write_bytes(_png_with(16, 16, rows, ihdr_crc=1))
    (tmp_path / "zero_width.png").write_bytes(_png_with(0, 16, rows))
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "pipe", tmp_path / "to_pipe.png")
    reasons = _reasons(scan_folder(tmp_path))
    assert reasons["bad_crc.png"].startswith("corrupt PNG header:") and "checksum" in reasons["bad_crc.png"]
    assert reasons["zero_width.png"] == "image has no pixels (0x16)"
    assert reasons["to_pipe.png"] == "symbolic link to a FIFO (named pipe), not a regular file"
    with pytest.raises(ImageLoadError, match="corrupt PNG header: .*checksum"):
        load_image(tmp_path / "bad_crc.png")
    with pytest.raises(ImageLoadError, match=r"no pixels \(0x16\)"):
        load_image(tmp_path / "zero_width.png")


def test_pillow_warnings_name_the_file(tmp_path, monkeypatch):
    name = "photo\x1b[2J.png"  # the escape sequence must reach no terminal, even inside a warning
    (tmp_path / name).write_bytes(_png_bytes(size=(12, 12)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 144 pixels: Pillow warns, refuses only above 200
    for decode in (lambda: load_image(tmp_path / name), lambda: scan_folder(tmp_path)):
        with pytest.warns(Image.DecompressionBombWarning) as caught:
            decode()
        messages = [str(w.message) for w in caught]
        assert all("photo\\x1b[2J.png: Image size (144 pixels)" in m for m in messages), messages
        assert not any("\x1b" in m for m in messages)
