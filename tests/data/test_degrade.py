"""Real-ESRGAN degradation: kernels, stages, pipeline determinism and config round trip."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from vpdsr.data.degrade import (
    DegradationConfig,
    OrderConfig,
    add_gaussian_noise,
    add_poisson_noise,
    bicubic_downscale,
    degrade,
    jpeg_compress,
    quantize_8bit,
)
from vpdsr.data.kernels import Draws, bivariate_kernel, circular_lowpass_kernel, random_blur_kernel
from vpdsr.errors import ConfigError, InputError


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth_image(h: int = 64, w: int = 64) -> torch.Tensor:
    """A smooth colour image: gradients and a slow wave, [1, 3, h, w]."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = 0.2 + 0.6 * (0.5 * xx + 0.3 * yy**2 + 0.2 * torch.sin(3 * xx * yy))
    return torch.stack([base, base.flip(0), 1.0 - base])[None]


def _all_off(resize_mode: str = "area") -> DegradationConfig:
    """Every random stage at probability 0 (resize: always keep); only the final downscale runs."""
    off = {"blur_prob": 0.0, "resize_prob": [0, 0, 1], "noise_prob": 0.0, "jpeg_prob": 0.0}
    return DegradationConfig.from_dict({"first": off, "second": off, "final_sinc_prob": 0.0,
                                        "resize_modes": [resize_mode]})


# ---------------------------------------------------------------- kernels

@pytest.mark.parametrize("shape,beta", [("gaussian", 1.0), ("generalized", 0.6), ("generalized", 3.0),
                                        ("plateau", 1.5)])
def test_bivariate_kernels_sum_to_one_and_isotropic_ones_are_symmetric(shape: str, beta: float) -> None:
    k = bivariate_kernel(15, 2.0, 2.0, 0.0, shape, beta)
    assert k.shape == (15, 15)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(k, k.flip(0)) and torch.allclose(k, k.flip(1)) and torch.allclose(k, k.t())
    assert k.argmax().item() == 15 * 7 + 7  # peak in the centre


def test_gaussian_kernel_matches_formula_and_rotation_swaps_axes() -> None:
    k = bivariate_kernel(9, 1.5, 1.5)
    ax = torch.arange(9, dtype=torch.float64) - 4
    expected = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.5**2))
    assert torch.allclose(k, expected / expected.sum())
    wide_x = bivariate_kernel(11, 3.0, 1.0, 0.0)
    assert torch.allclose(bivariate_kernel(11, 3.0, 1.0, math.pi / 2), wide_x.t(), atol=1e-12)
    assert wide_x[5, 5 + 3] > wide_x[5 + 3, 5]  # wider along x (columns)
    # beta = 1 turns the generalized kernel back into the Gaussian.
    assert torch.allclose(bivariate_kernel(11, 2.0, 1.0, 0.3, "generalized", 1.0), bivariate_kernel(11, 2.0, 1.0, 0.3))


