"""ResShift's `UNetModelSwin`: a guided-diffusion UNet whose attention is Swin `BasicLayer`s.

Layer order and key names are the reference's (`time_embed.{0,2}`, `input_blocks.N.M`,
`middle_block.{0,1,2}`, `output_blocks.N.M`, `out.{0,2}`), so an official state dict loads
as is (its `attn_mask` buffers, which this port derives from the input size, aside).

Size rule: the latent's sides must be multiples of `size_multiple`: 2**(levels-1) for the UNet's
downsamplings, times each Swin block's window at its level (window_size * 2**(levels-1) = 64 for
the realsr configs).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vpdsr.models.resshift.configs import SwinUNetConfig
from vpdsr.models.resshift.swin import BasicLayer, SwinBlock
from vpdsr.models.resshift.unet_layers import (
    Downsample,
    GroupNorm32,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    timestep_embedding,
)

LQ_CHANNELS = 3  # the LR image concatenated when `cond_lq`


class SwinUNet(nn.Module):
    """f(x_t_scaled, t, lq) -> output (x0 for `predict_type: xstart`)."""

    def __init__(self, cfg: SwinUNetConfig):
        super().__init__()
        self.cfg = cfg = cfg.validate()
        mc, temb = cfg.model_channels, cfg.model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, temb), nn.SiLU(), nn.Linear(temb, temb))

        def res(cin: int, cout: int | None = None, **kw) -> ResBlock:
            return ResBlock(cin, temb, cout, scale_shift=cfg.use_scale_shift_norm, **kw)

        def swin(ch: int, resolution: int) -> BasicLayer:
            return BasicLayer(ch, cfg.swin_embed_dim, cfg.swin_heads, cfg.window_size, cfg.swin_depth,
                              resolution, cfg.mlp_ratio, cfg.patch_norm)

        cin = cfg.in_channels + (LQ_CHANNELS if cfg.cond_lq else 0)
        ch = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cin, ch, 3, padding=1))])
        skips, ds = [ch], cfg.image_size
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for j in range(cfg.num_res_blocks[level]):
                layers: list[nn.Module] = [res(ch, int(mult * mc))]
                ch = int(mult * mc)
                if ds in cfg.attention_resolutions and j == 0:
                    layers.append(swin(ch, ds))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skips.append(ch)
            if level != last:
                down = res(ch, ch, down=True) if cfg.resblock_updown else Downsample(ch, cfg.conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skips.append(ch)
                ds //= 2
        # the reference puts a Swin layer in the middle block whatever attention_resolutions says
        self.middle_block = TimestepEmbedSequential(res(ch), swin(ch, ds), res(ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks[level] + 1):
                layers = [res(ch + skips.pop(), int(mc * mult))]
                ch = int(mc * mult)
                if ds in cfg.attention_resolutions and i == 0:
                    layers.append(swin(ch, ds))
                if level and i == cfg.num_res_blocks[level]:
                    layers.append(res(ch, ch, up=True) if cfg.resblock_updown else Upsample(ch, cfg.conv_resample, ch))
                    ds *= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(),
                                 nn.Conv2d(int(cfg.channel_mult[0] * mc), cfg.out_channels, 3, padding=1))
        self.size_multiple = self._size_multiple()

    def _size_multiple(self) -> int:
        levels = len(self.cfg.channel_mult)
        multiple = 2 ** (levels - 1)
        for block, level in self.swin_blocks():
            multiple = math.lcm(multiple, block.window_size * 2 ** level)
        return multiple

    def swin_blocks(self) -> list[tuple[SwinBlock, int]]:
        """Every Swin block with its level (0 = full latent size)."""
        out, ds0 = [], self.cfg.image_size
        for module in self.modules():
            if isinstance(module, BasicLayer):
                level = round(math.log2(ds0 / module.resolution))
                out.extend((block, level) for block in module.blocks)
        return out

    def fix_size(self, hw: tuple[int, int] | None) -> None:
        """Make every shifted-window mask a constant for latents of size `hw` (None: computed per input)."""
        for block, level in self.swin_blocks():
            block.fix_size(None if hw is None else (hw[0] >> level, hw[1] >> level))

    def forward(self, x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            x: the scaled noisy latent [B, C, h, w]; t: network timesteps [B];
            lq: the LR image in [-1, 1], [B, 3, h, w] (required when `cond_lq`).
        """
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels).to(self.time_embed[0].weight.dtype))
        if self.cfg.cond_lq:
            if lq is None:
                raise ValueError("this UNet is conditioned on the LR image (`cond_lq`): "
                                 "pass `lq` (or `lr` to the model)")
            x = torch.cat([x, lq.to(x.dtype)], dim=1)
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
