"""Perceptual metrics that need no downloaded weights, exactly as pyiqa computes them.

Every value is pyiqa's own ``create_metric(name)`` on the same pixels, so published pyiqa tables
and our figures are comparable. pyiqa is imported only when a metric is first used.

- PIQE (Venkatanath et al., 2015), no-reference, 0..100, LOWER is better: block-wise distortion
  of natural-scene statistics (an HR photo scores about 20-40, a blurry bicubic x4 upscale 80+).
  Computed on luma (see Colour below).
- GMSD (Xue et al., 2014), full-reference, 0..~1, LOWER is better (0 = same gradients): the
  standard deviation of the gradient-magnitude similarity map, at half resolution.
- MS-SSIM (Wang et al., 2003), full-reference, 0..1, HIGHER is better (1 = identical): SSIM's
  contrast/structure terms over 5 dyadic scales with an 11x11 Gaussian window.

Colour: pyiqa's ``piqe``, ``gmsd`` and ``ms_ssim`` (``test_y_channel=True``) measure luma only: the Y of
YIQ (``0.299 R + 0.587 G + 0.114 B``, full range), scaled to 0..255 and ROUNDED to integers as
the MATLAB originals do. That is not the BT.601 studio-range Y of :mod:`vpdsr.metrics.fidelity`
(PSNR-Y / SSIM-Y as SR papers report them), so the two SSIM flavours are not interchangeable.

Small images: MS-SSIM needs at least :data:`MS_SSIM_MIN_SIDE` (161) pixels on each side (its
fifth scale must still fit the 11x11 window), PIQE 8 (one 16x16 block after pyiqa's padding) and
GMSD a half-size image of at least 2 pixels.
:func:`size_problem` says so in one line before anything runs; the metric functions raise
:class:`InputError` with that line, and :mod:`vpdsr.metrics.score` records ``None`` + the reason.

Example:
    >>> score = piqe(image)  # image: HxWx3 float in [0, 1]
    >>> drift = gmsd(output, reference)  # same shape; 0 for identical images
"""
from __future__ import annotations

from functools import cache

import numpy as np
import torch

from vpdsr.errors import InputError
from vpdsr.metrics.clip_weights import import_pyiqa

NO_REFERENCE = ("piqe",)
FULL_REFERENCE = ("gmsd", "ms_ssim")
MS_SSIM_SCALES = 5
MS_SSIM_WINDOW = 11
# Each scale halves the side (rounding up) before the next; the last of the 5 must hold the window.
MS_SSIM_MIN_SIDE = (MS_SSIM_WINDOW - 1) * 2 ** (MS_SSIM_SCALES - 1) + 1  # 161
PIQE_MIN_SIDE = 8


@cache
def _metric(name: str):
    pyiqa = import_pyiqa()
    return pyiqa.create_metric(name, device="cpu")


def to_nchw(image: np.ndarray, what: str = "image") -> torch.Tensor:
    """HxWx3 float in [0, 1] -> a [1, 3, H, W] float32 tensor (values clipped to [0, 1])."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"{what}: expected an HxWx3 RGB array, got shape {arr.shape}")
    arr = np.clip(arr.astype(np.float32, copy=False), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


def size_problem(name: str, height: int, width: int) -> str | None:
    """Why metric ``name`` cannot score an image of this size (one line), or None if it can."""
    # pyiqa's PIQE pads each side by (side mod 16), then cuts 16x16 blocks: below 8 there is none.
    if name == "piqe" and min(height, width) < PIQE_MIN_SIDE:
        return f"PIQE needs at least {PIQE_MIN_SIDE}x{PIQE_MIN_SIDE} pixels (16x16 blocks), got {width}x{height}"
    if name == "ms_ssim" and min(height, width) < MS_SSIM_MIN_SIDE:
        return (
            f"MS-SSIM needs at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} pixels ({MS_SSIM_SCALES} scales, "
            f"{MS_SSIM_WINDOW}x{MS_SSIM_WINDOW} window), got {width}x{height}"
        )
    # GMSD averages 2x2 blocks, then takes a standard deviation: it needs 2 such blocks.
    if name == "gmsd" and (height // 2) * (width // 2) < 2:
        return f"GMSD needs at least 2 blocks of 2x2 pixels (e.g. 4x2), got {width}x{height}"
    return None


@torch.inference_mode()
def piqe(image: np.ndarray) -> float:
    """PIQE of one HxWx3 image in [0, 1] (pyiqa's value; lower is better).

    An all-black image gives NaN (pyiqa divides by the image's maximum), as in pyiqa.

    Raises:
        InputError: not HxWx3, or a side below :data:`PIQE_MIN_SIDE` pixels.
    """
    x = to_nchw(image, "piqe input")
    problem = size_problem("piqe", x.shape[2], x.shape[3])
    if problem:
        raise InputError(problem)
    return float(_metric("piqe")(x).item())


def gmsd(image: np.ndarray, reference: np.ndarray) -> float:
    """GMSD of an HxWx3 image in [0, 1] against its reference (pyiqa's value; lower is better).

    Raises:
        InputError: different shapes, or an image too small (see :func:`size_problem`).
    """
    return _full_reference("gmsd", image, reference)


def ms_ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """MS-SSIM of an HxWx3 image in [0, 1] against its reference (pyiqa's value; higher is better).

    Raises:
        InputError: different shapes, or a side below :data:`MS_SSIM_MIN_SIDE` pixels.
    """
    return _full_reference("ms_ssim", image, reference)


@torch.inference_mode()
def _full_reference(name: str, image: np.ndarray, reference: np.ndarray) -> float:
    x, y = to_nchw(image, f"{name} image"), to_nchw(reference, f"{name} reference")
    if x.shape != y.shape:
        raise InputError(f"{name}: image {tuple(x.shape[2:])} and reference {tuple(y.shape[2:])} differ in size")
    problem = size_problem(name, x.shape[2], x.shape[3])
    if problem:
        raise InputError(problem)
    # pyiqa's argument order matters: the distorted image first, the reference second.
    return float(_metric(name)(x, y).item())
