"""Tiled inference that hands the output over row band by row band, never holding the whole image.

:func:`vpdsr.runtimes.tiling.upscale_tiled` blends every tile into one full-size float32 buffer (12 bytes
per output pixel: 3.2 GB for 16384 x 16384 before anything is encoded). Here the same engine calls
(:func:`vpdsr.runtimes.tiling.tile_batches`, in the same order, with the same noise crops) are blended
into a buffer a few tile rows high. Once every tile of tile row i has been added, the output rows above
tile row i+1's first row receive nothing more: they are normalised, handed to the caller and dropped.

The values are those of :func:`upscale_tiled` bit for bit: each output pixel receives the same float32
products, added in the same order onto zero, and is divided by the same two float32 window sums, row sum
first. Only the buffer the additions land in differs. Peak memory: about
``(tile + (tile - overlap) * ceil(batch / tiles per row)) * scale`` output rows of float32, plus one call's
inputs and outputs.

Example:
    >>> for y0, band in upscale_rows(runner.as_tile_fn(), lr, noise, TileConfig(tile=64)):
    ...     writer.write(y0, band)   # band: float32 [C, n, s*w], rows y0 .. y0+n of the output
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vpdsr.runtimes.noise import NoiseField
from vpdsr.runtimes.tiling import (
    InferFn,
    ProgressFn,
    TileConfig,
    _progress_callback,
    blend_windows,
    tile_batches,
    tiling_inputs,
)


class _Band:
    """Output rows [base, base + rows) being accumulated, float32 [C, rows, width]."""

    def __init__(self, channels: int, rows: int, width: int):
        self.base = 0
        self.buf = np.zeros((channels, rows, width), dtype=np.float32)

    def reach(self, end: int) -> None:
        """Make output rows up to `end` (exclusive) addressable (grows only for unusual batch spans)."""
        need = end - self.base
        if need > self.buf.shape[1]:
            grown = np.zeros((self.buf.shape[0], need, self.buf.shape[2]), dtype=np.float32)
            grown[:, : self.buf.shape[1]] = self.buf
            self.buf = grown

    def take(self, end: int) -> np.ndarray:
        """Rows [base, end) out (a copy); the rest moves up and the freed rows are zero again."""
        n = end - self.base
        rows = self.buf[:, :n].copy()
        rest = self.buf.shape[1] - n
        self.buf[:, :rest] = self.buf[:, n:].copy()
        self.buf[:, rest:] = 0.0
        self.base = end
        return rows


def upscale_rows(
    infer: InferFn,
    lr: np.ndarray,
    noise: NoiseField | None,
    cfg: TileConfig | None = None,
    progress: ProgressFn | bool | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Upscales one image tile by tile, yielding the finished output top to bottom.

    Args: as :func:`vpdsr.runtimes.tiling.upscale_tiled`.

    Yields:
        (y0, rows): output rows y0 .. y0 + n as float32 [C, n, s*w]; together they cover [0, s*h) in order.

    Raises:
        InputError / ArtifactError: as :func:`upscale_tiled`.
    """
    cfg, plan, padded = tiling_inputs(lr, cfg)
    channels, h, w, s = padded.shape[0], plan.h, plan.w, cfg.scale
    tile_h, tile_w, ys, xs = plan.tile_h, plan.tile_w, plan.ys, plan.xs
    update, close = _progress_callback(progress, plan.tiles)
    try:
        if plan.tiles == 1:  # one call covers the image: no blending (as upscale_tiled)
            for _, sr in tile_batches(infer, padded, noise, plan, channels, s):
                update(1)
                yield 0, np.array(sr[0, :, : s * h, : s * w], dtype=np.float32)
            return
        wys, wxs, norm_y, norm_x = blend_windows(plan, s)
        norm_y = norm_y[: s * h, None].astype(np.float32)
        norm_x = norm_x[None, : s * w].astype(np.float32)
        nx = len(xs)
        step = max((b - a for a, b in zip(ys, ys[1:])), default=0)
        band = _Band(channels, (tile_h + step * -(-plan.batch // nx)) * s, s * w)
        weighted = np.empty((channels, s * tile_h, s * tile_w), dtype=np.float32)
        done, emitted_rows = 0, 0  # tiles added; tile rows handed over
        for group, sr in tile_batches(infer, padded, noise, plan, channels, s):
            for k, (i, j) in enumerate(group):
                np.multiply(sr[k], wys[i], out=weighted)
                weighted *= wxs[j]
                y0, x0 = ys[i] * s, xs[j] * s
                hh, ww = min(s * tile_h, s * h - y0), min(s * tile_w, s * w - x0)
                band.reach(y0 + hh)
                band.buf[:, y0 - band.base : y0 - band.base + hh, x0 : x0 + ww] += weighted[:, :hh, :ww]
            done += len(group)
            update(done)
            while emitted_rows < len(ys) and done >= (emitted_rows + 1) * nx:  # tile row complete
                i = emitted_rows
                end = ys[i + 1] * s if i + 1 < len(ys) else s * h
                emitted_rows += 1
                if end <= band.base:
                    continue
                start = band.base
                rows = band.take(end)
                rows /= norm_y[start:end]
                rows /= norm_x
                yield start, rows
    finally:
        close()
