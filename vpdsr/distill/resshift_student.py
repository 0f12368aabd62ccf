"""A one-step student of a converted ResShift teacher (SinSR's recipe with the VPD-SR terms): the
ResShift family's part of the one student loop (vpdsr.distill.student).

`vpdsr distill student --teacher DIR` distils this way when DIR is a ResShiftSR model directory (the
output of `vpdsr convert resshift`, or any saved ResShift-family model) and the config's `model.preset`
is the same network (configs/resshift.yaml, configs/resshift-tiny.yaml).

The student is the teacher's own network (SinSR initialises it from ResShift's weights) run once at
t = T-1 from x_T = y + kappa sqrt(eta_T) noise: exactly `ResShiftSR.forward`. One training step:

    y      = E(bicubic_x4(lr)) * scale_factor; noise ~ N(0, I), seeded by (seed, step)
    target = the teacher's T-step sample from the same x_T (`resshift.teacher_noise`: with the
             posterior's noise at every step, or posterior means only)
    x0     = the student's UNet at T-1;  sr = D(x0) through the codebook (`resshift.pixel_decode`)
    loss   = distill(x0, target) [+ gt_latent |x0 - E(hr)|^2] + recon/HFP/grid/ESS/adversarial on sr vs hr

Only the UNet trains; the VQGAN stays the teacher's (frozen). The saved model is an ordinary ResShiftSR
directory (config.json is the teacher's config): `from_pretrained`, `vpdsr export` and `vpdsr bench`
take it.

Not here: SinSR's consistency-preserving loss needs the teacher's deterministic ODE sampler and a
learned inverse (`learn_xT`); the targets here come from ResShift's own posterior sampler.
"""
from __future__ import annotations

from pathlib import Path

import torch

from vpdsr.distill.config import DistillConfig
from vpdsr.distill.losses import pixel_loss
from vpdsr.distill.students import StudentBatch, StudentNet
from vpdsr.errors import ConfigError

FAMILY = "ResShiftSR"
PIXEL_TERMS = ("recon", "hfp", "grid", "ess", "adv")


# ----------------------------------------------------------------------------- checks

def check_teacher(cfg: DistillConfig, teacher_dir: Path) -> None:
    """That `teacher_dir` holds a ResShift model and that the config's `model` section describes the
    same network and schedule (one-line ConfigError otherwise); reads config.json only."""
    from vpdsr.distill.teachers import family_name
    from vpdsr.models.checkpoint import load_config

    family = family_name(teacher_dir)
    if family != FAMILY:
        raise ConfigError(f"--teacher {teacher_dir} is a {family} model, but config `model.preset` "
                          f"{cfg.model.get('preset')!r} is a ResShift model: give a converted ResShift directory "
                          "(`vpdsr convert resshift`)")
    tcfg = load_config(teacher_dir)
    if not cfg.is_resshift():
        raise ConfigError(f"--teacher {teacher_dir} is a ResShift model ({tcfg.preset}), but config `model.preset` "
                          f"{cfg.model.get('preset')!r} is not: use a ResShift config (configs/resshift.yaml, "
                          "configs/resshift-tiny.yaml) whose `model.preset` names the teacher's network")
    mismatch = first_difference(cfg.model_config().to_dict(), tcfg.to_dict())
    if mismatch:
        raise ConfigError(f"config `model` (preset {cfg.model.get('preset')!r}) contradicts the teacher {teacher_dir} "
                          f"({tcfg.preset}): {mismatch}")


def first_difference(mine: dict, theirs: dict) -> str | None:
    """'`section.field` X (config) vs Y (teacher)' for the first field of the network sections that differs."""
    for section in ("denoiser", "autoencoder", "diffusion"):
        a, b = mine.get(section, {}), theirs.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return f"`{section}.{key}` {a.get(key)!r} (config) vs {b.get(key)!r} (teacher)"
    return None


