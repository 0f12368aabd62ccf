"""Random weights in the official ResShift / VQGAN key layout, saved the way the official files are.

Used by the tests and by `make_golden.py` (which loads the same weights into the reference
implementation). Every value is drawn from one seeded CPU generator in key order, so the same seed
gives the same files on every machine. Scales keep activations O(1) through the random network
(ResShift's own init zeroes each ResBlock's last conv, which would hide half the network).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from vpdsr.models.resshift.convert import derived_buffers, official_shapes
from vpdsr.models.resshift.model import ResShiftSR


def _draw(key: str, shape: tuple[int, ...], g: torch.Generator, norms: set[str]) -> torch.Tensor:
    n = torch.randn(shape, generator=g)
    owner, leaf = key.rsplit(".", 1)
    if owner in norms:
        return 1.0 + 0.2 * n if leaf == "weight" else 0.2 * n  # GroupNorm affine
    if leaf == "relative_position_bias_table":
        return 0.5 * n
    if key == "quantize.embedding.weight":
        return n  # a codebook as spread as the latents, so the lookup matters
    if leaf == "bias":
        return 0.1 * n
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return n / math.sqrt(fan_in)


def random_official_states(model: ResShiftSR, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """{"unet": state, "autoencoder": state} with the official keys of `model`'s config, random values."""
    g = torch.Generator().manual_seed(seed)
    shapes = official_shapes(model)
    fixed = {**derived_buffers(model)}
    ours = model.state_dict()
    for k, v in ours.items():
        if k.endswith("relative_position_index"):
            fixed[k[len("unet."):]] = v.clone()
    states = {}
    for part, keys in shapes.items():
        norms = {n for n, m in getattr(model, part).named_modules() if isinstance(m, nn.GroupNorm)}
        states[part] = {k: fixed[k] if (part == "unet" and k in fixed) else _draw(k, shape, g, norms)
                        for k, shape in keys.items()}
    return states


def save_official(states: dict[str, dict[str, torch.Tensor]], directory: Path, wrap: bool = True) -> tuple[Path, Path]:
    """torch.save the two files (the UNet under `state_dict`, as some official files are)."""
    directory.mkdir(parents=True, exist_ok=True)
    unet, vq = directory / "unet.pth", directory / "autoencoder_vq_f4.pth"
    torch.save({"state_dict": states["unet"]} if wrap else states["unet"], unet)
    torch.save(states["autoencoder"], vq)
    return unet, vq


def make_inputs(h: int, w: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The LR image in [0, 1] and the latent noise of one comparison (the tests draw them the same way)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g), torch.randn(1, channels, h, w, generator=g)
