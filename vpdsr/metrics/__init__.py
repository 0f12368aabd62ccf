"""Quality metrics: CLIPIQA (pyiqa), fidelity (PSNR, SSIM, LPIPS) and backend drift.

pyiqa is imported only when a CLIP metric is built, so this package imports without it.
"""
from __future__ import annotations

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

__all__ = [
    "CLIP_WEIGHTS_ENV",
    "ClipIqa",
    "Drift",
    "FidelityScores",
    "Lpips",
    "clip_image_embedding",
    "clip_preprocess",
    "compute_drift",
    "fidelity_scores",
    "find_clip_weights",
    "find_lpips_weights",
    "load_clip",
    "psnr",
    "rgb_to_y",
    "ssim",
]
