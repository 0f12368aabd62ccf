"""A deterministic noise field over the infinite LR plane, cropped per tile.

The one-step model takes its noise as an explicit input. For tiled inference the noise must be
"drawn once for the whole image and cropped per tile", so that the result does not depend on
how the image is cut. Holding a full-image noise buffer (c channels at LR size, c=48 for the
tiny preset) would cost more than the output itself, so the field is instead a pure function of
(seed, channel, position): the plane is split into fixed ``block`` x ``block`` squares, and
square (i, j) is drawn from its own generator seeded with ``SeedSequence([seed, i, j])``.
Any crop is assembled from the squares it touches, so ``crop`` never depends on which crops
were asked for before, and memory stays bounded.

Drawing the noise is not free (48 channels per LR pixel for the tiny preset: about 1.5 ms per
64 x 64 block, as much as a fifth of an INT8 engine call), and the field is the same for every
image at the same positions. Generated blocks are therefore kept in a least-recently-used cache
of `cache_mb` megabytes: a tile row reuses the blocks it shares with the next, and the next image
of a run (any image no larger than the cache) draws nothing at all. The values never depend on it.

Example:
    >>> field = NoiseField(seed=0, channels=4)
    >>> field.crop(10, 20, 32, 32).shape
    (4, 32, 32)
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from vpdsr.errors import ConfigError


def _zigzag(k: int) -> int:
    """Maps any integer to a distinct non-negative one (SeedSequence takes only those)."""
    return 2 * k if k >= 0 else -2 * k - 1


class NoiseField:
    """Standard-normal float32 noise, defined at every integer position of the plane.

    Each block holds all channels, drawn in C order, so channel k of a field with c channels
    equals channel k of the same seed's field with more channels.

    Args:
        seed: non-negative integer; the same seed always gives the same field.
        channels: number of noise channels (the model's latent channels).
        block: side of the generation blocks in pixels. The values depend on it, so keep it
            fixed for results that must be reproducible.
        cache_mb: megabytes of generated blocks kept for later crops (least recently used
            first out); 0 caches nothing. Caching never changes the values.
    """

    def __init__(self, seed: int, channels: int, block: int = 64, cache_mb: int = 64) -> None:
        checks = (
            ("seed", seed, 0),
            ("channels", channels, 1),
            ("block", block, 1),
            ("cache_mb", cache_mb, 0),
        )
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"`{name}` must be an integer >= {low}, got {value!r}")
        self.seed = int(seed)
        self.channels = int(channels)
        self.block = int(block)
        self.cache_mb = int(cache_mb)
        block_bytes = self.channels * self.block * self.block * 4
        self._cache_blocks = (self.cache_mb << 20) // block_bytes
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def __repr__(self) -> str:
        return f"NoiseField(seed={self.seed}, channels={self.channels}, block={self.block})"

    def _block(self, i: int, j: int) -> np.ndarray:
        values = self._cache.get((i, j))
        if values is not None:
            self._cache.move_to_end((i, j))
            return values
        seq = np.random.SeedSequence([self.seed, _zigzag(i), _zigzag(j)])
        rng = np.random.Generator(np.random.PCG64(seq))
        values = rng.standard_normal((self.channels, self.block, self.block), dtype=np.float32)
        if self._cache_blocks:
            self._cache[(i, j)] = values
            while len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return values

    def crop(self, y0: int, x0: int, h: int, w: int, out: np.ndarray | None = None) -> np.ndarray:
        """Returns the field on rows [y0, y0+h) and columns [x0, x0+w).

        Args:
            y0, x0: top-left corner (any integers, negative ones included).
            h, w: size of the crop, >= 1.
            out: a float32 [channels, h, w] array to write into (e.g. one slot of a batch).

        Returns:
            A new float32 array [channels, h, w] (or `out`).
        """
        if h < 1 or w < 1:
            raise ConfigError(f"noise crop size must be >= 1x1, got {h}x{w}")
        if out is None:
            out = np.empty((self.channels, h, w), dtype=np.float32)
        elif out.shape != (self.channels, h, w) or out.dtype != np.float32:
            raise ConfigError(f"noise crop `out` must be float32 {(self.channels, h, w)}, got {out.dtype} {out.shape}")
        b = self.block
        bi0, bi1 = y0 // b, (y0 + h - 1) // b
        bj0, bj1 = x0 // b, (x0 + w - 1) // b
        for i in range(bi0, bi1 + 1):
            # Intersection of block row i with the crop, in plane coordinates.
            ya, yb = max(y0, i * b), min(y0 + h, (i + 1) * b)
            for j in range(bj0, bj1 + 1):
                xa, xb = max(x0, j * b), min(x0 + w, (j + 1) * b)
                out[:, ya - y0 : yb - y0, xa - x0 : xb - x0] = self._block(i, j)[
                    :, ya - i * b : yb - i * b, xa - j * b : xb - j * b
                ]
        return out

    def full(self, h: int, w: int) -> np.ndarray:
        """Returns ``crop(0, 0, h, w)``: the noise of a whole h x w image."""
        return self.crop(0, 0, h, w)

    def clear_cache(self) -> None:
        """Frees the cached blocks (they are regenerated identically when needed)."""
        self._cache.clear()
