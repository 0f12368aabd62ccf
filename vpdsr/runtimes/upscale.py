"""Upscale whole images on any Runner: the one tiling path of `upscale`, `bench` and export validation.

What it decides, so that no caller writes it again:
- the tile rule: a runner whose `lr` input has a static H/W (a static-shape artifact) takes tiles of
  exactly that size (and a static batch is padded up to); a tile the user asked for that
  contradicts it is a one-line InputError; otherwise the caller's tiling is used;
- the noise: one :class:`NoiseField` per seed, cropped per tile (the result does not depend on the
  tiling); a runner without a `noise` input (a GAN SR network) gets none; a call may pass its own seed
  (`vpdsr upscale` derives one per image from the image's bytes, so no image's noise depends on which
  others ran before it or where);
- HWC in, HWC out: images are (H, W, 3) float32 in [0, 1], as `vpdsr.data.io` reads them;
- `tiles="auto"`: the tiling is chosen per image size by measurement (:mod:`vpdsr.runtimes.autotile`):
  the whole image in one call on a dynamic engine where it fits, else the fewest fitted tiles;
- in memory (`upscaler(image)`) or row band by row band (`upscaler.rows(image)`, for outputs larger
  than memory: :mod:`vpdsr.runtimes.tile_rows`), with the same values.

Example:
    >>> with load("artifacts/openvino-int8") as runner:
    ...     sr = Upscaler(runner, TileConfig(tile=64, overlap=8), seed=0)(lr_image)
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from vpdsr.errors import ArtifactError, InputError
from vpdsr.runtimes.autotile import AutoTileConfig, AutoTiler
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.noise import NoiseField
from vpdsr.runtimes.tile_rows import upscale_rows
from vpdsr.runtimes.tiling import ProgressFn, TileConfig, TilePlan, plan_tiles, upscale_tiled

AUTO = "auto"


def tiles_for(runner: Runner, wanted: TileConfig, explicit: bool = False) -> TileConfig:
    """The tiling `runner` can take, starting from `wanted`.

    Args:
        runner: an active runner.
        wanted: the caller's tiling (``tile=None``: the whole image in one call).
        explicit: the user chose `wanted.tile`; then a static artifact of another size is an error
            instead of silently winning.

    Raises:
        InputError: `explicit` and the runner's static tile differs from `wanted.tile`, or is not a
            multiple of the model's `size_multiple`.
        ArtifactError: a static tile that is not square.
    """
    shape = runner.get_input_metadata()["lr"][1]
    multiple = int(getattr(runner, "size_multiple", 1) or 1)
    tiles = replace(wanted, multiple=1)
    if multiple > 1 and wanted.tile is not None and wanted.tile % multiple:
        if explicit:
            lower, upper = max(multiple, wanted.tile // multiple * multiple), -(-wanted.tile // multiple) * multiple
            raise InputError(f"`--tile {wanted.tile}`: {runner.name} takes LR sides that are multiples of {multiple} "
                             f"(the model's size rule), so tiles must be too; try `--tile {lower}` or `--tile {upper}`")
        tiles = replace(tiles, tile=-(-wanted.tile // multiple) * multiple)  # the next multiple up
    tiles = replace(tiles, multiple=multiple, scale=int(getattr(runner, "scale", 4)))
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        h, w = shape[2], shape[3]
        if h != w:
            raise ArtifactError(f"{runner.name}: its input is fixed at {h}x{w}; only square static tiles are supported")
        if explicit and wanted.tile != h:
            asked = "0 (the whole image)" if wanted.tile is None else str(wanted.tile)
            raise InputError(f"`--tile {asked}` contradicts {runner.name}, whose input is fixed at {h}x{h} LR pixels: "
                             f"pass `--tile {h}` or leave `--tile` out")
        tiles = replace(tiles, tile=h, overlap=min(wanted.overlap, h - 1))
    if len(shape) == 4 and isinstance(shape[0], int):
        tiles = replace(tiles, batch=int(shape[0]), pad_batch=True)
    return tiles


class Upscaler:
    """A runner with its tiling and noise fixed: `upscaler(image) -> sr` for (H, W, 3) float32 images.

    Args:
        runner: an active runner.
        tiles: the wanted tiling (see :func:`tiles_for`; default :class:`TileConfig`), or "auto" (or an
            :class:`AutoTileConfig`): chosen per image size, see :mod:`vpdsr.runtimes.autotile`.
        seed: noise seed (the same seed gives every backend the same noise).
        explicit_tile: the user chose `tiles.tile` (a contradicting static artifact is an error).
        on_call: called with the runner after every engine call (per-call timings, memory samples).
        clip: clamp the output to [0, 1] (what is written and scored).
        flops: `flops(h, w)` of one call, for auto tiling's ranking when trial calls are too slow.
        noise_cache_mb: the noise field's block cache (0: every tile draws its noise afresh; the values
            are the same either way, see :class:`NoiseField`).

    Attributes:
        tiles: the resolved tiling (None with auto tiling: see `auto.choices`); noise: the NoiseField, or
        None for a runner without noise; last_tiles, last_plan: the :class:`TileConfig` and :class:`TilePlan` of
        the last image (what a report records: the tiling that ran, not asked for again).
    """

    def __init__(self, runner: Runner, tiles: TileConfig | AutoTileConfig | str | None = None, seed: int = 0, *,
                 explicit_tile: bool = False, on_call: Callable[[Runner], None] | None = None, clip: bool = True,
                 flops=None, noise_cache_mb: int = 64):
        self.runner = runner
        if tiles == AUTO or isinstance(tiles, AutoTileConfig):
            self.auto = AutoTiler(runner, tiles if isinstance(tiles, AutoTileConfig) else AutoTileConfig(), flops)
            self.tiles = None
        else:
            self.auto = None
            self.tiles = tiles_for(runner, tiles or TileConfig(), explicit_tile)
        channels = runner.noise_channels
        self.noise = NoiseField(seed, channels, cache_mb=noise_cache_mb) if channels else None
        self.on_call = on_call
        self.clip = clip
        self.last_tiles: TileConfig | None = None
        self.last_plan: TilePlan | None = None
        self._other_noise: NoiseField | None = None

    def _infer(self, lr: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        feed = {"lr": lr} if noise is None else {"lr": lr, "noise": noise}
        sr = self.runner.infer(feed)["sr"]
        if self.on_call is not None:
            self.on_call(self.runner)
        return sr

    def tiles_for_size(self, h: int, w: int) -> TileConfig:
        """The tiling an h x w LR image gets (auto tiling chooses it on the first image of that size)."""
        return self.auto.for_size(h, w) if self.auto is not None else self.tiles

    def plan(self, h: int, w: int) -> TilePlan:
        """The tiles and engine calls of an h x w LR image."""
        return plan_tiles(h, w, self.tiles_for_size(h, w))

    def _noise(self, seed: int | None) -> NoiseField | None:
        """The noise field of `seed` (None: the upscaler's own); the last other one is kept for the next call."""
        if self.noise is None or seed is None or seed == self.noise.seed:
            return self.noise
        if self._other_noise is None or self._other_noise.seed != seed:
            self._other_noise = NoiseField(seed, self.noise.channels, cache_mb=self.noise.cache_mb)
        return self._other_noise

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, TileConfig]:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"an image must be (H, W, 3), got shape {image.shape}")
        tiles = self.last_tiles = self.tiles_for_size(image.shape[0], image.shape[1])
        self.last_plan = plan_tiles(image.shape[0], image.shape[1], tiles)
        return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32), tiles

    def __call__(self, image: np.ndarray, progress: ProgressFn | bool | None = None,
                 seed: int | None = None) -> np.ndarray:
        """Upscale one (H, W, 3) image; `progress` as in :func:`vpdsr.runtimes.tiling.upscale_tiled`; `seed`:
        this image's noise seed instead of the upscaler's."""
        lr, tiles = self._prepare(image)
        sr = upscale_tiled(self._infer, lr, self._noise(seed), tiles, progress=progress).transpose(1, 2, 0)
        return np.clip(sr, 0.0, 1.0, out=sr) if self.clip else sr

    def rows(self, image: np.ndarray, progress: ProgressFn | bool | None = None,
             seed: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """The same result as `upscaler(image)`, handed over top to bottom: yields (y0, rows (n, W, 3)).

        Memory stays a few tile rows of output (:mod:`vpdsr.runtimes.tile_rows`) besides the input.
        """
        lr, tiles = self._prepare(image)
        del image
        for y0, band in upscale_rows(self._infer, lr, self._noise(seed), tiles, progress=progress):
            band = band.transpose(1, 2, 0)
            yield y0, (np.clip(band, 0.0, 1.0, out=band) if self.clip else band)


def upscale_image(runner: Runner, image: np.ndarray, tiles: TileConfig | None = None, seed: int = 0,
                  **kwargs) -> np.ndarray:
    """One image through :class:`Upscaler` (see there for the arguments)."""
    return Upscaler(runner, tiles, seed, **kwargs)(image)
