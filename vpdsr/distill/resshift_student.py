"""Distil a one-step student from a converted ResShift teacher (SinSR's recipe with the VPD-SR terms).

`vpdsr distill student --teacher DIR` lands here when DIR is a ResShiftSR model directory (the output
of `vpdsr convert resshift`, or any saved ResShift-family model) and the config's `model.preset` is
the same network (configs/resshift.yaml, configs/resshift-tiny.yaml).

The student is the teacher's own network (SinSR initialises it from ResShift's weights) run once at
t = T-1 from x_T = y + kappa sqrt(eta_T) noise: exactly `ResShiftSR.forward`. One training step:

    y      = E(bicubic_x4(lr)) * scale_factor; noise ~ N(0, I), seeded by (seed, step)
    target = the teacher's T-step sample from the same x_T (`resshift.teacher_noise`: with the
             posterior's noise at every step, or posterior means only)
    x0     = the student's UNet at T-1;  sr = D(x0) through the codebook (`resshift.pixel_decode`)
    loss   = distill(x0, target) [+ gt_latent |x0 - E(hr)|^2] + recon/HFP/grid/ESS/adversarial on sr vs hr

Only the UNet trains; the VQGAN stays the teacher's (frozen). Checkpoints, exact resume, EMA, the
log and the held-out evaluation are the VPDSR student's (vpdsr.distill.trainer). The saved model
is an ordinary ResShiftSR directory (config.json is the teacher's config): `from_pretrained`,
`vpdsr export` and `vpdsr bench` take it.

Not here: SinSR's consistency-preserving loss needs the teacher's deterministic ODE sampler and a
learned inverse (`learn_xT`); the targets here come from ResShift's own posterior sampler.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from vpdsr.distill.config import DistillConfig
from vpdsr.distill.data import CropDataset
from vpdsr.errors import ConfigError

FAMILY = "ResShiftSR"
PIXEL_TERMS = ("recon", "hfp", "grid", "ess", "adv")


# ----------------------------------------------------------------------------- checks

def load_teacher(cfg: DistillConfig, teacher_dir: Path):
    """The teacher of `teacher_dir`, after checking that it is a ResShift model and that the config's
    `model` section describes the same network and schedule (one-line ConfigError otherwise)."""
    from vpdsr.distill.stage import family_name
    from vpdsr.models.checkpoint import load_config, load_directory

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
    return load_directory(teacher_dir)


def first_difference(mine: dict, theirs: dict) -> str | None:
    """'`section.field` X (config) vs Y (teacher)' for the first field of the network sections that differs."""
    for section in ("denoiser", "autoencoder", "diffusion"):
        a, b = mine.get(section, {}), theirs.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return f"`{section}.{key}` {a.get(key)!r} (config) vs {b.get(key)!r} (teacher)"
    return None


def init_student(cfg: DistillConfig, teacher):
    """The student before training: `student.init_from` (same network), the teacher's weights
    (SinSR's init, the default) or a fresh seeded init (`init_from_teacher: false`)."""
    from vpdsr.distill.stage import resolve_model_dir
    from vpdsr.models import build
    from vpdsr.models.checkpoint import load_directory

    sc = cfg.student
    if not sc.init_from:
        return copy.deepcopy(teacher) if sc.init_from_teacher else build(teacher.config, seed=cfg.seed)
    src = resolve_model_dir(sc.init_from)
    model = load_directory(src)
    other = model.config.to_dict() if hasattr(model.config, "to_dict") else {}
    same_family = other.get("_class_name") == FAMILY
    mismatch = first_difference(other, teacher.config.to_dict()) if same_family else "another family"
    if mismatch:
        raise ConfigError(f"`student.init_from` {src} is not the teacher's network: {mismatch}")
    return model


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


def needs_pixels(cfg: DistillConfig, ess) -> bool:
    lc = cfg.losses
    return (lc.distill > 0 and lc.distill_space == "pixel") or any(
        (ess is not None) if term == "ess" else getattr(lc, term) > 0 for term in PIXEL_TERMS)


def probe(model, unet, data: CropDataset, cfg: DistillConfig, device):
    """One forward + backward pass of the student on the first batch (for `num_threads: auto`); no state changes."""
    batch = data.batch(1, 0, cfg.data.batch_size, "student")
    lr, hr = batch.lr.to(device), batch.hr.to(device)
    params = [p for p in unet.parameters() if p.requires_grad]

    def step() -> None:
        with torch.no_grad():
            y = model.encode(lr)
        sr = decode_for_loss(model, student_x0(unet, model, y, torch.zeros_like(y), lr), cfg.resshift.pixel_decode)
        (sr - hr).abs().mean().backward()
        for p in params:
            p.grad = None

    return step


# ----------------------------------------------------------------------------- the stage

def train_resshift_student(cfg: DistillConfig, teacher_dir: Path, out: str | Path, resume: bool = False,
                           progress: bool = True, stop_at: int | None = None):
    """Distil the ResShift teacher in `teacher_dir` into a one-step ResShiftSR student; writes OUT as
    the VPDSR student stage does (config.yaml, log.csv, checkpoint/, model/, eval.json/.md)."""
    from vpdsr.distill.evaluate import evaluate_run
    from vpdsr.distill.losses import pixel_loss
    from vpdsr.distill.stage import (
        StageResult,
        _save_model,
        choose_threads,
        make_accelerator,
        run_loop,
        setup_student,
        student_draw,
        student_update,
    )

    teacher_model = load_teacher(cfg, Path(teacher_dir))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    scfg, lc, rc = cfg.student, cfg.losses, cfg.resshift
    acc = make_accelerator(cfg, scfg.grad_accum)
    torch.manual_seed(cfg.seed + 1)
    teacher_model = teacher_model.to(acc.device).eval().requires_grad_(False)
    model = init_student(cfg, teacher_model).to(acc.device)
    parts = setup_student(cfg, acc, model, model.unet, out)
    unet, opt, disc, d_opt, ess, data = parts.module, parts.opt, parts.disc, parts.d_opt, parts.ess, parts.data
    pixels = needs_pixels(cfg, ess)
    scale_factor = model.config.diffusion.scale_factor

    choose_threads(cfg, acc, "student", out, probe(model, unet, data, cfg, acc.device), progress)

    def step_fn(step: int, micro: int) -> dict[str, float]:
        hr, lr, y, noise, tg = student_draw(cfg, data, acc.device, model, step, micro)
        with torch.no_grad():
            target = teacher_target(teacher_model, y, noise, lr, tg, rc.teacher_noise) if lc.distill > 0 else None
            gt = model.autoencoder.encode(model.to_lq(hr)) * scale_factor if rc.gt_latent > 0 else None
        x0 = student_x0(unet, model, y, noise, lr)
        sr = decode_for_loss(model, x0, rc.pixel_decode) if pixels else None
        terms: dict[str, torch.Tensor] = {}
        if lc.distill > 0:
            if lc.distill_space == "latent":
                terms["distill"] = pixel_loss(x0, target, lc.distill_kind)
            else:
                terms["distill"] = pixel_loss(sr, model.decode(target), lc.distill_kind)
        if gt is not None:
            terms["gt_latent"] = pixel_loss(x0, gt, "l2")
        return student_update(cfg, acc, step, terms, sr, hr, model.config.scale, unet, opt, disc, d_opt, ess,
                              weights={"gt_latent": rc.gt_latent})

    step = run_loop("student", cfg, scfg, out, acc, parts.trained, parts.optimizers, parts.schedulers, step_fn,
                    parts.ema, resume, progress, stop_at, parts.disabled)
    ema, disabled = parts.ema, parts.disabled
    if step < scfg.steps:
        return StageResult(out, None, step, time.perf_counter() - t_start, disabled_terms=disabled)
    final = copy.deepcopy(model).cpu().eval()
    final.unet.load_state_dict(ema.shadow if ema is not None else acc.unwrap_model(unet).state_dict())
    final.requires_grad_(False)
    model_dir = _save_model(final, out / "model", acc)
    result = None
    if cfg.eval.enabled and acc.is_main_process:
        result = evaluate_run(cfg, out, teacher=teacher_model, student=final, device=acc.device)
    return StageResult(out, model_dir, step, time.perf_counter() - t_start, result, disabled)
