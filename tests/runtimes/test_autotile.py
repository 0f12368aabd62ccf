"""`--tile auto`: whole images on dynamic engines, fitted tiles beyond the size limit, static tiles kept.

The trial calls are timed on a clock the model itself advances (`ClockedX4`), so what is "measured"
and what fits the budget do not depend on this machine's speed or load.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tests.runtimes.test_upscale import NearestX4
from tests.runtimes.tiny_artifacts import inputs, psnr, tiny_model
from vpdsr.errors import ConfigError
from vpdsr.runtimes.autotile import AutoTileConfig, AutoTiler
from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from vpdsr.runtimes.tiling import plan_tiles
from vpdsr.runtimes.torch_runner import TorchRunner
from vpdsr.runtimes.upscale import Upscaler


def image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).random((h, w, 3), dtype=np.float32)


class ClockedX4(NearestX4):
    """NearestX4 whose every call takes `per_call + per_pixel * pixels ** power` seconds on `self.clock`."""

    def __init__(self, per_call: float = 1e-3, per_pixel: float = 1e-6, power: float = 1.0, **kw):
        super().__init__(**kw)
        self.per_call, self.per_pixel, self.power = per_call, per_pixel, power
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        b, _, h, w = lr.shape
        self.now += b * (self.per_call + self.per_pixel * (h * w) ** self.power)
        return super().forward(lr)


def test_dynamic_engine_takes_a_small_image_whole():
    model = ClockedX4()
    with TorchRunner(model) as runner:
        up = Upscaler(runner, AutoTileConfig(max_tile=64, budget_s=5.0))
        up.auto.clock = model.clock
        img = image(40, 50)
        sr = up(img)
        choice = up.auto.choices["40x50"]
    assert up.last_plan.tiles == 1 and up.last_plan.overhead == 1.0
    assert choice["config"]["tile"] is None and "whole image" in choice["why"] and "measured" in choice["why"]
    assert choice["candidates"][0]["predicted_ms"] == pytest.approx(1.0 + 1e-3 * 40 * 50)  # the model's own cost
    assert model.seen[-1] == (1, 3, 40, 50)  # one call at the image's own size
    np.testing.assert_allclose(sr, img.repeat(4, axis=0).repeat(4, axis=1), atol=1e-6)


@pytest.mark.parametrize("power, whole", [(1.0, True), (2.0, False)])
def test_the_measured_times_decide_between_whole_image_and_tiles(power, whole):
    """Cost linear in pixels: one whole call wins (no pixel computed twice); quadratic (attention-like):
    tiles win although they compute more pixels."""
    model = ClockedX4(per_pixel=1e-6 if power == 1.0 else 1e-10, power=power)
    with TorchRunner(model) as runner:
        tiler = AutoTiler(runner, AutoTileConfig(max_tile=128, max_batch=1, budget_s=5.0), clock=model.clock)
        tiles = tiler.for_size(120, 120)
    record = tiler.choices["120x120"]
    assert "chosen by measured" in record["why"] and (tiles.tile is None) == whole
    best = min(record["candidates"], key=lambda c: c["predicted_ms"])
    assert (best["tile"] is None) == whole


def test_trials_past_the_budget_fall_back_to_computed_pixels():
    model = ClockedX4(per_call=3.0)  # every trial call takes 3 s: the budget of 5 s holds one shape
    with TorchRunner(model) as runner:
        tiler = AutoTiler(runner, AutoTileConfig(max_tile=128, max_batch=1, budget_s=5.0), clock=model.clock)
        tiles = tiler.for_size(120, 120)
    record = tiler.choices["120x120"]
    assert "chosen by computed pixels" in record["why"] and tiles.tile is None  # the fewest pixels: whole
    timed = [c["predicted_ms"] is not None for c in record["candidates"]]
    assert len(timed) == 2 and timed == [True, False]  # whole image timed first (fewest pixels), then out of time


def test_beyond_the_size_limit_fitted_tiles_waste_little():
    model = ClockedX4(size_multiple=8)
    with TorchRunner(model) as runner:
        tiler = AutoTiler(runner, AutoTileConfig(max_tile=64, overlap=8, budget_s=5.0), clock=model.clock)
        tiles = tiler.for_size(150, 100)  # 15000 px > 64^2: no whole-image candidate
        plan = plan_tiles(150, 100, tiles)
        record = tiler.choices["150x100"]
    assert tiles.fit and tiles.tile in (64,) and plan.tiles > 1
    assert plan.tile_h % 8 == 0 and plan.tile_w % 8 == 0 and max(plan.tile_h, plan.tile_w) <= 64
    # fixed 64-pixel tiles at overlap 8 would compute 3 x 2 tiles of 64^2 = 1.64x the image
    assert plan.overhead < plan_tiles(150, 100, type(tiles)(tile=64, overlap=8, multiple=8)).overhead
    assert {c["tile"] for c in record["candidates"]} == {64}
    assert all(c["predicted_ms"] is not None for c in record["candidates"])


def test_out_of_budget_the_flop_count_ranks_the_candidates():
    counted = []

    def flops(h: int, w: int) -> int:  # a model whose cost grows with the square of the pixels (attention)
        counted.append((h, w))
        return (h * w) ** 2

    with TorchRunner(NearestX4()) as runner:
        tiler = AutoTiler(runner, AutoTileConfig(max_tile=128, budget_s=0.0), flops=flops)
        tiles = tiler.for_size(120, 120)
    assert "chosen by FLOPs" in tiler.choices["120x120"]["why"]
    assert tiles.tile == 64 and tiles.fit  # whole image: (14400)^2 > four 64x64 tiles: 4 x 4096^2
    assert (120, 120) in counted


def _static_onnx(path, side: int):
    model, feed = tiny_model(), inputs(1, side, side)
    axes = {n: {0: "B"} for n in ("lr", "noise", "sr")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(feed["lr"]), torch.from_numpy(feed["noise"])), str(path),
                          dynamo=False, opset_version=17, input_names=["lr", "noise"], output_names=["sr"],
                          dynamic_axes=axes)
    return path


def test_static_engine_keeps_its_tile_and_drops_overlap_only_where_it_saves_a_tile(tmp_path):
    pytest.importorskip("onnxruntime")
    with OnnxRuntimeRunner(_static_onnx(tmp_path / "static.onnx", 16), threads=1) as runner:
        up = Upscaler(runner, AutoTileConfig(overlap=8, min_overlap=4, budget_s=5.0))
        t = up.tiles_for_size(24, 24)  # two tiles of 16 a side at any overlap up to 8: the largest is kept
        assert (t.tile, t.overlap) == (16, 8) and up.plan(24, 24).tiles == 4
        t = up.tiles_for_size(28, 28)  # two a side at overlap 4 (starts 0, 12), three from overlap 5 on
        assert (t.tile, t.overlap) == (16, 4) and up.plan(28, 28).tiles == 4
        t = up.tiles_for_size(40, 16)  # overlap 4: starts 0, 12, 24; overlap 8 would need 0, 8, 16, 24
        assert (t.tile, t.overlap) == (16, 4) and up.plan(40, 16).tiles == 3
        feed = inputs(1, 40, 16, seed=3)
        img = feed["lr"][0].transpose(1, 2, 0)
        sr = up(img)
    assert sr.shape == (160, 64, 3) and np.isfinite(sr).all()
    with TorchRunner(tiny_model()) as ref:
        whole = Upscaler(ref, "auto")(img)
    assert psnr(sr, whole) > 25  # tiles with a receptive field are close to, not equal to, one whole pass


def test_bad_auto_config_is_a_config_error():
    with pytest.raises(ConfigError, match="overlaps"):
        AutoTileConfig(overlap=-1)
    assert AutoTileConfig(overlap=2).min_overlap == 2  # a user's small overlap is never raised
    with pytest.raises(ConfigError, match="max_tile"):
        AutoTileConfig(max_tile=4)
