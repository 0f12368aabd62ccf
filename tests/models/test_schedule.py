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
