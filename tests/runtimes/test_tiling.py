"""Tiled inference: same result as one whole-image call, equal tile shapes, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from vpdsr.errors import ArtifactError, ConfigError, InputError
from vpdsr.runtimes.noise import NoiseField
from vpdsr.runtimes.tiling import TileConfig, axis_windows, fit_tile, plan_tiles, tile_starts, upscale_tiled

S = 4  # the model's scale
CACHE_MB = 8  # noise cache budget of the memory test


def nearest_up(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, S, axis=-2), S, axis=-1)


def per_pixel(lr: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """A model without receptive field: tiling must not change its output at all."""
    return nearest_up(lr * 0.5 + noise.mean(axis=1, keepdims=True))


def noise_echo(lr: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Returns the noise it was given: shows which noise each output pixel saw."""
    return nearest_up(noise[:, :3])


def box_blur(lr: np.ndarray, noise: np.ndarray, radius: int = 1) -> np.ndarray:
    """A model with a receptive field: tiles differ from the whole image near their borders."""
    padded = np.pad(lr, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="reflect")
    size = 2 * radius + 1
    return nearest_up(sliding_window_view(padded, (size, size), axis=(2, 3)).mean(axis=(-1, -2)))


class Recorder:
    """Wraps a callable and records the input shapes of every call."""

    def __init__(self, fn):
        self.fn, self.shapes = fn, []

    def __call__(self, lr, noise):
        self.shapes.append((lr.shape, noise.shape))
        assert lr.dtype == np.float32 and noise.dtype == np.float32
        return self.fn(lr, noise)


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((3, h, w), dtype=np.float32)


def whole(fn, lr, field):
    return upscale_tiled(fn, lr, field, TileConfig(tile=None))


def test_tile_starts_cover_axis_with_equal_tiles():
    assert tile_starts(130, 64, 8) == [0, 56, 66]
    assert tile_starts(64, 64, 8) == [0]
    assert tile_starts(65, 64, 8) == [0, 1]
    assert tile_starts(10, 64, 8) == [0]
    for length in range(1, 200, 7):
        starts = tile_starts(length, 16, 5)
        assert starts[0] == 0 and starts == sorted(set(starts))
        assert starts[-1] + 16 == max(length, 16)
        ends = [s + 16 for s in starts]
        assert all(nxt <= end for nxt, end in zip(starts[1:], ends))  # no gaps


def test_axis_windows_never_zero_and_sum_to_one_for_regular_overlaps():
    windows, total = axis_windows([0, 12, 24], 16, S)  # stride 12, overlap 4: no shifted tile
    assert len(total) == 40 * S
    assert all(w.min() > 0 and w.max() <= 1 for w in windows)
    assert windows[0][0] == 1 and windows[-1][-1] == 1  # image borders keep full weight
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    _, total = axis_windows(tile_starts(121, 64, 8), 64, S)  # last tile shifted: three tiles overlap
    assert total.min() > 0.5


@pytest.mark.parametrize(
    "h, w", [(1, 1), (5, 7), (32, 32), (33, 32), (32, 33), (63, 65), (130, 97), (40, 100)]
)
def test_per_pixel_model_tiled_equals_whole_image(h, w):
    lr, field = image(h, w), NoiseField(seed=7, channels=6)
    ref = whole(per_pixel, lr, field)
    assert ref.shape == (3, S * h, S * w) and ref.dtype == np.float32
    rec = Recorder(per_pixel)
    out = upscale_tiled(rec, lr, field, TileConfig(tile=32, overlap=6, batch=3))
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)
    # Static shapes: every call saw 32x32 tiles, small images padded up to one tile.
    assert {s[1:] for s, _ in rec.shapes} == {(3, 32, 32)}
    assert {s[1:] for _, s in rec.shapes} == {(6, 32, 32)}


def test_noise_does_not_depend_on_tiling():
    lr, field = image(70, 90), NoiseField(seed=11, channels=4)
    ref = whole(noise_echo, lr, field)
    np.testing.assert_array_equal(ref, nearest_up(field.full(70, 90)[:3]))
    for cfg in (
        TileConfig(tile=16, overlap=4),
        TileConfig(tile=40, overlap=12, batch=1),
        TileConfig(tile=128),
    ):
        np.testing.assert_allclose(upscale_tiled(noise_echo, lr, field, cfg), ref, atol=1e-6, rtol=0)
    other = whole(noise_echo, lr, NoiseField(seed=12, channels=4))
    assert np.abs(other - ref).mean() > 0.5


