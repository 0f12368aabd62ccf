"""Perceptual metrics that need no downloaded weights, exactly as pyiqa computes them.

PIQE (Venkatanath et al., 2015) is no-reference: it scores one image, 0..100, LOWER is better
(block-wise distortion of natural-scene statistics; an HR photo scores about 20-40, a blurry
bicubic x4 upscale 80+). The value is pyiqa's own `create_metric("piqe")`, so published pyiqa
tables and our figures are comparable. pyiqa is imported only when a metric is first used.

Example:
    >>> score = piqe(image)  # image: HxWx3 float in [0, 1]
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from vpdsr.errors import InputError
from vpdsr.metrics.clip_weights import import_pyiqa

LOWER_IS_BETTER = {"piqe": True}


@lru_cache(maxsize=None)
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


@torch.inference_mode()
def piqe(image: np.ndarray) -> float:
    """PIQE of one HxWx3 image in [0, 1] (pyiqa's value; lower is better)."""
    return float(_metric("piqe")(to_nchw(image, "piqe input")).item())
