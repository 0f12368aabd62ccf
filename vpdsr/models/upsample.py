"""Bicubic upsampling by an integer factor as a fixed convolution, for export graphs.

`F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)` exports as an ONNX Resize,
which ONNX Runtime runs as a plain loop: on `tiny` (LR 128) it was 51% of ort-int8's kernel time,
35% of onnx's and 22% of openvino-int8's (benchmarks/engine_ops.py). The same result is a grouped
convolution: output pixel s*k + r of a row reads input k + (r + 0.5)/s - 0.5, so each of the s phases
is a fixed 4-tap filter over inputs k-2 .. k+2 (PyTorch's cubic kernel, A = -0.75), and PyTorch's
clamped border reads are replicate padding. `BicubicPhases` computes the s*s phases of every channel
as channels (pixel_unshuffle's order); `pixel_shuffle` of them is the upsampled image, and an f=4
space-to-depth autoencoder takes the phases as they are. Equal to F.interpolate up to float rounding
(the sums run in another order): max |diff| ~1e-7 on [0, 1] images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic coefficient


def cubic(x: float, a: float = CUBIC_A) -> float:
    """Keys' cubic convolution kernel at distance `x`."""
    x = abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def phase_taps(scale: int) -> tuple[torch.Tensor, int]:
    """([scale, taps] 1-D weights, pad): phase r's weights over inputs k - pad .. k + pad."""
    sources = [(r + 0.5) / scale - 0.5 for r in range(scale)]  # offset of phase r from input k
    pad = max(2, math.ceil(max(abs(s) for s in sources)) + 1)
    taps = torch.zeros(scale, 2 * pad + 1, dtype=torch.float64)
    for r, offset in enumerate(sources):
        base = math.floor(offset)
        t = offset - base
        for i, w in zip(range(base - 1, base + 3), (cubic(t + 1), cubic(t), cubic(1 - t), cubic(2 - t))):
            taps[r, i + pad] += w
    return taps, pad


class BicubicPhases(nn.Module):
    """[B, C, H, W] -> [B, C*s*s, H, W]: channel c*s*s + i*s + j is output pixel (s*y + i, s*x + j) of
    the bicubic x`scale` upsampling of channel c (the order of F.pixel_unshuffle)."""

    def __init__(self, scale: int, channels: int = 3):
        super().__init__()
        taps, self.pad = phase_taps(scale)
        n = taps.shape[1]
        # row phase i, column phase j
        kernel = (taps[:, None, :, None] * taps[None, :, None, :]).reshape(scale * scale, 1, n, n)
        # not saved: fixed, so checkpoints keep their keys
        self.register_buffer("weight", kernel.repeat(channels, 1, 1, 1).float(), persistent=False)
        self.scale, self.channels = scale, channels

    def forward(self, x: torch.Tensor, gain: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        """The phases, times `gain` plus `offset` inside the convolution (weights and bias): one node, so an
        engine that fuses a following Mul into the convolution cannot rename it out of the float policy."""
        x = F.pad(x, (self.pad,) * 4, mode="replicate")
        weight = self.weight.to(x.dtype) * gain if gain != 1.0 else self.weight.to(x.dtype)
        bias = torch.full((weight.shape[0],), offset, dtype=x.dtype, device=x.device) if offset else None
        return F.conv2d(x, weight, bias, groups=self.channels)


def bicubic_upsample(x: torch.Tensor, phases: BicubicPhases) -> torch.Tensor:
    """F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False) as a convolution + pixel shuffle."""
    return F.pixel_shuffle(phases(x), phases.scale)
