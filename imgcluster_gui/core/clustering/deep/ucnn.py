"""UCNN (Hsu & Lin 2018): mini-batch k-means run jointly with network updates, for large image sets.

Per mini-batch:

1. features of the batch with the current weights ``W_t`` (L2-normalised), each image assigned to
   its nearest centroid;
2. one SGD step on the network from those assignments: cross-entropy of a cosine classifier
   whose class vectors are the (fixed, for this step) centroids, on augmented views, so features
   move toward their centroid and away from the others;
3. centroid update, per-centroid learning rate ``1 / count`` (Sculley's mini-batch k-means).

Feature drift: a centroid averages features computed under many older weights. With
``drift_compensation=True`` (default) the batch's features are computed again under the new
weights ``W_{t+1}``; each centroid is first shifted by the mean drift of its members
(``f(W_{t+1}) - f(W_t)``), bringing the old average to the current weights, and then updated with
the new features. ``drift_compensation=False`` is the paper's Baseline-I (update with the
features the assignment used, no shift), kept so the effect can be measured.

Memory: the method keeps the centroids ``(K, D)``, their counts ``(K,)`` and one batch; never a
feature matrix of all images (only the output labels, one int per image).
:meth:`UCNN.kept_state_nbytes` lists what it keeps, for tests.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ...choices import AUTO, resolve_device
from ..base import check_n_clusters
from ..registry import AlgorithmSpec, ParamSpec, register
from .common import (
    DeepClusterEstimator,
    EpochReporter,
    autocast,
    check_y,
    kmeans,
    seed_everything,
    set_threads,
)
from .deepcluster import FineTunedNetwork
from .images import (
    IMAGE_TRAINING_PARAMS,
    ImageList,
    build_backbone,
    check_paths,
    eval_transform,
    features_of_images,
    loader,
    missing_requirement,
    preprocessing_from_dict,
    preprocessing_to_dict,
    state_of,
    train_transform,
    untrained_backbone,
)


class UCNN(DeepClusterEstimator):
    """Joint mini-batch k-means and CNN fine-tuning with feature-drift compensation.

    Parameters
    ----------
    n_clusters : int
    epochs : int
        Passes over the images.
    batch_size : int
        Images per mini-batch (the memory bound).
    init_size : int or None
        Images whose features seed the centroids (k-means++); ``None`` = ``max(10 K, 2 batch_size)``,
        at most the number of images. Bounded by this, not by the number of images.
    drift_compensation : bool
        ``False`` = Baseline-I of the paper.
    lr, momentum, weight_decay : float
        SGD on the network.
    temperature : float
        Scale of the cosine logits of the clustering loss.
    augment : bool
    input_size : int or 'auto'
        Crop size; ``'auto'`` = the backbone's.
    device : {'auto', 'cpu', 'cuda', 'mps'}
    n_threads : int or None
    num_workers : int
    random_state : int or None

    Attributes
    ----------
    labels_ : ndarray of shape (n_images,)
        Nearest centroid of each image with the final network (or, after a cancel, the
        assignments of the last completed epoch).
    confidence_ : ndarray of shape (n_images,)
        Largest softmax of the cosine logits.
    cluster_centers_ : ndarray of shape (n_clusters, D)
        Centroids in the (L2-normalised) feature space of the fine-tuned network.
    counts_ : ndarray of shape (n_clusters,)
    history_, partial_, network_
    """

    param_specs = (
        ParamSpec("epochs", "int", minimum=1, maximum=500, help="Passes over the images."),
        ParamSpec(
            "drift_compensation",
            "bool",
            help="Correct centroids for the network's change (off = the paper's Baseline-I).",
        ),
        *IMAGE_TRAINING_PARAMS,
    )

    def __init__(
        self,
        n_clusters: int = 8,
        epochs: int = 5,
        batch_size: int = 64,
        init_size: Optional[int] = None,
        drift_compensation: bool = True,
        lr: float = 0.005,
        momentum: float = 0.9,
        weight_decay: float = 1e-5,
        temperature: float = 10.0,
        augment: bool = True,
        input_size: Any = AUTO,
        device: str = AUTO,
        n_threads: Optional[int] = None,
        num_workers: int = 0,
        random_state: Optional[int] = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_size = init_size
        self.drift_compensation = drift_compensation
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.augment = augment
        self.input_size = input_size
        self.device = device
        self.n_threads = n_threads
        self.num_workers = num_workers
        self.random_state = random_state

    def fit(
        self,
        X=None,
        y=None,
        progress=None,
        paths=None,
        backbone: Union[str, nn.Module, None] = None,
        weights_path: Optional[str] = None,
        layer: Optional[str] = None,
        **fit_params,
    ) -> "UCNN":
        """Fine-tune the backbone and cluster the images in one streaming pass per epoch.

        Parameters
        ----------
        X : ignored (may be the pretrained features; only its row count is checked)
        y : array-like of shape (n_images,), optional
            Ground truth, only reported as ``nmi_true`` per epoch.
        progress : callable, optional
            Called every batch; raising ``Cancelled`` keeps the last complete epoch's
            assignments (``partial_ = True``) and re-raises.
        paths : sequence of path
        backbone : str or torch.nn.Module
        weights_path, layer : optional
        """
        fit_params.pop("view_slices", None)
        if fit_params:
            raise TypeError(f"UCNN.fit got unexpected arguments: {sorted(fit_params)}")
        if backbone is None:
            from ...features.backbones import DEFAULT_BACKBONE

            backbone = DEFAULT_BACKBONE
        paths = check_paths(paths, None if X is None else np.asarray(X).shape[0])
        check_n_clusters(self.n_clusters, len(paths), minimum=2)
        y = check_y(y, len(paths))
        self._start()
        return self._run(lambda: self._fit(paths, y, backbone, weights_path, layer, progress))

    # ---------------------------------------------------------------------------------- helpers
    def _features(self, network: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        network.eval()
        with torch.no_grad(), autocast(device):
            features = network(images).float()
        return nn.functional.normalize(features, dim=1)

    def _logits(self, features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        return self.temperature * nn.functional.normalize(features, dim=1) @ nn.functional.normalize(centroids, dim=1).T

    def _fit(self, paths, y, backbone, weights_path, layer, progress) -> None:
        set_threads(self.n_threads)
        device = resolve_device(self.device)
        generator = seed_everything(self.random_state)
        seed = 0 if self.random_state is None else int(self.random_state)
        rng = np.random.default_rng(seed)
        model, prep, self.backbone_name_ = build_backbone(backbone, layer, weights_path, device, self.input_size)
        network = FineTunedNetwork(model, sobel=False).to(device)
        self.network_ = network
        self.layer_, self.preprocessing_ = layer, prep
        n_images, batch_size = len(paths), int(self.batch_size)
        init_size = int(min(n_images, self.init_size or max(10 * self.n_clusters, 2 * batch_size)))
        per_pass = math.ceil(n_images / batch_size)
        reporter = EpochReporter(progress, math.ceil(init_size / batch_size) + per_pass * (self.epochs + 1))
        plain = ImageList(paths, eval_transform(prep), prep.resize_size)
        augmented = ImageList(paths, train_transform(prep, self.augment), prep.resize_size)

        # --- centroids from k-means++ on a bounded random subset
        subset = np.sort(rng.choice(n_images, init_size, replace=False))
        seed_features = []
        for images, _ in loader(plain, batch_size, self.num_workers, subset):
            seed_features.append(self._features(network, images.to(device), device).cpu())
            reporter.step("Seeding centroids")
        _, centers = kmeans(torch.cat(seed_features).numpy(), self.n_clusters, seed, n_init=3)
        del seed_features
        centroids = torch.from_numpy(centers).to(device)
        counts = torch.ones(self.n_clusters, device=device)  # the seed counts as one observation
        self._kept = {"centroids": centroids, "counts": counts}

        optimiser = torch.optim.SGD(
            network.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        epoch_labels = np.full(n_images, -1, np.int64)
        for epoch in range(1, self.epochs + 1):
            order = torch.randperm(n_images, generator=generator).numpy()
            total = 0.0
            for (images, index), (augmented_images, _) in zip(
                loader(plain, batch_size, self.num_workers, order),
                loader(augmented, batch_size, self.num_workers, order, generator),
            ):
                images = images.to(device)
                before = self._features(network, images, device)
                assigned = (before @ nn.functional.normalize(centroids, dim=1).T).argmax(dim=1)
                # SGD on the network toward the assignment (centroids fixed for this step).
                network.train()
                with autocast(device):
                    logits = self._logits(network(augmented_images.to(device)).float(), centroids)
                    loss = nn.functional.cross_entropy(logits.float(), assigned)
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                if self.drift_compensation:
                    after = self._features(network, images, device)
                    self._update_centroids(centroids, counts, assigned, after, drift=after - before)
                else:
                    self._update_centroids(centroids, counts, assigned, before, drift=None)
                epoch_labels[index.numpy()] = assigned.cpu().numpy()
                total += float(loss.detach()) * len(index)
                reporter.step(f"Epoch {epoch}/{self.epochs}")
            labels = epoch_labels.copy()
            self._keep_result(labels, centers=centroids.cpu().numpy())
            self._record_epoch(epoch, total / n_images, labels, y)

        # --- final assignment with the final network (streamed, one batch at a time)
        labels = np.empty(n_images, np.int64)
        confidence = np.empty(n_images, np.float32)
        for images, index in loader(plain, batch_size, self.num_workers):
            features = self._features(network, images.to(device), device)
            probabilities = torch.softmax(self._logits(features, centroids), dim=1)
            labels[index.numpy()] = probabilities.argmax(dim=1).cpu().numpy()
            confidence[index.numpy()] = probabilities.max(dim=1).values.cpu().numpy()
            reporter.step("Final assignment")
        self._keep_result(labels, confidence, centroids.cpu().numpy())
        self.counts_ = counts.cpu().numpy()
        self.history_.append(
            {
                "epoch": self.epochs + 1,
                "phase": "final",
                "loss": None,
                "nmi_change": _nmi(labels, epoch_labels) if self.epochs else None,
                **({"nmi_true": _nmi(y, labels)} if y is not None else {}),
            }
        )
        reporter.finish("done")

    @staticmethod
    def _update_centroids(
        centroids: torch.Tensor,
        counts: torch.Tensor,
        assigned: torch.Tensor,
        features: torch.Tensor,
        drift: Optional[torch.Tensor],
    ) -> None:
        """Mini-batch k-means step in place: per sample, ``c += (x - c) / count`` (after the drift shift)."""
        if drift is not None:
            for cluster in assigned.unique():
                members = assigned == cluster
                centroids[cluster] += drift[members].mean(dim=0)
        for row, cluster in enumerate(assigned.tolist()):
            counts[cluster] += 1
            centroids[cluster] += (features[row] - centroids[cluster]) / counts[cluster]

    def kept_state_nbytes(self) -> dict[str, int]:
        """Bytes of every array the method keeps across batches (labels excluded): for memory tests."""
        kept = dict(getattr(self, "_kept", {}))
        return {name: int(t.numel() * t.element_size()) for name, t in kept.items()}

    def save(self, path) -> Path:
        """Save the fine-tuned backbone and the centroids with the parameters (atomically).

        Read back by :meth:`load` (``weights_only=True``).
        """
        from .saving import params_to_json, tensor, write_payload

        if not hasattr(self, "network_"):
            raise RuntimeError("UCNN is not fitted yet: nothing to save")
        payload: dict[str, Any] = {
            "method": "UCNN",
            "params_json": params_to_json(self.get_params()),
            "backbone": self.backbone_name_,
            "layer": getattr(self, "layer_", None),
            "preprocessing": preprocessing_to_dict(self.preprocessing_),
            "network": state_of(self.network_),
            "cluster_centers": tensor(getattr(self, "cluster_centers_", None)),
            "counts": tensor(getattr(self, "counts_", None)),
            "partial": bool(getattr(self, "partial_", False)),
        }
        return write_payload(payload, path)

    @classmethod
    def load(cls, path, device: str = "cpu", backbone: Optional[nn.Module] = None) -> "UCNN":
        """The fine-tuned network and centroids from a :meth:`save` file (see ``DeepCluster.load``).

        Raises
        ------
        deep.saving.ModelFileError
        """
        from .saving import read_payload

        return cls.from_payload(read_payload(path, "UCNN"), path, device=device, backbone=backbone)

    @classmethod
    def from_payload(cls, payload: dict, path, device: str = "cpu", backbone: Optional[nn.Module] = None) -> "UCNN":
        from .saving import ModelFileError, array, load_state, params_from_json

        try:
            estimator = cls(**params_from_json(payload))
            estimator.backbone_name_ = str(payload["backbone"])
            estimator.layer_ = payload.get("layer")
            estimator.preprocessing_ = preprocessing_from_dict(payload["preprocessing"])
            network = FineTunedNetwork(
                untrained_backbone(estimator.backbone_name_, estimator.layer_, backbone), sobel=False
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{Path(path).name}: cannot rebuild the network: {exc}") from None
        load_state(network, payload.get("network") or {}, "fine-tuned network", path)
        estimator.network_ = network.to(resolve_device(device)).eval()
        for name, key in (("cluster_centers_", "cluster_centers"), ("counts_", "counts")):
            value = array(payload.get(key))
            if value is not None:
                setattr(estimator, name, value.astype(np.float32))
        estimator.partial_ = bool(payload.get("partial", False))
        return estimator

    def transform(self, paths) -> np.ndarray:
        """L2-normalised features ``(n, D)`` of image files with the fine-tuned network."""
        if not hasattr(self, "network_"):
            raise RuntimeError("UCNN is not fitted yet: call fit or load first")
        features = features_of_images(
            self.network_, check_paths(paths, None), self.preprocessing_, int(self.batch_size), int(self.num_workers)
        )
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

    def predict(self, paths) -> np.ndarray:
        """Cluster of image files: the most similar centroid (cosine), as the final assignment."""
        if getattr(self, "cluster_centers_", None) is None:
            raise RuntimeError("UCNN has no centroids: fit it first")
        centers = self.cluster_centers_ / np.maximum(
            np.linalg.norm(self.cluster_centers_, axis=1, keepdims=True), 1e-12
        )
        return np.argmax(self.transform(paths) @ centers.T, axis=1).astype(np.int64)


def _nmi(a, b) -> Optional[float]:
    from .common import nmi

    return nmi(a, b)


register(
    AlgorithmSpec(
        "ucnn",
        "UCNN (mini-batch k-means + CNN, large sets)",
        "Mini-batch k-means run jointly with fine-tuning the CNN, memory bounded by the batch "
        "(Hsu & Lin 2018). Slow without a GPU.",
        UCNN,
        uses_k=True,
        supports_auto_k=False,
        category="deep",
        needs_images=True,
        unavailable=missing_requirement(),
        order=40,
    )
)
