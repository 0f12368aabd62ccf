"""Full-reference fidelity: PSNR and SSIM on RGB and on the Y channel, as SR papers report them.

Conventions (those of BasicSR / the SR literature):

- Images are ``HxWx3`` RGB arrays, float in [0, 1] (uint8 is accepted and divided by 255).
- Y is ITU-R BT.601 luma on the studio range, ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255``
  with R, G, B in [0, 1] (MATLAB's ``rgb2ycbcr``), so Y lies in [16/255, 235/255].
- ``crop_border`` pixels are removed from every side before measuring (SR papers crop
  ``scale`` pixels).
- PSNR uses a peak of 1. Identical images give ``float('inf')``: it is returned as is and the
  report layer decides how to write it (JSON has no infinity).
- SSIM is Wang et al.'s: Gaussian window sigma 1.5, population covariance, data range 1
  (``skimage.metrics.structural_similarity``); for RGB the mean over channels.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from vpdsr.errors import InputError

# BT.601 studio-range luma weights for RGB in [0, 1] (output in [0, 255] before the /255).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_OFFSET = 16.0
_SSIM_MIN_SIDE = 11  # skimage's Gaussian window (sigma 1.5, truncate 3.5) is 11 pixels wide


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``HxWx3`` RGB image in [0, 1], as ``HxW`` float64 in [16/255, 235/255]."""
    image = as_float_image(image, "image")
    return (image @ _Y_WEIGHTS + _Y_OFFSET) / 255.0


def as_float_image(image: np.ndarray, name: str) -> np.ndarray:
    """Check an ``HxWx3`` RGB image and return it as float64 in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"`{name}` must be an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"`{name}` must be float in [0, 1] or uint8, got dtype {image.dtype}")
    if not np.isfinite(image).all():
        raise InputError(f"`{name}` contains NaN or infinite values")
    return image.astype(np.float64, copy=False)


def _prepare_pair(
    image: np.ndarray, reference: np.ndarray, y_channel: bool, crop_border: int
) -> tuple[np.ndarray, np.ndarray]:
    image = as_float_image(image, "image")
    reference = as_float_image(reference, "reference")
    if image.shape != reference.shape:
        raise InputError(f"`image` {image.shape} and `reference` {reference.shape} must have the same shape")
    if crop_border < 0 or 2 * crop_border >= min(image.shape[:2]):
        raise InputError(f"`crop_border`={crop_border} must be >= 0 and leave pixels of a {image.shape[:2]} image")
    if crop_border:
        image = image[crop_border:-crop_border, crop_border:-crop_border]
        reference = reference[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        image, reference = rgb_to_y(image), rgb_to_y(reference)
    return image, reference


def psnr(image: np.ndarray, reference: np.ndarray, *, y_channel: bool = False, crop_border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB (peak 1); ``inf`` for identical images.

    Args:
        image: Image under test, ``HxWx3`` in [0, 1].
        reference: Ground truth of the same shape.
        y_channel: Measure on BT.601 Y instead of RGB.
        crop_border: Pixels cropped from each side first (SR papers: the scale factor).
    """
    image, reference = _prepare_pair(image, reference, y_channel, crop_border)
    mse = float(np.mean((image - reference) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(1.0 / mse)


def ssim(image: np.ndarray, reference: np.ndarray, *, y_channel: bool = False, crop_border: int = 0) -> float:
    """Structural similarity (Wang et al. 2004 settings); 1 for identical images.

    Args:
        image: Image under test, ``HxWx3`` in [0, 1], at least 11x11 after cropping.
        reference: Ground truth of the same shape.
        y_channel: Measure on BT.601 Y instead of the mean over RGB channels.
        crop_border: Pixels cropped from each side first.
    """
    from skimage.metrics import structural_similarity

    image, reference = _prepare_pair(image, reference, y_channel, crop_border)
    if min(image.shape[:2]) < _SSIM_MIN_SIDE:
        side = _SSIM_MIN_SIDE
        raise InputError(f"SSIM needs images of at least {side}x{side} pixels, got {image.shape[:2]}")
    return float(
        structural_similarity(
            image,
            reference,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=None if y_channel else -1,
        )
    )


@dataclass(frozen=True)
class FidelityScores:
    """PSNR (dB) and SSIM of one image against its reference, on RGB and on Y."""

    psnr: float
    psnr_y: float
    ssim: float
    ssim_y: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fidelity_scores(image: np.ndarray, reference: np.ndarray, *, crop_border: int = 0) -> FidelityScores:
    """All four fidelity figures of ``image`` against ``reference`` (see :func:`psnr`, :func:`ssim`)."""
    return FidelityScores(
        psnr=psnr(image, reference, crop_border=crop_border),
        psnr_y=psnr(image, reference, y_channel=True, crop_border=crop_border),
        ssim=ssim(image, reference, crop_border=crop_border),
        ssim_y=ssim(image, reference, y_channel=True, crop_border=crop_border),
    )
