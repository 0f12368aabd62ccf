"""The denoiser f(x_t, y, t) -> x0_hat: a diffusers UNet2DModel on concat(x_t, y).

It predicts the residual: x0_hat = y + g(x_t, y, t), and g's last convolution starts at zero,
so an untrained denoiser already returns y (the bicubic input's latent). Measured on 2 CPU
cores (ARCHITECTURE.md): predicting x0 directly stayed ~3 dB below bicubic after 10 minutes,
the residual form went above it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.errors import ConfigError


@dataclass
class DenoiserConfig:
    """UNet fields (diffusers names). `attention_levels` marks which levels use attention blocks."""

    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (False, False, False)
    attention_head_dim: int = 32
    norm_num_groups: int = 16
    predict_residual: bool = True
    scale_input: bool = True

    def validate(self) -> DenoiserConfig:
        if len(self.attention_levels) != len(self.block_out_channels):
            raise ConfigError(
                f"`denoiser.attention_levels` needs one entry per level ({len(self.block_out_channels)}), "
                f"got {len(self.attention_levels)}"
            )
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ConfigError(f"`denoiser.block_out_channels` {c} is not divisible by "
                                  f"norm_num_groups {self.norm_num_groups}")
        return self

    @property
    def size_multiple(self) -> int:
        """Inputs are padded to a multiple of this (the UNet halves the size len-1 times)."""
        return 2 ** (len(self.block_out_channels) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        d["attention_levels"] = list(self.attention_levels)
        return d


class ResidualDenoiser(nn.Module):
    """x0_hat = y + g(concat(x_t * s_t, y), t), padded internally so any latent size works."""

    def __init__(self, cfg: DenoiserConfig, channels: int):
        super().__init__()
        from diffusers import UNet2DModel

        cfg.validate()
        self.cfg = cfg
        self.channels = channels
        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention_levels)
        up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention_levels))
        self.unet = UNet2DModel(
            in_channels=2 * channels,
            out_channels=channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=tuple(cfg.block_out_channels),
            layers_per_block=cfg.layers_per_block,
            attention_head_dim=cfg.attention_head_dim,
            norm_num_groups=cfg.norm_num_groups,
            add_attention=any(cfg.attention_levels),
        )
        if cfg.predict_residual:
            nn.init.zeros_(self.unet.conv_out.weight)
            nn.init.zeros_(self.unet.conv_out.bias)

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                scale: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            x_t: noisy latent [B,C,h,w]; y: the LR latent [B,C,h,w]; t: 0-based steps [B];
            scale: optional per-sample input scale [B,1,1,1] (ResShift's 1/sqrt(kappa^2 eta_t + 1)).
        Returns:
            x0_hat [B,C,h,w].
        """
        h, w = x_t.shape[-2:]
        m = self.cfg.size_multiple
        ph, pw = (-h) % m, (-w) % m
        x_in = x_t * scale if (scale is not None and self.cfg.scale_input) else x_t
        inp = torch.cat([x_in, y], dim=1)
        if ph or pw or torch.jit.is_tracing():
            # Under ONNX tracing always pad, so the pad amounts stay graph ops computed from the input's
            # shape (a Python `if` would bake the example's sizes in and break dynamic H/W exports).
            # replicate, not reflect: reflect needs the pad to be smaller than the size (1x1 latents exist)
            inp = F.pad(inp, (0, pw, 0, ph), mode="replicate")
        g = self.unet(inp, t).sample[..., :h, :w]
        return y + g if self.cfg.predict_residual else g
