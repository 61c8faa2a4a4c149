"""Pretrained-CNN features: backbone registry, batched extraction, on-disk cache.

``backbones`` (registry, weights, layers), ``extract`` (DataLoader extraction, device choice,
multi-view concatenation) and ``cache`` (content-keyed feature store).  Names are re-exported
lazily so that ``features.cache`` can be used without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_BACKBONE": "backbones",
    "BackboneSpec": "backbones",
    "Preprocessing": "backbones",
    "WeightsUnavailableError": "backbones",
    "WeightsFileError": "backbones",
    "build_feature_model": "backbones",
    "get_backbone": "backbones",
    "list_backbones": "backbones",
    "resolve_preprocessing": "backbones",
    "FeatureResult": "extract",
    "extract_features": "extract",
    "extract_multiview": "extract",
    "resolve_device": "extract",
    "model_key": "extract",
    "FeatureCache": "cache",
    "default_cache_dir": "cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
