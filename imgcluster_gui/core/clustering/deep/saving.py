"""Files of trained deep models: atomic writes, safe reads, one loader for every method.

A trained-model file is a ``torch.save`` dict that holds only tensors, numbers, strings, lists and
dicts (the estimator's parameters as a JSON string), so it is read with ``weights_only=True``: a
session received from someone else cannot run code when its network is loaded.

Keys every file has: ``format`` (:data:`MODEL_FORMAT`), ``version``, ``method`` (the estimator
class name) and ``params_json``; the rest is the method's own (see each ``save``).

What is saved per method
------------------------
* DEC / IDEC / DMVC: the autoencoder, its input scaling and the centroids (``transform`` /
  ``predict`` on feature vectors).
* DeepCluster: the fine-tuned backbone (+ Sobel front), the last classifier head, the PCA
  whitening and the centres of the final assignment (``transform`` / ``predict`` on images).
* UCNN: the fine-tuned backbone and the centroids.

The feature cache is never involved: features of a fine-tuned network are computed from the
saved network, never stored under the pretrained backbone's key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union, overload

import numpy as np
import torch

from ...storage import atomic_write

MODEL_FORMAT = "imgcluster-trained-model"
MODEL_VERSION = 1
MODEL_SUFFIX = ".pt"
#: Estimator class name -> module holding it (imported only when a file of that method is read).
_METHODS = {"IDEC": "dec", "DEC": "dec", "DMVC": "multiview", "DeepCluster": "deepcluster", "UCNN": "ucnn"}

PathLike = Union[str, "os.PathLike[str]"]


class ModelFileError(Exception):
    """A trained-model file cannot be written or read; ``str(error)`` is a one-line reason."""


def has_trained_network(estimator: Any) -> bool:
    """True when ``estimator`` is a deep method with a trained network that :func:`save_model` can write."""
    return (
        type(estimator).__name__ in _METHODS
        and callable(getattr(estimator, "save", None))
        and (hasattr(estimator, "model_") or hasattr(estimator, "network_"))
    )


def params_to_json(params: Mapping[str, Any]) -> str:
    """The estimator's ``get_params()`` as JSON (tuples as lists, slices as ``[start, stop]``)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, slice):
            return [value.start, value.stop]
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise ModelFileError(f"parameter value {value!r} cannot be saved with the trained model")

    return json.dumps({name: plain(value) for name, value in params.items()})


def params_from_json(payload: Mapping[str, Any]) -> dict[str, Any]:
    params = json.loads(payload["params_json"])
    if isinstance(params.get("hidden"), list):
        params["hidden"] = tuple(int(h) for h in params["hidden"])
    return params


def tensor(value: Any) -> Optional[torch.Tensor]:
    """A CPU tensor copy of an array (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    return torch.from_numpy(np.array(value, copy=True))


@overload
def array(value: torch.Tensor) -> np.ndarray: ...
@overload
def array(value: None) -> None: ...
@overload
def array(value: Optional[torch.Tensor]) -> Optional[np.ndarray]: ...
def array(value: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    """A saved tensor as a numpy array on the CPU (``None`` stays ``None``)."""
    return None if value is None else value.detach().cpu().numpy()


def write_payload(payload: dict[str, Any], path: PathLike) -> Path:
    """``torch.save`` ``payload`` to ``path`` atomically (temporary file in the same folder, then rename).

    A crash or a full disk never leaves half a file at ``path``; an earlier file there stays intact.
    """
    target = Path(os.fsdecode(path))
    payload = {"format": MODEL_FORMAT, "version": MODEL_VERSION, **payload}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, "wb") as fh:  # removes its temporary file on any error
            torch.save(payload, fh)
    except OSError as exc:  # StorageError (an OSError) included: its message is the reason
        raise ModelFileError(f"Cannot write the trained model to {target}: {exc.strerror or exc}") from None
    return target


def read_payload(path: PathLike, method: Optional[Union[str, tuple]] = None) -> dict[str, Any]:
    """Read a file written by :func:`write_payload` (``weights_only=True``); check format and method.

    Raises
    ------
    ModelFileError
        Missing, unreadable, damaged, foreign or newer file, or a file of another method.
    """
    source = Path(os.fsdecode(path))
    if not source.is_file():
        raise ModelFileError(f"Trained model file not found: {source}")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and torch errors all mean "damaged or not ours"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{source.name} is damaged or not a trained-model file ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{source.name} is not an imgcluster trained-model file")
    version = payload.get("version")
    if not isinstance(version, int) or version > MODEL_VERSION:
        raise ModelFileError(
            f"{source.name} has model file version {version!r}, newer than this app reads "
            f"({MODEL_VERSION}): update imgcluster"
        )
    methods = (method,) if isinstance(method, str) else method
    if methods and payload.get("method") not in methods:
        raise ModelFileError(f"{source.name} holds a {payload.get('method')} model, not {' / '.join(methods)}")
    if "params_json" not in payload:
        raise ModelFileError(f"{source.name} is damaged: its parameters are missing")
    return payload


def save_model(estimator: Any, path: PathLike) -> Path:
    """Write ``estimator``'s trained network to ``path`` (atomically); raises :class:`ModelFileError`."""
    if not has_trained_network(estimator):
        raise ModelFileError(f"{type(estimator).__name__} has no trained network to save")
    try:
        return Path(estimator.save(path))
    except ModelFileError:
        raise
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelFileError(f"Cannot save the trained {type(estimator).__name__}: {exc}") from None


def load_model(path: PathLike, device: str = "cpu", backbone: Optional[torch.nn.Module] = None) -> Any:
    """The estimator saved in ``path``, ready for ``transform`` / ``predict``.

    Parameters
    ----------
    path : path
        A file written by any deep method's ``save``.
    device : {'auto', 'cpu', 'cuda', 'mps'}
    backbone : torch.nn.Module, optional
        For DeepCluster / UCNN trained on a module given directly (not a registry name): a module
        of the same architecture, whose weights are replaced by the saved ones.

    Raises
    ------
    ModelFileError
        The file is missing, damaged, of an unknown method, or does not fit its architecture.
    """
    payload = read_payload(path)
    method = payload.get("method")
    if method not in _METHODS:
        raise ModelFileError(f"{Path(path).name} holds an unknown method {method!r}")
    import importlib

    module = importlib.import_module(f"{__package__}.{_METHODS[method]}")
    cls = getattr(module, method)
    if method in ("DeepCluster", "UCNN"):
        return cls.from_payload(payload, path, device=device, backbone=backbone)
    return cls.from_payload(payload, path, device=device)


def load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, path: PathLike) -> None:
    """``module.load_state_dict(state)`` (strict) with a one-line :class:`ModelFileError` on a mismatch."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{Path(path).name}: the saved {what} does not fit its architecture ({first[:200]})"
        ) from None


__all__ = [
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "ModelFileError",
    "has_trained_network",
    "load_model",
    "read_payload",
    "save_model",
    "write_payload",
]
