"""The LDM VQGAN (`VQModelTorch` of ResShift's `ldm/models/autoencoder.py`): encoder, quant_conv,
codebook lookup in decode, post_quant_conv, decoder. Images are in [-1, 1].

Key names are the reference's: `encoder.{conv_in, down.L.{block.J, attn.J, downsample.conv},
mid.{block_1, attn_1, block_2}, norm_out, conv_out}`, `decoder.{conv_in, mid.*, up.L.{block.J,
attn.J, upsample.conv}, norm_out, conv_out}`, `quant_conv`, `post_quant_conv`,
`quantize.embedding.weight`. The mid-level attention exists whatever `attn_resolutions` says.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.models.resshift.configs import VQConfig


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """norm-swish-conv twice, 1x1 `nin_shortcut` when the width changes (no time embedding)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions (1x1 conv q, k, v, proj_out)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, 1, c, h * w).transpose(2, 3) for m in (self.q, self.k, self.v))
        # SDPA: the same softmax(q k^T / sqrt(c)) v without holding the (hw)^2 matrix in eager mode
        out = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 3x3 conv (the reference's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(blocks: list[nn.Module], attn: list[nn.Module]) -> nn.Module:
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attn)
    return level


def _run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for j, block in enumerate(level.block):
        h = block(h)
        if len(level.attn):
            h = level.attn[j](h)
    return h


def _mid(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1 = ResnetBlock(channels, channels), AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels)
    return mid


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin, res = cfg.ch, cfg.resolution
        for i, mult in enumerate(cfg.ch_mult):
            cout, blocks, attn = cfg.ch * mult, [], []
            for _ in range(cfg.num_res_blocks[i]):
                blocks.append(ResnetBlock(cin, cout))
                cin = cout
                if res in cfg.attn_resolutions:
                    attn.append(AttnBlock(cin))
            level = _level(blocks, attn)
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(cin)
                res //= 2
            self.down.append(level)
        self.mid = _mid(cin)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        n = len(cfg.ch_mult)
        cin, res = cfg.ch * cfg.ch_mult[-1], cfg.resolution // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = _mid(cin)
        levels: list[nn.Module] = []
        for i in reversed(range(n)):  # built from the lowest resolution up, stored by level index
            cout, blocks, attn = cfg.ch * cfg.ch_mult[i], [], []
            for _ in range(cfg.num_res_blocks[i] + 1):
                blocks.append(ResnetBlock(cin, cout))
                cin = cout
                if res in cfg.attn_resolutions:
                    attn.append(AttnBlock(cin))
            level = _level(blocks, attn)
            if i != 0:
                level.upsample = Upsample(cin)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(self.up):
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook lookup (`VectorQuantizer2`): argmin of |z|^2 + |e|^2 - 2 z.e per position."""

    def __init__(self, n_embed: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """The nearest code of every position, [B*H*W] in (b, h, w) order."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        e = self.embedding.weight
        return (flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.t()).argmin(dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        return self.embedding(self.indices(z)).view(b, h, w, c).permute(0, 3, 1, 2)


class VQModelF4(nn.Module):
    """encode: x in [-1, 1] -> pre-quantisation latent; decode: latent -> (codebook) -> image in ~[-1, 1]."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))

    def decode(self, z: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        if self.cfg.quantize if quantize is None else quantize:
            z = self.quantize(z)
        return self.decoder(self.post_quant_conv(z))
