"""DEC (Xie et al. 2016) and IDEC (Guo et al. 2017) over extracted feature vectors.

Both train an autoencoder on the features, initialise K centroids by k-means in its latent space,
then sharpen the clusters with the KL divergence between the Student-t soft assignment Q and the
target P (Q squared and normalised by cluster size, refreshed every ``update_interval`` batches).
IDEC keeps the reconstruction loss (weight 1, clustering weight ``gamma``) so the latent space
keeps the local structure of the features; DEC drops the decoder once clustering starts.

Neighbourhood term (on by default, ``n_neighbors=0`` gives the papers' objective exactly)
------------------------------------------------------------------------------------------
Reconstruction alone keeps little of what makes pretrained CNN features cluster well: on COIL-20
the pre-trained code clusters no better than k-means on the input (NMI ~0.91), and self-training
then hardly moves those labels, while spectral clustering on the same features reaches ~1.0 because
each object's images form a chain of nearest neighbours. So the autoencoder also learns a
neighbour-preserving embedding: each sample is pulled towards one of its ``n_neighbors`` nearest
input neighbours and pushed from other samples of the batch, with the Student-t similarity
``1 / (1 + d^2)`` the clustering layer uses (the cross-entropy of parametric UMAP, Sainburg et al.
2021, kept next to the reconstruction loss). The k-means that starts the clustering layer then runs
in that embedding (``init='auto'``). Measured in ``benchmarks/results/deep.md``.

The network is :class:`MultiViewAutoencoder`, which with one view is the classic DEC stack
(d-500-500-2000-10) and with several views is DMVC's multi-input network (see ``multiview.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ...choices import AUTO, resolve_device
from ..base import check_features, check_n_clusters
from ..registry import AlgorithmSpec, ParamSpec, register
from .common import (
    DEVICE_PARAM,
    DeepClusterEstimator,
    EpochReporter,
    autocast,
    batches,
    check_y,
    kmeans,
    seed_everything,
    set_threads,
    student_t,
    target_distribution,
    to_numpy,
)

DEFAULT_HIDDEN = (500, 500, 2000)
#: Fewest batches between two target refreshes / convergence checks (DEC/IDEC use 140 on MNIST).
MIN_UPDATE_INTERVAL = 100


def _mlp(sizes: Sequence[int], last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MultiViewAutoencoder(nn.Module):
    """One encoder/decoder branch per view, joined in a shared latent code.

    Parameters
    ----------
    view_dims : sequence of int
        Width of each view (one view = a plain autoencoder).
    hidden : sequence of int
        Hidden widths of each branch's encoder (the decoder mirrors them).
    latent_dim : int
        Width of the shared code.
    """

    def __init__(self, view_dims: Sequence[int], hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.view_dims = [int(d) for d in view_dims]
        hidden = [int(h) for h in hidden]
        if not hidden:  # the code is computed from the last hidden layer
            raise ValueError("hidden must list at least one layer width")
        self.encoders = nn.ModuleList(_mlp([d, *hidden], last_activation=True) for d in self.view_dims)
        self.to_latent = nn.Linear(hidden[-1] * len(self.view_dims), latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, hidden[-1] * len(self.view_dims)), nn.ReLU())
        self.decoders = nn.ModuleList(_mlp([*reversed(hidden), d], last_activation=False) for d in self.view_dims)
        self._hidden_last = hidden[-1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, sum(view_dims))`` -> latent ``(n, latent_dim)``."""
        parts = torch.split(x, self.view_dims, dim=1)
        joined = torch.cat([enc(p) for enc, p in zip(self.encoders, parts)], dim=1)
        return self.to_latent(joined)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        parts = torch.split(self.from_latent(z), self._hidden_last, dim=1)
        return torch.cat([dec(p) for dec, p in zip(self.decoders, parts)], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)


