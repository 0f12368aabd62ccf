"""CLIPIQA (Wang et al., AAAI 2023) exactly as pyiqa's ``clipiqa`` metric computes it.

The score is pyiqa's own: ``pyiqa.create_metric("clipiqa", backbone=PATH)``, with the CLIP
file found by :func:`vpdsr.metrics.clip_weights.find_clip_weights`. Plain ``clipiqa`` needs
nothing but the CLIP archive: its ten antonym prompts are tokenised with the BPE vocabulary
that ships inside the ``clip`` package, and only the ``clipiqa+`` variants (not used here)
download learned prompt weights. Images are scored at their own size (pyiqa does not resize
for CLIPIQA, and without positional embedding the attention pool accepts any size).

Example:
    >>> ok, reason = ClipIqa.available()
    >>> scores = ClipIqa().score(images)  # [B] in (0, 1), higher is better
"""
from __future__ import annotations

import os

import numpy as np
import torch

from vpdsr.errors import InputError, VpdsrError
from vpdsr.metrics.clip_weights import (
    PYIQA_LOAD_ERRORS,
    check_clip_archive,
    find_clip_weights,
    import_pyiqa,
    not_a_clip_archive,
)

_RANGE_EPS = 1e-6  # the tolerance pyiqa itself allows outside [0, 1]


class ClipIqa:
    """No-reference quality score in (0, 1); higher is better.

    Args:
        weights: CLIP archive path; ``None`` searches as :func:`find_clip_weights` does.
        device: Torch device to score on.

    Raises:
        MissingWeightsError: No CLIP weights were found (the message says where it looked).
        MissingDependencyError: pyiqa is not installed.
        InputError: The weights file is not an OpenAI CLIP TorchScript archive.
    """

    higher_is_better = True

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> None:
        self.weights = check_clip_archive(find_clip_weights(weights))
        pyiqa = import_pyiqa()
        self.device = torch.device(device)
        try:
            self._metric = pyiqa.create_metric("clipiqa", device=self.device, backbone=str(self.weights))
        except PYIQA_LOAD_ERRORS as exc:
            raise not_a_clip_archive(self.weights, exc) from exc

    @staticmethod
    def available(weights: str | os.PathLike | None = None) -> tuple[bool, str]:
        """Whether CLIPIQA can run here, without building it.

        Returns:
            ``(True, path_of_weights)`` or ``(False, one-line reason)`` for the report.
        """
        try:
            path = check_clip_archive(find_clip_weights(weights))
            import_pyiqa()
        except VpdsrError as exc:
            return False, str(exc)
        return True, str(path)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Score a batch.

        Args:
            images: ``[B, 3, H, W]`` float in [0, 1] (RGB).

        Returns:
            ``[B]`` float32 scores on the CPU.
        """
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError(f"CLIPIQA expects images as a [B,3,H,W] tensor, got {shape}")
        if not images.is_floating_point():
            raise InputError(f"CLIPIQA expects float images in [0, 1], got dtype {images.dtype}")
        low, high = float(images.min()), float(images.max())
        if low < -_RANGE_EPS or high > 1 + _RANGE_EPS or not np.isfinite([low, high]).all():
            raise InputError(f"CLIPIQA expects images in [0, 1], got values in [{low:.4g}, {high:.4g}]")
        out = self._metric(images.float().to(self.device))
        return out.reshape(images.shape[0]).float().cpu()

    def score_numpy(self, image: np.ndarray) -> float:
        """Score one ``HxWx3`` RGB image (float in [0, 1], or uint8)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"CLIPIQA expects an HxWx3 RGB image, got shape {image.shape}")
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        elif not np.issubdtype(image.dtype, np.floating):
            raise InputError(f"CLIPIQA expects a float image in [0, 1] or uint8, got dtype {image.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        return float(self.score(tensor)[0])
