"""Crafted session files cannot hurt: size limits, nesting, array headers, paths, FIFOs (issue 10 items 5, 6)."""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pytest
from PIL import Image

from imgcluster_gui.core.dataset import ImageLoadError, load_image
from imgcluster_gui.core.session import ClusterSession, SessionFileError, load_workspace
from imgcluster_gui.core.session.persistence import MAX_JSON_DEPTH, image_file_problem

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str = "<i8") -> bytes:
    """A valid ``.npy`` header declaring ``shape`` (no data after it)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def one_run_document(paths: list[str], root: Optional[str] = None, **extra: Any) -> dict[str, Any]:
    return {"format": "imgcluster-session", "version": 1, "root": root, "paths": paths, **extra}


def write_session_file(
    path: Path,
    document: Any,
    members: Mapping[str, bytes],
    compressed: frozenset[str] = frozenset(),
    json_text: Optional[str] = None,
) -> Path:
    """A session zip made by hand: ``session.json`` plus ``members`` (deflated when named in ``compressed``)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("session.json", json.dumps(document) if json_text is None else json_text)
        for name, data in members.items():
            method = zipfile.ZIP_DEFLATED if name in compressed else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=method)
    return path


def four_labels() -> dict[str, bytes]:
    return {"labels.npy": npy_bytes(np.array([0, 0, 1, 1], dtype=np.int64))}


FOUR_PATHS = [f"/photos/{i}.png" for i in range(4)]


def assert_one_clear_error(path: Path, *words: str) -> str:
    for load in (ClusterSession.load, load_workspace):
        with pytest.raises(SessionFileError) as caught:
            load(path)
        message = str(caught.value)
        assert "\n" not in message and path.name in message
        for word in words:
            assert word in message
    return message


# ---------------------------------------------------------------------------- size limits (item 5)


def test_a_small_file_that_inflates_to_many_megabytes_is_refused_before_decompressing(tmp_path):
    # 52 MB of zeros deflate to about 50 kB; a real bomb inflates the same way to gigabytes.
    features = npy_header((4, 3_276_800), "<f4") + bytes(4 * 3_276_800 * 4)
    path = write_session_file(
        tmp_path / "bomb.imgcluster",
        one_run_document(FOUR_PATHS),
        {**four_labels(), "features.npy": features},
        compressed=frozenset({"features.npy"}),
    )
    assert path.stat().st_size < 1_000_000
    assert_one_clear_error(path, "features.npy", "expands")


def test_an_npy_header_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    # Terabytes declared, a few bytes stored: reading it used to raise MemoryError.
    path = write_session_file(
        tmp_path / "huge.imgcluster",
        one_run_document(FOUR_PATHS),
        {"labels.npy": npy_header((2**40,)) + bytes(32)},
    )
    assert_one_clear_error(path, "labels", "shape")


def test_a_workspace_array_declaring_a_huge_shape_is_refused(tmp_path):
    session = {k: v for k, v in one_run_document(FOUR_PATHS).items() if k != "paths"}
    document = {
        "format": "imgcluster-session",
        "version": 2,
        "current": 1,
        "paths": [FOUR_PATHS],
        "runs": [
            {
                "number": 1,
                "paths": 0,
                "arrays": {"labels": "arrays/a.npy", "features": "arrays/b.npy"},
                "session": session,
            }
        ],
    }
    members = {
        "arrays/a.npy": npy_bytes(np.array([0, 0, 1, 1], dtype=np.int64)),
        "arrays/b.npy": npy_header((4, 2**36), "<f8") + bytes(64),
    }
    path = write_session_file(tmp_path / "huge_ws.imgcluster", document, members)
    assert_one_clear_error(path, "run 1", "features", "shape")


def test_an_array_whose_bytes_do_not_match_its_shape_is_damaged(tmp_path):
    path = write_session_file(
        tmp_path / "short.imgcluster",
        one_run_document(FOUR_PATHS),
        {"labels.npy": npy_header((4,)) + bytes(16)},  # 4 int64 need 32 bytes
    )
    assert_one_clear_error(path, "labels", "size")


def test_object_arrays_are_refused(tmp_path):
    path = write_session_file(
        tmp_path / "objects.imgcluster",
        one_run_document(FOUR_PATHS),
        {"labels.npy": npy_header((4,), "|O") + bytes(32)},
    )
    assert_one_clear_error(path, "labels")


def test_more_data_than_the_declared_images_can_need_is_refused(tmp_path):
    # Four images need a few megabytes at most, whatever the arrays; 20 MB is not a session of four.
    members = {**four_labels(), "extra/padding.bin": bytes(20_000_000)}
    path = write_session_file(tmp_path / "padded.imgcluster", one_run_document(FOUR_PATHS), members)
    assert_one_clear_error(path, "more than 4 images")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 10, 200_000])
def test_deeply_nested_json_is_refused(tmp_path, depth):
    # 200,000 levels used to raise RecursionError; 74 parse, but nothing of a session nests like that.
    nested = "[" * depth + "]" * depth
    text = json.dumps(one_run_document(FOUR_PATHS, settings={"x": None})).replace("null}", nested + "}")
    path = write_session_file(tmp_path / "deep.imgcluster", None, four_labels(), json_text=text)
    assert_one_clear_error(path, "nests more than")


