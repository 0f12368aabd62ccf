"""Fixtures of the metrics tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from vpdsr.metrics.clip_weights import CLIP_WEIGHTS_ENV


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME, XDG_CACHE_HOME and TORCH_HOME at empty folders so real caches can't interfere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(CLIP_WEIGHTS_ENV, raising=False)
    return tmp_path
