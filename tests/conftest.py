"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Qt must never need a display in tests, and the feature/thumbnail caches must never touch the user's.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DATASETS = SHARED / "datasets"
SAMPLE_IMAGES = REPO_ROOT / "resources" / "sample_images"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cache dir, so no test reads another's features."""
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def _shared_dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"../shared/datasets/{name} is not present (it sits beside the repo on the project's machines)")
    return path


@pytest.fixture
def shared_dataset():
    """``shared_dataset(name)`` gives a shared labelled dataset's folder, or skips the test with the reason."""
    return _shared_dataset


@pytest.fixture
def sample_images() -> Path:
    return SAMPLE_IMAGES
