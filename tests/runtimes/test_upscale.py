"""The one upscale path (Upscaler): runners without noise, the size multiple, the static-tile rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vpdsr.errors import InputError
from vpdsr.runtimes.tiling import TileConfig
from vpdsr.runtimes.torch_runner import TorchRunner
from vpdsr.runtimes.upscale import Upscaler, tiles_for


class NearestX4(torch.nn.Module):
    """A model without a noise input (like a GAN SR network): `sr = model(lr)`."""

    latent_channels = None

    def __init__(self, size_multiple: int = 1, scale: int = 4):
        super().__init__()
        self.size_multiple, self.scale = size_multiple, scale
        self.seen: list[tuple] = []

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(lr.shape))
        return F.interpolate(lr, scale_factor=self.scale, mode="nearest")


def image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).random((h, w, 3), dtype=np.float32)


def test_runner_without_noise_gets_lr_alone():
    with TorchRunner(NearestX4()) as runner:
        assert runner.noise_channels is None and set(runner.get_input_metadata()) == {"lr"}
        upscaler = Upscaler(runner, TileConfig(tile=16, overlap=4, batch=2))
        assert upscaler.noise is None
        img = image(30, 21)
        sr = upscaler(img)  # the runner refuses any input it does not have: no `noise` was fed
    np.testing.assert_allclose(sr, img.repeat(4, axis=0).repeat(4, axis=1), atol=1e-6)


def test_size_multiple_is_kept_by_every_call():
    model = NearestX4(size_multiple=8)
    with TorchRunner(model) as runner:
        assert tiles_for(runner, TileConfig(tile=20, overlap=4)).tile == 24  # rounded up, not the user's
        with pytest.raises(InputError, match="multiples of 8 .*try `--tile 16` or `--tile 24`"):
            tiles_for(runner, TileConfig(tile=20, overlap=4), explicit=True)
        img = image(13, 10)
        whole = Upscaler(runner, TileConfig(tile=None, overlap=0))(img)  # padded up to 16x16, cropped back
    assert all(h % 8 == 0 and w % 8 == 0 for _, _, h, w in model.seen)
    np.testing.assert_allclose(whole, img.repeat(4, axis=0).repeat(4, axis=1), atol=1e-6)


def test_dynamic_runner_keeps_the_callers_tiling():
    with TorchRunner(NearestX4()) as runner:
        wanted = TileConfig(tile=32, overlap=6, batch=3)
        assert tiles_for(runner, wanted, explicit=True) == wanted


def test_the_models_scale_is_used():
    with TorchRunner(NearestX4(scale=2)) as runner:
        img = image(19, 23)
        sr = Upscaler(runner, TileConfig(tile=8, overlap=2))(img)
    np.testing.assert_allclose(sr, img.repeat(2, axis=0).repeat(2, axis=1), atol=1e-6)