def test_sinc_kernel_frequency_response_is_a_disc_of_the_cutoff_radius() -> None:
    scipy_special = pytest.importorskip("scipy.special")
    x = torch.linspace(0.1, 30, 50, dtype=torch.float64)
    assert torch.allclose(torch.special.bessel_j1(x), torch.from_numpy(scipy_special.j1(x.numpy())), atol=1e-10)
    n = 512
    freq = torch.fft.fftfreq(n, dtype=torch.float64) * 2 * math.pi
    fy, fx = torch.meshgrid(freq, freq, indexing="ij")
    radius = (fx**2 + fy**2).sqrt()
    for cutoff in (math.pi / 3, math.pi / 2, 0.8 * math.pi):
        k = circular_lowpass_kernel(cutoff, 21)
        assert k.sum().item() == pytest.approx(1.0, abs=1e-12)
        assert torch.allclose(k, k.t()) and torch.allclose(k, k.flip(0))
        response = torch.fft.fft2(k, s=(n, n)).abs()
        assert response[radius < 0.5 * cutoff].mean() == pytest.approx(1.0, abs=0.1)
        assert response[radius > 1.5 * cutoff].mean() < 0.03
        row = response[0, : n // 2]
        half_power_at = freq[: n // 2][(row < 0.5).nonzero()[0, 0]]
        assert half_power_at.item() == pytest.approx(cutoff, rel=0.06)


def test_random_kernels_are_normalised_odd_and_within_configured_sizes() -> None:
    cfg = DegradationConfig()
    draw = Draws(_gen(0))
    sizes = set()
    for order in (cfg.first, cfg.second):
        for _ in range(200):
            k = random_blur_kernel(order, cfg, draw)
            assert torch.isfinite(k).all()
            assert k.sum().item() == pytest.approx(1.0, abs=1e-9)
            sizes.add(k.shape[0])
    assert sizes <= set(range(7, 22, 2)) and len(sizes) > 4


def test_kernel_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="odd"):
        bivariate_kernel(8, 1.0, 1.0)
    with pytest.raises(ValueError, match="shape"):
        bivariate_kernel(7, 1.0, 1.0, shape="box")
    with pytest.raises(ValueError, match="cutoff"):
        circular_lowpass_kernel(4.0, 7)


# ---------------------------------------------------------------- stages

def test_gaussian_noise_std_matches_sigma_on_a_flat_image() -> None:
    flat = torch.full((1, 3, 128, 128), 0.5)
    noisy = add_gaussian_noise(flat, 10.0, gray=False, generator=_gen(1))
    assert (noisy - flat).std().item() == pytest.approx(10 / 255, rel=0.05)
    assert (noisy - flat).mean().abs().item() < 1e-3
    gray = add_gaussian_noise(flat, 10.0, gray=True, generator=_gen(1))
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert not torch.equal(noisy[:, 0], noisy[:, 1])


def test_poisson_noise_std_follows_shot_noise_and_scale() -> None:
    # 256 distinct levels, so BasicSR's recipe draws counts with 256 photons at full scale.
    ramp = torch.arange(256.0).div(255).repeat(3, 64, 1)[None]
    mid = (ramp > 0.3) & (ramp < 0.7)
    for scale in (1.0, 2.0):
        noise = add_poisson_noise(ramp, scale, gray=False, generator=_gen(2)) - ramp
        normalised = noise[mid] / (ramp[mid] / 256).sqrt()
        assert normalised.std().item() == pytest.approx(scale, rel=0.1)


def test_jpeg_quantises_and_blockiness_grows_as_quality_falls() -> None:
    img = _smooth_image()

    def blockiness(x: torch.Tensor) -> float:
        """Mean jump across 8-px block borders minus the mean jump inside blocks (rows and columns)."""
        total = 0.0
        for d in ((x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs().transpose(-1, -2)):
            border = torch.arange(d.shape[-1]) % 8 == 7
            total += (d[..., border].mean() - d[..., ~border].mean()).item()
        return total / 2

    b95, b50, b10 = (blockiness(jpeg_compress(img, q)) for q in (95.0, 50.0, 10.0))
    assert abs(b95) < 1e-3 < b50 < b10 and b10 > 5e-3
    high = jpeg_compress(img, 95.0)
    assert 0 < (high - img).abs().max() < 0.1


def test_jpeg_accepts_sizes_not_multiple_of_16_and_per_sample_quality() -> None:
    img = _smooth_image(20, 13).repeat(2, 1, 1, 1)
    out = jpeg_compress(img, torch.tensor([95.0, 10.0]))
    assert out.shape == img.shape
    assert (out[1] - img[1]).abs().mean() > (out[0] - img[0]).abs().mean()


# ---------------------------------------------------------------- pipeline

@pytest.mark.parametrize("hw", [(64, 64), (68, 60), (36, 44)])
@pytest.mark.parametrize("mode", ["realesrgan", "bicubic"])
def test_output_shape_range_and_8bit_levels(hw: tuple[int, int], mode: str) -> None:
    hr = torch.rand(3, 3, *hw, generator=_gen(3))
    lr = degrade(hr, DegradationConfig(mode=mode), _gen(4))
    assert lr.shape == (3, 3, hw[0] // 4, hw[1] // 4) and lr.dtype == hr.dtype
    assert lr.min() >= 0 and lr.max() <= 1
    assert torch.equal(lr * 255, (lr * 255).round())


def test_same_seed_same_output_other_seed_other_output_and_samples_differ() -> None:
    hr = _smooth_image().repeat(4, 1, 1, 1)
    cfg = DegradationConfig()
    a, b, c = degrade(hr, cfg, _gen(7)), degrade(hr, cfg, _gen(7)), degrade(hr, cfg, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # per-sample parameters


def test_generator_state_advances_so_consecutive_batches_differ() -> None:
    hr = _smooth_image()
    g = _gen(9)
    first, second = degrade(hr, DegradationConfig(), g), degrade(hr, DegradationConfig(), g)
    assert not torch.equal(first, second)


def test_bicubic_mode_and_disabled_config_are_the_antialiased_bicubic_downscale() -> None:
    hr = torch.rand(2, 3, 64, 48, generator=_gen(10))
    expected = quantize_8bit(F.interpolate(hr, size=(16, 12), mode="bicubic", antialias=True))
    assert torch.equal(degrade(hr, DegradationConfig(mode="bicubic"), _gen(0)), expected)
    assert torch.equal(degrade(hr, DegradationConfig(enabled=False), _gen(0)), expected)
    assert torch.equal(bicubic_downscale(hr, 4), expected)


@pytest.mark.parametrize("resize_mode", ["area", "bicubic"])
def test_stages_at_probability_zero_leave_only_the_final_downscale(resize_mode: str) -> None:
    hr = _smooth_image(64, 68).repeat(2, 1, 1, 1)
    extra = {"align_corners": False} if resize_mode == "bicubic" else {}
    expected = quantize_8bit(F.interpolate(hr, size=(16, 17), mode=resize_mode, **extra))
    assert torch.equal(degrade(hr, _all_off(resize_mode), _gen(11)), expected)


def test_second_order_noise_alone_has_the_configured_std_at_lr_size() -> None:
    cfg = _all_off()
    cfg.second.noise_prob, cfg.second.gaussian_noise_prob, cfg.second.noise_range = 1.0, 1.0, (10.0, 10.0)
    hr = torch.full((2, 3, 256, 256), 0.5)
    lr = degrade(hr, cfg, _gen(12))
    assert (lr - 0.5).std().item() == pytest.approx(10 / 255, rel=0.08)


def test_degradation_strength_orders_as_expected() -> None:
    hr = _smooth_image(128, 128)
    clean = degrade(hr, DegradationConfig(mode="bicubic"), _gen(0))
    errors = [(degrade(hr, DegradationConfig(), _gen(s)) - clean).abs().mean().item() for s in range(4)]
    assert all(0.002 < e < 0.3 for e in errors)


def test_bad_inputs_give_input_errors() -> None:
    cfg, g = DegradationConfig(), _gen(0)
    with pytest.raises(InputError, match=r"\[B, 3, H, W\]"):
        degrade(torch.rand(3, 64, 64), cfg, g)
    with pytest.raises(InputError, match="multiple of the scale 4"):
        degrade(torch.rand(1, 3, 66, 64), cfg, g)
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        degrade(torch.rand(1, 3, 64, 64) * 255, cfg, g)
    with pytest.raises(InputError, match="float"):
        degrade(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), cfg, g)
    with pytest.raises(InputError, match="Generator"):
        degrade(torch.rand(1, 3, 64, 64), cfg, 0)  # type: ignore[arg-type]


@pytest.mark.gpu
def test_cuda_images_with_a_cpu_generator_match_the_cpu_result() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    hr = _smooth_image().repeat(4, 1, 1, 1)
    cpu = degrade(hr, DegradationConfig(), _gen(5))
    gpu = degrade(hr.cuda(), DegradationConfig(), _gen(5))
    assert gpu.device.type == "cuda"
    # Same draws; kernels differ only in float round-off, which can flip a rounding to the next 8-bit level.
    assert (gpu.cpu() - cpu).abs().max() <= 2 / 255 + 1e-6
    cuda_gen = torch.Generator(device="cuda").manual_seed(5)
    again = degrade(hr.cuda(), DegradationConfig(), torch.Generator(device="cuda").manual_seed(5))
    assert torch.equal(degrade(hr.cuda(), DegradationConfig(), cuda_gen), again)


# ---------------------------------------------------------------- config

def test_defaults_are_real_esrgan_x4plus() -> None:
    cfg = DegradationConfig()
    assert cfg.enabled and cfg.mode == "realesrgan" and cfg.scale == 4
    assert cfg.first.kernel_sizes == tuple(range(7, 22, 2))
    assert cfg.first.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    assert (cfg.first.blur_sigma, cfg.second.blur_sigma) == ((0.2, 3.0), (0.2, 1.5))
    assert (cfg.first.resize_prob, cfg.second.resize_prob) == ((0.2, 0.7, 0.1), (0.3, 0.4, 0.3))
    assert (cfg.first.resize_range, cfg.second.resize_range) == ((0.15, 1.5), (0.3, 1.2))
    assert (cfg.first.noise_range, cfg.second.noise_range) == ((1.0, 30.0), (1.0, 25.0))
    assert (cfg.first.poisson_scale_range, cfg.second.poisson_scale_range) == ((0.05, 3.0), (0.05, 2.5))
    assert cfg.first.jpeg_range == cfg.second.jpeg_range == (30.0, 95.0)
    assert (cfg.first.blur_prob, cfg.second.blur_prob, cfg.final_sinc_prob) == (1.0, 0.8, 0.8)


def test_config_round_trips_through_yaml_and_partial_dicts_keep_order_defaults() -> None:
    cfg = DegradationConfig.from_dict({"mode": "realesrgan", "second": {"noise_range": [1, 10]}, "scale": 4})
    assert cfg.second.noise_range == (1.0, 10.0)
    assert cfg.second.blur_sigma == (0.2, 1.5)  # second-order default kept, not the first order's
    text = yaml.safe_dump({"degradation": cfg.to_dict()})
    assert DegradationConfig.from_dict(yaml.safe_load(text)["degradation"]) == cfg
    assert DegradationConfig.from_dict(None) == DegradationConfig()
    assert isinstance(cfg.first, OrderConfig)


@pytest.mark.parametrize("data,match", [
    ({"modee": "bicubic"}, "unknown field"),
    ({"mode": "nearest"}, "degradation.mode"),
    ({"second": {"gray_noise_prob": 1.5}}, r"degradation\.second\.gray_noise_prob"),
    ({"first": {"kernel_sizes": [7, 8]}}, "odd"),
    ({"first": {"kernel_prob": [0.5, 0.5]}}, "kernel_prob"),
    ({"first": {"noise_range": [30, 1]}}, "noise_range"),
    ({"first": {"jpeg_range": [30, 120]}}, "jpeg_range"),
    ({"first": {"resize_range": [1.2, 1.5]}}, "resize_range"),
    ({"first": {"sigma": 1}}, "unknown field"),
    ({"scale": 2.5}, "integer"),
    ({"enabled": "yes"}, "true or false"),
    ({"resize_modes": ["lanczos"]}, "resize_modes"),
])
def test_bad_config_values_give_config_errors(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DegradationConfig.from_dict(data)