def test_a_real_session_with_wide_features_still_opens(tmp_path):
    rng = np.random.default_rng(0)
    session = ClusterSession(FOUR_PATHS, [0, 0, 1, 1], features=rng.normal(size=(4, 4096)), root="/photos")
    session.save(tmp_path / "ok.imgcluster")
    loaded = ClusterSession.load(tmp_path / "ok.imgcluster")
    np.testing.assert_array_equal(loaded.features, session.features)
    assert loaded.paths == FOUR_PATHS and loaded.missing == {}


# ---------------------------------------------------------------------------- paths (item 6)


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (10, 200, 30)).save(path)
    return path


def test_relative_paths_resolve_against_the_root_and_never_leave_it(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    png(photos / "a.png")
    png(tmp_path / "secret.png")  # outside the image folder
    elsewhere = tmp_path / "cwd"
    (elsewhere / "photos").mkdir(parents=True)
    monkeypatch.chdir(elsewhere / "photos")  # a "../secret.png" against the working folder would still miss
    paths = ["a.png", "../secret.png", "sub/../a.png", str(photos / "a.png")]
    path = write_session_file(tmp_path / "s.imgcluster", one_run_document(paths, root=str(photos)), four_labels())
    for loaded in (ClusterSession.load(path), load_workspace(path).records()[0].session):
        assert loaded.paths[0] == str(photos / "a.png")
        assert loaded.paths[2] == str(photos / "a.png")  # ".." that stays inside the root is fine
        assert loaded.paths[3] == str(photos / "a.png")  # absolute paths stay allowed
        assert Path(loaded.paths[1]).resolve() != (tmp_path / "secret.png").resolve()
        assert Path(loaded.paths[1]).is_relative_to(photos)
        assert set(loaded.missing) == {1} and "out of the session's image folder" in loaded.missing[1]


def test_a_relative_root_is_relative_to_the_session_file_not_the_working_folder(tmp_path, monkeypatch):
    png(tmp_path / "photos" / "a.png")
    monkeypatch.chdir(tmp_path.parent)
    path = write_session_file(tmp_path / "s.imgcluster", one_run_document(["a.png"] * 4, root="photos"), four_labels())
    loaded = ClusterSession.load(path)
    assert loaded.root == str(tmp_path / "photos")
    assert loaded.paths == [str(tmp_path / "photos" / "a.png")] * 4
    assert load_image(loaded.paths[0]).size == (8, 6)


def test_relative_paths_without_a_root_resolve_against_the_session_folder(tmp_path, monkeypatch):
    png(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path.parent)
    path = write_session_file(tmp_path / "s.imgcluster", one_run_document(["a.png"] * 4), four_labels())
    assert ClusterSession.load(path).paths == [str(tmp_path / "a.png")] * 4


def test_saved_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    png(tmp_path / "photos" / "a.png")
    ClusterSession(["photos/a.png"], [0], root="photos").save(tmp_path / "s.imgcluster")
    monkeypatch.chdir(tmp_path.parent)  # the file opens the same from anywhere
    loaded = ClusterSession.load(tmp_path / "s.imgcluster")
    assert loaded.paths == [str(tmp_path / "photos" / "a.png")] and loaded.missing == {}


@needs_fifo
def test_exportable_paths_keep_only_regular_image_files(tmp_path):
    photos = tmp_path / "photos"
    good = png(photos / "good.png")
    (photos / "notes.jpg").write_text("not a picture")
    os.mkfifo(photos / "pipe.png")
    (photos / "folder.png").mkdir()
    (photos / "to_pipe.png").symlink_to(photos / "pipe.png")
    png(tmp_path / "outside.png")
    names = ["good.png", "notes.jpg", "pipe.png", "folder.png", "to_pipe.png", "gone.png", "../outside.png"]
    labels = {"labels.npy": npy_bytes(np.zeros(len(names), dtype=np.int64))}
    path = write_session_file(tmp_path / "s.imgcluster", one_run_document(names, root=str(photos)), labels)
    session = ClusterSession.load(path)
    exportable, refused = session.exportable_paths()
    assert [session.paths[i] for i in exportable] == [str(good)]
    reasons = {Path(skip.path).name: skip.reason for skip in refused}
    assert reasons == {
        "notes.jpg": "not an image",
        "pipe.png": "is a FIFO (named pipe), not a regular file",
        "folder.png": "is a folder, not an image",
        "to_pipe.png": "is a FIFO (named pipe), not a regular file",
        "gone.png": "file not found",
        "outside.png": session.missing[6],
    }
    assert session.exportable_paths([0, 1])[0] == [0]
    assert image_file_problem(good) is None


@needs_fifo
@pytest.mark.parametrize("link", [False, True])
def test_load_image_refuses_a_fifo_without_blocking(tmp_path, link):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    target = fifo
    if link:
        target = tmp_path / "link.png"
        target.symlink_to(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _capture(outcome, target), daemon=True)
    reader.start()
    reader.join(30)
    blocked = reader.is_alive()
    if blocked:  # release the reader stuck in open(): a writer arrives and leaves
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(30)
    assert not blocked, "load_image blocked on a FIFO"
    assert len(outcome) == 1 and isinstance(outcome[0], ImageLoadError)
    assert str(outcome[0]) == "is a FIFO (named pipe), not a regular file"


def _capture(outcome: list[BaseException], path: Path) -> None:
    try:
        load_image(path)
    except BaseException as exc:  # noqa: BLE001 - the test inspects whatever came out
        outcome.append(exc)


def test_load_image_refuses_a_path_with_a_nul_character():
    with pytest.raises(ImageLoadError, match="NUL"):
        load_image("/photos/a\x00.png")