def standardise_views(X: np.ndarray, view_dims: Sequence[int]) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """Centre each view and scale it to unit mean squared value per entry.

    Why: L2-normalised CNN features have entries around 1/sqrt(D); at that scale the MSE
    reconstruction loss is tiny next to the KL term and the net learns little. One scalar per
    view keeps the geometry inside the view and gives every view the same weight.
    """
    out = np.empty_like(X, dtype=np.float32)
    stats = []
    start = 0
    for width in view_dims:
        block = X[:, start : start + width]
        mean = block.mean(axis=0)
        centred = block - mean
        scale = float(np.sqrt(np.mean(centred**2))) or 1.0
        out[:, start : start + width] = centred / scale
        stats.append((mean.astype(np.float32), scale))
        start += width
    return out, stats


def _l2_rows(data: np.ndarray, view_dims: Sequence[int]) -> np.ndarray:
    """Each view's rows at unit L2 norm (``(n, d)``), the usual input of k-means on CNN features."""
    out = np.empty_like(data)
    start = 0
    for width in view_dims:
        block = data[:, start : start + width]
        out[:, start : start + width] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        start += width
    return out


INIT_CHOICES = (AUTO, "features", "embedding")

#: The user-facing parameters DEC, IDEC and DMVC share (defaults: each class's ``__init__``).
AUTOENCODER_PARAMS = (
    ParamSpec(
        "max_epochs",
        "int",
        minimum=1,
        maximum=2000,
        help="Upper bound on clustering epochs (it stops earlier once labels settle).",
    ),
    ParamSpec("latent_dim", "int", minimum=2, maximum=256, help="Width of the learned embedding."),
    ParamSpec(
        "pretrain_steps",
        "int",
        minimum=0,
        maximum=100000,
        help="Autoencoder pre-training batches before clustering starts.",
    ),
    ParamSpec(
        "tol",
        "float",
        minimum=0.0,
        maximum=0.5,
        help="Stop when fewer than this fraction of labels change in an epoch.",
    ),
    ParamSpec("lr", "float", minimum=1e-6, maximum=1e-1, help="Learning rate of the clustering phase."),
    ParamSpec(
        "n_neighbors",
        "int",
        minimum=0,
        maximum=200,
        help="Nearest neighbours each image keeps close in the learned embedding "
        "(0 = the paper's objective, reconstruction only).",
    ),
    ParamSpec(
        "graph_weight",
        "float",
        minimum=0.0,
        maximum=10.0,
        help="Weight of keeping neighbours close, against the reconstruction loss.",
    ),
    ParamSpec(
        "init",
        "choice",
        choices=INIT_CHOICES,
        help="Initial clusters from k-means on the embedding or on the input features "
        "('auto': the embedding when neighbours are kept close).",
    ),
    DEVICE_PARAM,
)
GAMMA_PARAM = ParamSpec(
    "gamma", "float", minimum=0.0, maximum=10.0, help="Weight of the clustering loss against the reconstruction loss."
)
#: Samples of the batch each sample is pushed away from by the neighbourhood term.
GRAPH_NEGATIVES = 5


def neighbour_embedding_loss(
    z: torch.Tensor, z_neighbour: torch.Tensor, negatives: int = GRAPH_NEGATIVES
) -> torch.Tensor:
    """Cross-entropy of the Student-t similarity ``w = 1 / (1 + |a - b|^2)`` over pairs of codes.

    ``z[i]`` and ``z_neighbour[i]`` are neighbours in the input (``w`` pushed to 1); ``z[i]`` and
    other rows of ``z_neighbour`` (the batch shifted by 1..``negatives``) are treated as strangers
    (``w`` pushed to 0), the negative sampling of UMAP without a second forward pass.
    """
    attract = torch.log1p(((z - z_neighbour) ** 2).sum(dim=1)).mean()
    repel = z.new_zeros(())
    for shift in range(1, min(negatives, z.shape[0] - 1) + 1):
        squared = ((z - z_neighbour.roll(shift, dims=0)) ** 2).sum(dim=1)
        # -log(1 - w) = log(1 + d^2) - log(d^2)
        repel = repel + (torch.log1p(squared) - torch.log(squared.clamp_min(1e-4))).mean()
    return attract + repel


