"""ResShiftSR behind the vpdsr model API: sizes, stages, save/load, teacher sampler, presets, schedule."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vpdsr.errors import ConfigError, InputError
from vpdsr.models import from_pretrained, get_preset, load_config, save_pretrained
from vpdsr.models.checkpoint import build
from vpdsr.models.resshift import ResShiftConfig, ResShiftSR
from vpdsr.models.resshift.configs import DiffusionConfig
from vpdsr.models.resshift.schedule import ResShiftDiffusion, kept_timesteps, sqrt_eta_schedule


@pytest.fixture(scope="module")
def tiny() -> ResShiftSR:
    torch.manual_seed(0)
    model = build(get_preset("resshift-tiny"), seed=3).eval()
    for p in model.unet.parameters():  # the reference init zeroes every ResBlock's last conv: undo it
        p.data.add_(0.05 * torch.randn_like(p))
    return model


def meta_model(name: str) -> ResShiftSR:
    with torch.device("meta"):
        return ResShiftSR(get_preset(name))


def test_forward_shape_range_and_size_rule(tiny):
    lr = torch.rand(2, 3, 16, 32)
    with torch.no_grad():
        sr = tiny(lr, tiny.make_noise(lr))
    assert sr.shape == (2, 3, 64, 128)
    assert float(sr.min()) >= 0.0 and float(sr.max()) <= 1.0 and float(sr.std()) > 0.01
    assert tiny.size_multiple == 16 and tiny.input_names == ("lr", "noise") and tiny.latent_channels == 3
    with pytest.raises(InputError, match=r"LR size 16x20: .*multiples of 16"):
        tiny(torch.rand(1, 3, 16, 20), torch.randn(1, 3, 16, 20))


def test_pad_lr_to_the_size_rule(tiny):
    lr = torch.rand(1, 3, 10, 21)
    padded, hw = tiny.pad_lr(lr)
    assert padded.shape[-2:] == (16, 32) and hw == (10, 21)
    assert torch.equal(padded[..., :10, :21], lr)
    assert torch.equal(padded[..., 10, :21], lr[..., 8, :])  # reflect, as ResShift's sampler pads


@pytest.mark.parametrize("name,multiple", [("resshift-v3", 64), ("sinsr", 64), ("resshift-v1", 64)])
def test_full_size_rule_and_parameter_count(name, multiple):
    model = meta_model(name)
    assert model.size_multiple == multiple
    # 118.6 M in the UNet (OSEDiff's table counts ResShift's trainable part)
    assert round(sum(p.numel() for p in model.unet.parameters()) / 1e6, 1) == 118.6


def test_stages_compose_to_forward(tiny):
    lr = torch.rand(1, 3, 16, 16)
    noise = tiny.make_noise(lr, seed=4)
    st = tiny.stage_modules()
    with torch.no_grad():
        cond = st["encoder"](lr)
        assert cond.shape == (1, tiny.condition_channels, 16, 16) and tiny.condition_channels == 6
        sr = st["decoder"](st["denoiser"](cond, noise))
        torch.testing.assert_close(sr, tiny(lr, noise), atol=1e-5, rtol=0)


def test_save_load_round_trip(tiny, tmp_path):
    save_pretrained(tiny, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["_class_name"] == "ResShiftSR" and cfg["denoiser"]["kind"] == "swin_unet"
    assert cfg["autoencoder"]["kind"] == "ldm_vq" and cfg["diffusion"]["steps"] == 4
    assert isinstance(load_config(tmp_path / "m"), ResShiftConfig)
    back = from_pretrained(tmp_path / "m")
    lr = torch.rand(1, 3, 16, 16)
    noise = tiny.make_noise(lr)
    with torch.no_grad():
        assert torch.equal(back(lr, noise), tiny(lr, noise))


def test_teacher_sampler_steps_and_noise(tiny):
    lr = torch.rand(1, 3, 16, 16)
    noise = tiny.make_noise(lr)
    a = tiny.teacher_sample(lr, noise, generator=torch.Generator().manual_seed(1))
    b = tiny.teacher_sample(lr, noise, generator=torch.Generator().manual_seed(1))
    c = tiny.teacher_sample(lr, noise, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(InputError, match="samples with 4 steps"):
        tiny.teacher_sample(lr, noise, steps=2)


def test_one_step_is_the_teachers_first_prediction(tiny):
    # x0_hat at t = T-1 from x_T: the teacher's first network call is the student's only one
    lr = torch.rand(1, 3, 16, 16)
    noise = tiny.make_noise(lr)
    with torch.no_grad():
        y = tiny.encode(lr)
        x_t = tiny.diffusion.prior_sample(y, noise)
        first = tiny.denoise(x_t, y, tiny.diffusion.steps - 1, lr)
        torch.testing.assert_close(tiny.student_step(y, noise, lr), first, atol=0, rtol=0)


def test_fixed_size_matches_dynamic_masks(tiny):
    lr = torch.rand(1, 3, 32, 16)
    noise = tiny.make_noise(lr)
    with torch.no_grad():
        dynamic = tiny(lr, noise)
        tiny.fix_size((32, 16))
        try:
            assert torch.equal(tiny(lr, noise), dynamic)
        finally:
            tiny.fix_size(None)


def test_exponential_schedule_matches_its_closed_form():
    for steps, low in [(15, 0.04), (4, 0.2)]:
        cfg = DiffusionConfig(steps=steps, min_noise_level=low)
        s = sqrt_eta_schedule(cfg)
        s1, sT = min(low / 2.0, low), 0.99
        closed = s1 * (sT / s1) ** (np.linspace(0, 1, steps) ** 0.3)
        np.testing.assert_allclose(s, closed, rtol=1e-12)
        assert s[0] == pytest.approx(s1) and s[-1] == pytest.approx(0.99) and np.all(np.diff(s) > 0)
    d = ResShiftDiffusion(DiffusionConfig(steps=4, min_noise_level=0.2))
    x = torch.ones(1, 1, 2, 2)
    assert d.posterior(x, x, 0)[1] == 0.0
    # x / sqrt(kappa^2 eta_T + 1)
    assert float(d.scale_input(x, 3)[0, 0, 0, 0]) == pytest.approx(1 / math.sqrt(4 * 0.99 ** 2 + 1), rel=1e-6)


def test_respacing_keeps_original_timesteps():
    assert kept_timesteps(15, 5) == [0, 3, 6, 9, 12]
    d = ResShiftDiffusion(DiffusionConfig(steps=15, timestep_respacing=5))
    full = sqrt_eta_schedule(DiffusionConfig(steps=15))
    assert d.steps == 5 and d.timestep_map == [0, 3, 6, 9, 12]
    np.testing.assert_array_equal(d.sqrt_etas, full[[0, 3, 6, 9, 12]])


def test_presets_and_config_errors():
    v1, v3, s = get_preset("resshift-v1"), get_preset("resshift-v3"), get_preset("sinsr")
    assert (v1.diffusion.steps, v1.diffusion.min_noise_level) == (15, 0.04)
    assert (v3.diffusion.steps, v3.diffusion.min_noise_level) == (4, 0.2)
    assert s.diffusion.etas_start_cap == pytest.approx(math.sqrt(0.001))
    assert v1.denoiser == v3.denoiser == s.denoiser and v1.autoencoder == s.autoencoder
    d = v3.to_dict()
    d["diffusion"]["predict_type"] = "epsilon"
    with pytest.raises(ConfigError, match="predict_type"):
        ResShiftConfig.from_dict(d)
    d = v3.to_dict()
    d["denoiser"]["model_channels"] = 100
    with pytest.raises(ConfigError, match="not divisible by 32"):
        ResShiftConfig.from_dict(d)
    with pytest.raises(ConfigError, match=r"unknown field `denoiser\.bogus`"):
        ResShiftConfig.from_dict({**v3.to_dict(), "denoiser": {**v3.denoiser.to_dict(), "bogus": 1}})
