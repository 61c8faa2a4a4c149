"""Atomic writes leave nothing behind: a failed write removes its temporary file, a killed one is cleaned later."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from imgcluster_gui.core import storage
from imgcluster_gui.core.session import ClusterSession


def leftover(target: Path, age_seconds: float, token: str = "abcd1234") -> Path:
    """A temporary file as a killed ``atomic_write`` of ``target`` leaves it, ``age_seconds`` old."""
    temp = target.parent / f".{target.name}.{token}.tmp"
    temp.write_bytes(b"x" * 1000)
    stamp = time.time() - age_seconds
    os.utime(temp, (stamp, stamp))
    return temp


def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with storage.atomic_write(target) as fh:
            fh.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.txt"]


def test_a_bad_encoding_leaks_no_temporary_file(tmp_path):
    with pytest.raises(LookupError):
        with storage.atomic_write(tmp_path / "data.txt", "w", encoding="no-such-codec"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_of_a_target_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "work.imgcluster"
    stale = leftover(target, 3600)
    fresh = leftover(target, 5, token="zzzz9999")  # maybe a save running right now
    other = leftover(tmp_path / "other.imgcluster", 3600)  # another file's
    lookalike = tmp_path / f".{target.name}.not-mkstemp.tmp"
    lookalike.write_text("user file")
    link = tmp_path / f".{target.name}.link0000.tmp"
    link.symlink_to(other)
    removed = storage.remove_stale_temp_files(target)
    assert removed == [stale] and not stale.exists()
    assert fresh.exists() and other.exists() and lookalike.exists() and link.is_symlink()


def session() -> ClusterSession:
    return ClusterSession(["/photos/a.png", "/photos/b.png"], np.array([0, 1]), root="/photos")


def test_saving_a_session_removes_what_a_killed_save_left(tmp_path):
    target = tmp_path / "work.imgcluster"
    stale = leftover(target, storage.STALE_TEMP_SECONDS + 60)
    session().save(target)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work.imgcluster"]


def test_opening_a_session_removes_what_a_killed_save_left(tmp_path):
    target = tmp_path / "work.imgcluster"
    session().save(target)
    stale = leftover(target, storage.STALE_TEMP_SECONDS + 60)
    ClusterSession.load(target)
    assert not stale.exists()
