"""PSNR / SSIM / Y conversion against values known in closed form."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vpdsr.errors import InputError
from vpdsr.metrics.fidelity import fidelity_scores, psnr, rgb_to_y, ssim


@pytest.fixture
def photo() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()[100:196, 150:246].astype(np.float64) / 255  # 96x96 crop


def test_rgb_to_y_known_values() -> None:
    pixels = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=np.float64)
    expected = np.array([[16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966]]) / 255
    np.testing.assert_allclose(rgb_to_y(pixels), expected, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y((pixels * 255).astype(np.uint8)), expected, atol=1e-12)


def test_psnr_of_constant_offset_is_20db(photo: np.ndarray) -> None:
    base = photo * 0.8  # leave room for the offset
    assert psnr(base + 0.1, base) == pytest.approx(20.0, abs=1e-9)
    # on Y the offset is scaled by (65.481 + 128.553 + 24.966) / 255 = 219/255
    assert psnr(base + 0.1, base, y_channel=True) == pytest.approx(20 - 20 * math.log10(219 / 255), abs=1e-9)


def test_identical_images_psnr_inf_ssim_one(photo: np.ndarray) -> None:
    assert psnr(photo, photo) == math.inf
    assert ssim(photo, photo) == pytest.approx(1.0, abs=1e-12)
    scores = fidelity_scores(photo, photo.copy(), crop_border=4)
    assert scores.psnr == scores.psnr_y == math.inf
    assert scores.ssim_y == pytest.approx(1.0, abs=1e-12)


def test_ssim_uses_wang_settings(photo: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 0.05, photo.shape), 0, 1)
    value = ssim(noisy, photo)
    assert 0.3 < value < 0.99
    wang = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    assert value == pytest.approx(structural_similarity(noisy, photo, data_range=1, channel_axis=-1, **wang))
    # the default (uniform 7x7, sample covariance) settings give another number
    assert value != pytest.approx(structural_similarity(noisy, photo, data_range=1, channel_axis=-1), abs=1e-4)


def test_crop_border_ignores_the_border(photo: np.ndarray) -> None:
    damaged = photo.copy()
    damaged[:4] = 0.0  # only the top 4 rows differ
    assert psnr(damaged, photo) < 30
    assert psnr(damaged, photo, crop_border=4) == math.inf
    assert ssim(damaged, photo, y_channel=True, crop_border=4) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "a, b, kwargs, needle",
    [
        (np.zeros((16, 16, 3)), np.zeros((16, 17, 3)), {}, "same shape"),
        (np.zeros((16, 16)), np.zeros((16, 16)), {}, "HxWx3"),
        (np.zeros((16, 16, 3), dtype=np.int32), np.zeros((16, 16, 3)), {}, "dtype"),
        (np.full((16, 16, 3), np.nan), np.zeros((16, 16, 3)), {}, "NaN"),
        (np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), {"crop_border": 8}, "crop_border"),
    ],
)
def test_bad_input_is_one_line_input_error(a, b, kwargs, needle) -> None:
    with pytest.raises(InputError, match=needle):
        psnr(a, b, **kwargs)


def test_ssim_rejects_images_smaller_than_its_window() -> None:
    with pytest.raises(InputError, match="11x11"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
