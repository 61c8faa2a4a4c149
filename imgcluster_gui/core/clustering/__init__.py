"""Clustering: the algorithm registry, the classic estimators, auto-K and (in ``deep``) deep methods.

Use the registry rather than the classes: :func:`list_algorithms` for what exists (the GUI and
CLI build their choices from it) and :func:`make_estimator` to build one. The registry imports
:mod:`.classic` and :mod:`.deep` only when first asked, so importing this package stays cheap.
"""

from __future__ import annotations

from .registry import AlgorithmSpec, ParamSpec, get_algorithm, list_algorithms, make_estimator, register

__all__ = ["AlgorithmSpec", "ParamSpec", "get_algorithm", "list_algorithms", "make_estimator", "register"]
