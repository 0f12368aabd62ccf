"""Fixtures shared by every test package."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pytest

from vpdsr.export.validation import ValidationConfig
from vpdsr.metrics.clip_weights import CLIP_WEIGHTS_ENV

# Export validation in tests: the three held-out photos centre-cropped to 32x32 LR (whole photos at
# a 16-pixel tile take a minute per target here; `vpdsr export` validates on them whole).
SMALL = ValidationConfig(max_size=32)


@contextlib.contextmanager
def vpdsr_log_lines(level: int = logging.DEBUG):
    """The messages logged under `vpdsr.*` inside the block (what the CLI's handlers would show)."""
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("vpdsr"), _Collect(level)
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


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
