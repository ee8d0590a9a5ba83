"""Shared fixtures: one model cache for the whole run, so packaged parts are joined once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avatar.models.store import ModelStore
from avatar.settings import default_cache_dir

# The same cache `./run.sh` fills with `avatar models verify`, so parts are joined once.
MODEL_CACHE = Path(os.environ.get("AVATAR_TEST_MODEL_CACHE") or default_cache_dir())


@pytest.fixture(scope="session")
def model_store() -> ModelStore:
    return ModelStore(MODEL_CACHE)
