"""Open file location / open with the default app: the right program per platform, no shell, failures reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QUrl

from imgcluster_gui.ui import file_actions
from imgcluster_gui.ui.file_actions import FileActionResult, open_file_location, open_with_default_app


@pytest.fixture
def photo(tmp_path: Path) -> str:
    folder = tmp_path / "holiday photos"  # a space: must reach the program as one argument
    folder.mkdir()
    path = folder / "beach; rm -rf ~.jpg"  # shell syntax in a name stays a name
    path.write_bytes(b"jpeg")
    return str(path)


@pytest.fixture
def launched(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(file_actions, "launch", lambda argv: calls.append(list(argv)))
    return calls


@pytest.fixture
def opened(monkeypatch) -> list[QUrl]:
    urls: list[QUrl] = []

    def fake_open(url: QUrl) -> bool:
        urls.append(url)
        return True

    monkeypatch.setattr(file_actions, "open_url", fake_open)
    return urls


def test_windows_selects_the_file_in_explorer(photo, launched, opened):
    result = open_file_location(photo, platform="win32")
    assert result and result.ok and result.message == ""
    assert launched == [["explorer", "/select,", str(Path(photo))]]
    assert opened == []


def test_macos_reveals_the_file_in_finder(photo, launched):
    assert open_file_location(photo, platform="darwin")
    assert launched == [["open", "-R", photo]]


def test_linux_asks_the_file_manager_over_dbus(photo, launched, opened, monkeypatch):
    asked: list[str] = []
    monkeypatch.setattr(file_actions, "show_items_over_dbus", lambda uri: asked.append(uri))  # None = done
    assert open_file_location(photo, platform="linux")
    assert asked == [QUrl.fromLocalFile(photo).toString()] and asked[0].startswith("file://")
    assert launched == [] and opened == []


def test_linux_without_a_file_manager_service_opens_the_folder(photo, opened, monkeypatch):
    monkeypatch.setattr(file_actions, "show_items_over_dbus", lambda uri: "no file manager answers on D-Bus")
    assert open_file_location(photo, platform="linux")
    assert [url.toLocalFile() for url in opened] == [str(Path(photo).parent)]


def test_failures_are_reported_not_raised(photo, monkeypatch, tmp_path):
    def broken(argv):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    monkeypatch.setattr(file_actions, "launch", broken)
    result = open_file_location(photo, platform="darwin")
    assert not result and "Could not start Finder" in result.message
    monkeypatch.setattr(file_actions, "show_items_over_dbus", lambda uri: "no D-Bus session bus")
    monkeypatch.setattr(file_actions, "open_url", lambda url: False)
    result = open_file_location(photo, platform="linux")
    assert not result and "no D-Bus session bus" in result.message
    missing = open_file_location(str(tmp_path / "gone.jpg"), platform="darwin")
    assert not missing and "no longer exists" in missing.message


def test_open_with_default_app_uses_the_desktop_services(photo, opened, monkeypatch):
    assert open_with_default_app(photo) == FileActionResult(True)
    assert [url.toLocalFile() for url in opened] == [photo]
    monkeypatch.setattr(file_actions, "open_url", lambda url: False)
    result = open_with_default_app(photo)
    assert not result and "No app opened" in result.message


def test_the_launcher_runs_a_list_argv_without_a_shell(monkeypatch):
    seen = {}

    class FakePopen:
        def __init__(self, argv, **options):
            seen["argv"], seen["options"] = argv, options

    monkeypatch.setattr(file_actions.subprocess, "Popen", FakePopen)
    file_actions.launch(["open", "-R", "/tmp/a b.jpg"])
    assert seen["argv"] == ["open", "-R", "/tmp/a b.jpg"] and seen["options"]["shell"] is False
