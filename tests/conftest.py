"""Fixtures shared by every test package."""
from __future__ import annotations

from pathlib import Path

import pytest

from vpdsr.metrics.clip_weights import CLIP_WEIGHTS_ENV


@pytest.fixture(scope="session")
def clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP in OpenAI's TorchScript format (see tests/tiny_clip.py), built once."""
    pytest.importorskip("pyiqa", reason="CLIP tests need pyiqa (pip install 'vpdsr[metrics]')")
    from tests.tiny_clip import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "RN50.pt")


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
