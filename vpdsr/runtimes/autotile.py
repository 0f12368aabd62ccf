"""`--tile auto`: per runner and image size, the tiling that computes the fewest pixels fastest.

What it chooses from:
- a static-shape engine (its `lr` input has a fixed H/W) takes tiles of exactly that size; only the
  overlap is free: the largest overlap up to the wanted one that needs no more tiles than the
  smallest allowed overlap would (on a 128-pixel side, 64-pixel tiles need 3 tiles at any overlap
  but 0: the tiling cannot beat 1.5x there, and the report's overhead column says so);
- a dynamic-shape engine: the whole image in one call (no pixel computed twice) while it is at most
  `max_tile` x `max_tile` pixels, and fitted tiles of at most 64, 128, ... `max_tile` pixels a side
  (:func:`vpdsr.runtimes.tiling.fit_tile`); the batch (1, 2, 4 tiles per call; a static batch is
  kept) where the image needs more than one tile.

How: each candidate's engine calls are timed once on random inputs of their shape (after a warm-up),
cheapest predicted total first, within `budget_s`. When the budget is spent (a large model whose one
call takes seconds), the rest are ranked by their FLOPs (counted from the torch graph when the caller
has one: attention makes a whole-image pass cost more than its tiles) or, without a count, by
computed pixels. Choices are cached per image size and recorded with their reasons (`choices`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from vpdsr.errors import ConfigError
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.tiling import TileConfig, TilePlan, plan_tiles

log = logging.getLogger(__name__)


@dataclass
class AutoTileConfig:
    """Attributes:
        max_tile: largest tile side for dynamic engines (LR pixels); also the largest whole image.
        overlap: wanted overlap of neighbouring tiles (LR pixels).
        min_overlap: the least overlap auto may drop to for a static tile (blending needs some); never more
            than `overlap`.
        max_batch: most tiles per call tried for dynamic-batch engines.
        budget_s: seconds of trial calls at most, per image size.
        measure: time trial calls (the default); False: choose by FLOPs or computed pixels alone and take the
            largest batch, so the choice is the same in every process (`vpdsr upscale`: outputs must not
            depend on which worker made them, and a different tiling gives other bits at tile borders).
    """

    max_tile: int = 256
    overlap: int = 8
    min_overlap: int = 4
    max_batch: int = 4
    budget_s: float = 3.0
    measure: bool = True

    def __post_init__(self) -> None:
        if self.max_tile < 8:
            raise ConfigError(f"`max_tile` must be >= 8, got {self.max_tile}")
        if self.overlap < 0 or self.min_overlap < 0:
            raise ConfigError(f"auto tiling needs overlaps >= 0, got {self.min_overlap}, {self.overlap}")
        self.min_overlap = min(self.min_overlap, self.overlap)
        if self.max_batch < 1 or self.budget_s < 0:
            raise ConfigError("auto tiling needs `max_batch` >= 1 and `budget_s` >= 0")


def static_shape(runner: Runner) -> tuple[int | None, int | None]:
    """(fixed tile side or None, fixed batch or None) of the runner's `lr` input."""
    shape = runner.get_input_metadata()["lr"][1]
    side = shape[2] if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int) else None
    batch = shape[0] if len(shape) == 4 and isinstance(shape[0], int) else None
    return side, batch


