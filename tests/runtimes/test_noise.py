"""NoiseField: deterministic per seed, independent of how it is cropped."""

from __future__ import annotations

import numpy as np
import pytest

from vpdsr.errors import ConfigError
from vpdsr.runtimes.noise import NoiseField


def test_same_seed_same_values_other_seed_differs():
    a = NoiseField(seed=3, channels=4).crop(5, 7, 40, 50)
    b = NoiseField(seed=3, channels=4).crop(5, 7, 40, 50)
    c = NoiseField(seed=4, channels=4).crop(5, 7, 40, 50)
    assert a.dtype == np.float32 and a.shape == (4, 40, 50)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.5


def test_crop_equals_sub_array_of_larger_crop_across_blocks():
    field = NoiseField(seed=1, channels=3, block=16)
    big = field.crop(-20, -9, 70, 60)  # negative positions and several blocks
    for y0, x0, h, w in [(0, 0, 1, 1), (-20, -9, 5, 5), (13, 30, 17, 21), (-4, 7, 33, 2), (49, 50, 1, 1)]:
        # A fresh field too: the result must not depend on what was cropped before.
        for f in (field, NoiseField(seed=1, channels=3, block=16)):
            np.testing.assert_array_equal(
                f.crop(y0, x0, h, w), big[:, y0 + 20 : y0 + 20 + h, x0 + 9 : x0 + 9 + w]
            )
    np.testing.assert_array_equal(field.full(10, 12), big[:, 20:30, 9:21])


def test_cache_does_not_change_values_and_stays_within_its_budget():
    block_bytes = 2 * 8 * 8 * 4
    budget_blocks = (1 << 20) // block_bytes  # 1 MiB of 8x8 blocks of 2 channels: 2048 blocks
    cached = NoiseField(seed=2, channels=2, block=8, cache_mb=1)
    uncached = NoiseField(seed=2, channels=2, block=8, cache_mb=0)
    for y0 in range(0, 64, 12):  # tile rows of 16x16 tiles, visited row by row
        for x0 in range(0, 64, 12):
            np.testing.assert_array_equal(cached.crop(y0, x0, 16, 16), uncached.crop(y0, x0, 16, 16))
    assert len(uncached._cache) == 0
    assert len(cached._cache) == 10 * 10  # every block the tiles touched (up to pixel 75), kept for the next image
    again = cached.crop(0, 0, 64, 64)  # drawn from the cache
    np.testing.assert_array_equal(again, uncached.crop(0, 0, 64, 64))
    big = cached.crop(-400, -400, 520, 520)  # 65 x 65 blocks: more than the budget
    assert len(cached._cache) == budget_blocks
    np.testing.assert_array_equal(big[:, 400:464, 400:464], again)  # the evicted ones come back the same


def test_crop_into_a_given_buffer():
    field = NoiseField(seed=3, channels=2)
    batch = np.zeros((2, 2, 10, 12), np.float32)
    slot = batch[1]
    assert field.crop(4, 5, 10, 12, out=slot) is slot
    np.testing.assert_array_equal(batch[1], field.crop(4, 5, 10, 12))
    with pytest.raises(ConfigError, match="`out`"):
        field.crop(0, 0, 10, 10, out=batch[0])


def test_statistics_are_standard_normal_and_blocks_are_not_repeated():
    field = NoiseField(seed=0, channels=2, block=32)
    x = field.crop(0, 0, 128, 128)
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1.0) < 0.02
    assert not np.array_equal(x[:, :32, :32], x[:, :32, 32:64])
    assert not np.array_equal(x[0], x[1])


def test_channel_prefix_is_shared_across_channel_counts():
    three = NoiseField(seed=5, channels=3).crop(0, 0, 20, 20)
    four = NoiseField(seed=5, channels=4).crop(0, 0, 20, 20)
    np.testing.assert_array_equal(three, four[:3])


@pytest.mark.parametrize(
    "kwargs",
    [{"seed": -1, "channels": 3}, {"seed": 0, "channels": 0}, {"seed": 0, "channels": 3, "block": 0}],
)
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError, match="`(seed|channels|block)`"):
        NoiseField(**kwargs)
