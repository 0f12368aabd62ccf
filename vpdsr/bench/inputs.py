"""Benchmark inputs: every LR image (and its HR, when given) read and checked before anything runs.

Reading all images first means a corrupt file stops the command with one line naming it
before any backend is loaded and before a report folder is created.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpdsr.errors import InputError


@dataclass
class BenchImage:
    """One benchmark image: LR input (H, W, 3) float32 in [0, 1] and optional HR (4H, 4W, 3)."""

    name: str
    lr: np.ndarray
    hr: np.ndarray | None = None
    source: str = ""


def load_bench_images(images: str | os.PathLike, hr: str | os.PathLike | None = None, scale: int = 4,
                      max_images: int | None = None) -> list[BenchImage]:
    """Read and validate the LR images (and HR images matched by name).

    Args:
        images: a folder, an image file, or ``samples[:subset]`` (see ``vpdsr.data.samples``).
        hr: optional folder of HR images; each LR image needs one with the same stem and
            exactly ``scale`` times its size.
        scale: the model's upscaling factor.
        max_images: keep only the first N images (in sorted order).

    Raises:
        InputError: a file is missing, corrupt, or an HR image does not match its LR image.
    """
    from vpdsr.data.samples import resolve_images

    sources = resolve_images(str(images))
    if max_images is not None:
        sources = sources[:max_images]
    hr_files = _hr_index(hr) if hr is not None else None
    out = []
    for src in sources:
        lr = src.load()  # InputError naming the file when it is corrupt
        item = BenchImage(name=src.name, lr=lr, source=str(src.path))
        if hr_files is not None:
            stem = Path(src.path).stem
            if stem not in hr_files:
                raise InputError(f"no HR image for {src.path} in {hr} (expected a file named {stem}.<ext>)")
            from vpdsr.data.io import read_image

            item.hr = read_image(hr_files[stem])
            want = (lr.shape[0] * scale, lr.shape[1] * scale)
            if item.hr.shape[:2] != want:
                raise InputError(f"{hr_files[stem]}: HR image is {item.hr.shape[1]}x{item.hr.shape[0]}, expected "
                                 f"{want[1]}x{want[0]} ({scale}x its LR image {src.path})")
        out.append(item)
    return out


def _hr_index(folder: str | os.PathLike) -> dict[str, Path]:
    from vpdsr.data.io import list_images

    return {p.stem: p for p in list_images(folder)}


def bicubic_upscale(lr: np.ndarray, scale: int = 4) -> np.ndarray:
    """Plain bicubic x``scale`` of an (H, W, 3) image, clamped to [0, 1]: the baseline in the report."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None]
    up = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return up[0].numpy().transpose(1, 2, 0)
