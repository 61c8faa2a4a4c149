"""Choice values the core, the CLI and the GUI share, each spelled once: ``AUTO`` and the devices.

This module imports nothing heavy (torch only inside :func:`resolve_device`), so the CLI can build
its argument parser from these lists without loading torch.

``AUTO`` is the one spelling of "let the program choose": a clustering parameter the estimator
estimates (DBSCAN's ``eps``, PIC's ``sigma``, FINCH's ``level``, a deep method's ``input_size``
...), the device, and ``--k auto`` on the command line. ``None`` (a parameter not given, as in
scikit-learn) is read the same way by :func:`is_auto`.
"""

from __future__ import annotations

from typing import Any

#: "Let the program choose" (parameters, device, the CLI's ``--k``).
AUTO = "auto"

#: Devices a user may ask for; ``AUTO`` picks CUDA, then Apple's MPS, then the CPU.
#: :func:`resolve_device` also takes ``'cuda:N'`` and a ``torch.device``.
DEVICE_CHOICES = (AUTO, "cpu", "cuda", "mps")


def is_auto(value: Any) -> bool:
    """Whether ``value`` asks for the automatic choice: ``AUTO`` (any case) or ``None``."""
    return value is None or (isinstance(value, str) and value.strip().lower() == AUTO)


def resolve_device(preference: Any = AUTO):
    """The ``torch.device`` for ``preference``: ``'auto'`` picks CUDA, then MPS, then the CPU.

    Parameters
    ----------
    preference : {'auto', 'cpu', 'cuda', 'cuda:N', 'mps'}, None or torch.device
        ``None`` (or an empty text) means ``'auto'``; a ``torch.device`` is returned as it is.

    Raises
    ------
    ValueError
        An explicit ``'cuda'``/``'mps'`` that this computer does not have, or an unknown name.
    """
    import torch

    if isinstance(preference, torch.device):
        return preference
    text = AUTO if not preference or is_auto(preference) else str(preference).strip().lower()
    mps_ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if text == AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but no CUDA GPU is usable here; use 'cpu' or 'auto'")
        return torch.device(text)
    if text == "mps":
        if not mps_ok:
            raise ValueError(
                "device 'mps' was asked for but Apple's Metal backend is not available here; use 'cpu' or 'auto'"
            )
        return torch.device("mps")
    if text == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {preference!r}; use {', '.join(DEVICE_CHOICES)} or cuda:N")
