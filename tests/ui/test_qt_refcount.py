"""Regression guard for the PySide6 release that dropped references to ``None`` and ``True``.

PySide6-Essentials 6.12.0 on Python < 3.12 lowered ``None``'s reference count on every call of a
``void`` C++ method (``widget.update()``, ``processEvents()``...), so a long session aborted with
"Fatal Python error: none_dealloc".  pyproject.toml keeps that release out on those Pythons
instead of patching reference counts at run time; this test runs the calls that crashed, in a
child process (an abort would take the test runner down with it), so a future release with the
same bug fails here instead of in a user's session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# Enough calls to exhaust None's reference count several times over on an affected release
# (the abort came after a few thousand).
CALLS = 20_000

_CHILD = textwrap.dedent(f"""
    import sys
    from PySide6.QtGui import QPainter, QPixmap
    from PySide6.QtWidgets import QApplication, QLabel
    app = QApplication([])
    label = QLabel("refcount")
    label.show()
    before = sys.getrefcount(None)
    pixmap = QPixmap(8, 8)
    for _ in range({CALLS}):
        label.update()
        app.processEvents()
        painter = QPainter(pixmap)
        painter.save()
        painter.restore()
        painter.end()
    after = sys.getrefcount(None)
    print(before, after)
""")


def test_void_qt_calls_keep_none_alive():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"Qt calls crashed the interpreter:\n{done.stderr[-2000:]}"
    before, after = (int(value) for value in done.stdout.split())
    if sys.version_info < (3, 12):
        # Immortal objects (3.12+) report a fixed huge count; before that a leak shows as a drop
        # of about one reference per call.
        assert after > before - CALLS // 10, f"None lost {before - after} references over {CALLS} Qt calls"
