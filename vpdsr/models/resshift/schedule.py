"""ResShift's residual-shifting diffusion, exactly as its reference computes it (float64 tables).

Forward process at 0-based step t: x_t = x0 + eta_t (y - x0) + kappa sqrt(eta_t) eps.
The `exponential` schedule: with s_1 = min(min_noise_level / kappa, min_noise_level) and
s_T = etas_end (both are sqrt(eta)),
    sqrt(eta_t) = s_1 * b ** (((t / (T-1)) ** power) * (T-1)),   b = (s_T / s_1) ** (1 / (T-1)),
so eta_T = etas_end ** 2 (0.9801 for the realsr configs). Sampling draws x_T = y + kappa sqrt(eta_T) noise
and steps through the posterior q(x_{t-1} | x_t, x0_hat); the network sees
x_t / sqrt(kappa^2 eta_t + 1) (`normalize_input` with `latent_flag`). `timestep_respacing` keeps
k of the T steps (ResShift's `space_timesteps`) and feeds the network the original step index.

The same schedule is written for our own family in vpdsr.models.schedule (see its docstring for why
both exist); tests/models/test_schedule.py::test_the_two_schedules_agree checks that they agree.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from vpdsr.models.resshift.configs import DiffusionConfig


def sqrt_eta_schedule(cfg: DiffusionConfig) -> np.ndarray:
    """sqrt(eta_1..eta_T) of the full (un-respaced) process, float64."""
    T = cfg.steps
    start = min(cfg.min_noise_level / cfg.kappa, cfg.min_noise_level)
    if cfg.etas_start_cap is not None:
        start = min(start, cfg.etas_start_cap)
    increaser = math.exp(1 / (T - 1) * math.log(cfg.etas_end / start))
    power_timestep = np.linspace(0, 1, T, endpoint=True) ** cfg.power * (T - 1)
    return np.power(np.full(T, increaser), power_timestep) * start


def kept_timesteps(steps: int, respacing: int | None) -> list[int]:
    """The original step indices a respaced sampler keeps (all of them without respacing)."""
    k = steps if respacing is None else respacing
    return sorted({int((steps / k) * x) for x in range(k)})


class ResShiftDiffusion:
    """The tables and formulas of one (possibly respaced) ResShift process.

    Attributes:
        steps: the number of sampling steps (T, or the respaced count).
        timestep_map: the network's timestep input for each sampling step.
    """

    def __init__(self, cfg: DiffusionConfig):
        self.cfg = cfg.validate()
        self.timestep_map = kept_timesteps(cfg.steps, cfg.timestep_respacing)
        self.sqrt_etas = sqrt_eta_schedule(cfg)[self.timestep_map]
        self.etas = self.sqrt_etas ** 2
        self.steps = len(self.etas)
        self.kappa = cfg.kappa
        etas_prev = np.append(0.0, self.etas[:-1])
        alpha = self.etas - etas_prev
        self.posterior_mean_coef1 = etas_prev / self.etas
        self.posterior_mean_coef2 = alpha / self.etas
        variance = cfg.kappa ** 2 * etas_prev / self.etas * alpha
        # ResShift takes exp(0.5 * log(var)) with var[0] replaced by var[1] (never used: no noise at t=0)
        self.posterior_std = np.sqrt(np.append(variance[1], variance[1:]))

    def _at(self, table: np.ndarray, t: int) -> float:
        # ResShift reads its float64 tables into float32 tensors (`_extract_into_tensor(...).float()`)
        return float(np.float32(table[t]))

    def prior_sample(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_T = y + kappa sqrt(eta_T) noise."""
        return y + self._at(self.kappa * self.sqrt_etas, self.steps - 1) * noise

    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x0, y) at 0-based sampling step t."""
        return self._at(self.etas, t) * (y - x0) + x0 + self._at(self.kappa * self.sqrt_etas, t) * noise

    def scale_input(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """What the network sees: x_t / sqrt(eta_t kappa^2 + 1) (or x_t / (3 kappa sqrt(eta_t) + 1) in pixel space)."""
        if not self.cfg.normalize_input:
            return x_t
        if self.cfg.latent_flag:
            std = math.sqrt(np.float32(self.etas[t]) * np.float32(self.kappa ** 2) + np.float32(1.0))
            return x_t / float(np.float32(std))
        return x_t / (self._at(self.sqrt_etas, t) * self.kappa * 3 + 1)

    def network_timestep(self, t: int, batch: int, device: torch.device) -> torch.Tensor:
        return torch.full((batch,), self.timestep_map[t], dtype=torch.long, device=device)

    def to_xstart(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x0_hat from the network's output (`predict_type`)."""
        return output if self.cfg.predict_type == "xstart" else y - output

    def posterior(self, x_t: torch.Tensor, x0: torch.Tensor, t: int) -> tuple[torch.Tensor, float]:
        """Mean and std of q(x_{t-1} | x_t, x0) at 0-based step t (std 0 at t = 0)."""
        mean = self._at(self.posterior_mean_coef1, t) * x_t + self._at(self.posterior_mean_coef2, t) * x0
        return mean, (0.0 if t == 0 else self._at(self.posterior_std, t))
