"""Shared fixtures: real composed configs, an isolated cache, the optional ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is not there (user machines)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is for development and CI only)")
    return path


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Every test gets its own cache; models come from ../shared/models when it exists."""
    monkeypatch.setenv("KIRIDASHI_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    if (SHARED / "models").is_dir():
        monkeypatch.setenv("KIRIDASHI_MODELS_DIR", str(SHARED / "models"))
    monkeypatch.delenv("PUSHOVER_TOKEN", raising=False)
    monkeypatch.delenv("PUSHOVER_USER", raising=False)
    yield


@pytest.fixture
def cfg() -> dict:
    """The default configuration composed from conf/ (as `kiridashi extract` uses it)."""
    from kiridashi.config import compose

    return compose([])


@pytest.fixture
def quirks_dir() -> Path:
    return shared_path("datasets", "quirks")


@pytest.fixture
def dev_images() -> Path:
    return shared_path("datasets", "dev", "images")


@pytest.fixture
def models_dir() -> Path:
    return Path(os.environ.get("KIRIDASHI_MODELS_DIR", REPO / "models"))
