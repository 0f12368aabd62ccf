"""Quality metrics: PIQE/GMSD/MS-SSIM and CLIPIQA (pyiqa), fidelity (PSNR, SSIM, LPIPS), drift.

pyiqa is imported only when a metric is first used, so this package imports without it.
:data:`METRICS` says what each metric means and which direction is better.
"""
from __future__ import annotations

from vpdsr.metrics.catalog import METRICS, MetricInfo
from vpdsr.metrics.clip_weights import (
    CLIP_WEIGHTS_ENV,
    clip_image_embedding,
    clip_preprocess,
    find_clip_weights,
    load_clip,
)
from vpdsr.metrics.clipiqa import ClipIqa
from vpdsr.metrics.drift import Drift, compute_drift
from vpdsr.metrics.fidelity import FidelityScores, fidelity_scores, psnr, rgb_to_y, ssim
from vpdsr.metrics.lpips import Lpips, find_lpips_weights
from vpdsr.metrics.perceptual import gmsd, ms_ssim, piqe

__all__ = [
    "CLIP_WEIGHTS_ENV",
    "ClipIqa",
    "Drift",
    "FidelityScores",
    "Lpips",
    "METRICS",
    "MetricInfo",
    "clip_image_embedding",
    "clip_preprocess",
    "compute_drift",
    "fidelity_scores",
    "find_clip_weights",
    "find_lpips_weights",
    "gmsd",
    "load_clip",
    "ms_ssim",
    "piqe",
    "psnr",
    "rgb_to_y",
    "ssim",
]
