"""What every deep clustering estimator shares: device, seeding, progress per batch, cancel, metrics.

Cancel contract (the same for every method here)
-----------------------------------------------
The progress callback raises :class:`~imgcluster_gui.core.progress.Cancelled`; the estimators
call it at least once per mini-batch. On a cancel the estimator keeps the best result it has:
``labels_`` (and ``confidence_``, ``cluster_centers_`` where they exist) from the last *completed*
epoch, sets ``partial_ = True``, then re-raises :class:`Cancelled` so the caller still knows the
run stopped early. A cancel before any assignment exists (e.g. during autoencoder pre-training)
leaves no ``labels_`` at all.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from ...choices import DEVICE_CHOICES
from ...progress import Cancelled, ProgressCallback, ensure
from ..registry import ParamSpec

#: The ``device`` parameter of every deep method (:func:`imgcluster_gui.core.choices.resolve_device`).
DEVICE_PARAM = ParamSpec(
    "device", "choice", choices=DEVICE_CHOICES, help="Where to train: 'auto' uses the GPU when there is one."
)


def seed_everything(seed: Optional[int]) -> torch.Generator:
    """Seed Python, numpy's legacy generator and torch; return a CPU generator for data order.

    ``None`` means seed 0: a deep method must be repeatable by default (a user comparing two runs
    should not see noise).
    """
    seed = 0 if seed is None else int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision on CUDA (faster, same quality for these nets); plain fp32 on the CPU.

    bf16 autocast on CPUs without bf16 hardware is several times slower (MEASURED.md), so the
    CPU never gets it.
    """
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def kmeans(X: np.ndarray, n_clusters: int, random_state: int, n_init: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ with restarts (scikit-learn): ``(labels (n,), centers (k, d))``.

    Used on small latent spaces (d ~ 10-64), where k-means++ seeding is cheap and much better than
    random seeding (MEASURED.md).
    """
    model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state).fit(X)
    return model.labels_.astype(np.int64), model.cluster_centers_.astype(np.float32)


def student_t(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """DEC's soft assignment q_ij ∝ (1 + |z_i - mu_j|^2 / alpha)^-(alpha+1)/2, shape (n, k)."""
    squared = torch.cdist(z.float(), centers.float()).pow(2)
    q = (1.0 + squared / alpha).pow(-(alpha + 1.0) / 2.0)
    return q / q.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC's sharpened target p_ij ∝ q_ij^2 / f_j (f_j = soft cluster size), shape (n, k)."""
    weight = q.pow(2) / q.sum(dim=0, keepdim=True)
    return weight / weight.sum(dim=1, keepdim=True)


def nmi(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> Optional[float]:
    """NMI of two labelings, ``None`` when either is missing."""
    if a is None or b is None:
        return None
    return float(normalized_mutual_info_score(a, b))


def check_y(y: Any, n_samples: int) -> Optional[np.ndarray]:
    """Ground truth for *reporting only* (``nmi_true`` per epoch); never used for training."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.shape != (n_samples,):
        raise ValueError(f"y must have one label per sample ({n_samples}), got shape {y.shape}")
    return y


class EpochReporter:
    """Maps (epoch, batch) onto the progress bar and gives the callback a chance to cancel.

    Parameters
    ----------
    progress : callable or None
        The caller's ``progress(fraction, stage)``; may raise :class:`Cancelled`.
    total_steps : int
        Batches over the whole fit (the bar is linear in them).
    """

    def __init__(self, progress: Optional[ProgressCallback], total_steps: int) -> None:
        self._progress = ensure(progress)
        self._total = max(1, int(total_steps))
        self._done = 0

    def step(self, stage: str) -> None:
        """One batch done: moves the bar; the callback may raise :class:`Cancelled` here."""
        self._done += 1
        self._progress(min(1.0, self._done / self._total), stage)

    def heartbeat(self, stage: str) -> None:
        self._progress.heartbeat(stage)

    def finish(self, stage: str = "done") -> None:
        self._progress(1.0, stage)


def batches(n_samples: int, batch_size: int, generator: Optional[torch.Generator] = None) -> Iterator[np.ndarray]:
    """Index batches over ``range(n_samples)``, shuffled when a generator is given."""
    order = torch.randperm(n_samples, generator=generator).numpy() if generator is not None else np.arange(n_samples)
    for start in range(0, n_samples, batch_size):
        yield order[start : start + batch_size]


class DeepClusterEstimator(ClusterMixin, BaseEstimator):
    """Base of the deep estimators: the shared bookkeeping of history, partial results and saving.

    Subclasses implement ``_fit(X, y, reporter, **fit_params)`` and call :meth:`_record_epoch`
    at the end of each epoch, which keeps that epoch's labels as the best-so-far result.
    """

    # Attributes written by _keep_result: the set restored on cancel.
    _result_attributes = ("labels_", "confidence_", "cluster_centers_", "embedding_")

    def _start(self) -> None:
        self.history_: list[dict[str, Any]] = []
        self.partial_ = False
        for name in self._result_attributes:
            if hasattr(self, name):
                delattr(self, name)
        self._previous_labels: Optional[np.ndarray] = None

    def _record_epoch(
        self, epoch: int, loss: Optional[float], labels: np.ndarray, y: Optional[np.ndarray], **extra: Any
    ) -> dict[str, Any]:
        """Append one history row: epoch, loss, delta_label, nmi_change, nmi_true (when y), extras."""
        labels = np.asarray(labels, dtype=np.int64)
        row: dict[str, Any] = {"epoch": int(epoch), "loss": None if loss is None else float(loss)}
        if self._previous_labels is not None:
            row["delta_label"] = float(np.mean(labels != self._previous_labels))
            row["nmi_change"] = nmi(labels, self._previous_labels)
        else:
            row["delta_label"] = None
            row["nmi_change"] = None
        if y is not None:
            row["nmi_true"] = nmi(y, labels)
        row.update(extra)
        self.history_.append(row)
        self._previous_labels = labels
        return row

    def _keep_result(
        self,
        labels: np.ndarray,
        confidence: Optional[np.ndarray] = None,
        centers: Optional[np.ndarray] = None,
        embedding: Optional[np.ndarray] = None,
    ) -> None:
        """Store a complete assignment as the current result (what a cancel leaves behind)."""
        self.labels_ = np.asarray(labels, dtype=np.int64)
        if confidence is not None:
            self.confidence_ = np.asarray(confidence, dtype=np.float32)
        if centers is not None:
            self.cluster_centers_ = np.asarray(centers, dtype=np.float32)
        if embedding is not None:
            self.embedding_ = np.asarray(embedding, dtype=np.float32)

    def _run(self, body: Callable[[], None]) -> "DeepClusterEstimator":
        """Run ``body`` with the cancel contract: on :class:`Cancelled` mark the result partial, re-raise."""
        try:
            body()
        except Cancelled:
            self.partial_ = True
            raise
        finally:
            self._previous_labels = None
        self.partial_ = False
        return self

    def fit_predict(self, X, y=None, **fit_params) -> np.ndarray:
        return self.fit(X, y, **fit_params).labels_


def set_threads(n_threads: Optional[int]) -> None:
    """Respect an explicit thread count; ``None`` keeps what the process set (``torch.set_num_threads``)."""
    if n_threads is not None and int(n_threads) > 0:
        torch.set_num_threads(int(n_threads))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


__all__ = [
    "Cancelled",
    "DEVICE_PARAM",
    "DeepClusterEstimator",
    "EpochReporter",
    "autocast",
    "batches",
    "check_y",
    "kmeans",
    "nmi",
    "seed_everything",
    "set_threads",
    "student_t",
    "target_distribution",
    "to_numpy",
]