def check_init_from(model, teacher) -> None:
    """`student.init_from` must be the teacher's network (same family and sections)."""
    other = model.config.to_dict() if hasattr(model.config, "to_dict") else {}
    same_family = other.get("_class_name") == FAMILY
    mismatch = first_difference(other, teacher.config.to_dict()) if same_family else "another family"
    if mismatch:
        raise ConfigError(f"`student.init_from` is not the teacher's network: {mismatch}")


# ----------------------------------------------------------------------------- one step

def teacher_target(teacher, y: torch.Tensor, noise: torch.Tensor, lr: torch.Tensor, generator: torch.Generator,
                   mode: str) -> torch.Tensor:
    """The teacher's T-step latent from x_T = y + kappa sqrt(eta_T) noise (`resshift.teacher_noise`)."""
    if mode == "sampled":
        return teacher.teacher_sample_latent(y, noise, lr, generator)
    d = teacher.diffusion
    x = d.prior_sample(y, noise)
    for t in reversed(range(d.steps)):  # posterior means: at t = 0 the mean is x0_hat itself
        x, _ = d.posterior(x, teacher.denoise(x, y, t, lr), t)
    return x


def student_x0(unet, model, y: torch.Tensor, noise: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """`model.student_step` through `unet` (the accelerate-prepared module, so DDP sees the call)."""
    d = model.diffusion
    t = d.steps - 1
    lq = model.to_lq(lr) if model.cond_lq else None
    out = unet(d.scale_input(d.prior_sample(y, noise), t), d.network_timestep(t, y.shape[0], y.device), lq)
    return d.to_xstart(out, y)


def decode_for_loss(model, x0: torch.Tensor, mode: str) -> torch.Tensor:
    """sr in ~[0, 1], unclamped (clamping would stop gradients), with gradients through the decoder.

    straight_through: the forward pass snaps to the codebook as the deployed model does; the backward
    pass treats the lookup as the identity. unquantized: the raw latent is decoded.
    """
    ae = model.autoencoder
    z = x0 / model.config.diffusion.scale_factor
    if mode == "straight_through" and ae.cfg.quantize:
        z = z + (ae.quantize(z) - z).detach()
    return (ae.decode(z, quantize=False) + 1.0) * 0.5


class ResShiftStudent(StudentNet):
    """ResShift's Swin-UNet as the one-step student (only the UNet trains)."""

    def __init__(self, model, cfg: DistillConfig):
        super().__init__(model, model.unet)
        self.rc = cfg.resshift
        self.extra_weights = {"gt_latent": self.rc.gt_latent}

    def gt(self, hr: torch.Tensor) -> torch.Tensor | None:
        if self.rc.gt_latent <= 0:
            return None
        return self.model.autoencoder.encode(self.model.to_lq(hr)) * self.model.config.diffusion.scale_factor

    def needs_pixels(self, lc, ess) -> bool:
        return (lc.distill > 0 and lc.distill_space == "pixel") or any(
            (ess is not None) if term == "ess" else getattr(lc, term) > 0 for term in PIXEL_TERMS)

    def forward(self, module, batch: StudentBatch, pixels: bool = True):
        x0 = student_x0(module, self.model, batch.y, batch.noise, batch.lr)
        return (decode_for_loss(self.model, x0, self.rc.pixel_decode) if pixels else None), x0

    def distill_terms(self, lc, sr, x0, batch: StudentBatch, target_space: str) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        m, target = self.model, batch.target
        if lc.distill > 0:
            if lc.distill_space == "latent":
                if target_space == "pixel":
                    with torch.no_grad():
                        target = m.autoencoder.encode(m.to_lq(target)) * m.config.diffusion.scale_factor
                terms["distill"] = pixel_loss(x0, target, lc.distill_kind)
            else:
                terms["distill"] = pixel_loss(sr, m.decode(target) if target_space == "latent" else target,
                                              lc.distill_kind)
        if batch.gt is not None:
            terms["gt_latent"] = pixel_loss(x0, batch.gt, "l2")
        return terms

    def trained_part(self, model) -> torch.nn.Module:
        return model.unet
