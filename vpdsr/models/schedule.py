"""ResShift's residual-shifting noise schedule (Yue et al., NeurIPS 2023).

Forward process, t = 1..T (index 0..T-1 in code):
    x_t = x0 + eta_t * (y - x0) + kappa * sqrt(eta_t) * eps
with the "exponential" schedule of ResShift's reference code:
    sqrt(eta_t) = sqrt(eta_1) * b0 ** beta_t,   beta_t = ((t-1)/(T-1)) ** p * (T-1),
    b0 = (sqrt(eta_T)/sqrt(eta_1)) ** (1/(T-1)),
so sqrt(eta) grows geometrically (warped by the power p) from sqrt(eta_1) to sqrt(eta_T).

vpdsr.models.resshift.schedule writes the same schedule a second time, on purpose: that one reproduces
ResShift's reference code number for number (float64 numpy tables read as float32, respacing, its
config keys) for converted checkpoints, while this one serves our own family (torch tables, one step
index per batch element in training) and the shipped tiny weights were trained on its arithmetic.
tests/models/test_schedule.py::test_the_two_schedules_agree keeps them the same schedule.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from vpdsr.errors import ConfigError


@dataclass
class ScheduleConfig:
    """Fields of the schedule; ResShift's defaults are T=15, kappa=2.0, p=0.3, eta_T=0.99.

    Attributes:
        steps: T, the number of diffusion steps the teacher samples with.
        kappa: noise scale kappa.
        power: p, the warp of the geometric schedule.
        eta_start: eta_1 (the smallest shift); ResShift uses min(0.04/kappa, 0.04) ** 2.
        eta_end: eta_T (close to 1: x_T is y plus noise).
    """

    steps: int = 4
    kappa: float = 2.0
    power: float = 0.3
    eta_start: float = 0.0004
    eta_end: float = 0.99

    def validate(self) -> ScheduleConfig:
        if self.steps < 1:
            raise ConfigError(f"`schedule.steps` must be >= 1, got {self.steps}")
        if not 0.0 < self.eta_start < self.eta_end < 1.0 + 1e-9:
            raise ConfigError(
                f"`schedule` needs 0 < eta_start < eta_end <= 1, got {self.eta_start} and {self.eta_end}"
            )
        if self.kappa <= 0 or self.power <= 0:
            raise ConfigError(f"`schedule.kappa` and `schedule.power` must be > 0, got {self.kappa}, {self.power}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class ResShiftSchedule:
    """Precomputed eta_t and the posterior coefficients of q(x_{t-1} | x_t, x0)."""

    def __init__(self, cfg: ScheduleConfig):
        self.cfg = cfg.validate()
        self.etas = eta_schedule(cfg)
        self.kappa = cfg.kappa
        self.steps = cfg.steps
        # Constants of the deploy forward, kept off the host<->device path: a float read from a tensor
        # (a graph break for torch.compile) or a host->device copy on every call (not allowed while a
        # CUDA graph is captured) would stop the GPU runner from compiling or capturing the model.
        self._prior_std = self.kappa * math.sqrt(float(self.etas[-1]))
        self._device_etas: dict[tuple, torch.Tensor] = {}

    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x0, y); `t` holds 0-based step indices, one per batch element."""
        eta = self._per_sample(t, x0)
        return x0 + eta * (y - x0) + self.kappa * eta.sqrt() * eps

    def prior_sample(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_T = y + kappa * sqrt(eta_T) * noise (the student's and the teacher's starting point)."""
        return y + self._prior_std * noise

    def posterior(self, x_t: torch.Tensor, x0: torch.Tensor, t: int) -> tuple[torch.Tensor, float]:
        """Mean and std of q(x_{t-1} | x_t, x0) at 0-based step t (std is 0 at t=0)."""
        if t == 0:
            return x0, 0.0
        eta_t, eta_prev = float(self.etas[t]), float(self.etas[t - 1])
        alpha = eta_t - eta_prev
        mean = (eta_prev / eta_t) * x_t + (alpha / eta_t) * x0
        std = self.kappa * math.sqrt(eta_prev / eta_t * alpha)
        return mean, std

    def input_scale(self, t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """ResShift's input normalisation 1/sqrt(kappa^2 eta_t + 1): keeps x_t's variance near 1."""
        eta = self._per_sample(t, ref)
        return torch.rsqrt(self.kappa**2 * eta + 1.0)

    def _per_sample(self, t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        key = (ref.device, ref.dtype)
        if key not in self._device_etas:  # copied to each device/dtype once, not on every call
            self._device_etas[key] = self.etas.to(device=ref.device, dtype=ref.dtype)
        return self._device_etas[key][t.long()].view(-1, *([1] * (ref.dim() - 1)))


def eta_schedule(cfg: ScheduleConfig) -> torch.Tensor:
    """eta_1..eta_T as a float64 tensor (monotone increasing, endpoints eta_start and eta_end)."""
    T = cfg.steps
    if T == 1:
        return torch.tensor([cfg.eta_end], dtype=torch.float64)
    s0, s1 = math.sqrt(cfg.eta_start), math.sqrt(cfg.eta_end)
    beta = torch.linspace(0, 1, T, dtype=torch.float64) ** cfg.power * (T - 1)
    b0 = (s1 / s0) ** (1.0 / (T - 1))
    return (s0 * b0**beta) ** 2
