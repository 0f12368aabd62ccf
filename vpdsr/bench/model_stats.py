"""What the benched model costs, independent of any backend: parameters and GFLOP per LR tile.

GFLOP are counted by torch's `FlopCounterMode` (through vpdsr.bench.flops, on meta tensors) for one
forward of a batch-1 LR tile of STATS_TILE x STATS_TILE (rounded up to the model's size multiple,
e.g. 64 for SinSR's Swin windows):
convolutions and matrix products (2 FLOP per multiply-add), the ops that carry the cost; norms,
activations and the codebook lookup are not counted. The same number for every backend: an INT8
graph does the same arithmetic in cheaper units.

Example:
    >>> model_stats("tiny")
    {'parameters': 1086672, 'gflop_per_tile': 2.274, 'stats_tile': 64}
"""
from __future__ import annotations

import logging
import os

from vpdsr.errors import VpdsrError

log = logging.getLogger(__name__)
STATS_TILE = 64  # LR pixels a side: GFLOP are quoted per LR 64x64 tile throughout the docs


def count_gflop(model, tile: int = STATS_TILE) -> tuple[float | None, int]:
    """(GFLOP of one forward on a 1x3xTxT LR tile, T), T rounded up to the model's size multiple.

    Counted by :class:`vpdsr.bench.flops.FlopCounter` (meta tensors: no weights copied, attention
    counted on its math path); None when the graph cannot be counted.
    """
    from vpdsr.bench.flops import FlopCounter

    multiple = max(1, int(getattr(model, "size_multiple", 1) or 1))
    side = -(-tile // multiple) * multiple
    flops = FlopCounter(model).flops(side, side)
    return (None if flops is None else flops / 1e9), side


def model_stats(model, tile: int = STATS_TILE) -> dict:
    """{parameters, gflop_per_tile, stats_tile} of a loaded model, or of a model directory or preset; {} when
    it cannot be built.

    A model that does not load here (e.g. bench of artifacts whose source is gone) has no stats: the
    report then shows none rather than a guess. The bench passes the model it loaded once.
    """
    net = model
    if isinstance(model, (str, os.PathLike)):
        try:
            from vpdsr.models import from_pretrained

            net = from_pretrained(str(model)).eval()
        except VpdsrError as e:
            log.info(f"bench: no model stats ({' '.join(str(e).split())[:200]})")
            return {}
    gflop, side = count_gflop(net, tile)
    return {"parameters": int(net.num_parameters()), "gflop_per_tile": None if gflop is None else round(gflop, 3),
            "stats_tile": side}


def stats_line(info: dict) -> str | None:
    """The report's one line about the model's size, or None without stats."""
    if not info.get("parameters"):
        return None
    if info.get("gflop_per_tile") is None:
        return f"Model: {info['parameters'] / 1e6:.2f} M parameters (its FLOPs could not be counted)."
    return (f"Model: {info['parameters'] / 1e6:.2f} M parameters, {info['gflop_per_tile']:.2f} GFLOP per LR "
            f"{info['stats_tile']}x{info['stats_tile']} forward (torch FlopCounterMode: convolutions and matmuls).")
