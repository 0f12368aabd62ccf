"""Write an image that never exists whole in memory: row bands in, a tiled TIFF out (tifffile).

Why tifffile and a tiled TIFF: tifffile is already installed with scikit-image, writes a file from an
iterator of tiles (each compressed as it arrives, none kept), and switches to BigTIFF past 4 GB; a tiled
TIFF is read back in windows by every large-image tool (libvips, GDAL, OpenSlide, tifffile itself), so a
268-megapixel result can be viewed and cropped without decoding it whole. A PNG is one zlib stream: it
could be written row by row too, but no reader can open a window of it without decoding everything
above. pyvips would stream as well, but brings libvips (pyvips-binary, tens of MB) for what tifffile,
already here, does.

Pixels are quantized exactly as :func:`vpdsr.data.io.write_image` quantizes an in-memory result (clip to
[0, 1] in float64, times 255 or 65535, round half to even), so the streamed file holds the pixels of the
PNG the in-memory path would write. Deflate with the horizontal predictor; written under a hidden
temporary name and renamed when complete.

Example:
    >>> write_tiff_rows("big_x4.tif", 16384, 16384, upscaler.rows(lr_image))   # doctest: +SKIP
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from vpdsr.errors import InputError

TILE = 256  # TIFF tile side (a multiple of 16, as the format requires)


def to_uint(rows: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """float (n, W, 3) in [0, 1] -> uint8/uint16, rounded as `write_image` rounds."""
    top = 255.0 if bit_depth == 8 else 65535.0
    out = np.empty(rows.shape, np.uint8 if bit_depth == 8 else np.uint16)
    step = max(1, (1 << 22) // max(1, rows.shape[1] * 3))  # float64 temporaries a few MB at a time
    for y in range(0, rows.shape[0], step):
        out[y : y + step] = np.round(np.clip(rows[y : y + step].astype(np.float64), 0.0, 1.0) * top)
    return out


def _tiles(bands: Iterable[tuple[int, np.ndarray]], height: int, width: int, bit_depth: int,
           tile: int) -> Iterator[np.ndarray]:
    """Row bands (y0, float rows) -> TIFF tiles in row-major order (edge tiles partial: tifffile pads them)."""
    pending: list[np.ndarray] = []
    held, expect = 0, 0

    def cut(n: int) -> Iterator[np.ndarray]:
        nonlocal pending, held
        block = np.concatenate(pending, axis=0) if len(pending) > 1 else pending[0]
        head, rest = block[:n], block[n:]
        pending, held = ([rest] if len(rest) else []), len(rest)
        for x in range(0, width, tile):
            yield np.ascontiguousarray(head[:, x : x + tile])

    for y0, rows in bands:
        if y0 != expect or rows.ndim != 3 or rows.shape[1:] != (width, 3):
            raise ValueError(f"row band at {y0} of shape {rows.shape}: expected rows from {expect} of width {width}")
        expect = y0 + rows.shape[0]
        pending.append(to_uint(rows, bit_depth))
        held += rows.shape[0]
        while held >= tile:
            yield from cut(tile)
    if expect != height:
        raise ValueError(f"row bands ended at row {expect}, expected {height}")
    if held:
        yield from cut(held)


def write_tiff_rows(path: str | os.PathLike, height: int, width: int, bands: Iterable[tuple[int, np.ndarray]],
                    bit_depth: int = 8, tile: int = TILE) -> Path:
    """Write an RGB image given as row bands (y0, float (n, width, 3) in [0, 1]) top to bottom, atomically.

    Args:
        path: the .tif/.tiff file.
        height, width: the image's size (the bands must cover it exactly).
        bands: e.g. :meth:`vpdsr.runtimes.upscale.Upscaler.rows`.
        bit_depth: 8 or 16.
        tile: TIFF tile side in pixels (multiple of 16).

    Returns:
        The path written.

    Raises:
        InputError: a bad extension or bit depth, or the file could not be written (disk full, ...).
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"cannot write {path}: a streamed image is written as .tif/.tiff, not {path.suffix}")
    if bit_depth not in (8, 16):
        raise InputError(f"cannot write {path}: bit_depth={bit_depth} (expected 8 or 16)")
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    raw = height * width * 3 * np.dtype(dtype).itemsize
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}{path.suffix}")
    try:
        tifffile.imwrite(tmp, data=_tiles(bands, height, width, bit_depth, tile), shape=(height, width, 3),
                         dtype=dtype, tile=(tile, tile), photometric="rgb", compression="zlib",
                         predictor="horizontal", bigtiff=raw > (1 << 31), maxworkers=1)
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"cannot write {path}: {' '.join(str(e).split())}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return path