class AutoTiler:
    """Chooses and remembers the tiling of each image size for one runner.

    Args:
        runner: an active runner.
        cfg: the search space and budget.
        flops: `flops(h, w) -> FLOPs of one call` (e.g. `FlopCounter(model).flops`), or None.
        clock: seconds, for the trial calls and the budget (tests pass one that a model advances).
    """

    def __init__(self, runner: Runner, cfg: AutoTileConfig | None = None, flops=None,
                 clock: Callable[[], float] = time.perf_counter):
        self.runner = runner
        self.cfg = cfg or AutoTileConfig()
        self.flops = flops
        self.clock = clock
        self.multiple = int(getattr(runner, "size_multiple", 1) or 1)
        self.scale = int(getattr(runner, "scale", 4))
        self.side, self.fixed_batch = static_shape(runner)
        self.choices: dict[str, dict] = {}
        self._tiles: dict[tuple[int, int], TileConfig] = {}
        self._timed: dict[tuple[int, int, int], float] = {}  # (batch, h, w) -> seconds of one call

    def for_size(self, h: int, w: int) -> TileConfig:
        """The tiling of an h x w image (chosen on the first image of that size)."""
        if (h, w) not in self._tiles:
            tiles, record = self._choose(h, w)
            self._tiles[(h, w)] = tiles
            self.choices[f"{h}x{w}"] = record
            log.debug(f"auto tiling {self.runner.name} {h}x{w}: {record['why']}")
        return self._tiles[(h, w)]

    # -- choosing ----------------------------------------------------------------------------------
    def _base(self, **kw) -> TileConfig:
        return TileConfig(scale=self.scale, multiple=self.multiple, **kw)

    def _choose(self, h: int, w: int) -> tuple[TileConfig, dict]:
        if self.side is not None:
            return self._choose_static(h, w)
        return self._choose_dynamic(h, w)

    def _choose_static(self, h: int, w: int) -> tuple[TileConfig, dict]:
        t, c = self.side, self.cfg
        batch = self.fixed_batch or c.max_batch
        pad = self.fixed_batch is not None
        fewest = plan_tiles(h, w, self._base(tile=t, overlap=min(c.min_overlap, t - 1), batch=batch)).tiles
        overlap = max(o for o in range(min(c.min_overlap, t - 1), min(c.overlap, t - 1) + 1)
                      if plan_tiles(h, w, self._base(tile=t, overlap=o, batch=batch)).tiles == fewest)
        tiles = self._base(tile=t, overlap=overlap, batch=batch, pad_batch=pad)
        if not pad and fewest > 1:
            tiles = replace(tiles, batch=self._best_batch(t, t, fewest))
        plan = plan_tiles(h, w, tiles)
        why = (f"static {t}x{t} engine: overlap {overlap} (the most that keeps {fewest} tiles), batch {tiles.batch}, "
               f"overhead {plan.overhead:.2f}x")
        return tiles, self._record(tiles, plan, why, [])

    def _choose_dynamic(self, h: int, w: int) -> tuple[TileConfig, dict]:
        c = self.cfg
        candidates: list[TileConfig] = []
        if h * w <= c.max_tile * c.max_tile:
            candidates.append(self._base(tile=None, overlap=0, batch=1))
        side = 64
        while side <= c.max_tile:
            side_m = -(-side // self.multiple) * self.multiple
            tiles = self._base(tile=side_m, overlap=min(c.overlap, side_m - 1), batch=1, fit=True)
            if plan_tiles(h, w, tiles).tiles > 1:
                candidates.append(tiles)
            side *= 2
        if not candidates:  # an image no larger than 64 x 64 that is still too large as a whole: one tile
            candidates.append(self._base(tile=-(-max(h, w) // self.multiple) * self.multiple, overlap=0, batch=1,
                                         fit=True))
        rows = [{"config": t, "plan": plan_tiles(h, w, t)} for t in candidates]
        for r in rows:
            r["flops"] = self._plan_flops(r["plan"])
        # cheapest first by the count (or pixels): the budget goes to the likely winners
        rows.sort(key=lambda r: (r["flops"] if r["flops"] is not None else r["plan"].computed_pixels))
        deadline = self.clock() + c.budget_s
        for r in rows:
            r["ms"] = self._predict_ms(r["plan"], deadline) if c.measure else None
        timed = [r for r in rows if r["ms"] is not None]
        if len(timed) == len(rows):
            best, basis = min(rows, key=lambda r: r["ms"]), "measured"
        else:  # the budget ran out: rank by what every candidate has
            best = rows[0]
            basis = "FLOPs" if best["flops"] is not None else "computed pixels"
        tiles, plan = best["config"], best["plan"]
        if plan.tiles > 1 and self.fixed_batch is None and c.max_batch > 1:
            tiles = replace(tiles, batch=self._best_batch(plan.tile_h, plan.tile_w, plan.tiles))
            plan = plan_tiles(h, w, tiles)
        elif self.fixed_batch is not None:
            tiles = replace(tiles, batch=self.fixed_batch, pad_batch=True)
            plan = plan_tiles(h, w, tiles)
        kind = "whole image" if tiles.tile is None else f"tiles of {plan.tile_h}x{plan.tile_w} (max {tiles.tile})"
        why = (f"dynamic engine: {kind}, overlap {tiles.overlap}, batch {tiles.batch}, overhead {plan.overhead:.2f}x; "
               f"chosen by {basis} over {len(rows)} candidate(s)")
        table = [{"tile": r["config"].tile, "fit": r["config"].fit, "tiles": r["plan"].tiles,
                  "overhead": round(r["plan"].overhead, 4), "gflop": None if r["flops"] is None else r["flops"] / 1e9,
                  "predicted_ms": r["ms"]} for r in rows]
        return tiles, self._record(tiles, plan, why, table)

    def _record(self, tiles: TileConfig, plan: TilePlan, why: str, candidates: list[dict]) -> dict:
        return {"config": asdict(tiles), "plan": plan.to_dict(), "why": why, "candidates": candidates}

    # -- measuring ---------------------------------------------------------------------------------
    def _plan_flops(self, plan: TilePlan) -> float | None:
        if self.flops is None:
            return None
        one = self.flops(plan.tile_h, plan.tile_w)
        return None if one is None else float(one) * sum(plan.call_batches())

    def _time_call(self, batch: int, th: int, tw: int) -> float:
        key = (batch, th, tw)
        if key not in self._timed:
            rng = np.random.default_rng(0)
            feed = {"lr": rng.random((batch, 3, th, tw), dtype=np.float32)}
            channels = self.runner.noise_channels
            if channels:
                feed["noise"] = rng.standard_normal((batch, channels, th, tw), dtype=np.float32)
            self.runner.infer(feed)  # warm-up: a new shape may compile or allocate
            t0 = self.clock()
            self.runner.infer(feed)
            self._timed[key] = self.clock() - t0
        return self._timed[key]

    def _predict_ms(self, plan: TilePlan, deadline: float) -> float | None:
        """Predicted ms of the plan's calls from one timed call per shape; None once past the deadline."""
        total = 0.0
        for b in sorted(set(plan.call_batches())):
            if (b, plan.tile_h, plan.tile_w) not in self._timed and self.clock() > deadline:
                return None
            total += self._time_call(b, plan.tile_h, plan.tile_w) * plan.call_batches().count(b)
        return total * 1000.0

    def _best_batch(self, th: int, tw: int, tiles: int) -> int:
        """Tiles per call (1, 2, 4 ... up to max_batch and the tile count) with the lowest time per tile."""
        options = [b for b in (1, 2, 4, 8, 16) if b <= min(self.cfg.max_batch, tiles)]
        if len(options) == 1 or not self.cfg.measure:
            return options[-1]
        per_tile = {}
        deadline = self.clock() + self.cfg.budget_s
        for b in options:
            if self.clock() > deadline and per_tile:
                break
            per_tile[b] = self._time_call(b, th, tw) / b
        return min(per_tile, key=per_tile.get)
