"""Test helpers shared by the test folders: one Gaussian-blob generator, one tiny CNN backbone, and a
progress callback that cancels at a chosen point and counts what came after.

Import them as ``from tests.helpers import gaussian_blobs, TinyCNN, CancelAt`` (``tests/conftest.py``
puts the repository root on ``sys.path``, so this works however pytest is started).

Paths to the shared datasets and weights beside the repository (``../shared``) are not here: they are
resolved once, in ``tests/conftest.py``, by the ``shared_dataset`` and ``shared_weights`` fixtures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from imgcluster_gui.core.progress import Cancelled, ProgressEvent

__all__ = ["CancelAt", "TinyCNN", "gaussian_blobs"]


def gaussian_blobs(
    n: int,
    k: int,
    dims: int,
    *,
    spread: float = 1.0,
    centre_scale: float = 3.0,
    centres: str = "normal",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in ``k`` isotropic Gaussian blobs in ``dims`` dimensions, and their true labels.

    Parameters
    ----------
    n, k, dims
        Number of points, of blobs and of feature dimensions. Point ``i`` belongs to blob ``i % k``,
        so the blobs are as equal in size as ``n`` allows and any prefix ``X[:m]`` mixes them.
    spread
        Standard deviation of each blob around its centre (the same along every axis).
    centre_scale
        How far apart the centres lie; see ``centres``.
    centres
        ``"normal"``: each centre coordinate is drawn from N(0, centre_scale**2), so two centres lie
        about ``centre_scale * sqrt(2 * dims)`` apart. ``"box"``: each coordinate is drawn uniformly
        from [-centre_scale, centre_scale], the layout of scikit-learn's ``make_blobs`` (whose
        default box is ``centre_scale=10``).
    seed
        Seed of the generator: the same arguments always give the same data.

    Returns
    -------
    X : float32 array of shape (n, dims)
    y : int64 array of shape (n,), the blob of each point, in ``0 .. k-1``
    """
    if centres not in ("normal", "box"):
        raise ValueError(f"centres must be 'normal' or 'box', not {centres!r}")
    rng = np.random.default_rng(seed)
    if centres == "normal":
        centre_points = rng.normal(0.0, centre_scale, (k, dims))
    else:
        centre_points = rng.uniform(-centre_scale, centre_scale, (k, dims))
    y = np.arange(n, dtype=np.int64) % k
    X = centre_points[y] + rng.normal(0.0, spread, (n, dims))
    return X.astype(np.float32), y


class TinyCNN(nn.Module):
    """A small CNN mapping an ``(N, 3, H, W)`` batch to ``(N, out_dim)`` features, standing in for a
    pretrained backbone so CPU tests stay fast.

    Two (or ``len(channels)``) 3x3 stride-2 convolutions with ReLU, then adaptive average pooling to
    ``pool x pool`` and a flatten: ``out_dim = channels[-1] * pool**2`` (16 with the defaults). The
    layers sit in ``self.body`` (state-dict keys ``body.0.weight``, ...). The weights are drawn under
    ``torch.manual_seed(seed)`` without touching the global random state, so two instances built with
    the same arguments are identical (what loading a saved fine-tuned network needs).
    """

    def __init__(self, channels: Sequence[int] = (8, 16), pool: int = 1, seed: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for out_channels in channels:
                layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2), nn.ReLU()]
                in_channels = out_channels
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(pool), nn.Flatten())
        self.out_dim = in_channels * pool * pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CancelAt:
    """A progress callback that cancels at a chosen call and records every call, before and after.

    The ``after + 1``-th call whose stage starts with ``stage`` raises :class:`Cancelled`, and so does
    every call after it (as a cancelled :class:`~imgcluster_gui.core.progress.CancelToken` does). A
    test can then assert that the work stopped *there* -- ``calls_after_cancel == 0``: no progress
    call after the one that raised -- rather than only that ``Cancelled`` came out at some point,
    which a function that swallows the cancel and carries on (re-raising at the end) also passes.

    Attributes
    ----------
    stages : list of str
        The stage of every call received, the cancelling one included.
    cancelled_stage : str or None
        The stage of the call that raised first; None while no call has matched.
    """

    def __init__(self, after: int = 0, stage: str = ""):
        self.after = after
        self.stage = stage
        self.stages: list[str] = []
        self.cancelled_stage: str | None = None
        self._matching = 0
        self._cancelled_at: int | None = None

    def __call__(self, event: ProgressEvent) -> None:
        self.stages.append(event.stage)
        if self._cancelled_at is None and event.stage.startswith(self.stage):
            self._matching += 1
            if self._matching > self.after:
                self._cancelled_at, self.cancelled_stage = len(self.stages), event.stage
        if self._cancelled_at is not None:
            raise Cancelled("cancelled by the test")

    @property
    def calls(self) -> int:
        """Progress calls received, the cancelling one included."""
        return len(self.stages)

    @property
    def calls_after_cancel(self) -> int:
        """Progress calls received after the one that raised (0 when the work stopped right there)."""
        if self._cancelled_at is None:
            raise AssertionError(
                f"the cancel never triggered: no stage started with {self.stage!r} "
                f"more than {self.after} time(s) in {self.stages}"
            )
        return len(self.stages) - self._cancelled_at
