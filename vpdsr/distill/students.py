"""Student network families as the one student loop (vpdsr.distill.student) sees them.

A `StudentNet` says, for one family, how a batch's LR becomes the latent the student starts from, how
the trained module makes SR from a drawn batch, and which distillation terms compare it with the
teacher's targets (latent targets of a sampled teacher, pixel targets of any other model). Everything
else - the draws, the VPD-SR pixel terms (recon, HFP, grid, ESS, adversarial), the optimizers, the EMA,
checkpoints and the held-out evaluation - is the loop's, the same for every family.

Families here: VPDSR (our residual-shifting network) and, in vpdsr.distill.resshift_student, ResShift's
own network. A student that is no VPD-SR network (e.g. a fake-quantized copy of the teacher) subclasses
`StudentNet` and passes itself to `train_student(..., student=...)`; its `encode` may return None.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import torch

from vpdsr.distill.losses import pixel_loss


class StudentBatch(NamedTuple):
    """One micro-batch as drawn (in this process or the draw worker); entries a family does not use are None."""

    hr: torch.Tensor  # [B,3,H,W] in [0,1]
    lr: torch.Tensor  # [B,3,H/4,W/4] in [0,1]
    y: torch.Tensor | None  # the student's latent of lr (None for a student without one)
    noise: torch.Tensor | None  # the student's noise input (None for a model without noise)
    target: torch.Tensor | None  # the teacher's target: latent (sampled) or pixels (outputs); None without distill
    gt: torch.Tensor | None = None  # a family's extra target (ResShift: the HR image's latent)


class StudentNet:
    """One student family's part of the loop.

    Attributes:
        model: the whole student (an SRModel), saved at the end; frozen except `module`.
        module: the network that trains.
        extra_weights: weights of family terms that are not `losses` fields ({"gt_latent": ...}).
    """

    extra_weights: dict[str, float] = {}

    def __init__(self, model, module: torch.nn.Module):
        self.model, self.module = model, module

    # -- the draw (no gradients; may run in the draw worker) --------------------------------
    def encode(self, lr: torch.Tensor) -> torch.Tensor | None:
        """The latent the student starts from (y = E(bicubic(lr)) for the diffusion families)."""
        return self.model.encode(lr)

    def noise_shape(self, lr: torch.Tensor, y: torch.Tensor | None) -> tuple | None:
        return self.model.noise_shape(tuple(lr.shape))

    def gt(self, hr: torch.Tensor) -> torch.Tensor | None:
        """A family's extra target drawn with the batch (None: none)."""
        return None

    # -- the step -------------------------------------------------------------------------
    def forward(self, module, batch: StudentBatch, pixels: bool = True) -> tuple[torch.Tensor | None, ...]:
        """(sr in pixels, unclamped so gradients flow, or None when `pixels` is off and the family can
        skip it; the latent output, or None) of the trained `module` (accelerate-prepared) on `batch`."""
        raise NotImplementedError

    def distill_terms(self, lc, sr, x0, batch: StudentBatch, target_space: str) -> dict[str, torch.Tensor]:
        """The terms against the teacher (and the family's own), keyed as logged."""
        raise NotImplementedError

    def needs_pixels(self, lc, ess) -> bool:
        """Whether a step needs sr at all (the VPDSR decode is free; a learned decoder is not)."""
        return True

    def final(self, weights: dict[str, torch.Tensor]):
        """The model to save: a CPU copy with `weights` in the trained module."""
        final = copy.deepcopy(self.model).cpu().eval()
        self.trained_part(final).load_state_dict(weights)
        return final.requires_grad_(False)

    def trained_part(self, model) -> torch.nn.Module:
        """`module`'s counterpart in a copy of `model`."""
        raise NotImplementedError


class VPDSRStudent(StudentNet):
    """Our residual-shifting network, one step at t = T-1 from x_T = y + kappa sqrt(eta_T) noise."""

    def __init__(self, model):
        super().__init__(model, model.denoiser)

    def forward(self, module, batch: StudentBatch, pixels: bool = True):
        sched = self.model.schedule
        x_T = sched.prior_sample(batch.y, batch.noise)
        t = torch.full((batch.y.shape[0],), sched.steps - 1, dtype=torch.long, device=batch.y.device)
        x0 = module(x_T, batch.y, t, sched.input_scale(t, x_T))
        return self.model.autoencoder.decode(x0), x0  # unclamped: clamping would stop gradients

    def distill_terms(self, lc, sr, x0, batch: StudentBatch, target_space: str) -> dict[str, torch.Tensor]:
        if lc.distill <= 0:
            return {}
        ae, target = self.model.autoencoder, batch.target
        if lc.distill_space == "latent":
            if target_space == "pixel":
                with torch.no_grad():
                    target = ae.encode(target)
            return {"distill": pixel_loss(x0, target, lc.distill_kind)}
        return {"distill": pixel_loss(sr, ae.decode(target) if target_space == "latent" else target, lc.distill_kind)}

    def trained_part(self, model) -> torch.nn.Module:
        return model.denoiser


def one_step_probe(net: StudentNet, module, data, batch_size: int, stage: str, device) -> Callable[[], None]:
    """One forward + backward pass of the one-step call on the stage's first batch (for `num_threads:
    auto`); gradients cleared afterwards and nothing else touched (the batch draw is stateless)."""
    batch = data.batch(1, 0, batch_size, stage)
    lr, hr = batch.lr.to(device), batch.hr.to(device)
    params = [p for p in module.parameters() if p.requires_grad]

    def step() -> None:
        with torch.no_grad():
            y = net.encode(lr)
        shape = net.noise_shape(lr, y)
        noise = torch.zeros(shape, device=device) if shape is not None else None
        sr, _ = net.forward(module, StudentBatch(hr, lr, y, noise, None), pixels=True)
        (sr - hr).abs().mean().backward()
        for p in params:
            p.grad = None

    return step
