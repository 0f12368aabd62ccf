"""How much memory one image takes in memory, and the budget (`--max-memory`) it must fit.

The in-memory path holds, besides the runner, the decoded input (uint8 from the decoder, float32 HWC,
float32 CHW: 9 bytes per LR sample), the float32 output (4 bytes per output sample, clamped in place),
the quantized copy the encoder takes (1 byte per sample, 2 at 16 bits) and the encoder's own copy of it
(Pillow's image; the 16-bit PNG encoder makes several). Measured on LR 2048x2048 -> 8192x8192 with the
shipped tiny model: 2.8 GB peak RSS, of which the formula below accounts for 1.3 GB of arrays (the rest
is the runner, the tile batches and the Python process). An output whose estimate exceeds the budget is
streamed row band by row band into a tiled TIFF instead (vpdsr.scale.tiff_rows), with the same pixels.

Example:
    >>> in_memory_bytes(2048, 2048, 4) / 1e9
    1.32...
"""
from __future__ import annotations

import re

from vpdsr.errors import InputError

# of the RAM available when the job starts, the share the images in flight on one machine may use
DEFAULT_SHARE = 0.5
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def in_memory_bytes(h: int, w: int, scale: int, bit_depth: int = 8) -> int:
    """Bytes of arrays the in-memory path holds at its peak for one h x w LR image (runner excluded)."""
    out_samples = 3 * (scale * h) * (scale * w)
    sample = 1 if bit_depth == 8 else 2
    encoder_copies = 1 if bit_depth == 8 else 3  # the 16-bit PNG encoder: big-endian copy, filter rows, filtered
    return 3 * h * w * 9 + out_samples * (4 + sample * (1 + encoder_copies))


def fits_in_memory(h: int, w: int, scale: int, budget: int, bit_depth: int = 8) -> bool:
    """Whether an h x w LR image's output may be made in memory under `budget` bytes."""
    return in_memory_bytes(h, w, scale, bit_depth) <= budget


def default_budget(workers_here: int = 1) -> int:
    """The default `--max-memory`: a share of the RAM available now, split between the workers of this machine."""
    import psutil

    return int(psutil.virtual_memory().available * DEFAULT_SHARE / max(1, workers_here))


def parse_size(text: str, flag: str = "--max-memory") -> int:
    """'4G', '512M', '1.5GB', '2e9' -> bytes (K/M/G/T are powers of 1024); one-line InputError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise InputError(f"`{flag} {text}`: expected a size such as 4G, 512M or 2000000000 (bytes)")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value < 1:
        raise InputError(f"`{flag} {text}`: must be at least 1 byte")
    return int(value)


def human(n: int) -> str:
    """Bytes for people: 1.3 GB, 512 MB."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
