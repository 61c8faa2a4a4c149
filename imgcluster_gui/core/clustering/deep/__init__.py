"""Deep clustering (issue 4): DEC, IDEC, DeepCluster, UCNN and the multi-view CC, MVEC, DMVC.

Each module registers its methods in the core clustering registry (category ``'deep'``) when
imported, with the parameters its estimator classes declare (``param_specs``). The registry
imports this package lazily, so torch is loaded only when a deep method is used.
See :mod:`.common` for the cancel contract (best-so-far labels, ``partial_``, ``Cancelled`` re-raised).
"""

from __future__ import annotations

from .dec import DEC, IDEC
from .deepcluster import DeepCluster
from .multiview import DMVC, ConcatKMeans, MultiViewEnsemble
from .ucnn import UCNN

__all__ = ["DEC", "IDEC", "DeepCluster", "UCNN", "ConcatKMeans", "MultiViewEnsemble", "DMVC"]
