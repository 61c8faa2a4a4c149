"""Exports: CSV/JSON content and safety (formula injection, atomic writes) and folder export + undo."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from imgcluster_gui.core import export, storage
from imgcluster_gui.core.export import (
    ExportError,
    escape_formula,
    export_csv,
    export_folders,
    export_json,
    safe_folder_name,
    undo_export,
)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Five small files, two of them with the same name in different folders."""
    root = tmp_path / "src"
    files = [root / "a" / "img.png", root / "b" / "img.png", root / "b" / "x.jpg", root / "c.png", root / "=d.png"]
    for i, f in enumerate(files):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(f"content {i}".encode() * (i + 1))
    return files


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_has_one_row_per_image_with_every_column(tmp_path, images):
    out = tmp_path / "labels.csv"
    labels = np.array([0, 0, 1, -1, 1])
    export_csv(
        out,
        images,
        labels,
        cluster_names={1: "Dogs"},
        confidence=[0.9, 0.8, np.nan, 0.1, 1.0],
        embedding=np.arange(10).reshape(5, 2) * 0.5,
        root=tmp_path / "src",
    )
    rows = _read_csv(out)
    assert [r["relative_path"] for r in rows] == ["a/img.png", "b/img.png", "b/x.jpg", "c.png", "'=d.png"]
    assert [r["cluster_id"] for r in rows] == ["0", "0", "1", "-1", "1"]
    assert [r["cluster_name"] for r in rows] == ["Cluster 0", "Cluster 0", "Dogs", "Unassigned", "Dogs"]
    assert rows[2]["confidence"] == "" and rows[0]["confidence"] == "0.9"
    assert (rows[1]["x"], rows[1]["y"]) == ("1.0", "1.5")
    assert rows[0]["path"] == str(images[0])


def test_csv_escapes_formula_cells_but_not_numbers(tmp_path):
    out = tmp_path / "x.csv"
    names = {0: '=HYPERLINK("http://evil")', 1: "+1", 2: "@SUM(A1)", 3: "-2", 4: "\tTab", 5: "plain"}
    export_csv(
        out, [f"/p/{i}.png" for i in range(6)], list(range(6)), cluster_names=names, embedding=[[-1.5, -2.0]] * 6
    )
    rows = _read_csv(out)
    assert [r["cluster_name"] for r in rows] == ["'" + names[i] for i in range(5)] + ["plain"]
    assert rows[0]["x"] == "-1.5"  # numbers are not text a spreadsheet evaluates: left alone
    assert escape_formula("\rcmd") == "'\rcmd" and escape_formula("a=b") == "a=b"


def test_json_export_has_the_same_data(tmp_path, images):
    out = tmp_path / "labels.json"
    export_json(out, images, [0, 0, 1, 1, -1], cluster_names={0: "Café"}, root=tmp_path / "src")
    doc = json.loads(out.read_text(encoding="ascii"))
    assert doc["clusters"] == {
        "-1": {"name": "Unassigned", "size": 1},
        "0": {"name": "Café", "size": 2},
        "1": {"name": "Cluster 1", "size": 2},
    }
    assert [r["relative_path"] for r in doc["images"]][:2] == ["a/img.png", "b/img.png"]
    assert doc["images"][0]["x"] is None and doc["images"][0]["cluster_id"] == 0


def test_non_utf8_names_round_trip_exactly(tmp_path):
    raw = os.fsdecode(os.fsencode(tmp_path) + b"/bad_\xff.png")
    export_csv(tmp_path / "x.csv", [raw], [0])
    export_json(tmp_path / "x.json", [raw], [0])
    with open(tmp_path / "x.csv", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        assert list(csv.DictReader(fh))[0]["path"] == raw
    assert json.loads((tmp_path / "x.json").read_text())["images"][0]["path"] == raw


def test_table_write_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "labels.csv"
    out.write_text("previous content")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.os, "replace", broken_replace)
    with pytest.raises(OSError):
        export_csv(out, ["/a.png"], [0])
    assert out.read_text() == "previous content"  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]  # and no temporary file is left


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(labels=[0]), "2 paths but 1 labels"),
        (dict(labels=[0, 1], confidence=[1.0]), "confidence"),
        (dict(labels=[0, 1], embedding=np.zeros((2, 1))), "embedding"),
    ],
)
def test_mismatched_lengths_are_export_errors(tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_csv(tmp_path / "x.csv", ["/a", "/b"], **kwargs)
    assert not (tmp_path / "x.csv").exists()


def test_missing_output_folder_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="Folder not found"):
        export_csv(tmp_path / "nope" / "x.csv", ["/a"], [0])


# ---------------------------------------------------------------- folders


@pytest.mark.parametrize(
    "name,expected",
    [
        ("../../etc", "_.._etc"),
        ("a/b\\c", "a_b_c"),
        ("..", "cluster_7"),
        ("  ", "cluster_7"),
        (".hidden", "hidden"),
        ("CON", "_CON"),
        ("trailing. ", "trailing"),
        ("Chats 🐱", "Chats 🐱"),
    ],
)
def test_safe_folder_name(name, expected):
    assert safe_folder_name(name, "cluster_7") == expected


