import math

import pytest
import torch

from vpdsr.errors import ConfigError
from vpdsr.models.schedule import ResShiftSchedule, ScheduleConfig, eta_schedule


@pytest.mark.parametrize("steps", [2, 4, 15])
@pytest.mark.parametrize("power", [0.3, 1.0])
def test_eta_monotone_with_endpoints(steps, power):
    cfg = ScheduleConfig(steps=steps, power=power, eta_start=1e-3, eta_end=0.99)
    etas = eta_schedule(cfg)
    assert etas.shape == (steps,)
    assert torch.all(etas[1:] > etas[:-1])
    assert math.isclose(float(etas[0]), 1e-3, rel_tol=1e-9)
    assert math.isclose(float(etas[-1]), 0.99, rel_tol=1e-9)


def test_resshift_reference_values():
    # ResShift's geometric schedule: sqrt(eta) = sqrt(eta_1) * b0 ** (((t-1)/(T-1))**p * (T-1))
    cfg = ScheduleConfig(steps=15, kappa=2.0, power=0.3, eta_start=0.04**2, eta_end=0.99)
    etas = eta_schedule(cfg).numpy()
    b0 = math.exp(math.log(math.sqrt(0.99) / 0.04) / 14)
    t = 7  # 1-based step 8
    expected = (0.04 * b0 ** ((t / 14) ** 0.3 * 14)) ** 2
    assert math.isclose(etas[t], expected, rel_tol=1e-12)


def test_power_bends_the_schedule():
    lo = eta_schedule(ScheduleConfig(steps=8, power=0.3))
    hi = eta_schedule(ScheduleConfig(steps=8, power=2.0))
    assert torch.all(lo[1:-1] > hi[1:-1])  # smaller p rises faster


def test_q_sample_endpoints_and_posterior():
    s = ResShiftSchedule(ScheduleConfig(steps=4, kappa=0.5))
    x0, y, eps = torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)
    xT = s.q_sample(x0, y, torch.tensor([3]), eps)
    assert torch.allclose(xT, torch.full_like(xT, 0.99))
    mean, std = s.posterior(xT, x0, 0)
    assert std == 0 and torch.equal(mean, x0)
    # the posterior mean lies between x0 and x_t
    mean, std = s.posterior(xT, x0, 3)
    assert 0 < float(mean.mean()) < 0.99 and std > 0


@pytest.mark.parametrize("bad", [dict(steps=0), dict(eta_start=0.5, eta_end=0.4), dict(kappa=0.0)])
def test_bad_schedule(bad):
    with pytest.raises(ConfigError):
        ScheduleConfig(**bad).validate()


# The residual-shift schedule is written twice: vpdsr.models.schedule (our VPDSR family: torch tables,
# a step index per batch element for training, eta_1/eta_T as config fields) and
# vpdsr.models.resshift.schedule (ResShift's reference numbers read exactly as its code reads them:
# float64 numpy tables cast to float32 at each use, respacing, its config keys). The shipped tiny weights
# were trained on the first and ResShift parity is checked on the second, so neither can take the
# other's arithmetic without moving bits; this test keeps the two the same schedule.
@pytest.mark.parametrize("steps", [2, 4, 15])
@pytest.mark.parametrize(("kappa", "power", "min_noise", "etas_end"), [
    (2.0, 0.3, 0.04, 0.99), (1.0, 0.3, 0.2, 0.99), (0.5, 1.0, 0.04, 0.9), (2.0, 2.0, 0.1, 1.0)])
def test_the_two_schedules_agree(steps, kappa, power, min_noise, etas_end):
    import numpy as np

    from vpdsr.models.resshift.configs import DiffusionConfig
    from vpdsr.models.resshift.schedule import ResShiftDiffusion

    rcfg = DiffusionConfig(steps=steps, kappa=kappa, power=power, min_noise_level=min_noise, etas_end=etas_end)
    theirs = ResShiftDiffusion(rcfg)
    start = min(min_noise / kappa, min_noise)  # sqrt(eta_1), as ResShift derives it
    ours = ResShiftSchedule(ScheduleConfig(steps=steps, kappa=kappa, power=power, eta_start=start ** 2,
                                           eta_end=etas_end ** 2))
    np.testing.assert_allclose(ours.etas.numpy(), theirs.etas, rtol=1e-12, atol=0)
    assert np.array_equal(ours.etas.float().numpy(), theirs.etas.astype(np.float32))  # the values the nets see
    g = torch.Generator().manual_seed(steps)
    x_t, x0, y, noise = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(4))
    assert torch.allclose(ours.prior_sample(y, noise), theirs.prior_sample(y, noise), rtol=1e-6, atol=1e-6)
    for t in range(steps):
        tt = torch.full((2,), t)
        assert torch.allclose(ours.q_sample(x0, y, tt, noise), theirs.q_sample(x0, y, t, noise), rtol=1e-6, atol=1e-6)
        assert torch.allclose(x_t * ours.input_scale(tt, x_t), theirs.scale_input(x_t, t), rtol=1e-6, atol=1e-7)
        (m1, s1), (m2, s2) = ours.posterior(x_t, x0, t), theirs.posterior(x_t, x0, t)
        assert torch.allclose(m1, m2, rtol=1e-6, atol=1e-6) and math.isclose(s1, s2, rel_tol=1e-6, abs_tol=1e-9)
