"""Fixtures shared by every test package."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP in OpenAI's TorchScript format (see tests/tiny_clip.py), built once."""
    pytest.importorskip("pyiqa", reason="CLIP tests need pyiqa (pip install 'vpdsr[metrics]')")
    from tests.tiny_clip import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "RN50.pt")
