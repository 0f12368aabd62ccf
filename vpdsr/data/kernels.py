"""Blur kernels of the Real-ESRGAN degradation (Wang et al., 2021) and their random draws.

Every kernel is a square, odd-sized ``float64`` tensor on the CPU that sums to 1; the caller
casts it to the image's dtype and device. Random draws come from :class:`Draws`, one
``torch.Generator``; the ranges from :class:`vpdsr.data.degrade_config.DegradationConfig`. The shapes
follow BasicSR's ``basicsr/data/degradations.py`` (``bivariate_Gaussian``,
``bivariate_generalized_Gaussian``, ``bivariate_plateau``, ``circular_lowpass_kernel``), written again on torch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from vpdsr.data.degrade_config import DegradationConfig, OrderConfig

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


class Draws:
    """Scalar draws from one generator, one uniform per decision so the stream stays aligned.

    Draws run on the generator's device; a CPU generator avoids a device sync per scalar.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def uniform(self, low: float, high: float) -> float:
        u = torch.rand(1, generator=self.generator, device=self.generator.device, dtype=torch.float64).item()
        return low + (high - low) * u

    def chance(self, p: float) -> bool:
        return self.uniform(0.0, 1.0) < p

    def choice(self, items: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
        weights = [1.0] * len(items) if weights is None else list(weights)
        u, acc = self.uniform(0.0, sum(weights)), 0.0
        for item, weight in zip(items, weights):
            acc += weight
            if u < acc:
                return item
        return [item for item, weight in zip(items, weights) if weight > 0][-1]  # float round-off at the top


def random_blur_kernel(order: OrderConfig, cfg: DegradationConfig, draw: Draws) -> torch.Tensor:
    """Draw one first/second-order kernel like BasicSR's ``random_mixed_kernels``, or a sinc."""
    size = draw.choice(order.kernel_sizes)
    if draw.chance(order.sinc_prob):
        large = size >= cfg.sinc_large_kernel_size
        cutoff = draw.uniform(*(cfg.sinc_cutoff_range_large_kernel if large else cfg.sinc_cutoff_range))
        return circular_lowpass_kernel(cutoff, size)
    kind = draw.choice(order.kernel_list, order.kernel_prob)
    sigma_x = draw.uniform(*order.blur_sigma)
    if kind.endswith("aniso"):
        sigma_y, theta = draw.uniform(*order.blur_sigma), draw.uniform(*cfg.rotation_range)
    else:
        sigma_y, theta = sigma_x, 0.0
    if kind in ("iso", "aniso"):
        return bivariate_kernel(size, sigma_x, sigma_y, theta)
    shape = "generalized" if kind.startswith("generalized") else "plateau"
    low, high = order.betag_range if shape == "generalized" else order.betap_range
    # BasicSR draws beta below or above 1 with equal odds, so heavy and light tails are equally common.
    if low <= 1.0 <= high:
        beta = draw.uniform(low, 1.0) if draw.chance(0.5) else draw.uniform(1.0, high)
    else:
        beta = draw.uniform(low, high)
    return bivariate_kernel(size, sigma_x, sigma_y, theta, shape, beta)
