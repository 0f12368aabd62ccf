"""Row-band tiling (tile_rows): the values of the in-memory blend bit for bit, bounded memory, no seams."""
from __future__ import annotations

import numpy as np
import pytest

from vpdsr.runtimes.noise import NoiseField
from vpdsr.runtimes.tile_rows import upscale_rows
from vpdsr.runtimes.tiling import TileConfig, plan_tiles, upscale_tiled


def engine(scale: int = 4):
    """A numpy engine whose output depends on its neighbourhood and on the tile's edges (zero padding
    of a 3x3 box blur) and on the noise: tiles disagree near their borders, as a real network's do."""

    def infer(lr: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        padded = np.pad(lr, ((0, 0), (0, 0), (1, 1), (1, 1)))
        blur = sum(padded[:, :, dy : dy + lr.shape[2], dx : dx + lr.shape[3]] for dy in range(3) for dx in range(3)) / 9
        if noise is not None:
            blur = blur + 0.01 * noise[:, :3]
        return np.repeat(np.repeat(blur, scale, axis=2), scale, axis=3).astype(np.float32)

    return infer


def stitched(lr, noise, cfg) -> np.ndarray:
    """The bands of upscale_rows put back together, checking they come in order and cover the output."""
    bands = list(upscale_rows(engine(cfg.scale), lr, noise, cfg))
    starts = [y0 for y0, _ in bands]
    ends = [y0 + b.shape[1] for y0, b in bands]
    assert starts[0] == 0 and starts[1:] == ends[:-1] and ends[-1] == lr.shape[1] * cfg.scale
    return np.concatenate([b for _, b in bands], axis=1)


@pytest.mark.parametrize("h, w, cfg", [
    (70, 53, TileConfig(tile=16, overlap=4, batch=1)),
    (70, 53, TileConfig(tile=16, overlap=4, batch=3)),          # batches straddle tile rows
    (70, 53, TileConfig(tile=16, overlap=4, batch=11)),         # a batch spans several tile rows
    (70, 53, TileConfig(tile=24, overlap=7, batch=4, pad_batch=True)),
    (70, 53, TileConfig(tile=8, overlap=0, batch=2)),
    (70, 53, TileConfig(tile=32, overlap=8, batch=2, fit=True)),
    (10, 53, TileConfig(tile=16, overlap=4, batch=2)),          # shorter than a tile: padded
    (13, 11, TileConfig(tile=16, overlap=4, batch=2)),          # one tile
    (13, 11, TileConfig(tile=None, overlap=0, batch=1)),        # the whole image
    (40, 33, TileConfig(tile=16, overlap=4, batch=2, scale=2)),
])
@pytest.mark.parametrize("with_noise", [True, False])
def test_rows_equal_the_in_memory_blend_bit_for_bit(h, w, cfg, with_noise):
    lr = np.random.default_rng(1).random((3, h, w), dtype=np.float32)
    noise = NoiseField(seed=3, channels=4) if with_noise else None
    whole = upscale_tiled(engine(cfg.scale), lr, noise, cfg)
    assert np.array_equal(stitched(lr, noise, cfg), whole)


def test_band_memory_is_a_few_tile_rows():
    """The band buffer is sized by the tile, not the image: peak numpy allocation during the run
    stays far below one full float32 output."""
    import tracemalloc

    lr = np.random.default_rng(1).random((3, 1024, 64), dtype=np.float32)
    cfg = TileConfig(tile=16, overlap=4, batch=2)
    full = 3 * (4 * 1024) * (4 * 64) * 4
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in upscale_rows(engine(), lr, None, cfg):
        pass
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    plan = plan_tiles(1024, 64, cfg)
    assert plan.tiles > 100
    assert peak < full / 8, f"peak {peak / 1e6:.1f} MB for a {full / 1e6:.1f} MB output"
