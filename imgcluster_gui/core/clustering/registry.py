"""The clustering registry: the one place where algorithms are listed.

Each algorithm is an :class:`AlgorithmSpec` (id, display name, estimator class, flags). The GUI
builds its algorithm combo box and parameter forms from :func:`list_algorithms`; the CLI and the
pipeline build estimators with :func:`make_estimator`.

Parameters are declared once, beside the estimator: the class attribute ``param_specs`` lists its
user-facing :class:`ParamSpec` s *without* defaults, and the registry reads each default from the
estimator's ``__init__`` signature (:func:`bind_params`), so the form, the CLI listing and the
estimator can never disagree. A ``ParamSpec`` that does state a default must equal the signature's.

The registry fills itself lazily on first use: it imports every module of this package (and the
``deep`` sub-package), and each algorithm module registers its own algorithms when imported, so
adding an algorithm is one new file. A module that fails to import is logged and left out
(:data:`import_errors`); the others stay usable, so a broken or missing torch never takes k-means
down with it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import math
import pkgutil
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from ..choices import AUTO, is_auto

logger = logging.getLogger(__name__)

PARAM_KINDS = ("int", "float", "choice", "bool")
CATEGORIES = ("classic", "deep")


class _FromInit:
    """The default of a :class:`ParamSpec` that has not been bound to its estimator yet."""

    def __repr__(self) -> str:
        return "<the estimator's __init__ default>"


#: A ParamSpec's ``default`` until :func:`bind_params` reads it from the estimator's ``__init__``.
FROM_INIT = _FromInit()


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
        The value the form starts with: the estimator's ``__init__`` default, filled in by
        :func:`bind_params` when the spec is registered (leave it out where the spec is declared).
        A number parameter whose default is :data:`~imgcluster_gui.core.choices.AUTO` also takes
        ``AUTO`` ("estimate it"; see :attr:`auto`).
    choices : tuple
        Allowed values for ``kind='choice'``.
    minimum, maximum : float, optional
        Inclusive bounds for numbers.
    help : str
        One or two sentences for a tooltip.
    """

    name: str
    kind: str
    default: Any = FROM_INIT
    choices: tuple = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"ParamSpec {self.name!r}: kind must be one of {PARAM_KINDS}, got {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"ParamSpec {self.name!r}: a 'choice' parameter needs choices")

    @property
    def auto(self) -> bool:
        """A number the estimator can choose itself: it takes ``AUTO`` (its default) or a number."""
        return self.kind in ("int", "float") and isinstance(self.default, str) and self.default == AUTO

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
            if AUTO in self.choices and is_auto(value):
                return AUTO
            for choice in self.choices:
                if value == choice or (isinstance(value, str) and str(choice) == value):
                    return choice
            raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
        if self.auto and is_auto(value):
            return AUTO
        either = f" (or {AUTO!r})" if self.auto else ""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be a number{either}, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{self.name} must be finite, got {value!r}")
        if self.kind == "int":
            if number != int(number):
                raise ValueError(f"{self.name} must be a whole number{either}, got {value!r}")
            number = int(number)
        if self.minimum is not None and number < self.minimum:
            raise ValueError(f"{self.name} must be at least {self.minimum}{either}, got {value!r}")
        if self.maximum is not None and number > self.maximum:
            raise ValueError(f"{self.name} must be at most {self.maximum}{either}, got {value!r}")
        return number


def init_defaults(factory: Any) -> dict[str, Any]:
    """The keyword defaults of ``factory`` (an estimator class: its ``__init__``), by name."""
    empty = inspect.Parameter.empty
    return {
        name: parameter.default
        for name, parameter in inspect.signature(factory).parameters.items()
        if parameter.default is not empty
    }


