"""Side-by-side crops of the evaluation outputs as one PNG (rows: images, columns: methods).

Numbers do not say what a perceptual student's detail looks like (PIQE is fooled by invisible
noise): the grid shows, for each held-out photo, its most detailed square (highest HR gradient
energy) in HR, bicubic and every method, enlarged with nearest-neighbour so pixels stay pixels,
each titled with that crop's PSNR-Y and PIQE.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vpdsr.utils import atomic_write_bytes


def detailed_box(hr: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of the `size` square with the most gradient energy, on a half-size-step grid."""
    h, w = hr.shape[:2]
    size = min(size, h, w)
    gray = hr.mean(axis=2)
    energy = np.zeros_like(gray)
    energy[:-1, :] += np.abs(np.diff(gray, axis=0))
    energy[:, :-1] += np.abs(np.diff(gray, axis=1))
    table = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table
    step = max(1, size // 2)
    tops, lefts = np.arange(0, h - size + 1, step), np.arange(0, w - size + 1, step)
    sums = (table[tops[:, None] + size, lefts[None, :] + size] - table[tops[:, None], lefts[None, :] + size]
            - table[tops[:, None] + size, lefts[None, :]] + table[tops[:, None], lefts[None, :]])
    i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(tops[i]), int(lefts[j])


def crop_grid_png(outputs: dict[str, dict[str, np.ndarray]], methods: list[str], size: int = 96,
                  zoom: int = 2, scores: bool = True) -> bytes:
    """The PNG bytes of the grid.

    Args:
        outputs: {image name: {"hr": HxWx3, method: HxWx3, ...}} (vpdsr.distill.evaluate's `outputs`).
        methods: the columns after HR, in order (those missing for an image are left blank).
        size: crop side in HR pixels; zoom: nearest-neighbour enlargement.
        scores: title each crop with its PSNR-Y and PIQE.
    """
    from matplotlib.figure import Figure

    from vpdsr.metrics.fidelity import psnr

    columns = ["hr"] + [m for m in methods if m != "hr"]
    rows = list(outputs)
    tile = size * zoom / 100  # inches at dpi 100
    fig = Figure(figsize=(tile * len(columns), (tile + 0.35) * len(rows)), dpi=100, layout="constrained")
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, name in enumerate(rows):
        images = outputs[name]
        top, left = detailed_box(images["hr"], size)
        hr_crop = images["hr"][top:top + size, left:left + size]
        for c, method in enumerate(columns):
            ax = axes[r][c]
            ax.set_axis_off()
            if method not in images:
                continue
            crop = np.clip(images[method][top:top + size, left:left + size], 0, 1)
            ax.imshow(crop.repeat(zoom, 0).repeat(zoom, 1), interpolation="nearest")
            title = method if method != "hr" else f"HR ({name})"
            if scores:
                title += "\n" + _crop_scores(crop, hr_crop, method == "hr", psnr)
            ax.set_title(title, fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_crop_grid(outputs: dict, methods: list[str], path: Path, size: int = 96) -> Path:
    """Write `crop_grid_png` to `path` atomically."""
    return atomic_write_bytes(Path(path), crop_grid_png(outputs, methods, size))


def _crop_scores(crop: np.ndarray, hr_crop: np.ndarray, is_hr: bool, psnr) -> str:
    from vpdsr.metrics.perceptual import piqe

    quality = f"PIQE {piqe(crop):.0f}"
    return quality if is_hr else f"{psnr(crop, hr_crop, y_channel=True):.2f} dB, {quality}"
