"""Building blocks of ResShift's UNet (guided-diffusion lineage): fp32 GroupNorm, time embedding,
scale-shift ResBlocks, up/downsampling. Key names follow the reference (`in_layers`, `emb_layers`,
`out_layers`, `skip_connection`, `op`, `conv`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, C) computed in float32 whatever the input dtype (fp16/bf16 inputs stay stable)."""

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5):
        super().__init__(groups, channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return super().forward(x)
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of (possibly fractional) steps t [B]: cos first, then sin."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Upsample(nn.Module):
    """Nearest x2, then an optional 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """A stride-2 3x3 conv, or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.op = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, time embedding (FiLM scale/shift when `scale_shift`), GroupNorm-SiLU-conv, skip.

    `in_layers` = (norm, SiLU, conv); `out_layers` = (norm, SiLU, Dropout, conv), the last conv
    zero-initialised (so a fresh block is the identity on its skip path), as in the reference.
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None,
                 scale_shift: bool = True, up: bool = False, down: bool = False):
        super().__init__()
        out = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out if scale_shift else out))
        self.out_layers = nn.Sequential(GroupNorm32(out), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out, out, 3, padding=1))
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[2](self.h_upd(self.in_layers[:2](x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class TimestepEmbedSequential(nn.Sequential):
    """Runs its children in order, handing the time embedding to the ResBlocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x
