"""Blur kernels of the Real-ESRGAN degradation (Wang et al., 2021).

Pure math, no randomness: :mod:`vpdsr.data.degrade` draws the parameters. Every kernel is a
square, odd-sized ``float64`` tensor on the CPU that sums to 1; the caller casts it to the
image's dtype and device. The shapes follow BasicSR's ``basicsr/data/degradations.py``
(``bivariate_Gaussian``, ``bivariate_generalized_Gaussian``, ``bivariate_plateau``,
``circular_lowpass_kernel``), written again on torch.
"""
from __future__ import annotations

import math

import torch

KERNEL_SHAPES = ("gaussian", "generalized", "plateau")


def _check_size(size: int) -> None:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel `size` must be a positive odd integer, got {size}")


def _mesh(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel offsets from the kernel centre: ``x`` runs along columns, ``y`` along rows."""
    ax = torch.arange(size, dtype=torch.float64) - (size // 2)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _mahalanobis_sq(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """``[x y] S^-1 [x y]^T`` for ``S = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T``."""
    xx, yy = _mesh(size)
    cos, sin = math.cos(theta), math.sin(theta)
    inv_x, inv_y = 1.0 / sigma_x**2, 1.0 / sigma_y**2
    # Entries of the inverse covariance, written out to avoid a 2x2 matrix inverse per kernel.
    a = cos * cos * inv_x + sin * sin * inv_y
    b = sin * cos * (inv_x - inv_y)
    c = sin * sin * inv_x + cos * cos * inv_y
    return a * xx * xx + 2.0 * b * xx * yy + c * yy * yy


def bivariate_kernel(
    size: int,
    sigma_x: float,
    sigma_y: float,
    theta: float = 0.0,
    shape: str = "gaussian",
    beta: float = 1.0,
) -> torch.Tensor:
    """Anisotropic Gaussian-family blur kernel, normalised to sum 1.

    Args:
        size: odd kernel side in pixels.
        sigma_x: standard deviation along the kernel's first principal axis (pixels).
        sigma_y: standard deviation along the second axis; ``sigma_y == sigma_x`` is isotropic.
        theta: rotation of the first axis from the image x axis, radians.
        shape: ``"gaussian"`` (``exp(-q/2)``), ``"generalized"`` (``exp(-q^beta/2)``, heavier or
            lighter tails than Gaussian) or ``"plateau"`` (``1 / (1 + q^beta)``, a flat top),
            where ``q`` is the squared Mahalanobis distance from the centre.
        beta: shape exponent of the generalized and plateau kernels; ignored for ``"gaussian"``.

    Returns:
        ``(size, size)`` float64 tensor.
    """
    _check_size(size)
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel sigmas must be positive, got {sigma_x}, {sigma_y}")
    q = _mahalanobis_sq(size, sigma_x, sigma_y, theta)
    if shape == "gaussian":
        kernel = torch.exp(-0.5 * q)
    elif shape == "generalized":
        kernel = torch.exp(-0.5 * q.pow(beta))
    elif shape == "plateau":
        kernel = 1.0 / (q.pow(beta) + 1.0)
    else:
        raise ValueError(f"kernel `shape` must be one of {KERNEL_SHAPES}, got {shape!r}")
    return kernel / kernel.sum()


def circular_lowpass_kernel(cutoff: float, size: int) -> torch.Tensor:
    """Ideal circular low-pass filter (2-D sinc) truncated to ``size``, normalised to sum 1.

    The impulse response of a disc of radius ``cutoff`` in the frequency plane is
    ``cutoff * J1(cutoff * r) / (2 pi r)``; its value at ``r = 0`` is the limit
    ``cutoff^2 / (4 pi)``. Real-ESRGAN uses it to imitate ringing and overshoot artefacts.

    Args:
        cutoff: cutoff angular frequency in radians per pixel, in ``(0, pi]``.
        size: odd kernel side in pixels.

    Returns:
        ``(size, size)`` float64 tensor.
    """
    _check_size(size)
    if not 0 < cutoff <= math.pi + 1e-9:
        raise ValueError(f"sinc `cutoff` must be in (0, pi], got {cutoff}")
    xx, yy = _mesh(size)
    r = torch.sqrt(xx * xx + yy * yy)
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe_r) / (2.0 * math.pi * safe_r)
    kernel = torch.where(r > 0, kernel, torch.full_like(r, cutoff**2 / (4.0 * math.pi)))
    return kernel / kernel.sum()


def identity_kernel(size: int = 1) -> torch.Tensor:
    """A kernel that leaves an image unchanged (one 1 in the centre)."""
    _check_size(size)
    kernel = torch.zeros(size, size, dtype=torch.float64)
    kernel[size // 2, size // 2] = 1.0
    return kernel
