"""``python -m imgcluster_gui`` before any QApplication: a missing libxcb-cursor is one clear line, not Qt's abort."""

from __future__ import annotations

import ctypes.util

import pytest

import imgcluster_gui.__main__ as entry


@pytest.fixture
def x11_session(monkeypatch):
    """A Linux X11 desktop (DISPLAY set, no platform asked for); the window itself never opens."""
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    opened: list[object] = []
    import imgcluster_gui.ui.app

    monkeypatch.setattr(imgcluster_gui.ui.app, "run_app", lambda *a, **k: opened.append(a) or 0)
    return opened


def _finder(missing: set[str]):
    real = ctypes.util.find_library
    return lambda name: None if name in missing else real(name)


def test_without_libxcb_cursor_one_line_names_the_package_per_distro_and_the_cli(x11_session, monkeypatch, capsys):
    monkeypatch.setattr(ctypes.util, "find_library", _finder({"xcb-cursor"}))
    assert entry.main([]) == 1
    assert x11_session == []  # no QApplication: Qt would have aborted the process
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for needle in ("libxcb-cursor0", "dnf install xcb-util-cursor", "pacman -S xcb-util-cursor", "imgcluster cluster"):
        assert needle in err


def test_with_libxcb_cursor_the_window_opens(x11_session, monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libxcb-cursor.so.0")
    assert entry.main(["--no-run"]) == 0
    assert len(x11_session) == 1


@pytest.mark.parametrize(
    "env",
    [
        {"QT_QPA_PLATFORM": "offscreen"},
        {"QT_QPA_PLATFORM": "wayland"},
        {"WAYLAND_DISPLAY": "w", "XDG_SESSION_TYPE": "wayland"},
    ],
)
def test_other_platforms_do_not_need_it(x11_session, monkeypatch, env):
    monkeypatch.setattr(ctypes.util, "find_library", _finder({"xcb-cursor"}))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert entry.missing_system_library() is None
    assert entry.main(["--no-run"]) == 0


def test_an_explicit_xcb_platform_is_checked(x11_session, monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", _finder({"xcb-cursor"}))
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert "libxcb-cursor" in (entry.missing_system_library() or "")
    monkeypatch.setattr("sys.platform", "darwin")
    assert entry.missing_system_library() is None


def test_other_missing_xcb_libraries_are_named_too(x11_session, monkeypatch, capsys):
    # What a minimal Debian image lacks even with libxcb-cursor0 installed (Qt's own message names only the cursor).
    monkeypatch.setattr(ctypes.util, "find_library", _finder({"xcb-icccm", "xcb-keysyms"}))
    assert entry.main([]) == 1
    assert x11_session == []
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "libxcb-icccm, libxcb-keysyms" in err and "libxcb-cursor" not in err
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in err
    assert "sudo dnf install xcb-util-wm xcb-util-keysyms" in err
