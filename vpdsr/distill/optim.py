"""Optimisation of a training stage: AdamW with warm-up then cosine (or constant) decay, gradient
clipping, and an exponential moving average of the trained weights."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vpdsr.distill.config import StageConfig


def lr_lambda(scfg: StageConfig) -> Callable[[int], float]:
    """The learning-rate factor of optimizer step `step` (LambdaLR): linear warm-up, then cosine or constant."""
    o, total = scfg.optim, max(1, scfg.steps)

    def f(step: int) -> float:
        if o.warmup_steps and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        p = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))

    return f


def make_optimizer(params, optim_cfg, lam: Callable[[int], float]):
    """(AdamW over `params` with `optim_cfg`'s settings, its LambdaLR scheduler)."""
    opt = torch.optim.AdamW(params, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), weight_decay=optim_cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lam)


def clip_gradients(acc, module: torch.nn.Module, max_norm: float) -> None:
    """Clip `module`'s gradient norm to `max_norm` (0: off) once the accumulated micro-batches are in."""
    if max_norm > 0 and acc.sync_gradients:
        acc.clip_grad_norm_(module.parameters(), max_norm)


class EMA:
    """EMA of a module's floating-point parameters (decay warms up as (1+n)/(10+n), capped at `decay`)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The shadow weights as checkpoint tensors ("ema.<name>")."""
        return {f"ema.{k}": v for k, v in self.shadow.items()}

    def restore(self, tensors: dict[str, torch.Tensor], updates: int, device) -> None:
        """Back to a checkpoint's state (`tensors` as `tensors()` wrote them)."""
        self.shadow = {k[len("ema."):]: v.to(device) for k, v in tensors.items() if k.startswith("ema.")}
        self.updates = updates