def hard_cut(fn, lr, tile, overlap):
    """Stitching without blending: each tile's output simply pasted over the previous ones."""
    _, h, w = lr.shape
    out = np.zeros((3, S * h, S * w), dtype=np.float32)
    for y in tile_starts(h, tile, overlap):
        for x in tile_starts(w, tile, overlap):
            zeros = np.zeros((1, 3, tile, tile), np.float32)
            out[:, S * y : S * (y + tile), S * x : S * (x + tile)] = fn(
                lr[None, :, y : y + tile, x : x + tile], zeros
            )[0]
    return out


def test_blending_hides_seams_of_a_model_with_receptive_field():
    lr, field, radius = image(97, 130, seed=1), NoiseField(seed=0, channels=3), 1
    tile, overlap = 32, 8
    ref = whole(box_blur, lr, field)
    out = upscale_tiled(box_blur, lr, field, TileConfig(tile=tile, overlap=overlap))
    hard = hard_cut(box_blur, lr, tile, overlap)

    # Exact wherever no covering tile is within the receptive field of one of its inner edges.
    ys, xs = tile_starts(97, tile, overlap), tile_starts(130, tile, overlap)
    inexact = np.zeros((97, 130), dtype=bool)
    for y in ys:
        for x in xs:
            inner = np.ones((tile, tile), dtype=bool)
            inner[:radius, :] &= y == 0
            inner[tile - radius :, :] &= y + tile == 97
            inner[:, :radius] &= x == 0
            inner[:, tile - radius :] &= x + tile == 130
            inexact[y : y + tile, x : x + tile] |= ~inner
    exact = nearest_up(~inexact)
    assert 0.5 < exact.mean() < 1  # the check covers most pixels, and some seams exist
    np.testing.assert_allclose(out[:, exact], ref[:, exact], atol=1e-6, rtol=0)

    # Near the seams blending keeps the error small; a hard cut is much worse.
    err, hard_err = np.abs(out - ref).max(), np.abs(hard - ref).max()
    assert err < 0.03 and hard_err > 5 * err, (err, hard_err)
    # No visible step: gradients across tile borders stay close to the untiled image's.
    for axis in (1, 2):
        step = np.abs(np.diff(out, axis=axis) - np.diff(ref, axis=axis)).max()
        hard_step = np.abs(np.diff(hard, axis=axis) - np.diff(ref, axis=axis)).max()
        assert step < 0.03 and hard_step > 5 * step, (axis, step, hard_step)


@pytest.mark.parametrize("pad_batch", [False, True])
def test_batches_and_batch_padding(pad_batch):
    lr, field = image(50, 50), NoiseField(seed=0, channels=3)
    rec = Recorder(per_pixel)
    progress = []
    cfg = TileConfig(tile=16, overlap=4, batch=5, pad_batch=pad_batch)  # 4x4 = 16 tiles
    out = upscale_tiled(rec, lr, field, cfg, progress=lambda done, total: progress.append((done, total)))
    batches = [s[0] for s, _ in rec.shapes]
    assert batches == ([5, 5, 5, 5] if pad_batch else [5, 5, 5, 1])
    assert progress == [(5, 16), (10, 16), (15, 16), (16, 16)]
    np.testing.assert_allclose(out, whole(per_pixel, lr, field), atol=1e-6, rtol=0)


def test_tqdm_progress_runs():
    lr = image(20, 20)
    out = upscale_tiled(per_pixel, lr, NoiseField(0, 3), TileConfig(tile=8, overlap=2), progress=True)
    assert out.shape == (3, 80, 80)


def test_read_only_engine_output_is_accepted():
    def read_only(lr, noise):
        sr = per_pixel(lr, noise)
        sr.setflags(write=False)
        return sr

    lr, field = image(30, 30), NoiseField(0, 3)
    np.testing.assert_allclose(
        upscale_tiled(read_only, lr, field, TileConfig(tile=16, overlap=4)),
        whole(per_pixel, lr, field),
        atol=1e-6,
    )


def test_wrong_output_shape_raises_artifact_error():
    def half_scale(lr, noise):
        return np.repeat(np.repeat(lr, 2, axis=2), 2, axis=3)

    with pytest.raises(ArtifactError, match=r"shape 2x3x32x32, expected 2x3x64x64") as info:
        upscale_tiled(half_scale, image(20, 20), NoiseField(0, 3), TileConfig(tile=16, overlap=4, batch=2))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"tile": 0}, "tile"),
        ({"tile": -3}, "tile"),
        ({"overlap": -1}, "overlap"),
        ({"tile": 16, "overlap": 16}, "overlap"),
        ({"batch": 0}, "batch"),
        ({"scale": 0}, "scale"),
    ],
)
def test_bad_config_raises_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=f"`{field}`"):
        TileConfig(**kwargs)


