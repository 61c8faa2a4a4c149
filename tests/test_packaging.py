"""The desktop bundle's sources (packaging/): the PyInstaller spec names files that exist, the Linux desktop entry
and its icon, and the ``--quit-after-run`` flag the bundle's smoke test drives.  The bundle itself is built by
``make bundle`` and checked by ``make bundle-smoke`` (minutes: never in CI)."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcluster_gui import __main__ as entry

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGING = REPO_ROOT / "packaging"


class _Recorder:
    """Stands in for one of PyInstaller's spec classes (Analysis, PYZ, EXE, ...): keeps what it was given."""

    made: dict[str, "_Recorder"] = {}

    def __init__(self, kind: str, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs
        self.scripts = self.pure = self.binaries = self.datas = []
        _Recorder.made[kind] = self


def _run_spec(monkeypatch) -> dict[str, _Recorder]:
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_data_files = lambda package: []
    hooks.collect_dynamic_libs = lambda package: []
    hooks.collect_submodules = lambda package, filter=None: [package]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    _Recorder.made = {}
    spec = {"SPECPATH": str(PACKAGING), "__name__": "__main__"}
    for kind in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"):
        spec[kind] = lambda *a, _kind=kind, **k: _Recorder(_kind, *a, **k)
    code = (PACKAGING / "imgcluster.spec").read_text(encoding="utf-8")
    exec(compile(code, "imgcluster.spec", "exec"), spec)
    return _Recorder.made


def test_the_spec_bundles_the_launcher_resources_weights_and_icon(monkeypatch):
    made = _run_spec(monkeypatch)
    analysis = made["Analysis"]
    [script] = analysis.args[0]
    assert Path(script) == PACKAGING / "launch.py"
    sources = {Path(source) for source, _dest in analysis.kwargs["datas"]}
    assert REPO_ROOT / "resources" in sources and PACKAGING / "imgcluster.png" in sources
    assert all(source.exists() for source in sources)
    assert {"pillow_heif", "rawpy", "imgcluster_gui"} <= set(analysis.kwargs["hiddenimports"])
    assert made["EXE"].kwargs["name"] == "imgcluster-gui" and made["COLLECT"].kwargs["name"] == "imgcluster"


def test_the_launcher_runs_the_package_entry_point_absolutely():
    tree = ast.parse((PACKAGING / "launch.py").read_text(encoding="utf-8"))
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert any(node.module == "imgcluster_gui.__main__" and node.level == 0 for node in imports)


def test_the_desktop_entry_starts_the_app_with_its_icon():
    entry_file = configparser.ConfigParser(interpolation=None)
    entry_file.optionxform = str  # keys are case-sensitive
    entry_file.read(PACKAGING / "imgcluster.desktop", encoding="utf-8")
    desktop = entry_file["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Exec"].split()[0] == "imgcluster-gui"
    assert desktop["Icon"] == "imgcluster" and "Graphics;" in desktop["Categories"]
    assert (PACKAGING / "imgcluster.svg").read_text(encoding="utf-8").lstrip().startswith("<svg")
    with Image.open(PACKAGING / "imgcluster.png") as icon:
        assert icon.size == (256, 256) and icon.mode == "RGBA"


def test_quit_after_run_needs_a_folder(capsys, monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert entry.main(["--quit-after-run"]) == 2
    assert "--quit-after-run needs a FOLDER" in capsys.readouterr().err


@pytest.mark.slow  # a real backbone on a dozen images
def test_quit_after_run_clusters_the_folder_prints_the_summary_and_exits_0(qtbot, tmp_path, monkeypatch, capsys):
    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, colour in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)] * 4):
        pixels = np.clip(np.array(colour) + rng.normal(0, 12, (48, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:02d}.png")
    (folder / "notes.txt").write_text("not a photo")
    assert entry.run_and_quit(os.fspath(folder)) == 0
    out = capsys.readouterr().out
    assert "imgcluster-gui: run succeeded: 12 images in " in out and ", 1 skipped" in out  # the .txt file


def test_the_smoke_script_says_how_to_build_a_missing_bundle(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bundle_smoke", PACKAGING / "smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    assert smoke.main(["--binary", str(tmp_path / "no-such-bundle")]) == 2
    assert "make bundle" in capsys.readouterr().err


def test_the_spec_builds_without_torchvision_and_leaves_it_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` fails, as in the CPU-only bundle
    analysis = _run_spec(monkeypatch)["Analysis"]
    assert "torchvision" in analysis.kwargs["excludes"]
    assert not any(dest == "torchvision" for _source, dest in analysis.kwargs["binaries"])


def _bundle_requirements():
    spec = importlib.util.spec_from_file_location("bundle_requirements", PACKAGING / "bundle_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_requirements_leave_torch_to_torch_cpu_and_pin_it(tmp_path):
    import importlib.metadata

    module = _bundle_requirements()
    names = {
        module.requirement_name(r) for r in module.app_requirements(REPO_ROOT / "pyproject.toml", ["raw", "bundle"])
    }
    assert not names & {"torch", "torchvision"}  # only TORCH_CPU installs them: pip cannot pull CUDA builds
    assert {"efficientnet-lite-pytorch", "openvino", "pillow-heif", "rawpy", "pyinstaller"} <= names
    assert module.requirement_name("PySide6-Essentials>=6.5,!=6.12.0; python_version < '3.12'") == "pyside6-essentials"
    with pytest.raises(SystemExit, match="no extra 'nope'"):
        module.app_requirements(REPO_ROOT / "pyproject.toml", ["nope"])
    requirements, constraints = tmp_path / "req.txt", tmp_path / "con.txt"
    assert module.main([str(requirements), str(constraints), "raw", "bundle"]) == 0
    pins = constraints.read_text().split()
    assert pins[0] == f"torch=={importlib.metadata.version('torch')}"  # what is installed stays installed
    assert "rawpy>=0.19" in requirements.read_text().splitlines()