def test_copy_export_handles_collisions_and_never_overwrites(tmp_path, images):
    target = tmp_path / "out"
    (target / "Cluster 0").mkdir(parents=True)
    (target / "Cluster 0" / "img.png").write_bytes(b"already here")
    result = export_folders(target, images, [0, 0, 1, 1, 1], cluster_names={1: "../evil"})
    assert result.n_done == 5 and not result.failed
    tree = _snapshot(target)
    assert tree["Cluster 0/img.png"] == b"already here"
    assert tree["Cluster 0/img_1.png"] == images[0].read_bytes()
    assert tree["Cluster 0/img_2.png"] == images[1].read_bytes()
    assert {k for k in tree if k.startswith("_evil/")} == {"_evil/x.jpg", "_evil/c.png", "_evil/=d.png"}
    assert not (tmp_path / "evil").exists()
    assert all(f.exists() for f in images)  # copying leaves the sources in place
    # Duplicate cluster names get distinct folders.
    again = export_folders(tmp_path / "dup", images[:2], [0, 1], cluster_names={0: "Same", 1: "same"})
    assert sorted(p.name for p in (tmp_path / "dup").iterdir() if p.is_dir()) == ["Same", "same_1"]
    assert again.n_done == 2


def test_move_is_refused_without_consent(tmp_path, images):
    with pytest.raises(ExportError, match="allow_move"):
        export_folders(tmp_path / "out", images, [0] * 5, mode="move")
    assert not (tmp_path / "out").exists() and all(f.exists() for f in images)
    with pytest.raises(ExportError, match="Unknown export mode"):
        export_folders(tmp_path / "out", images, [0] * 5, mode="hardlink")


def test_move_then_undo_restores_every_file_exactly(tmp_path, images):
    source_root = tmp_path / "src"
    before = _snapshot(source_root)
    target = tmp_path / "out"
    result = export_folders(target, images, [0, 0, 1, -1, 1], mode="move", allow_move=True)
    assert result.n_done == 5 and not any(f.exists() for f in images)
    manifest = json.loads(result.manifest_path.read_text())
    assert [Path(e["source"]) for e in manifest["entries"]] == [f.absolute() for f in images]
    assert all(Path(e["destination"]).exists() for e in manifest["entries"])

    undo = undo_export(result.manifest_path)
    assert undo.restored == 5 and not undo.problems
    assert _snapshot(source_root) == before
    # Cluster folders it made are gone; only the manifest (now marked undone) is left.
    assert [p.name for p in target.iterdir()] == [result.manifest_path.name]
    assert json.loads(result.manifest_path.read_text())["undone"] is True
    assert undo_export(result.manifest_path).restored == 0  # a second undo changes nothing


def test_undo_never_overwrites_a_file_that_came_back(tmp_path, images):
    result = export_folders(tmp_path / "out", images[:1], [0], mode="move", allow_move=True)
    images[0].write_bytes(b"new file at the old place")
    undo = undo_export(result.manifest_path)
    assert undo.restored == 0 and len(undo.problems) == 1
    assert images[0].read_bytes() == b"new file at the old place"
    assert Path(result.entries[0].destination).exists()


def test_undo_removes_copies_and_links_but_keeps_edited_copies(tmp_path, images):
    copies = export_folders(tmp_path / "copies", images, [0, 0, 1, 1, 1])
    edited = Path(copies.entries[2].destination)
    edited.write_bytes(b"the user changed this copy")
    undo = undo_export(copies.manifest_path)
    assert undo.removed == 4 and len(undo.problems) == 1 and edited.exists()
    assert all(f.exists() for f in images)

    links = export_folders(tmp_path / "links", images, [0, 0, 1, 1, 1], mode="symlink")
    assert all(
        Path(e.destination).is_symlink() and Path(e.destination).resolve() == Path(e.source).resolve()
        for e in links.entries
    )
    assert undo_export(links.manifest_path).removed == 5
    assert not any(p.is_dir() for p in (tmp_path / "links").iterdir())
    assert all(f.exists() for f in images)


def test_missing_source_is_reported_and_the_rest_exported(tmp_path, images):
    images[1].unlink()
    result = export_folders(tmp_path / "out", images, [0] * 5)
    assert result.n_done == 4
    assert [Path(f.path).name for f in result.failed] == ["img.png"] and "not found" in result.failed[0].reason


def test_unwritable_or_file_target_fails_before_anything_is_written(tmp_path, images, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_folders(tmp_path / "file", images, [0] * 5)
    target = tmp_path / "ro"
    target.mkdir()

    def refuse(*args, **kwargs):  # root ignores chmod: simulate a read-only target instead
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export.tempfile, "mkstemp", refuse)
    with pytest.raises(ExportError, match="Cannot write in"):
        export_folders(target, images, [0] * 5, mode="move", allow_move=True)
    assert list(target.iterdir()) == [] and all(f.exists() for f in images)


def test_undo_rejects_a_corrupt_or_foreign_manifest(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ExportError, match="corrupt"):
        undo_export(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(ExportError, match="Not an imgcluster export manifest"):
        undo_export(tmp_path / "other.json")
    with pytest.raises(ExportError, match="not found"):
        undo_export(tmp_path / "missing.json")


def test_written_tables_get_ordinary_permissions_not_private_temp_ones(tmp_path):
    out = export_csv(tmp_path / "x.csv", ["/a.png"], [0])
    assert out.stat().st_mode & 0o777 == storage._NEW_FILE_MODE
    os.chmod(out, 0o640)
    export_json(tmp_path / "x.csv", ["/a.png"], [0])
    assert out.stat().st_mode & 0o777 == 0o640  # replacing keeps the file's own permissions


def test_a_dated_sub_folder_never_reuses_an_existing_one(tmp_path):
    import datetime

    when = datetime.datetime(2026, 12, 3, 14, 5)
    assert not export.folder_has_entries(tmp_path / "missing")
    assert not export.folder_has_entries(tmp_path)
    first = export.dated_subfolder(tmp_path, when)
    assert first == tmp_path / "clusters-2026-12-03_1405" and not first.exists()
    first.mkdir()
    assert export.folder_has_entries(tmp_path)
    assert export.dated_subfolder(tmp_path, when) == tmp_path / "clusters-2026-12-03_1405_1"