@pytest.mark.parametrize("shape", [(3, 10), (1, 3, 10, 10), (3, 0, 5)])
def test_bad_image_raises_input_error(shape):
    with pytest.raises(InputError, match="`lr`"):
        upscale_tiled(per_pixel, np.zeros(shape, np.float32), NoiseField(0, 3))


def peak_bytes(h: int, w: int, channels: int) -> tuple[int, int]:
    """Peak traced memory of one tiled upscale (numpy reports its buffers to tracemalloc)."""
    lr, field = image(h, w), NoiseField(seed=0, channels=channels, cache_mb=CACHE_MB)
    tracemalloc.start()
    try:
        out = upscale_tiled(per_pixel, lr, field, TileConfig(tile=64, overlap=8, batch=4))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, out.nbytes


@pytest.mark.parametrize("channels", [4, 48])
def test_peak_memory_is_output_buffer_plus_constant(channels):
    small_peak, small_out = peak_bytes(200, 300, channels)
    large_peak, large_out = peak_bytes(800, 1200, channels)
    mb = 2**20
    print(
        f"\nc={channels}: 300x200 LR peak {small_peak / mb:.1f} MiB (output {small_out / mb:.1f} MiB); "
        f"1200x800 LR peak {large_peak / mb:.1f} MiB (output {large_out / mb:.1f} MiB)"
    )
    assert large_out == 3 * 3200 * 4800 * 4
    # Beyond the output: the tile batches and the engine's own temporaries (constant), plus
    # the noise cache (least recently used, at most its budget, whatever the image size).
    block_bytes = channels * 64 * 64 * 4
    budget = ((CACHE_MB << 20) // block_bytes) * block_bytes
    small_blocks = 4 * 5 * block_bytes  # 200x300 LR: 4 x 5 blocks, all cached
    assert small_peak - small_out < 16 * mb + min(small_blocks, budget)
    assert large_peak - large_out < 16 * mb + budget + 2 * mb


def test_fit_tile_shrinks_tiles_to_the_image():
    assert fit_tile(150, 128, 8) == 79 and fit_tile(100, 128, 8) == 100  # two 79-pixel tiles cover 150 at overlap 8
    assert fit_tile(150, 128, 8, multiple=8) == 80
    assert fit_tile(10, 64, 8, multiple=8) == 16  # a short axis: the next multiple up (padded)
    for length in range(20, 400, 13):
        t = fit_tile(length, 64, 8)
        assert t <= 64 and len(tile_starts(length, t, 8)) == len(tile_starts(length, 64, 8))


def test_plan_counts_computed_pixels_overlaps_and_padded_batches():
    plan = plan_tiles(128, 128, TileConfig(tile=64, overlap=8, batch=4))
    assert (plan.tiles, plan.calls, plan.call_batches()) == (9, 3, [4, 4, 1])
    assert plan.computed_pixels == 9 * 64 * 64 and plan.overhead == pytest.approx(2.25)
    padded = plan_tiles(128, 128, TileConfig(tile=64, overlap=8, batch=4, pad_batch=True))
    assert padded.call_batches() == [4, 4, 4] and padded.overhead == pytest.approx(3.0)
    whole = plan_tiles(75, 112, TileConfig(tile=None, overlap=0, batch=1, multiple=8))
    assert (whole.tile_h, whole.tile_w, whole.tiles) == (80, 112, 1) and whole.overhead == pytest.approx(80 / 75)
    fitted = plan_tiles(100, 150, TileConfig(tile=128, overlap=8, batch=2, fit=True))
    assert (fitted.tile_h, fitted.tile_w, fitted.tiles) == (100, 79, 2) and fitted.overhead < 1.06
    assert fitted.to_dict()["computed_lr_pixels"] == 2 * 100 * 79


@pytest.mark.parametrize("h, w", [(100, 150), (37, 64), (16, 200)])
def test_fitted_tiles_equal_the_whole_image_for_a_per_pixel_model(h, w):
    lr, field = image(h, w, seed=4), NoiseField(seed=2, channels=3)
    rec = Recorder(per_pixel)
    tiled = upscale_tiled(rec, lr, field, TileConfig(tile=64, overlap=8, batch=3, fit=True))
    np.testing.assert_allclose(tiled, whole(per_pixel, lr, field), atol=1e-6)
    plan = plan_tiles(h, w, TileConfig(tile=64, overlap=8, batch=3, fit=True))
    assert {s[0][2:] for s in rec.shapes} == {(plan.tile_h, plan.tile_w)} and max(plan.tile_h, plan.tile_w) <= 64
