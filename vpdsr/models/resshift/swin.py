"""ResShift's Swin `BasicLayer`: window attention with relative position bias, alternating shifts.

Layout is NCHW throughout (as in ResShift's `models/swin_transformer.py`): GroupNorm(32) instead of
LayerNorm, 1x1 convolutions as the MLP, `patch_embed`/`patch_unembed` 1x1 convolutions around the
blocks. Key names match the reference's (`patch_embed.proj`, `blocks.N.{norm1, attn.{qkv, proj,
relative_position_bias_table, relative_position_index}, norm2, mlp.fc1, mlp.fc2}`, `patch_unembed.proj`).

The reference keeps the shifted-window mask as a buffer for the training size and recomputes it in
a Python branch for other sizes; a traced export would keep one branch. Here the mask is always a
function of the input's shape, written in tensor ops so that a traced graph computes it from the
input (dynamic H/W), or it comes from `fix_size` as a constant (static tiles).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.models.resshift.unet_layers import GroupNorm32

MASK_VALUE = -100.0  # the reference's additive mask value (not -inf)


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * nW, ws * ws, C] (windows in row-major order of the window grid)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, b: int, h, w) -> torch.Tensor:
    """Inverse of `window_partition`: [B * nW, ws * ws, C] -> [B, C, H, W]."""
    x = windows.reshape(b, h // ws, w // ws, ws, ws, -1).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, -1, h, w)


def shifted_window_mask(h, w, ws: int, shift: int, device: torch.device | None = None) -> torch.Tensor:
    """ResShift's SW-MSA mask [nW, ws*ws, ws*ws] (0 or -100) for an h x w map, in tensor ops only.

    This reproduces the reference's `calculate_mask` exactly, which differs from Swin's: it was
    carried over from NHWC code to an NCHW `img_mask`, so its labels (0..2 per region of rows
    [0, h-ws), [h-ws, h-shift), [h-shift, h)) depend on the ROW only, and each window's labels are
    flattened in (column, row) order while tokens are in (row, column) order. The checkpoints were
    trained with that mask, so it is kept. `h`/`w` may be traced sizes (the mask is then computed
    in the graph); the row's region is (row >= h - ws) + (row >= h - shift).
    """
    rows = torch.arange(h, device=device)
    region = (rows >= h - ws).to(torch.float32) + (rows >= h - shift).to(torch.float32)
    label = region[:, None] + torch.zeros_like(torch.arange(w, device=device), dtype=torch.float32)[None, :]
    windows = window_partition(label[None, None], ws)[..., 0]  # [nW, ws*ws], token order (row, col)
    windows = windows.view(-1, ws, ws).transpose(1, 2).reshape(-1, ws * ws)  # the reference's (col, row) order
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, torch.full_like(diff, MASK_VALUE), torch.zeros_like(diff))


def relative_position_index(ws: int) -> torch.Tensor:
    """[ws*ws, ws*ws] indices into the (2ws-1)^2 bias table (Swin's layout)."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, plus a learned relative position bias."""

    def __init__(self, dim: int, ws: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.ws, self.heads = ws, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(ws))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B*nW, N, C]; mask: [nW, N, N] or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(-1, nw, self.heads, n, n) + mask[None, :, None]).view(-1, self.heads, n, n)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    """1x1 conv -> GELU -> 1x1 conv (NCHW)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """One (shifted-)window transformer block on [B, C, H, W].

    As in the reference, a map no larger than the window at the training size (`resolution`) gets one
    window of that size and no shift; that choice is fixed at construction.
    """

    def __init__(self, dim: int, resolution: int, heads: int, window_size: int, shift: int, mlp_ratio: float):
        super().__init__()
        if resolution <= window_size:
            window_size, shift = resolution, 0
        self.window_size, self.shift_size = window_size, shift
        self.norm1 = GroupNorm32(dim)
        self.attn = WindowAttention(dim, window_size, heads)
        self.norm2 = GroupNorm32(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.fixed_mask: torch.Tensor | None = None  # set by fix_size(): a constant in traced graphs
        self.fixed_hw: tuple[int, int] | None = None

    def fix_size(self, hw: tuple[int, int] | None) -> None:
        """Precompute the mask for one input size (None: compute it from every input's shape)."""
        self.fixed_hw = hw
        self.fixed_mask = (shifted_window_mask(hw[0], hw[1], self.window_size, self.shift_size)
                           if hw is not None and self.shift_size else None)

    def mask(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.shift_size:
            return None
        h, w = x.shape[-2:]
        if self.fixed_mask is not None and not torch.jit.is_tracing() and (int(h), int(w)) != self.fixed_hw:
            raise ValueError(f"this model was fixed to {self.fixed_hw} inputs at this level, got {(int(h), int(w))}")
        if self.fixed_mask is not None:
            return self.fixed_mask.to(device=x.device, dtype=x.dtype)
        return shifted_window_mask(h, w, self.window_size, self.shift_size, x.device).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, s = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x)
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(2, 3))
        x = self.attn(window_partition(x, ws), self.mask(x))
        x = window_reverse(x, ws, b, h, w)
        if s:
            x = torch.roll(x, shifts=(s, s), dims=(2, 3))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchConv(nn.Module):
    """ResShift's PatchEmbed / PatchUnEmbed with patch size 1: a 1x1 conv (+ GroupNorm if `norm`)."""

    def __init__(self, cin: int, cout: int, norm: bool):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)
        self.norm = GroupNorm32(cout) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class BasicLayer(nn.Module):
    """patch_embed (C -> embed_dim) -> `depth` Swin blocks (odd ones shifted by ws // 2) -> patch_unembed."""

    def __init__(self, channels: int, embed_dim: int, heads: int, window_size: int, depth: int,
                 resolution: int, mlp_ratio: float, patch_norm: bool = False):
        super().__init__()
        self.resolution = resolution  # the training size at this level
        self.patch_embed = PatchConv(channels, embed_dim, patch_norm)
        self.blocks = nn.ModuleList(
            SwinBlock(embed_dim, resolution, heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth))
        self.patch_unembed = PatchConv(embed_dim, channels, patch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for block in self.blocks:
            x = block(x)
        return self.patch_unembed(x)
