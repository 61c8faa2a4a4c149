"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Qt must never need a display in tests, and the feature/thumbnail caches must never touch the user's.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DATASETS = SHARED / "datasets"
WEIGHTS = SHARED / "weights"
SAMPLE_IMAGES = REPO_ROOT / "resources" / "sample_images"

# `from tests.helpers import ...` (and `benchmarks`) must import however pytest is started: `pytest`,
# `python -m pytest`, from the repository root or elsewhere (--import-mode=importlib adds nothing to sys.path).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cache and data dirs: no test reads another's features, and none writes the user's
    own data folder (autosave, error log, the export manifests' signing key)."""
    monkeypatch.setenv("IMGCLUSTER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("IMGCLUSTER_DATA_DIR", str(tmp_path_factory.mktemp("data")))


# ../shared (labelled datasets and pretrained weights beside the repository on the project's machines) is
# resolved here and nowhere else: every test reaches it through these fixtures, so each one skips with the
# reason where it is absent (a fresh clone, CI).
def _shared_dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"../shared/datasets/{name} is not present (it sits beside the repo on the project's machines)")
    return path


def _shared_weights(name: str) -> Path:
    path = WEIGHTS / name
    if not path.is_file():
        pytest.skip(f"../shared/weights/{name} is not present (it sits beside the repo on the project's machines)")
    return path


@pytest.fixture
def shared_dataset():
    """``shared_dataset(name)`` gives a shared labelled dataset's folder, or skips the test with the reason."""
    return _shared_dataset


@pytest.fixture
def shared_weights():
    """``shared_weights(name)`` gives a shared pretrained-weights file, or skips the test with the reason."""
    return _shared_weights


@pytest.fixture
def sample_images() -> Path:
    return SAMPLE_IMAGES
