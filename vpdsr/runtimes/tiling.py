"""Tiled inference: cut an LR image into equal tiles, run them in batches, blend the outputs.

Every tile has the same shape (``tile`` x ``tile`` LR pixels), so static-shape engines work:
tiles advance by ``tile - overlap`` and the last tile of each axis is shifted inward to end
exactly at the border. An axis shorter than one tile is padded up to the tile (reflect
padding, or replicate padding when the axis is too short to reflect) and the output is
cropped back. ``tile=None`` runs the whole image as one call at its own size (dynamic-shape
engines only).

Outputs are blended with a separable window (a Hann ramp over each overlap, 1 elsewhere,
never 0) and normalised by the sum of windows. That sum is separable too,
sum_ij wy_i(y) wx_j(x) = (sum_i wy_i(y)) (sum_j wx_j(x)), so apart from the output buffer
only two 1-D arrays are kept. The noise comes from a :class:`NoiseField` cropped per tile, so
it does not depend on the tiling either.

``fit=True`` (dynamic-shape engines) treats ``tile`` as the largest side: each image gets the
fewest tiles of at most that side that cover it, each shrunk to the smallest size that still
covers it with the overlap, so an image 100 pixels high and 150 wide at tile 128 is cut into two
100 x 79 tiles instead of two 128 x 128 ones (1.05x the pixels instead of 2.2x). :func:`plan_tiles`
is that arithmetic alone: the tile shape, positions and engine calls of an image, and what they cost
in computed pixels (the tiling overhead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from vpdsr.errors import ArtifactError, ConfigError, InputError
from vpdsr.runtimes.noise import NoiseField

InferFn = Callable[[np.ndarray, np.ndarray | None], np.ndarray]
ProgressFn = Callable[[int, int], None]


@dataclass
class TileConfig:
    """How an image is cut into tiles.

    Attributes:
        tile: tile side in LR pixels; None runs the whole image as one tile at its own size.
        overlap: overlap of neighbouring tiles in LR pixels (0 <= overlap < tile).
        batch: tiles per call of the engine.
        scale: upscaling factor of the model.
        pad_batch: repeat the last tile so that every call gets exactly ``batch`` tiles
            (static-batch engines); the extra outputs are discarded.
        multiple: the model takes sides that are multiples of this only; a whole-image call
            (``tile=None``) is padded up to one (a tile must be one already).
        fit: ``tile`` is the largest tile side, and each image gets tiles shrunk to fit it (a
            dynamic-shape engine only; see the module docstring).
    """

    tile: int | None = 64
    overlap: int = 8
    batch: int = 4
    scale: int = 4
    pad_batch: bool = False
    multiple: int = 1
    fit: bool = False

    def __post_init__(self) -> None:
        if self.tile is not None and self.tile <= 0:
            raise ConfigError(f"`tile` must be > 0 or None, got {self.tile}")
        if self.overlap < 0 or (self.tile is not None and self.overlap >= self.tile):
            raise ConfigError(f"`overlap` must satisfy 0 <= overlap < tile ({self.tile}), got {self.overlap}")
        if self.batch < 1:
            raise ConfigError(f"`batch` must be >= 1, got {self.batch}")
        if self.scale < 1:
            raise ConfigError(f"`scale` must be >= 1, got {self.scale}")
        if self.multiple < 1 or (self.tile is not None and self.tile % self.multiple):
            raise ConfigError(f"`tile` ({self.tile}) must be a multiple of {self.multiple} for this model")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions of equal tiles covering [0, length) along one axis.

    Tiles advance by ``tile - overlap``; the last one is shifted inward so that it ends at
    ``length`` (it may then overlap its neighbour by more than ``overlap``). When
    ``length <= tile`` there is one tile at 0; if shorter, the caller pads the axis to ``tile``.

    Example:
        >>> tile_starts(130, 64, 8)
        [0, 56, 66]
    """
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    starts.append(length - tile)
    return starts


