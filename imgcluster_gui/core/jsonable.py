"""Plain JSON values from what the core computes (numpy scalars and arrays, paths, int-keyed dicts)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` recursively into what :func:`json.dumps` writes as strict JSON.

    Mappings get string keys, sequences and sets become lists, numpy values become Python ones,
    NaN and infinities become ``None`` (JSON has neither), paths become strings, and anything
    else unknown becomes its ``str``.
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
