"""Deep clustering (issue 4): DEC, IDEC, DeepCluster, UCNN and the multi-view CC, MVEC, DMVC.

Importing this package registers every method in the core clustering registry (category
``'deep'``); the registry imports it lazily, so torch is loaded only when a deep method is used.
See :mod:`.common` for the cancel contract (best-so-far labels, ``partial_``, ``Cancelled`` re-raised).
"""

from __future__ import annotations

import dataclasses

from .common import DEVICE_CHOICES
from .dec import DEC, IDEC
from .deepcluster import CLUSTERERS, DeepCluster
from .multiview import DMVC, ConcatKMeans, MultiViewEnsemble
from .ucnn import UCNN

__all__ = ["DEC", "IDEC", "DeepCluster", "UCNN", "ConcatKMeans", "MultiViewEnsemble", "DMVC", "register_all"]

_REGISTRY_MODULE = "imgcluster_gui.core.clustering.registry"


def _specs():
    from ..registry import AlgorithmSpec, ParamSpec

    device = ParamSpec("device", "choice", "auto", choices=DEVICE_CHOICES,
                       help="Where to train: 'auto' uses the GPU when there is one.")
    seed_free = dict(uses_k=True, supports_auto_k=False, category="deep")
    autoencoder = (
        ParamSpec("max_epochs", "int", 150, minimum=1, maximum=2000,
                  help="Upper bound on clustering epochs (it stops earlier once labels settle)."),
        ParamSpec("latent_dim", "int", 10, minimum=2, maximum=256, help="Width of the learned embedding."),
        ParamSpec("pretrain_steps", "int", 2000, minimum=0, maximum=100000,
                  help="Autoencoder pre-training batches before clustering starts."),
        ParamSpec("tol", "float", 0.001, minimum=0.0, maximum=0.5,
                  help="Stop when fewer than this fraction of labels change in an epoch."),
        ParamSpec("lr", "float", 1e-4, minimum=1e-6, maximum=1e-1, help="Learning rate of the clustering phase."),
        ParamSpec("n_neighbors", "int", 10, minimum=0, maximum=200,
                  help="Nearest neighbours each image keeps close in the learned embedding "
                       "(0 = the paper's objective, reconstruction only)."),
        ParamSpec("graph_weight", "float", 0.1, minimum=0.0, maximum=10.0,
                  help="Weight of keeping neighbours close, against the reconstruction loss."),
        ParamSpec("init", "choice", "auto", choices=("auto", "features", "embedding"),
                  help="Initial clusters from k-means on the embedding or on the input features "
                       "('auto': the embedding when neighbours are kept close)."),
        device,
    )
    gamma = ParamSpec("gamma", "float", 0.1, minimum=0.0, maximum=10.0,
                      help="Weight of the clustering loss against the reconstruction loss.")
    image_training = (
        ParamSpec("lr", "float", 0.005, minimum=1e-5, maximum=0.5, help="SGD learning rate of the backbone."),
        ParamSpec("batch_size", "int", 32, minimum=2, maximum=1024, help="Images per training batch."),
        ParamSpec("input_size", "int", 224, minimum=32, maximum=1024,
                  help="Crop size the network is trained at (smaller is much faster on a CPU)."),
        ParamSpec("augment", "bool", True, help="Random resized crops and flips while training."),
        device,
    )
    multiview = {"uses_views": True}
    return [
        (AlgorithmSpec("idec", "IDEC (deep embedded, local structure kept)",
                       "Autoencoder over the features + clustering layer, keeping the reconstruction loss "
                       "(Guo et al. 2017) and each image's nearest neighbours close. A good first deep method.",
                       IDEC, (gamma, *autoencoder), **seed_free), {}),
        (AlgorithmSpec("dec", "DEC (deep embedded clustering)",
                       "Autoencoder over the features, then sharpened soft assignments (Xie et al. 2016).",
                       DEC, autoencoder, **seed_free), {}),
        (AlgorithmSpec("deepcluster", "DeepCluster (fine-tunes the CNN)",
                       "Alternates k-means on the CNN's features with training the CNN on those pseudo-labels "
                       "(Caron et al. 2018). Slow without a GPU.", DeepCluster,
                       (ParamSpec("epochs", "int", 10, minimum=1, maximum=500, help="Cluster-then-train rounds."),
                        ParamSpec("pca_dims", "int", 256, minimum=2, maximum=4096,
                                  help="PCA-whitening width before k-means."),
                        ParamSpec("clusterer", "choice", "kmeans", choices=CLUSTERERS,
                                  help="How pseudo-labels are made each epoch."),
                        ParamSpec("sobel", "bool", False, help="Train on edges instead of colour."),
                        *image_training), needs_images=True, **seed_free), {}),
        (AlgorithmSpec("ucnn", "UCNN (mini-batch k-means + CNN, large sets)",
                       "Mini-batch k-means run jointly with fine-tuning the CNN, memory bounded by the batch "
                       "(Hsu & Lin 2018). Slow without a GPU.", UCNN,
                       (ParamSpec("epochs", "int", 5, minimum=1, maximum=500, help="Passes over the images."),
                        ParamSpec("drift_compensation", "bool", True,
                                  help="Correct centroids for the network's change (off = the paper's Baseline-I)."),
                        *image_training), needs_images=True, **seed_free), {}),
        (AlgorithmSpec("cc", "CC (multi-backbone concatenation + k-means)",
                       "k-means on the concatenation of each backbone's L2-normalised features.", ConcatKMeans,
                       (ParamSpec("n_init", "int", 10, minimum=1, maximum=100, help="k-means restarts."),),
                       **seed_free), multiview),
        (AlgorithmSpec("mvec", "MVEC (multi-backbone ensemble consensus)",
                       "k-means runs on every backbone's features, joined by a consensus clustering.",
                       MultiViewEnsemble,
                       (ParamSpec("runs_per_view", "int", 5, minimum=1, maximum=100,
                                  help="k-means runs per backbone in the ensemble."),), **seed_free), multiview),
        (AlgorithmSpec("dmvc", "DMVC (deep multi-backbone, IDEC objective)",
                       "One autoencoder branch per backbone joined in a shared embedding, trained with IDEC "
                       "(Guerin & Boots 2018).", DMVC, (gamma, *autoencoder), **seed_free), multiview),
    ]


def register_all() -> None:
    """Register every deep method (called on import; safe to call again only on a fresh registry)."""
    from ..registry import AlgorithmSpec, register

    accepted = {field.name for field in dataclasses.fields(AlgorithmSpec)}
    for spec, extra in _specs():
        # Optional fields (e.g. uses_views) only where this registry version has them.
        extras = {key: value for key, value in extra.items() if key in accepted}
        register(dataclasses.replace(spec, **extras) if extras else spec)


try:
    register_all()
except ModuleNotFoundError as error:  # the registry module itself not written yet: estimators still usable
    if error.name != _REGISTRY_MODULE:
        raise
