"""The machine's memory bandwidth: a STREAM-style triad, the memory side of the roofline.

STREAM's triad is ``a = b + s * c`` over arrays much larger than the caches, counted as three arrays
moved per pass (two read, one written; the write-allocate read is not counted, as in STREAM). Here it
is one fused torch kernel (``torch.add(b, c, alpha=s, out=a)``) on `threads` intra-op threads, float32,
so that the figure is what the engines' own threads can pull from memory; best of a short loop, as the
matmul peaks (:mod:`vpdsr.bench.peak`), since a shared machine only ever slows a run down.

Example:
    >>> triad(threads=2)["gbps"]  # doctest: +SKIP
    21.4
"""
from __future__ import annotations

import time

ARRAY_MB = 64  # per array: three arrays of 64 MiB are well beyond the last-level cache of these machines
OP = "triad a=b+s*c (torch.add, float32)"


def triad(threads: int, array_mb: int = ARRAY_MB, seconds: float = 0.25, min_runs: int = 3) -> dict:
    """{"gbps", "engine", "op", "array_mb", "threads"}: GB/s (1e9 bytes) of the best triad pass."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = array_mb * (1 << 20) // 4
        g = torch.Generator().manual_seed(0)
        b, c = torch.rand(n, generator=g), torch.rand(n, generator=g)
        a = torch.empty(n)
        torch.add(b, c, alpha=3.0, out=a)  # first touch of `a`'s pages outside the timing
        best, runs, t_end = float("inf"), 0, time.perf_counter() + seconds
        while runs < min_runs or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            torch.add(b, c, alpha=3.0, out=a)
            best = min(best, time.perf_counter() - t0)
            runs += 1
    finally:
        torch.set_num_threads(old)
    return {"gbps": round(3 * n * 4 / best / 1e9, 2), "engine": "torch", "op": OP, "array_mb": array_mb,
            "threads": threads}
