"""DeepCluster (Caron et al. 2018): alternate clustering the CNN's features and training the CNN on them.

Each epoch: features of every image with the current network, PCA-whitening, L2, k-means (the
project's, :mod:`..fast_kmeans`, registry id ``'kmeans'``) or power-iteration clustering (``'pic'``)
-> pseudo-labels; then a fresh linear classifier head and one pass of cross-entropy training on
images sampled uniformly over the pseudo-labels, under augmentation (random resized crop, flip).
The convergence curve is the NMI between consecutive assignments (``history_[i]['nmi_change']``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn

from ...choices import AUTO, resolve_device
from ..base import check_n_clusters
from ..registry import AlgorithmSpec, ParamSpec, register
from .common import (
    DeepClusterEstimator,
    EpochReporter,
    autocast,
    check_y,
    seed_everything,
    set_threads,
)
from .images import (
    IMAGE_TRAINING_PARAMS,
    ImageList,
    SobelFilter,
    build_backbone,
    check_paths,
    compute_features,
    eval_transform,
    feature_dim,
    features_of_images,
    loader,
    missing_requirement,
    preprocessing_from_dict,
    preprocessing_to_dict,
    state_of,
    train_transform,
    uniform_over_clusters,
    untrained_backbone,
)

CLUSTERERS = ("kmeans", "pic")


def fit_whitening(features: np.ndarray, pca_dims: int, random_state: int) -> dict[str, np.ndarray]:
    """PCA-whitening to at most ``pca_dims`` dimensions (and n/8): ``{'mean', 'components', 'scale'}``.

    Kept with the model so new images are whitened exactly as the clustered ones (:func:`apply_whitening`).
    """
    # Whitening gives every kept direction unit variance, so it needs several samples per direction:
    # on small sets a noisy minor direction would weigh as much as the main one.
    dims = int(max(2, min(pca_dims, features.shape[0] // 8, features.shape[1])))
    pca = PCA(n_components=dims, whiten=True, random_state=random_state).fit(features)
    return {
        "mean": pca.mean_.astype(np.float32),
        "components": pca.components_.astype(np.float32),
        "scale": np.sqrt(np.maximum(pca.explained_variance_, 1e-12)).astype(np.float32),
    }


def apply_whitening(features: np.ndarray, whitening: dict[str, np.ndarray]) -> np.ndarray:
    """Project on the whitening's components, divide by their spread, L2 per row: ``(n, d') float32``."""
    reduced = (np.asarray(features, np.float32) - whitening["mean"]) @ whitening["components"].T
    reduced /= whitening["scale"]
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(reduced, dtype=np.float32)


def whiten_l2(features: np.ndarray, pca_dims: int, random_state: int) -> np.ndarray:
    """PCA-whitening to at most ``pca_dims`` dimensions (and n/8), then L2 per row: ``(n, d') float32``."""
    return apply_whitening(features, fit_whitening(features, pca_dims, random_state))


def assign_with_centers(
    features: np.ndarray, n_clusters: int, clusterer: str, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-labels ``(n,)`` of whitened features and centres ``(k, d')`` for assigning new images.

    ``'kmeans'``: the project's k-means (the registry's ``'kmeans'``, :mod:`..fast_kmeans`: k-means++
    seeding, restarts, deterministic under the seed); the labels are exactly the nearest centres.
    ``'pic'``: the registry's power-iteration clustering; its centres are the (L2-normalised) means
    of each cluster, so new images go to the nearest mean.
    """
    from ..registry import make_estimator

    if clusterer == "kmeans":
        n_init = 5 if features.shape[0] <= 20000 else 1  # restarts are cheap on small sets, costly on huge ones
        model = make_estimator("kmeans", n_clusters=n_clusters, random_state=random_state, n_init=n_init)
        model.fit(features)
        return np.asarray(model.labels_, dtype=np.int64), np.asarray(model.cluster_centers_, dtype=np.float32)
    model = make_estimator("pic", n_clusters=n_clusters, random_state=random_state)
    labels = np.asarray(model.fit(features).labels_, dtype=np.int64)
    centers = np.zeros((n_clusters, features.shape[1]), np.float32)
    for cluster in range(n_clusters):
        members = features[labels == cluster]
        if len(members):
            mean = members.mean(axis=0)
            centers[cluster] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return labels, centers


def assign(features: np.ndarray, n_clusters: int, clusterer: str, random_state: int) -> np.ndarray:
    """Pseudo-labels ``(n,)`` of whitened features by the project's k-means or the registry's PIC."""
    return assign_with_centers(features, n_clusters, clusterer, random_state)[0]


def nearest_center(features: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest (Euclidean) centre of each row, ``(n,)`` int64."""
    from ..fast_kmeans import assign as nearest

    return nearest(np.ascontiguousarray(features, np.float32), np.ascontiguousarray(centers, np.float32))[0]


class FineTunedNetwork(nn.Module):
    """Optional Sobel front, the backbone and the classifier head (the head is replaced each epoch)."""

    def __init__(self, backbone: nn.Module, sobel: bool) -> None:
        super().__init__()
        self.front = SobelFilter() if sobel else nn.Identity()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(self.front(x))
        return features.reshape(features.shape[0], -1)


class DeepCluster(DeepClusterEstimator):
    """Fine-tune the backbone on its own k-means pseudo-labels (DeepCluster).

    Parameters
    ----------
    n_clusters : int
    epochs : int
        Clustering + training rounds; one more assignment follows the last training.
    pca_dims : int
        PCA-whitening width before clustering (capped by the number of images).
    clusterer : {'kmeans', 'pic'}
        ``'kmeans'``: the project's k-means (k-means++ seeding, restarts; deterministic under the
        seed); ``'pic'``: the registry's power-iteration clustering.
    lr : float
        SGD learning rate of the backbone (the fresh head uses ``10 * lr``).
    momentum, weight_decay : float
    batch_size : int
    sobel : bool
        Feed the network edges instead of colour.
    augment : bool
        Random resized crop + horizontal flip while training.
    input_size : int or 'auto'
        Crop size; ``'auto'`` = the backbone's (224 for most). Smaller is much faster on the CPU.
    device : {'auto', 'cpu', 'cuda', 'mps'}
    n_threads : int or None
    num_workers : int
        DataLoader decoding processes.
    random_state : int or None

    Attributes
    ----------
    labels_, confidence_ (the largest softmax output of the last head), history_, partial_
    network_ : FineTunedNetwork
        The fine-tuned network (``save`` writes it with the head; ``load`` reads it back).
    whitening_, assignment_centers_ : dict, ndarray
        PCA-whitening and centres of the final assignment (``predict`` places new images with them).
    """

    param_specs = (
        ParamSpec("epochs", "int", minimum=1, maximum=500, help="Cluster-then-train rounds."),
        ParamSpec("pca_dims", "int", minimum=2, maximum=4096, help="PCA-whitening width before k-means."),
        ParamSpec("clusterer", "choice", choices=CLUSTERERS, help="How pseudo-labels are made each epoch."),
        ParamSpec("sobel", "bool", help="Train on edges instead of colour."),
        *IMAGE_TRAINING_PARAMS,
    )

    def __init__(
        self,
        n_clusters: int = 8,
        epochs: int = 10,
        pca_dims: int = 256,
        clusterer: str = "kmeans",
        lr: float = 0.005,
        momentum: float = 0.9,
        weight_decay: float = 1e-5,
        batch_size: int = 32,
        sobel: bool = False,
        augment: bool = True,
        input_size: Any = AUTO,
        device: str = AUTO,
        n_threads: Optional[int] = None,
        num_workers: int = 0,
        random_state: Optional[int] = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.pca_dims = pca_dims
        self.clusterer = clusterer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.sobel = sobel
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
    ) -> "DeepCluster":
        """Fine-tune the backbone on the images and cluster them.

        Parameters
        ----------
        X : array-like of shape (n_images, n_features) or None
            Pretrained features of the same images (used for the first assignment, saving one
            pass over the images); ``None`` computes them.
        y : array-like of shape (n_images,), optional
            Ground truth, only reported as ``nmi_true`` per epoch.
        progress : callable, optional
            Called every batch; raising ``Cancelled`` keeps the last complete assignment
            (``partial_ = True``) and re-raises.
        paths : sequence of path
            The image files, aligned with ``X``.
        backbone : str or torch.nn.Module
            Registry name, or a module giving ``(N, D)`` features.
        weights_path, layer : optional
            As for feature extraction.
        """
        fit_params.pop("view_slices", None)
        if fit_params:
            raise TypeError(f"DeepCluster.fit got unexpected arguments: {sorted(fit_params)}")
        if self.clusterer not in CLUSTERERS:
            raise ValueError(f"clusterer must be one of {CLUSTERERS}, got {self.clusterer!r}")
        if backbone is None:
            from ...features.backbones import DEFAULT_BACKBONE

            backbone = DEFAULT_BACKBONE
        features = None if X is None else np.asarray(X, dtype=np.float32)
        paths = check_paths(paths, None if features is None else features.shape[0])
        check_n_clusters(self.n_clusters, len(paths), minimum=2)
        y = check_y(y, len(paths))
        self._start()
        return self._run(lambda: self._fit(paths, features, y, backbone, weights_path, layer, progress))

    def _fit(self, paths, features, y, backbone, weights_path, layer, progress) -> None:
        set_threads(self.n_threads)
        device = resolve_device(self.device)
        generator = seed_everything(self.random_state)
        seed = 0 if self.random_state is None else int(self.random_state)
        rng = np.random.default_rng(seed)
        model, prep, self.backbone_name_ = build_backbone(backbone, layer, weights_path, device, self.input_size)
        network = FineTunedNetwork(model, bool(self.sobel)).to(device)
        self.network_ = network
        self.layer_, self.preprocessing_ = layer, prep
        width = feature_dim(network, prep, device)
        self.feature_dim_ = width
        n_images = len(paths)
        per_pass = math.ceil(n_images / self.batch_size)
        reuse_first = features is not None and not self.sobel  # pretrained features = the epoch-0 pass
        reporter = EpochReporter(progress, per_pass * (2 * self.epochs + (0 if reuse_first else 1)))
        draft = prep.resize_size
        plain = ImageList(paths, eval_transform(prep), draft)
        augmented = ImageList(paths, train_transform(prep, self.augment), draft)
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")

        head: Optional[nn.Linear] = None  # trained from epoch 1 on; none before the first training pass
        for epoch in range(self.epochs + 1):
            if epoch == 0 and reuse_first:
                current = features
            else:
                current = compute_features(
                    network,
                    loader(plain, self.batch_size, self.num_workers),
                    device,
                    reporter,
                    f"Epoch {epoch}/{self.epochs}: features",
                    n_images,
                )
            reporter.heartbeat(f"Epoch {epoch}/{self.epochs}: clustering")
            whitening = fit_whitening(current, self.pca_dims, seed)
            labels, centers = assign_with_centers(
                apply_whitening(current, whitening), self.n_clusters, self.clusterer, seed
            )
            # What predict() needs to place new images as this assignment placed these.
            self.whitening_, self.assignment_centers_ = whitening, centers
            if epoch == self.epochs:
                head_confidence = self._confidence(network, head, plain, device, reporter) if head is not None else None
                self._keep_result(labels, head_confidence)
                self._record_epoch(epoch, None, labels, y)
                break
            self._keep_result(labels)
            self._record_epoch(epoch, None, labels, y)

            # A fresh head each epoch: the pseudo-label ids are arbitrary between two clusterings.
            head = nn.Linear(width, self.n_clusters).to(device)
            optimiser = torch.optim.SGD(
                [
                    {"params": network.parameters(), "lr": self.lr},
                    {"params": head.parameters(), "lr": 10 * self.lr},
                ],
                momentum=self.momentum,
                weight_decay=self.weight_decay,
            )
            targets = torch.from_numpy(labels)
            order = uniform_over_clusters(labels, n_images, rng)
            network.train()
            total, seen = 0.0, 0
            for images, index in loader(augmented, self.batch_size, self.num_workers, order, generator):
                images = images.to(device, non_blocking=True)
                with autocast(device):
                    loss = nn.functional.cross_entropy(head(network(images)).float(), targets[index].to(device))
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                total += float(loss.detach()) * len(index)
                seen += len(index)
                reporter.step(f"Epoch {epoch + 1}/{self.epochs}: training")
            self.history_[-1]["loss"] = total / max(1, seen)
        self.head_ = head  # None when epochs == 0 (no training pass)
        reporter.finish("done")

    def _confidence(self, network, head, plain, device, reporter) -> np.ndarray:
        """Largest softmax output of the last head per image (how sure the trained classifier is)."""
        network.eval()
        confidence = np.empty(len(plain), np.float32)
        with torch.no_grad():
            for images, index in loader(plain, self.batch_size, self.num_workers):
                with autocast(device):
                    probabilities = torch.softmax(head(network(images.to(device))).float(), dim=1)
                confidence[index.numpy()] = probabilities.max(dim=1).values.cpu().numpy()
                reporter.heartbeat("confidence")
        return confidence

    def save(self, path) -> Path:
        """Save the fine-tuned backbone, the last head, the whitening and the final centres (atomically).

        Read back by :meth:`load` (``weights_only=True``). After a cancel the network may have
        trained past the kept labels; the file says so (``partial``).
        """
        from .saving import params_to_json, tensor, write_payload

        if not hasattr(self, "network_"):
            raise RuntimeError("DeepCluster is not fitted yet: nothing to save")
        whitening = getattr(self, "whitening_", None)
        head: Optional[nn.Linear] = getattr(self, "head_", None)
        payload: dict[str, Any] = {
            "method": "DeepCluster",
            "params_json": params_to_json(self.get_params()),
            "backbone": self.backbone_name_,
            "layer": getattr(self, "layer_", None),
            "preprocessing": preprocessing_to_dict(self.preprocessing_),
            "feature_dim": int(self.feature_dim_),
            "network": state_of(self.network_),
            "head": state_of(head) if head is not None else None,
            "whitening": None if whitening is None else {k: tensor(v) for k, v in whitening.items()},
            "cluster_centers": tensor(getattr(self, "assignment_centers_", None)),
            "partial": bool(getattr(self, "partial_", False)),
        }
        return write_payload(payload, path)

    @classmethod
    def load(cls, path, device: str = "cpu", backbone: Optional[nn.Module] = None) -> "DeepCluster":
        """The fine-tuned network (and head) from a :meth:`save` file, ready for :meth:`transform` / :meth:`predict`.

        ``backbone``: a module of the same architecture, needed when the network was trained from
        a module given directly (a registry name is rebuilt without any download).

        Raises
        ------
        deep.saving.ModelFileError
        """
        from .saving import read_payload

        return cls.from_payload(read_payload(path, "DeepCluster"), path, device=device, backbone=backbone)

    @classmethod
    def from_payload(
        cls, payload: dict, path, device: str = "cpu", backbone: Optional[nn.Module] = None
    ) -> "DeepCluster":
        from .saving import ModelFileError, array, load_state, params_from_json

        try:
            estimator = cls(**params_from_json(payload))
            estimator.backbone_name_ = str(payload["backbone"])
            estimator.layer_ = payload.get("layer")
            estimator.preprocessing_ = preprocessing_from_dict(payload["preprocessing"])
            estimator.feature_dim_ = int(payload["feature_dim"])
            network = FineTunedNetwork(
                untrained_backbone(estimator.backbone_name_, estimator.layer_, backbone), bool(estimator.sobel)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{Path(path).name}: cannot rebuild the network: {exc}") from None
        load_state(network, payload.get("network") or {}, "fine-tuned network", path)
        torch_device = resolve_device(device)
        estimator.network_ = network.to(torch_device).eval()
        estimator.head_ = None
        if payload.get("head") is not None:
            head = nn.Linear(estimator.feature_dim_, int(estimator.n_clusters))
            load_state(head, payload["head"], "classifier head", path)
            estimator.head_ = head.to(torch_device).eval()
        whitening = payload.get("whitening")
        if whitening is not None:
            estimator.whitening_ = {k: array(v).astype(np.float32) for k, v in whitening.items()}
        centers = array(payload.get("cluster_centers"))
        if centers is not None:
            estimator.assignment_centers_ = centers.astype(np.float32)
        estimator.partial_ = bool(payload.get("partial", False))
        return estimator

    def transform(self, paths) -> np.ndarray:
        """Features ``(n, D)`` of image files with the fine-tuned network (the reusable embedding)."""
        if not hasattr(self, "network_"):
            raise RuntimeError("DeepCluster is not fitted yet: call fit or load first")
        return features_of_images(
            self.network_, check_paths(paths, None), self.preprocessing_, int(self.batch_size), int(self.num_workers)
        )

    def predict(self, paths) -> np.ndarray:
        """Cluster of image files as the final assignment would place them (whitening + nearest centre)."""
        if getattr(self, "assignment_centers_", None) is None or getattr(self, "whitening_", None) is None:
            raise RuntimeError("DeepCluster has no final assignment to predict with: fit it to the end first")
        return nearest_center(apply_whitening(self.transform(paths), self.whitening_), self.assignment_centers_)


register(
    AlgorithmSpec(
        "deepcluster",
        "DeepCluster (fine-tunes the CNN)",
        "Alternates k-means on the CNN's features with training the CNN on those pseudo-labels "
        "(Caron et al. 2018). Slow without a GPU.",
        DeepCluster,
        uses_k=True,
        supports_auto_k=False,
        category="deep",
        needs_images=True,
        order=30,
        unavailable=missing_requirement(),
    )
)
