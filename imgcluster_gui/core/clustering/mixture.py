"""Gaussian mixture (EM, scikit-learn) started from the project's k-means; confidence is the posterior.

Importing this module registers: gmm.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from ..progress import ProgressCallback, ensure
from .base import (
    DEFAULT_MEMORY_LIMIT_GB,
    MEMORY_PARAM,
    RESTARTS_HELP,
    ProgressClusterer,
    check_choice,
    check_features,
    check_n_clusters,
    check_positive_int,
    cluster_means,
    memory_needed_gb,
    seed_from,
)
from .kmeans import FastKMeans
from .registry import AlgorithmSpec, ParamSpec, register

GMM_COVARIANCE_TYPES = ("diag", "spherical", "tied", "full")


class GaussianMixtureClusterer(ProgressClusterer):
    """Gaussian mixture (scikit-learn, EM) with restarts run here; confidence is the posterior.

    Parameters
    ----------
    n_clusters : int
    covariance_type : {'diag', 'spherical', 'tied', 'full'}
        'full' stores ``K * d * d`` numbers: reduce the features with PCA first for wide features.
    n_init : int
        Restarts; the highest likelihood bound is kept.
    max_iter : int
        EM iterations per restart.
    reg_covar : float
        Added to the covariance diagonals (keeps them invertible).
    random_state : int, RandomState or None
    memory_limit_gb : float
        Refuse (ValueError) when the covariances would exceed this.

    Attributes
    ----------
    labels_, cluster_centers_ (the means), confidence_ (largest posterior probability), converged_
    """

    param_specs = (
        ParamSpec(
            "covariance_type",
            "choice",
            choices=GMM_COVARIANCE_TYPES,
            help="Shape of each Gaussian; 'full' needs PCA-reduced features.",
        ),
        ParamSpec("n_init", "int", minimum=1, maximum=100, help=RESTARTS_HELP),
        ParamSpec("max_iter", "int", minimum=1, maximum=10000, help="EM iterations per restart."),
        ParamSpec("reg_covar", "float", minimum=0.0, maximum=10.0, help="Added to covariance diagonals for stability."),
        MEMORY_PARAM,
    )

    def __init__(
        self,
        n_clusters: int = 8,
        covariance_type: str = "diag",
        n_init: int = 1,
        max_iter: int = 100,
        reg_covar: float = 1e-6,
        random_state: Any = None,
        memory_limit_gb: float = DEFAULT_MEMORY_LIMIT_GB,
    ) -> None:
        self.n_clusters = n_clusters
        self.covariance_type = covariance_type
        self.n_init = n_init
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.memory_limit_gb = memory_limit_gb

    def fit(self, X: Any, y: Any = None, progress: Optional[ProgressCallback] = None) -> "GaussianMixtureClusterer":
        from sklearn.mixture import GaussianMixture

        report = ensure(progress)
        data = check_features(X, min_samples=2, dtype=np.float64)
        n_samples, n_features = data.shape
        n_clusters = check_n_clusters(self.n_clusters, n_samples)
        covariance_type = check_choice(self.covariance_type, "covariance_type", GMM_COVARIANCE_TYPES)
        n_init = check_positive_int(self.n_init, "n_init")
        matrices = {"full": n_clusters, "tied": 1}.get(covariance_type, 0)
        needed = memory_needed_gb(3.0 * 8.0 * matrices * n_features * n_features)  # covariances, precisions, work
        if needed > float(self.memory_limit_gb):
            raise ValueError(
                f"a '{covariance_type}' Gaussian mixture on {n_features} features needs about "
                f"{needed:.1f} GB (limit {float(self.memory_limit_gb):.1f} GB): use "
                "covariance_type='diag', or reduce the features with PCA first"
            )
        rng = np.random.default_rng(seed_from(self.random_state))
        best = None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*did not converge.*")
            for restart in range(n_init):
                report(restart / n_init, f"Gaussian mixture restart {restart + 1}/{n_init}")
                seed = int(rng.integers(np.iinfo(np.int32).max))
                # Start EM from our k-means (k-means++ seeding, restarts): scikit-learn's own start is a
                # single k-means run, which often merges two clusters and splits another.
                start = FastKMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit(data)
                weights, means, precisions = _gaussian_start(
                    data, start.labels_, n_clusters, covariance_type, float(self.reg_covar)
                )
                model = GaussianMixture(
                    n_components=n_clusters,
                    covariance_type=covariance_type,
                    max_iter=check_positive_int(self.max_iter, "max_iter"),
                    reg_covar=float(self.reg_covar),
                    init_params="random_from_data",
                    weights_init=weights,
                    means_init=means,
                    precisions_init=precisions,
                    random_state=seed,
                ).fit(data)
                if best is None or model.lower_bound_ > best.lower_bound_:
                    best = model
        assert best is not None, "n_init >= 1 (checked above): at least one restart ran"
        posterior = best.predict_proba(data)
        self.labels_ = posterior.argmax(axis=1).astype(np.int64)
        self.confidence_ = posterior.max(axis=1).astype(np.float32)
        self.cluster_centers_ = best.means_.astype(np.float32)
        self.converged_ = bool(best.converged_)
        report(1.0, "Gaussian mixture done")
        return self


def _gaussian_start(
    X: np.ndarray, labels: np.ndarray, n_clusters: int, covariance_type: str, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights ``(K,)``, means ``(K, d)`` and precisions (scikit-learn's shape per covariance type)
    of the Gaussians fitted to a hard clustering ``labels`` (every cluster non-empty or given a floor)."""
    n_samples, n_features = X.shape
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    weights = np.maximum(counts, 1.0) / np.maximum(counts, 1.0).sum()
    means = cluster_means(X, labels, n_clusters).astype(np.float64)
    residuals = X - means[labels]
    if covariance_type in ("diag", "spherical"):
        variances = np.zeros((n_clusters, n_features))
        np.add.at(variances, labels, residuals**2)
        variances = variances / np.maximum(counts, 1.0)[:, None] + reg_covar
        if covariance_type == "spherical":
            return weights, means, 1.0 / variances.mean(axis=1)
        return weights, means, 1.0 / variances
    if covariance_type == "tied":
        covariance = residuals.T @ residuals / n_samples + reg_covar * np.eye(n_features)
        return weights, means, np.linalg.inv(covariance)
    precisions = np.empty((n_clusters, n_features, n_features))
    for cluster in range(n_clusters):
        member = residuals[labels == cluster]
        covariance = member.T @ member / max(len(member), 1) + reg_covar * np.eye(n_features)
        precisions[cluster] = np.linalg.inv(covariance)
    return weights, means, precisions


register(
    AlgorithmSpec(
        "gmm",
        "Gaussian mixture",
        "Soft clustering by a mixture of Gaussians; confidence is the probability of the chosen cluster.",
        GaussianMixtureClusterer,
        uses_k=True,
        supports_auto_k=True,
        order=60,
    )
)
