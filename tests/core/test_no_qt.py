"""The headless core must never import Qt: check it in a clean interpreter."""

import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "imgcluster_gui" / "core"


def test_core_and_cli_import_without_qt():
    modules = sorted(
        "imgcluster_gui." + ".".join(p.relative_to(CORE.parent).with_suffix("").parts)
        for p in CORE.rglob("*.py")
        if p.name != "__init__.py"
    ) + ["imgcluster_gui.cli"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "from imgcluster_gui.core.clustering.registry import list_algorithms\n"
        "list_algorithms()\n"
        "qt = ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'shiboken6')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in qt)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_no_qt_import_statement_in_core_sources():
    offenders = [
        str(p)
        for p in CORE.rglob("*.py")
        if any(
            word in p.read_text(encoding="utf-8")
            for word in ("import PySide6", "from PySide6", "import pyqtgraph", "from pyqtgraph")
        )
    ]
    assert offenders == []
