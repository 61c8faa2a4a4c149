"""Which exceptions are user-facing (their message is the whole story, no stack trace needed)."""

from __future__ import annotations

import importlib

# (module, class name) of every exception whose message is written for a person.
_USER_ERRORS = (
    ("imgcluster_gui.core.dataset", "DatasetError"),
    ("imgcluster_gui.core.dataset", "ImageLoadError"),
    ("imgcluster_gui.core.features.backbones", "WeightsUnavailableError"),
    ("imgcluster_gui.core.export", "ExportError"),
    ("imgcluster_gui.core.storage", "StorageError"),
    ("imgcluster_gui.core.session", "SessionFileError"),
)


def user_error_types() -> tuple[type, ...]:
    """The user-facing exception classes that can be imported now."""
    found = []
    for module_name, class_name in _USER_ERRORS:
        try:
            found.append(getattr(importlib.import_module(module_name), class_name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def is_user_error(exc: BaseException) -> bool:
    """True when ``exc`` carries a message meant for a person (shown without a traceback)."""
    return isinstance(exc, user_error_types()) or isinstance(exc, (FileNotFoundError, PermissionError, ValueError))
