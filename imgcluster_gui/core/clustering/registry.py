"""The clustering registry: the one place where algorithms are listed.

Each algorithm is an :class:`AlgorithmSpec` (id, display name, estimator class, user-facing
:class:`ParamSpec` list). The GUI builds its algorithm combo box and parameter forms from
:func:`list_algorithms`; the CLI and the pipeline build estimators with :func:`make_estimator`.

The registry fills itself lazily on first use: it imports :mod:`.classic` (which registers the
classic algorithms) and then tries :mod:`.deep` (torch-based methods). A failure in the deep
package is logged and leaves the classic algorithms usable, so a broken or missing torch never
takes k-means down with it.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Optional

logger = logging.getLogger(__name__)

PARAM_KINDS = ("int", "float", "choice", "bool")
CATEGORIES = ("classic", "deep")


@dataclass(frozen=True)
class ParamSpec:
    """One user-facing parameter of an algorithm (enough for a GUI to build a form field).

    Attributes
    ----------
    name : str
        The estimator's keyword argument.
    kind : {'int', 'float', 'choice', 'bool'}
        Which widget and which conversion applies.
    default : Any
        The value the form starts with (the estimator's own default means the same thing).
    choices : tuple
        Allowed values for ``kind='choice'``.
    minimum, maximum : float, optional
        Inclusive bounds for numbers.
    help : str
        One or two sentences for a tooltip.
    """

    name: str
    kind: str
    default: Any
    choices: tuple = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"ParamSpec {self.name!r}: kind must be one of {PARAM_KINDS}, got {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"ParamSpec {self.name!r}: a 'choice' parameter needs choices")

    def validate(self, value: Any) -> Any:
        """Convert ``value`` (possibly text from a CLI or a form) to this kind and check its bounds.

        Raises
        ------
        ValueError
            With a message naming the parameter and what it accepts.
        """
        if self.kind == "bool":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return bool(value)
        if self.kind == "choice":
            for choice in self.choices:
                if value == choice or (isinstance(value, str) and str(choice) == value):
                    return choice
            raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{self.name} must be finite, got {value!r}")
        if self.kind == "int":
            if number != int(number):
                raise ValueError(f"{self.name} must be a whole number, got {value!r}")
            number = int(number)
        if self.minimum is not None and number < self.minimum:
            raise ValueError(f"{self.name} must be at least {self.minimum}, got {value!r}")
        if self.maximum is not None and number > self.maximum:
            raise ValueError(f"{self.name} must be at most {self.maximum}, got {value!r}")
        return number


@dataclass(frozen=True)
class AlgorithmSpec:
    """What the registry knows about one clustering algorithm.

    Attributes
    ----------
    id : str
        Stable identifier (``'kmeans'``), used by the CLI, configs and saved sessions.
    name, description : str
        Display name and a one-paragraph explanation for users.
    factory : type
        The estimator class; called with ``n_clusters`` (when ``uses_k``), ``random_state`` and params.
    params : tuple of ParamSpec
        The user-facing parameters (others keep the estimator's defaults).
    uses_k : bool
        The algorithm takes ``n_clusters``.
    supports_auto_k : bool
        :func:`~imgcluster_gui.core.clustering.autok.choose_k` may sweep K with this algorithm itself.
    category : {'classic', 'deep'}
    needs_images : bool
        ``fit`` needs ``paths=`` and ``backbone=`` (it fine-tunes the CNN).
    uses_views : bool
        ``fit`` accepts ``view_slices=`` (multi-backbone methods).
    slow : bool
        A fit with default parameters takes long (e.g. trains a network). The common estimator
        checks run it with ``check_params`` when given, and skip it otherwise.
    k_optional : bool
        ``n_clusters=None`` is valid: the algorithm then finds its own number of groups (graph
        communities, PIC's density peaks); a number still gives exactly that many.
    check_params : tuple of (name, value) pairs
        Parameter overrides that make a fit on a few hundred samples quick (e.g. fewer epochs),
        for the common checks and smoke runs; results must still be meaningful.
    """

    id: str
    name: str
    description: str
    factory: type
    params: tuple = ()
    uses_k: bool = True
    supports_auto_k: bool = False
    category: str = "classic"
    needs_images: bool = False
    uses_views: bool = False
    slow: bool = False
    k_optional: bool = False
    check_params: tuple = ()

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"AlgorithmSpec {self.id!r}: category must be one of {CATEGORIES}")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"AlgorithmSpec {self.id!r}: duplicate parameter names {names}")

    def param(self, name: str) -> ParamSpec:
        """The :class:`ParamSpec` called ``name`` (KeyError when there is none)."""
        for spec in self.params:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.id} has no parameter {name!r}")


_REGISTRY: dict[str, AlgorithmSpec] = {}
_LOAD_LOCK = threading.RLock()
_loaded = False
#: Why the deep methods are missing, when their import failed (for a GUI tooltip or the CLI).
deep_import_error: Optional[str] = None


def register(spec: AlgorithmSpec) -> None:
    """Add ``spec`` to the registry (re-registering the same id replaces it, so module reloads work)."""
    if not isinstance(spec, AlgorithmSpec):
        raise TypeError(f"register() takes an AlgorithmSpec, got {type(spec).__name__}")
    if spec.id in _REGISTRY and _REGISTRY[spec.id].factory is not spec.factory:
        logger.info("clustering algorithm %r re-registered with %s", spec.id, spec.factory.__name__)
    _REGISTRY[spec.id] = spec


def _ensure_loaded() -> None:
    """Import the modules that register algorithms, once: classic (must work), then deep (may fail)."""
    global _loaded, deep_import_error
    if _loaded:
        return
    with _LOAD_LOCK:
        if _loaded:
            return
        importlib.import_module(f"{__package__}.classic")
        importlib.import_module(f"{__package__}.community")
        try:
            importlib.import_module(f"{__package__}.deep")
        except Exception as error:  # noqa: BLE001 - any failure in optional deep methods must not hide classic ones
            deep_import_error = f"{type(error).__name__}: {error}"
            logger.warning("deep clustering methods unavailable (%s)", deep_import_error)
        _loaded = True


def list_algorithms(category: Optional[str] = None) -> list[AlgorithmSpec]:
    """Every registered algorithm, classic first then in registration order, optionally of one category."""
    _ensure_loaded()
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES} or None, got {category!r}")
    specs = [spec for spec in _REGISTRY.values() if category is None or spec.category == category]
    # Classic first whatever was imported first (importing the deep package directly registers it
    # before the classic module loads); within a category, registration order.
    return sorted(specs, key=lambda spec: CATEGORIES.index(spec.category))


def get_algorithm(algorithm_id: str) -> AlgorithmSpec:
    """The spec registered as ``algorithm_id``.

    Raises
    ------
    KeyError
        With the list of known ids.
    """
    _ensure_loaded()
    try:
        return _REGISTRY[algorithm_id]
    except KeyError:
        known = ", ".join(_REGISTRY) or "none"
        raise KeyError(f"unknown clustering algorithm {algorithm_id!r}; known: {known}") from None


def make_estimator(algorithm_id: str, n_clusters: Optional[int] = None, random_state: Any = 0, **params: Any):
    """Build the estimator of ``algorithm_id`` with validated parameters.

    Parameters
    ----------
    algorithm_id : str
        A registered id (see :func:`list_algorithms`).
    n_clusters : int, optional
        Passed when the algorithm uses K (``spec.uses_k``); ignored with a log line otherwise.
    random_state : int or None
        Seed; passed when the estimator has a ``random_state`` parameter.
    **params
        Values for the spec's :class:`ParamSpec` names (converted and range-checked); names the
        estimator accepts but the spec does not list are passed through unchecked.

    Raises
    ------
    KeyError
        Unknown algorithm.
    ValueError
        A parameter the estimator does not take, or a value out of range.
    """
    spec = get_algorithm(algorithm_id)
    # scikit-learn's introspection of __init__; None for a factory that is not a BaseEstimator.
    param_names = getattr(spec.factory, "_get_param_names", None)
    accepted = set(param_names()) if param_names is not None else None
    kwargs: dict[str, Any] = {}
    declared = {p.name: p for p in spec.params}
    for name, value in params.items():
        if name in declared:
            kwargs[name] = declared[name].validate(value)
        elif accepted is not None and name not in accepted:
            names = ", ".join(sorted(declared)) or "none"
            raise ValueError(f"{spec.id} has no parameter {name!r}; it takes: {names}")
        else:
            kwargs[name] = value
    if n_clusters is not None:
        if spec.uses_k:
            kwargs["n_clusters"] = int(n_clusters)
        else:
            logger.info("%s chooses its own number of clusters; n_clusters=%s ignored", spec.id, n_clusters)
    if accepted is None or "random_state" in accepted:
        kwargs["random_state"] = random_state
    return spec.factory(**kwargs)
