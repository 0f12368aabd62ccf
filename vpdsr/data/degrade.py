"""On-the-fly LR synthesis for training: Real-ESRGAN's second-order degradation, or plain bicubic.

Real-ESRGAN (Wang et al., 2021) degrades a clean HR crop twice with blur -> random resize ->
noise -> JPEG, then resizes to the LR size with an optional sinc (ringing) filter before or
after a last JPEG, and rounds to 8-bit levels. This module follows the published recipe
(``realesrgan/models/realesrgan_model.py`` and BasicSR's ``degradations.py``) on torch
tensors, on any device, with every random draw taken from one ``torch.Generator`` so a run
resumes exactly. Unlike the reference, every parameter (resize factor and mode, noise type,
order of the last steps) is drawn per sample, not per batch.

Example:
    >>> cfg = DegradationConfig.from_dict({"mode": "realesrgan", "second": {"noise_range": [1, 10]}})
    >>> lr = degrade(hr, cfg, torch.Generator().manual_seed(step))  # hr: [B, 3, H, W] in [0, 1]
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import filter2d

from vpdsr.data.degrade_config import (  # noqa: F401 - the configs are part of this module's API
    KERNEL_TYPES,
    MODES,
    RESIZE_MODES,
    DegradationConfig,
    OrderConfig,
    second_order_defaults,
)
from vpdsr.data.kernels import Draws, circular_lowpass_kernel, random_blur_kernel
from vpdsr.errors import InputError


def _random_resize_factor(order: OrderConfig, draw: Draws) -> float:
    direction = draw.choice(("up", "down", "keep"), order.resize_prob)
    if direction == "up":
        return draw.uniform(1.0, order.resize_range[1])
    if direction == "down":
        return draw.uniform(order.resize_range[0], 1.0)
    return 1.0


# ---------------------------------------------------------------- stages

def quantize_8bit(img: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 levels of an 8-bit image."""
    return (img * 255.0).round().clamp(0.0, 255.0) / 255.0


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Filter every channel with one square kernel (reflect border, replicate if the image is tiny)."""
    half = kernel.shape[-1] // 2
    # Reflect padding needs more pixels than the kernel's half-width.
    border = "reflect" if min(img.shape[-2:]) > half else "replicate"
    return filter2d(img, kernel.to(img)[None], border_type=border)


def resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``F.interpolate`` to ``size`` without antialiasing (Real-ESRGAN keeps the aliasing)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    extra = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(img, size=size, mode=mode, **extra)


def add_gaussian_noise(img: torch.Tensor, sigma: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """Add N(0, sigma/255) noise, one field for all channels if ``gray``, and clamp to [0, 1]."""
    b, c, h, w = img.shape
    shape = (b, 1, h, w) if gray else (b, c, h, w)
    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return (img + noise.to(img) * (sigma / 255.0)).clamp(0.0, 1.0)


def add_poisson_noise(img: torch.Tensor, scale: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """Add shot noise scaled by ``scale`` (BasicSR's recipe), from the luma if ``gray``; clamp to [0, 1]."""
    source = quantize_8bit(rgb_to_grayscale(img) if gray else img)
    # Photon counts scale with the number of distinct levels, rounded up to a power of two.
    levels = torch.tensor([2.0 ** math.ceil(math.log2(torch.unique(s).numel())) for s in source])
    levels = levels.to(img).view(-1, 1, 1, 1)
    counts = torch.poisson((source * levels).to(generator.device, torch.float32), generator=generator)
    noise = counts.to(img) / levels - source
    return (img + noise * scale).clamp(0.0, 1.0)


def jpeg_compress(img: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
    """JPEG encode-decode (kornia's codec; any size, it pads to 16 internally) at ``quality`` 1..100."""
    q = torch.as_tensor(quality, dtype=img.dtype, device=img.device).reshape(-1)
    return jpeg_codec_differentiable(img.clamp(0.0, 1.0), q)


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The clean LR: antialiased bicubic downscale by ``scale``, rounded to 8-bit levels."""
    h, w = hr.shape[-2:]
    lr = F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=True)
    return quantize_8bit(lr)


# ---------------------------------------------------------------- pipeline

def _random_noise(img: torch.Tensor, order: OrderConfig, draw: Draws) -> torch.Tensor:
    if not draw.chance(order.noise_prob):
        return img
    if draw.chance(order.gaussian_noise_prob):
        sigma = draw.uniform(*order.noise_range)
        return add_gaussian_noise(img, sigma, draw.chance(order.gray_noise_prob), draw.generator)
    scale = draw.uniform(*order.poisson_scale_range)
    return add_poisson_noise(img, scale, draw.chance(order.gray_noise_prob), draw.generator)


def _random_jpeg(img: torch.Tensor, order: OrderConfig, draw: Draws) -> torch.Tensor:
    if not draw.chance(order.jpeg_prob):
        return img
    return jpeg_compress(img, draw.uniform(*order.jpeg_range))


def _degrade_one(img: torch.Tensor, cfg: DegradationConfig, draw: Draws) -> torch.Tensor:
    h, w = img.shape[-2:]
    lr_h, lr_w = h // cfg.scale, w // cfg.scale
    x = img
    for index, order in enumerate((cfg.first, cfg.second)):
        if draw.chance(order.blur_prob):
            x = blur(x, random_blur_kernel(order, cfg, draw))
        factor = _random_resize_factor(order, draw)
        # The first order scales the HR size; the second scales the LR size (Real-ESRGAN).
        base_h, base_w = (h, w) if index == 0 else (lr_h, lr_w)
        size = (max(1, int(base_h * factor)), max(1, int(base_w * factor)))
        x = resize(x, size, draw.choice(cfg.resize_modes))
        x = _random_noise(x, order, draw)
        if index == 0:
            x = _random_jpeg(x, order, draw)
    sinc = None
    if draw.chance(cfg.final_sinc_prob):
        sinc = circular_lowpass_kernel(draw.uniform(*cfg.sinc_cutoff_range), draw.choice(cfg.final_kernel_sizes))
    resize_first = draw.chance(cfg.resize_before_jpeg_prob)
    if not resize_first:
        x = _random_jpeg(x, cfg.second, draw)
    x = resize(x, (lr_h, lr_w), draw.choice(cfg.resize_modes))
    if sinc is not None:
        x = blur(x, sinc)
    if resize_first:
        x = _random_jpeg(x, cfg.second, draw)
    return quantize_8bit(x)


def _check_input(hr: Any, scale: int, generator: Any) -> None:
    if not isinstance(hr, torch.Tensor) or hr.ndim != 4 or hr.shape[1] != 3:
        shape = tuple(hr.shape) if isinstance(hr, torch.Tensor) else type(hr).__name__
        raise InputError(f"degrade: `hr` must be a [B, 3, H, W] tensor, got {shape}")
    if not hr.is_floating_point():
        raise InputError(f"degrade: `hr` must be a float tensor in [0, 1], got dtype {hr.dtype}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale or h < scale or w < scale:
        raise InputError(f"degrade: HR size {h}x{w} must be a positive multiple of the scale {scale}")
    if hr.numel() and (hr.min() < -1e-6 or hr.max() > 1 + 1e-6):
        raise InputError(f"degrade: `hr` values must be in [0, 1], got [{hr.min():.3g}, {hr.max():.3g}]")
    if not isinstance(generator, torch.Generator):
        raise InputError(f"degrade: `generator` must be a torch.Generator, got {type(generator).__name__}")


@torch.no_grad()
def degrade(hr: torch.Tensor, cfg: DegradationConfig, generator: torch.Generator) -> torch.Tensor:
    """Make LR inputs from HR crops.

    Args:
        hr: ``[B, 3, H, W]`` float tensor in [0, 1], ``H`` and ``W`` multiples of ``cfg.scale``.
        cfg: degradation settings.
        generator: source of every random draw; the same seed gives the same output. Noise is
            drawn on the generator's device and moved to ``hr``'s, so a CPU generator also serves
            CUDA images (and saves a device sync per scalar draw).

    Returns:
        ``[B, 3, H / scale, W / scale]`` tensor of ``hr``'s dtype and device, on 8-bit levels.
    """
    _check_input(hr, cfg.scale, generator)
    x = hr.float()
    if not cfg.enabled or cfg.mode == "bicubic":
        return bicubic_downscale(x, cfg.scale).to(hr.dtype)
    draw = Draws(generator)
    # One sample at a time: per-sample resize factors give intermediate sizes that cannot share a batch.
    lr = torch.cat([_degrade_one(x[i : i + 1], cfg, draw) for i in range(x.shape[0])])
    return lr.to(hr.dtype)
