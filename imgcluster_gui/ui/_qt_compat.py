"""Work around a PySide6 6.12.0 reference-count bug on Python < 3.12.

PySide6-Essentials 6.12.0 hands some shared singletons back to Python without taking a
reference to them (correct only since Python 3.12, where they are immortal, PEP 683).  On
Python 3.11 every call of a ``void`` C++ method (``widget.update()``, ``painter.save()``,
``QApplication.processEvents()``...) lowers ``None``'s reference count by one, and some paint
paths do the same to ``True``; after a few thousand calls the interpreter aborts with
"Fatal Python error: none_dealloc" (or ``bool_dealloc``).

:func:`protect_singleton_refcounts` gives those singletons (``None``, ``True``, ``False``, the
cached small integers, the empty string and tuple) a reference count so large that no session can
exhaust it, which is what Python 3.12 does by design.  It is a no-op on 3.12+.  Call it before
the first Qt call (importing any module of ``imgcluster_gui.ui`` that uses Qt does).
"""

from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 60  # ~10^18 lost references: never exhausted, and far from overflowing ssize_t

_protected = False


def _singletons() -> list[object]:
    return [None, True, False, "", (), *range(-5, 257)]


def protect_singleton_refcounts() -> None:
    """Make the interpreter's shared singletons effectively immortal on Python < 3.12 (idempotent)."""
    global _protected
    if _protected or sys.version_info >= (3, 12):
        return
    for obj in _singletons():
        # ob_refcnt is the first field of every PyObject in release builds of CPython; these objects
        # live as long as the interpreter, so a larger count only keeps them where they are.
        refcount = ctypes.c_ssize_t.from_address(id(obj))
        refcount.value += _HEADROOM
    _protected = True


protect_none_refcount = protect_singleton_refcounts  # the name the first version used