def fit_tile(length: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest tile side (a multiple of `multiple`, at most `tile` unless the axis is shorter) that
    covers `length` with as few tiles as `tile` itself needs at this overlap.

    Example:
        >>> fit_tile(150, 128, 8), fit_tile(100, 128, 8)
        (79, 100)
    """
    up = lambda v: -(-v // multiple) * multiple  # noqa: E731 - the next multiple up
    if length <= tile:
        return up(length)
    n = len(tile_starts(length, tile, overlap))
    return min(tile, up(-(-(length + (n - 1) * overlap) // n)))


@dataclass(frozen=True)
class TilePlan:
    """How one h x w image is cut: tile shape, tile starts per axis, engine calls.

    Attributes:
        h, w: the image (LR pixels); tile_h, tile_w: every tile's shape; ys, xs: tile starts;
        batch: tiles per call; pad_batch: the last call is padded to `batch` tiles.
    """

    h: int
    w: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    batch: int
    pad_batch: bool

    @property
    def tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def calls(self) -> int:
        return -(-self.tiles // self.batch)

    def call_batches(self) -> list[int]:
        """Tiles per engine call, in order (the padded count where the batch is padded)."""
        full, rest = divmod(self.tiles, self.batch)
        return [self.batch] * full + ([self.batch if self.pad_batch else rest] if rest else [])

    @property
    def computed_pixels(self) -> int:
        """LR pixels the engine computes (padding, overlaps and padded batch slots included)."""
        return sum(self.call_batches()) * self.tile_h * self.tile_w

    @property
    def overhead(self) -> float:
        """Computed LR pixels / output LR pixels (1.0: nothing computed twice)."""
        return self.computed_pixels / (self.h * self.w)

    def to_dict(self) -> dict:
        return {"lr_size": [self.h, self.w], "tile": [self.tile_h, self.tile_w], "tiles": self.tiles,
                "calls": self.calls, "batch": self.batch, "computed_lr_pixels": self.computed_pixels,
                "output_lr_pixels": self.h * self.w, "overhead": round(self.overhead, 4)}


def plan_tiles(h: int, w: int, cfg: TileConfig) -> TilePlan:
    """The tiles and engine calls :func:`upscale_tiled` makes for an h x w image under `cfg`."""
    m = cfg.multiple
    if cfg.tile is None:
        tile_h, tile_w = -(-h // m) * m, -(-w // m) * m
    elif cfg.fit:
        tile_h, tile_w = fit_tile(h, cfg.tile, cfg.overlap, m), fit_tile(w, cfg.tile, cfg.overlap, m)
    else:
        tile_h = tile_w = cfg.tile
    overlap_h, overlap_w = min(cfg.overlap, tile_h - 1), min(cfg.overlap, tile_w - 1)
    ys = tile_starts(max(h, tile_h), tile_h, overlap_h)
    xs = tile_starts(max(w, tile_w), tile_w, overlap_w)
    return TilePlan(h, w, tile_h, tile_w, tuple(ys), tuple(xs), cfg.batch, cfg.pad_batch)


def _ramp(n: int) -> np.ndarray:
    """Rising Hann half-window of n samples, strictly between 0 and 1.

    A rising ramp and the mirrored falling ramp over the same samples sum to 1 (sin^2 + cos^2).
    """
    return np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2


def axis_windows(starts: list[int], tile: int, scale: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Blending windows (SR pixels) of the tiles along one axis, and their sum.

    Each side of a tile that overlaps a neighbour ramps over the whole overlap with that
    neighbour (so two neighbours' ramps sum to 1); a side on the image border stays 1.

    Args:
        starts: tile starts in LR pixels, increasing, as from :func:`tile_starts`.
        tile: tile length in LR pixels.
        scale: upscaling factor.

    Returns:
        (windows, total): one float64 array of ``tile * scale`` per tile, and the sum of the
        windows placed at their positions, of length ``(starts[-1] + tile) * scale``.
    """
    size = tile * scale
    windows = []
    for k, start in enumerate(starts):
        window = np.ones(size)
        if k > 0:
            n = (starts[k - 1] + tile - start) * scale
            window[:n] *= _ramp(n)
        if k + 1 < len(starts):
            n = (start + tile - starts[k + 1]) * scale
            window[size - n :] *= _ramp(n)[::-1]
        windows.append(window)
    total = np.zeros((starts[-1] + tile) * scale)
    for start, window in zip(starts, windows):
        total[start * scale : start * scale + size] += window
    return windows, total


def pad_to_tile(lr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pads [C,h,w] at the bottom/right to at least height x width (reflect, else replicate)."""
    pad_h, pad_w = max(0, height - lr.shape[1]), max(0, width - lr.shape[2])
    if pad_h == 0 and pad_w == 0:
        return lr
    # Single reflection only: numpy's repeated reflection of a too-short axis flips back and
    # forth, which is no better than replicating the edge.
    reflect = pad_h < lr.shape[1] and pad_w < lr.shape[2]
    return np.pad(lr, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect" if reflect else "edge")


def _dims(shape: tuple) -> str:
    return "x".join(str(d) for d in shape)


def _progress_callback(progress: ProgressFn | bool | None, total: int):
    """Returns (update(done), close()) for a callback, a tqdm bar (True) or nothing."""
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="tile", desc="upscale")
        return (lambda done: bar.update(done - bar.n)), bar.close
    if callable(progress):
        return (lambda done: progress(done, total)), (lambda: None)
    return (lambda done: None), (lambda: None)


def tile_batches(infer: InferFn, lr: np.ndarray, noise: NoiseField | None, plan: TilePlan, channels: int,
                 scale: int) -> Iterator[tuple[list[tuple[int, int]], np.ndarray]]:
    """The engine calls of a plan, in order: yields (tiles of the call as (row, column) indices, sr).

    The one place that cuts tiles, crops their noise and checks what the engine returned; the in-memory
    blend (:func:`upscale_tiled`) and the row-by-row one (:mod:`vpdsr.runtimes.tile_rows`) both consume it,
    so they make the same calls with the same inputs. `sr` holds the call's outputs (a padded batch's extra
    slots included, after the group's own).

    Args:
        infer: the engine, as in :func:`upscale_tiled`.
        lr: the image, float32 [C,h,w], already padded to at least one tile (:func:`pad_to_tile`).
        noise: the noise field, or None.
        plan: :func:`plan_tiles` of the unpadded image.
        channels: C; scale: the upscaling factor.
    """
    tile_h, tile_w, ys, xs = plan.tile_h, plan.tile_w, plan.ys, plan.xs
    # Row-major order: the noise field's cache keeps the blocks a tile row shares with the next.
    positions = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    s = scale
    for first in range(0, len(positions), plan.batch):
        group = positions[first : first + plan.batch]
        calls = group + [group[-1]] * (plan.batch - len(group)) if plan.pad_batch else group
        lr_batch = np.empty((len(calls), channels, tile_h, tile_w), dtype=np.float32)
        for k, (i, j) in enumerate(calls):
            lr_batch[k] = lr[:, ys[i] : ys[i] + tile_h, xs[j] : xs[j] + tile_w]
        noise_batch = None
        if noise is not None:  # each crop written straight into the batch: no second copy
            noise_batch = np.empty((len(calls), noise.channels, tile_h, tile_w), dtype=np.float32)
            for k, (i, j) in enumerate(calls):
                noise.crop(ys[i], xs[j], tile_h, tile_w, out=noise_batch[k])
        sr = np.asarray(infer(lr_batch, noise_batch))
        want = (len(calls), channels, s * tile_h, s * tile_w)
        if sr.shape != want:
            raise ArtifactError(
                f"engine output has shape {_dims(sr.shape)}, expected {_dims(want)} "
                f"(scale {s}, input {_dims(lr_batch.shape)})"
            )
        yield group, sr


def tiling_inputs(lr: np.ndarray, cfg: TileConfig | None) -> tuple[TileConfig, TilePlan, np.ndarray]:
    """(cfg, plan, lr padded to at least one tile) of an image [C,h,w]; InputError for anything else."""
    cfg = cfg or TileConfig()
    lr = np.asarray(lr, dtype=np.float32)
    if lr.ndim != 3 or lr.shape[1] < 1 or lr.shape[2] < 1:
        raise InputError(f"`lr` must be a float32 array [C,h,w] with h, w >= 1, got shape {lr.shape}")
    plan = plan_tiles(lr.shape[1], lr.shape[2], cfg)
    return cfg, plan, pad_to_tile(lr, plan.tile_h, plan.tile_w)


def blend_windows(plan: TilePlan, scale: int):
    """(row windows [n,1], column windows [n], row sum, column sum) of a multi-tile plan, float32 windows
    and float64 sums, as :func:`upscale_tiled` weights and normalises the tiles."""
    wys, norm_y = axis_windows(list(plan.ys), plan.tile_h, scale)
    wxs, norm_x = axis_windows(list(plan.xs), plan.tile_w, scale)
    return [wy.astype(np.float32)[:, None] for wy in wys], [wx.astype(np.float32) for wx in wxs], norm_y, norm_x


def upscale_tiled(
    infer: InferFn,
    lr: np.ndarray,
    noise: NoiseField | None,
    cfg: TileConfig | None = None,
    progress: ProgressFn | bool | None = None,
) -> np.ndarray:
    """Upscales one image tile by tile with blended overlaps.

    Args:
        infer: the engine, ``infer(lr [B,C,t,t], noise [B,c,t,t]) -> sr [B,C,s*t,s*t]``,
            numpy float32 NCHW (``noise`` is None for a model without a noise input).
        lr: the image, float32 [C,h,w] (CHW) in [0,1].
        noise: the noise field, tile (y, x) gets ``noise.crop(y, x, t, t)``; None: no noise input.
        cfg: tiling settings (defaults: :class:`TileConfig`).
        progress: ``progress(done_tiles, total_tiles)`` after each call, True for a tqdm bar.

    Returns:
        float32 [C, s*h, s*w].

    Raises:
        InputError: ``lr`` is not a [C,h,w] array.
        ArtifactError: ``infer`` returned an array of the wrong shape.

    Example:
        >>> sr = upscale_tiled(runner.infer, lr, NoiseField(seed=0, channels=48), TileConfig(tile=64))
    """
    cfg, plan, padded = tiling_inputs(lr, cfg)
    channels, h, w, s = padded.shape[0], plan.h, plan.w, cfg.scale
    tile_h, tile_w, ys, xs = plan.tile_h, plan.tile_w, plan.ys, plan.xs
    single = plan.tiles == 1  # one call covers the image: no blending, no normalisation
    if not single:
        wys, wxs, norm_y, norm_x = blend_windows(plan, s)

    out = np.zeros((channels, s * h, s * w), dtype=np.float32)
    weighted = None if single else np.empty((channels, s * tile_h, s * tile_w), dtype=np.float32)
    update, close = _progress_callback(progress, plan.tiles)
    done = 0
    try:
        for group, sr in tile_batches(infer, padded, noise, plan, channels, s):
            if single:
                out[...] = sr[0, :, : s * h, : s * w]
            for k, (i, j) in enumerate([] if single else group):
                # Weighted into a reused buffer: the engine's output may be read-only memory.
                np.multiply(sr[k], wys[i], out=weighted)
                weighted *= wxs[j]
                y0, x0 = ys[i] * s, xs[j] * s
                # Tiles over padding reach beyond the image: only the part inside is kept.
                hh, ww = min(s * tile_h, s * h - y0), min(s * tile_w, s * w - x0)
                out[:, y0 : y0 + hh, x0 : x0 + ww] += weighted[:, :hh, :ww]
            done += len(group)
            update(done)
    finally:
        close()
    if not single:
        # Both divisions are in place with 1-D operands: no second full-size buffer.
        out /= norm_y[: s * h, None].astype(np.float32)
        out /= norm_x[None, : s * w].astype(np.float32)
    return out
