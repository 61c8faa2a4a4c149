"""Clustering: the algorithm registry, one module per algorithm family, auto-K and (in ``deep``) deep methods.

Use the registry rather than the classes: :func:`list_algorithms` for what exists (the GUI and
CLI build their choices from it) and :func:`make_estimator` to build one. The registry imports the
algorithm modules (each registers its own algorithms) only when first asked, so importing this
package stays cheap. Adding an algorithm is one new module here: see ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from .registry import AlgorithmSpec, ParamSpec, get_algorithm, list_algorithms, make_estimator, register

__all__ = ["AlgorithmSpec", "ParamSpec", "get_algorithm", "list_algorithms", "make_estimator", "register"]