#: Clustering stops (keeping the last good epoch) when it leaves fewer than this share of the clusters in use.
COLLAPSE_SHARE = 0.5


class IDEC(DeepClusterEstimator):
    """Improved Deep Embedded Clustering: autoencoder + clustering layer, reconstruction kept.

    Parameters
    ----------
    n_clusters : int
        Number of clusters K.
    gamma : float
        Weight of the clustering (KL) loss against the reconstruction loss. ``0.1`` as in the paper.
        (``DEC`` is this class with the reconstruction dropped.)
    latent_dim : int
        Width of the embedding the clusters live in.
    hidden : tuple of int
        Encoder widths (decoder mirrors them). The DEC default ``(500, 500, 2000)``.
    pretrain_epochs : int or None
        Autoencoder pre-training epochs; ``None`` = enough for about ``pretrain_steps`` batches.
    pretrain_steps : int
        Batches of pre-training aimed at when ``pretrain_epochs`` is ``None`` (small sets need
        many epochs, large sets few).
    max_epochs : int
        Upper bound on clustering epochs.
    update_interval : int or None
        Batches between refreshes of the target distribution P (and convergence checks);
        ``None`` = ``max(one epoch, MIN_UPDATE_INTERVAL)`` batches. On small sets one epoch is a
        handful of batches, too few for any label to move, which used to stop the fit at once.
    tol : float
        Stop when fewer than this fraction of labels change between two target refreshes.
    batch_size : int
    lr : float
        Adam learning rate of the clustering phase (pre-training uses ``10 * lr``).
    alpha : float
        Degrees of freedom of the Student-t kernel.
    init : {'auto', 'features', 'embedding'}
        Where the initial k-means runs: on the pre-trained embedding (as in the papers) or on the
        input features (the centroids are then the cluster means of the codes, better when the
        code is trained by reconstruction alone). ``'auto'``: the embedding when the neighbourhood
        term is on, else the features.
    n_neighbors : int
        Nearest input neighbours per sample in the neighbourhood term (see the module notes);
        ``0`` turns it off (the papers' objective).
    graph_weight : float
        Weight of the neighbourhood term against the reconstruction loss (pre-training and
        clustering alike).
    device : {'auto', 'cpu', 'cuda', 'mps'}
    n_threads : int or None
        ``torch.set_num_threads`` for the CPU; ``None`` keeps the process setting.
    random_state : int or None

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
    confidence_ : ndarray of shape (n_samples,)
        Largest soft assignment of each sample.
    cluster_centers_ : ndarray of shape (n_clusters, latent_dim)
        Centroids **in the learned embedding** (the space of ``embedding_``).
    embedding_ : ndarray of shape (n_samples, latent_dim)
    history_ : list of dict
        One row per epoch: ``phase`` ('pretrain' or 'cluster'), ``epoch``, ``loss``, and for
        clustering epochs ``delta_label``, ``nmi_change``, ``nmi_true`` (when ``y`` given; for
        reporting only) and ``reconstruction`` / ``kl``.
    partial_ : bool
        True when a cancel stopped the fit (labels are then from the last completed epoch).
    collapsed_ : bool
        True when self-training started merging clusters away (fewer than half the clusters
        left in use, e.g. a learning rate too high) and the fit stopped, keeping the last epoch
        before that (``collapsed_epoch_`` is the epoch that collapsed).
    n_neighbors_ : int
        Neighbours per sample the neighbourhood term used (0 when it was off).
    model_ : MultiViewAutoencoder
    """

    _reconstruction_in_clustering = True
    param_specs: tuple[ParamSpec, ...] = (GAMMA_PARAM, *AUTOENCODER_PARAMS)

    def __init__(
        self,
        n_clusters: int = 8,
        gamma: float = 0.1,
        latent_dim: int = 10,
        hidden: tuple[int, ...] = DEFAULT_HIDDEN,
        pretrain_epochs: Optional[int] = None,
        pretrain_steps: int = 2000,
        max_epochs: int = 150,
        update_interval: Optional[int] = None,
        tol: float = 0.001,
        batch_size: int = 256,
        lr: float = 1e-4,
        alpha: float = 1.0,
        init: str = AUTO,
        n_neighbors: int = 10,
        graph_weight: float = 0.1,
        device: str = AUTO,
        n_threads: Optional[int] = None,
        random_state: Optional[int] = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.gamma = gamma
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_steps = pretrain_steps
        self.max_epochs = max_epochs
        self.update_interval = update_interval
        self.tol = tol
        self.batch_size = batch_size
        self.lr = lr
        self.alpha = alpha
        self.init = init
        self.n_neighbors = n_neighbors
        self.graph_weight = graph_weight
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state

    # ------------------------------------------------------------------------------------ views
    def _view_dims(self, n_features: int, view_slices: Any) -> list[int]:
        """DEC/IDEC see the whole matrix as one view (subclasses split it)."""
        return [n_features]

    # ------------------------------------------------------------------------------------ fit
    def fit(self, X, y=None, progress=None, **fit_params) -> "IDEC":
        """Learn the embedding and the clusters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Extracted (and optionally preprocessed) features.
        y : array-like of shape (n_samples,), optional
            Ground truth used **only** to report ``nmi_true`` per epoch, never to train.
        progress : callable, optional
            ``progress(fraction, stage)``, called every batch; raising ``Cancelled`` stops the
            fit: ``labels_`` keep the last completed epoch, ``partial_`` is True, ``Cancelled``
            is re-raised.
        **fit_params
            ``view_slices`` for the multi-view subclass; anything else is refused.

        Returns
        -------
        self
        """
        view_slices = fit_params.pop("view_slices", None)
        fit_params.pop("paths", None)  # harmless extras the pipeline may pass to any deep method
        fit_params.pop("backbone", None)
        fit_params.pop("weights_path", None)
        if fit_params:
            raise TypeError(f"{type(self).__name__}.fit got unexpected arguments: {sorted(fit_params)}")
        X = check_features(X, dtype=np.float32)
        check_n_clusters(self.n_clusters, X.shape[0], minimum=2)
        y = check_y(y, X.shape[0])
        if self.init not in INIT_CHOICES:
            raise ValueError(f"init must be one of {INIT_CHOICES}, got {self.init!r}")
        if not self.hidden:
            raise ValueError("hidden must list at least one layer width")
        if int(self.n_neighbors) < 0 or float(self.graph_weight) < 0:
            raise ValueError(
                f"n_neighbors and graph_weight must be >= 0, got {self.n_neighbors} and {self.graph_weight}"
            )
        view_dims = self._view_dims(X.shape[1], view_slices)
        self._start()
        return self._run(lambda: self._fit(X, y, view_dims, progress))

    def _pretrain_epochs(self, n_samples: int) -> int:
        if self.pretrain_epochs is not None:
            return max(0, int(self.pretrain_epochs))
        per_epoch = math.ceil(n_samples / self.batch_size)
        # Enough updates for the autoencoder to converge, bounded so huge sets still start clustering.
        return int(min(400, max(10, math.ceil(self.pretrain_steps / per_epoch))))

    def _fit(self, X: np.ndarray, y: Optional[np.ndarray], view_dims: list[int], progress) -> None:
        set_threads(self.n_threads)
        device = resolve_device(self.device)
        generator = seed_everything(self.random_state)
        n_samples = X.shape[0]
        batch_size = int(min(self.batch_size, n_samples))
        per_epoch = math.ceil(n_samples / batch_size)
        pretrain_epochs = self._pretrain_epochs(n_samples)
        reporter = EpochReporter(progress, per_epoch * (pretrain_epochs + self.max_epochs))

        data, self.input_stats_ = standardise_views(X, view_dims)
        data_t = torch.from_numpy(data).to(device)
        model = MultiViewAutoencoder(view_dims, self.hidden, self.latent_dim).to(device)
        self.model_ = model
        self.view_dims_ = view_dims
        self.collapsed_ = False
        neighbours = self._neighbour_graph(data, device, reporter)
        self.n_neighbors_ = 0 if neighbours is None else int(neighbours.shape[1])

        # --- 1. autoencoder pre-training (reconstruction, + the neighbourhood term)
        optimiser = torch.optim.Adam(model.parameters(), lr=10 * self.lr)
        for epoch in range(pretrain_epochs):
            model.train()
            total = 0.0
            for index in batches(n_samples, batch_size, generator):
                batch = data_t[index]
                with autocast(device):
                    z, reconstruction = model(batch)
                    loss = nn.functional.mse_loss(reconstruction.float(), batch)
                loss = loss + self._graph_term(data_t, index, z, neighbours, generator)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(index)
                reporter.step(f"Pre-training autoencoder, epoch {epoch + 1}/{pretrain_epochs}")
            self.history_.append({"phase": "pretrain", "epoch": epoch, "loss": total / n_samples})

        # --- 2. initial centroids: k-means on the input features or on the embedding
        reporter.heartbeat("k-means for the initial clusters")
        embedding = self._embed(data_t)
        init = self.init if self.init != AUTO else ("embedding" if neighbours is not None else "features")
        if init == "features":
            # k-means on the (per-view L2) input keeps all of the pretrained features' information, which
            # a 10-d code loses; the latent centroids are then the means of each cluster's codes.
            labels, _ = kmeans(_l2_rows(X, view_dims), self.n_clusters, self._seed())
            centers = np.stack([embedding[labels == c].mean(axis=0) for c in range(self.n_clusters)])
        else:
            labels, centers = kmeans(embedding, self.n_clusters, self._seed())
        centroids = nn.Parameter(torch.from_numpy(centers).to(device))
        q = student_t(torch.from_numpy(embedding).to(device), centroids.detach(), self.alpha)
        self._keep_result(labels, to_numpy(q.max(dim=1).values), centers, embedding)
        self._record_epoch(0, None, labels, y, phase="cluster")
        clusters_at_start = np.unique(labels).size

        # --- 3. clustering: KL(P || Q) (+ reconstruction for IDEC)
        keep_reconstruction = self._reconstruction_in_clustering and self.gamma is not None
        parameters = [centroids] + list(model.encoders.parameters()) + list(model.to_latent.parameters())
        if keep_reconstruction:
            parameters = [centroids] + list(model.parameters())
        optimiser = torch.optim.Adam(parameters, lr=self.lr)
        update_interval = int(self.update_interval or max(per_epoch, MIN_UPDATE_INTERVAL))
        target = target_distribution(q).detach()
        refresh_labels = labels
        converged = False
        step = 0
        for epoch in range(1, self.max_epochs + 1):
            model.train()
            totals = {"loss": 0.0, "kl": 0.0, "reconstruction": 0.0}
            done_in_epoch = 0
            for index in batches(n_samples, batch_size, generator):
                if step and step % update_interval == 0:
                    target, q_all = self._refresh_target(data_t, centroids)
                    current = to_numpy(q_all.argmax(dim=1)).astype(np.int64)
                    if float(np.mean(current != refresh_labels)) < self.tol:
                        converged = True  # finish this epoch's record below, then stop
                        break
                    refresh_labels = current
                step += 1
                batch = data_t[index]
                with autocast(device):
                    z, reconstruction = model(batch)
                q_batch = student_t(z.float(), centroids, self.alpha)
                kl = nn.functional.kl_div(q_batch.clamp_min(1e-12).log(), target[index], reduction="batchmean")
                if keep_reconstruction:
                    rec = nn.functional.mse_loss(reconstruction.float(), batch)
                    # The structure terms keep weight 1 and the clustering term gamma, as in IDEC.
                    loss = rec + self._graph_term(data_t, index, z, neighbours, generator) + self.gamma * kl
                else:
                    rec = torch.zeros((), device=device)
                    loss = kl
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                for name, value in (("loss", loss), ("kl", kl), ("reconstruction", rec)):
                    totals[name] += float(value.detach()) * len(index)
                done_in_epoch += len(index)
                reporter.step(f"Clustering, epoch {epoch}/{self.max_epochs}")
            if converged and not done_in_epoch:
                break  # converged at an epoch boundary: the previous epoch's record is the result
            embedding = self._embed(data_t)
            q = student_t(torch.from_numpy(embedding).to(device), centroids.detach(), self.alpha)
            labels = to_numpy(q.argmax(dim=1)).astype(np.int64)
            if np.unique(labels).size < max(2, math.ceil(COLLAPSE_SHARE * clusters_at_start)):
                # Self-training is merging clusters away (a known DEC failure with a high learning
                # rate): stop, and keep the last epoch before it as the result.
                self.collapsed_ = True
                self.collapsed_epoch_ = epoch
                break
            seen = max(1, done_in_epoch)
            self._record_epoch(
                epoch,
                totals["loss"] / seen,
                labels,
                y,
                phase="cluster",
                kl=totals["kl"] / seen,
                reconstruction=totals["reconstruction"] / seen if keep_reconstruction else None,
            )
            self._keep_result(labels, to_numpy(q.max(dim=1).values), to_numpy(centroids), embedding)
            if converged:
                break
        self.converged_ = converged
        self.n_epochs_ = len([r for r in self.history_ if r.get("phase") == "cluster"]) - 1
        reporter.finish("done")

    def _seed(self) -> int:
        return 0 if self.random_state is None else int(self.random_state)

    def _neighbour_graph(
        self, data: np.ndarray, device: torch.device, reporter: EpochReporter
    ) -> Optional[torch.Tensor]:
        """``(n, k)`` indices of each sample's nearest neighbours in the standardised input, or None.

        The standardised input (each view centred and scaled to the same weight) keeps the geometry
        of every view, so for L2-normalised CNN features these are the cosine neighbours.
        """
        k = min(int(self.n_neighbors), data.shape[0] - 1)
        if k <= 0 or float(self.graph_weight) <= 0:
            return None
        from ...graph import nearest_neighbors

        reporter.heartbeat(f"{k} nearest neighbours of every sample")
        _, indices = nearest_neighbors(data, k)
        missing = indices < 0  # an approximate search (large sets) may find fewer than k
        if missing.any():
            indices = np.where(missing, indices[:, :1], indices)
        return torch.from_numpy(indices).to(device)

    def _graph_term(
        self,
        data_t: torch.Tensor,
        index: np.ndarray,
        z: torch.Tensor,
        neighbours: Optional[torch.Tensor],
        generator: torch.Generator,
    ) -> torch.Tensor:
        """``graph_weight`` x the neighbourhood loss of a batch (0 when the term is off)."""
        if neighbours is None or len(index) < 2:
            return z.new_zeros(()).float()
        pick = torch.randint(neighbours.shape[1], (len(index),), generator=generator).to(neighbours.device)
        partners = neighbours[torch.as_tensor(index, device=neighbours.device), pick]
        z_partner = self.model_.encode(data_t[partners])
        return float(self.graph_weight) * neighbour_embedding_loss(z.float(), z_partner.float())

    @torch.no_grad()
    def _embed(self, data_t: torch.Tensor) -> np.ndarray:
        """Latent codes of every sample, ``(n, latent_dim)`` float32, in eval mode."""
        self.model_.eval()
        chunks = [self.model_.encode(data_t[i : i + 4096]).float() for i in range(0, data_t.shape[0], 4096)]
        return to_numpy(torch.cat(chunks))

    @torch.no_grad()
    def _refresh_target(self, data_t: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, Q)`` over every sample with the current network (P is the new training target)."""
        embedding = torch.from_numpy(self._embed(data_t)).to(data_t.device)
        self.model_.train()
        q = student_t(embedding, centroids.detach(), self.alpha)
        return target_distribution(q), q

    # ------------------------------------------------------------------------------------ reuse
    def transform(self, X) -> np.ndarray:
        """Embed new feature vectors, ``(n, n_features)`` -> ``(n, latent_dim)``."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit first")
        X = np.asarray(X, dtype=np.float32)
        parts, start = [], 0
        for width, (mean, scale) in zip(self.view_dims_, self.input_stats_):
            parts.append((X[:, start : start + width] - mean) / scale)
            start += width
        device = next(self.model_.parameters()).device
        return self._embed(torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32)).to(device))

    def predict(self, X) -> np.ndarray:
        """Cluster of new feature vectors (nearest centroid under the Student-t kernel)."""
        z = torch.from_numpy(self.transform(X))
        q = student_t(z, torch.from_numpy(self.cluster_centers_), self.alpha)
        return q.argmax(dim=1).numpy().astype(np.int64)

    def save(self, path) -> Path:
        """Save the trained autoencoder, centroids and input scaling to ``path`` (atomically).

        The file is read back by :meth:`load` (or ``deep.saving.load_model``), with
        ``weights_only=True``: it holds tensors and plain values only.
        """
        from .saving import params_to_json, tensor, write_payload

        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: nothing to save")
        payload = {
            "method": type(self).__name__,
            "params_json": params_to_json(self.get_params()),
            "view_dims": [int(d) for d in self.view_dims_],
            "input_means": [tensor(m) for m, _ in self.input_stats_],
            "input_scales": [float(s) for _, s in self.input_stats_],
            "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
            "cluster_centers": tensor(getattr(self, "cluster_centers_", None)),
        }
        return write_payload(payload, path)

    @classmethod
    def load(cls, path, device: str = "cpu") -> "IDEC":
        """An estimator ready for :meth:`transform` / :meth:`predict` from a :meth:`save` file.

        Raises
        ------
        deep.saving.ModelFileError
            Missing, damaged or foreign file, or one of another method.
        """
        from .saving import read_payload

        return cls.from_payload(read_payload(path, cls.__name__), path, device=device)

    @classmethod
    def from_payload(cls, payload: dict, path, device: str = "cpu") -> "IDEC":
        from .saving import ModelFileError, array, load_state, params_from_json

        try:
            estimator = cls(**params_from_json(payload))
            estimator.view_dims_ = [int(d) for d in payload["view_dims"]]
            estimator.input_stats_ = [
                (array(m).astype(np.float32), float(s)) for m, s in zip(payload["input_means"], payload["input_scales"])
            ]
            model = MultiViewAutoencoder(estimator.view_dims_, estimator.hidden, estimator.latent_dim)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{Path(path).name} is damaged: {exc}") from None
        load_state(model, payload.get("state_dict") or {}, "autoencoder", path)
        estimator.model_ = model.to(resolve_device(device))
        centers = array(payload.get("cluster_centers"))
        if centers is not None:
            estimator.cluster_centers_ = centers.astype(np.float32)
        return estimator


class DEC(IDEC):
    """Deep Embedded Clustering: as :class:`IDEC` but the clustering phase optimises only KL(P||Q).

    The decoder is used for pre-training only. ``gamma`` is ignored (kept for a common form).
    """

    _reconstruction_in_clustering = False
    param_specs = AUTOENCODER_PARAMS


register(
    AlgorithmSpec(
        "idec",
        "IDEC (deep embedded, local structure kept)",
        "Autoencoder over the features + clustering layer, keeping the reconstruction loss "
        "(Guo et al. 2017) and each image's nearest neighbours close. A good first deep method.",
        IDEC,
        uses_k=True,
        supports_auto_k=False,
        category="deep",
        order=10,
    )
)
register(
    AlgorithmSpec(
        "dec",
        "DEC (deep embedded clustering)",
        "Autoencoder over the features, then sharpened soft assignments (Xie et al. 2016).",
        DEC,
        uses_k=True,
        supports_auto_k=False,
        category="deep",
        order=20,
    )
)