def bind_params(factory: Any, params: Iterable[ParamSpec]) -> tuple:
    """``params`` with each default read from ``factory``'s ``__init__`` signature.

    Raises
    ------
    ValueError
        A parameter ``__init__`` does not take as a keyword with a default, or a spec that states
        a default other than ``__init__``'s (the estimator's signature is the one declaration).
    """
    defaults = init_defaults(factory)
    owner = getattr(factory, "__name__", repr(factory))
    bound = []
    for spec in params:
        if spec.name not in defaults:
            raise ValueError(f"ParamSpec {spec.name!r}: {owner}.__init__ has no keyword {spec.name!r} with a default")
        default = defaults[spec.name]
        stated = spec.default
        if stated is not FROM_INIT and not (type(stated) is type(default) and stated == default):
            raise ValueError(
                f"ParamSpec {spec.name!r} states the default {stated!r} but {owner}.__init__ has "
                f"{default!r}: leave the default out of the ParamSpec (__init__ declares it)"
            )
        bound.append(dataclasses.replace(spec, default=default))
    return tuple(bound)


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
    params : tuple of ParamSpec, optional
        The user-facing parameters (others keep the estimator's defaults). Left out (empty), they
        are the factory's ``param_specs``; either way their defaults are bound to its ``__init__``
        (:func:`bind_params`).
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
    order : int
        Position in listings (the GUI's combo box, ``imgcluster algorithms``) within the category:
        lower first, ties in registration order.
    unavailable : str
        Why the algorithm cannot run in this installation, in words for a person (e.g. the methods that
        fine-tune the CNN without torchvision); empty when it can. Listed, shown disabled, refused by ``fit``.
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
    order: int = 1000
    unavailable: str = ""

    def __post_init__(self) -> None:
        declared = self.params or getattr(self.factory, "param_specs", ())
        object.__setattr__(self, "params", bind_params(self.factory, declared))
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
#: Algorithm modules that failed to import: module name -> "ExceptionType: message".
import_errors: dict[str, str] = {}
#: Why the deep methods are missing, when their import failed (for a GUI tooltip or the CLI).
deep_import_error: Optional[str] = None


def register(spec: AlgorithmSpec) -> None:
    """Add ``spec`` to the registry (re-registering the same id replaces it, so module reloads work)."""
    if not isinstance(spec, AlgorithmSpec):
        raise TypeError(f"register() takes an AlgorithmSpec, got {type(spec).__name__}")
    if spec.id in _REGISTRY and _REGISTRY[spec.id].factory is not spec.factory:
        logger.info("clustering algorithm %r re-registered with %s", spec.id, spec.factory.__name__)
    _REGISTRY[spec.id] = spec


def import_algorithm_modules(package: str, paths: Sequence[str], prefix: str = "") -> dict[str, str]:
    """Import every module of ``package`` found in ``paths``, and of its sub-packages, by name (not
    ``_private`` ones, not this module); importing an algorithm module registers its algorithms.

    Returns
    -------
    dict
        Module name relative to ``package`` (``'deep'``, ``'deep.dec'``) -> ``"ExceptionType:
        message"`` for each that failed (logged, then skipped: one broken or optional dependency,
        torch for the deep methods, never hides the other algorithms).
    """
    failed: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(list(paths)), key=lambda found: found.name):
        module = f"{package}.{info.name}"
        if info.name.startswith("_") or module == __name__:
            continue
        name = prefix + info.name
        try:
            imported = importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - an optional method (torch) must not hide the others
            failed[name] = f"{type(error).__name__}: {error}"
            logger.warning("%s clustering methods unavailable (%s)", name, failed[name])
            continue
        if info.ispkg:
            failed.update(import_algorithm_modules(module, imported.__path__, prefix=f"{name}."))
    return failed


def _ensure_loaded() -> None:
    """Import this package's algorithm modules, once (each registers its own algorithms)."""
    global _loaded, deep_import_error
    if _loaded:
        return
    with _LOAD_LOCK:
        if _loaded:
            return
        package = importlib.import_module(__package__)
        import_errors.clear()
        import_errors.update(import_algorithm_modules(__package__, package.__path__))
        deep_failures = [error for name, error in import_errors.items() if name.split(".")[0] == "deep"]
        deep_import_error = deep_failures[0] if deep_failures else None
        _loaded = True


def list_algorithms(category: Optional[str] = None) -> list[AlgorithmSpec]:
    """Every registered algorithm, classic first, then by ``order`` (ties: registration order),
    optionally of one category."""
    _ensure_loaded()
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES} or None, got {category!r}")
    specs = [spec for spec in _REGISTRY.values() if category is None or spec.category == category]
    # Classic first whatever was imported first; modules are imported by name, so ``order`` (not the
    # import order) places each algorithm.
    return sorted(specs, key=lambda spec: (CATEGORIES.index(spec.category), spec.order))


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
