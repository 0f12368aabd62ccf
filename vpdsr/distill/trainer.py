"""Teacher training and one-step student distillation on Hugging Face accelerate.

The same code runs on one CPU, one GPU or several (DDP through `accelerate launch`), with bf16/fp16
autocast on GPU (`accelerate.mixed_precision`) and gradient accumulation (`<stage>.grad_accum`).
Only the denoiser trains (the autoencoder is frozen; `tiny`'s has no parameters). The parts both
students share (loop, log, EMA, draws, update) are in `vpdsr.distill.stage`; a ResShift teacher's
student is `vpdsr.distill.resshift_student`.

Exact resume: every random draw of step k (crops, degradation, t, noise, the teacher's sampling
noise) comes from generators seeded by (seed, stage, k), and the checkpoint holds the modules,
EMA, optimizers, schedulers, torch RNG states and the step (vpdsr.distill.state, no pickle).

Run directory of a stage (OUT/teacher or OUT/student):
    config.yaml     the resolved config (with `disabled_terms`)
    log.csv         one row per `log_every` steps: each loss term, the learning rate, seconds
    checkpoint/     the latest training state (atomic)
    model/          the trained model, loadable with vpdsr.models.from_pretrained
    eval.json/.md   PSNR/SSIM-Y and PIQE on held-out photos and crops (bicubic, teacher, student)
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from vpdsr.distill import draw_worker
from vpdsr.distill.config import DistillConfig
from vpdsr.distill.data import CropDataset, step_generator
from vpdsr.distill.draw_worker import DrawSpec, StepDraws
from vpdsr.distill.evaluate import evaluate_run
from vpdsr.distill.stage import (  # noqa: F401 (re-exported: callers import them from here)
    EMA,
    LOG_COLUMNS,
    CsvLog,
    StageResult,
    StudentDraw,
    StudentParts,
    TeacherDraw,
    _clip,
    _final_model,
    _name_after_preset,
    _save_model,
    choose_threads,
    draw_indices,
    family_name,
    lr_lambda,
    make_accelerator,
    make_optimizer,
    probe_step,
    resolve_model_dir,
    run_loop,
    setup_student,
    student_draw,
    student_ess,
    student_update,
)
from vpdsr.errors import ConfigError


def train_teacher(cfg: DistillConfig, out: str | Path, resume: bool = False, progress: bool = True,
                  stop_at: int | None = None) -> StageResult:
    """Train the multi-step teacher with ResShift's loss; writes OUT (see the module docstring)."""
    from vpdsr.distill.losses import resshift_loss
    from vpdsr.models import build

    if cfg.is_resshift():
        raise ConfigError(f"`model.preset` {cfg.model.get('preset')!r} is a ResShift model: vpdsr does not "
                          "train ResShift teachers; convert one (`vpdsr convert resshift`) and pass it as "
                          "`--teacher DIR`")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    scfg = cfg.teacher
    acc = make_accelerator(cfg, scfg.grad_accum)
    torch.manual_seed(cfg.seed)
    model = build(cfg.model_config(), seed=cfg.seed).to(acc.device)
    model.autoencoder.requires_grad_(False)
    data = CropDataset(cfg.data.images, cfg.data.crop_size, cfg.degradation_config(), cfg.seed, cfg.data.augment)
    opt, sched = make_optimizer(model.denoiser.parameters(), scfg.optim, lr_lambda(scfg))
    denoiser, opt = acc.prepare(model.denoiser, opt)
    ema = EMA(acc.unwrap_model(denoiser), scfg.ema.decay) if scfg.ema.enabled else None
    cfg.save(out / "config.yaml")

    choose_threads(cfg, acc, "teacher", out, probe_step(model, denoiser, data, cfg, "teacher", acc.device), progress)
    spec = DrawSpec("teacher", cfg.to_dict(), "", model.training) if draw_worker.wanted(cfg, acc, scfg.steps) else None
    draws = StepDraws(TeacherDraw(cfg, data, model, acc.device), spec, model, scfg.steps,
                      draw_indices(acc, scfg.grad_accum), label="teacher")

    def step_fn(step: int, micro: int) -> dict[str, float]:
        x0, y = draws(step, micro)
        g = step_generator(cfg.seed, "teacher", step, 1000 + micro)
        loss = resshift_loss(lambda x, yy, t: denoiser(x, yy, t, model.schedule.input_scale(t, x)),
                             model.schedule, x0, y, g, scfg.loss)
        acc.backward(loss)
        _clip(acc, denoiser, scfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach())}

    with draws:
        step = run_loop("teacher", cfg, scfg, out, acc, {"denoiser": denoiser}, {"denoiser": opt}, {"denoiser": sched},
                        step_fn, ema, resume, progress, stop_at, {})
    if step < scfg.steps:
        return StageResult(out, None, step, time.perf_counter() - t_start)
    final = _final_model(model, acc.unwrap_model(denoiser), ema)
    model_dir = _save_model(final, out / "model", acc)
    result = None
    if cfg.eval.enabled and acc.is_main_process:
        result = evaluate_run(cfg, out, teacher=final, student=None, device=acc.device)
    return StageResult(out, model_dir, step, time.perf_counter() - t_start, result)


def train_student(cfg: DistillConfig, teacher: str | Path | None, out: str | Path, resume: bool = False,
                  progress: bool = True, stop_at: int | None = None) -> StageResult:
    """Distill the teacher into the one-step student.

    Args:
        teacher: a model directory, a teacher run directory or a shipped checkpoint name; None =
            the config's `student.teacher`.
    """
    from vpdsr.distill.losses import pixel_loss
    from vpdsr.models import build
    from vpdsr.models.checkpoint import load_directory

    teacher = teacher if teacher is not None else cfg.student.teacher
    if teacher is None:
        raise ConfigError("the student stage needs a teacher: `--teacher DIR` or `student.teacher` in the config")
    teacher_dir = resolve_model_dir(teacher)
    family = family_name(teacher_dir)
    if family == "ResShiftSR" or cfg.is_resshift():
        from vpdsr.distill.resshift_student import train_resshift_student

        return train_resshift_student(cfg, teacher_dir, out, resume=resume, progress=progress, stop_at=stop_at)
    if family != "VPDSR":
        raise ConfigError(f"--teacher {teacher_dir}: a {family} model has no multi-step sampler to distil; expected "
                          "a VPDSR teacher (e.g. tiny-teacher) or a converted ResShift model (ResShiftSR)")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    scfg, lc = cfg.student, cfg.losses
    acc = make_accelerator(cfg, scfg.grad_accum)
    torch.manual_seed(cfg.seed + 1)
    teacher_model = load_directory(teacher_dir).to(acc.device).eval().requires_grad_(False)
    if scfg.init_from:
        model = load_directory(resolve_model_dir(scfg.init_from)).to(acc.device)
    else:
        model = copy.deepcopy(teacher_model) if scfg.init_from_teacher else build(teacher_model.config, seed=cfg.seed)
    parts = setup_student(cfg, acc, model, model.denoiser, out)
    denoiser, opt, disc, d_opt, ess, data = parts.module, parts.opt, parts.disc, parts.d_opt, parts.ess, parts.data
    sched_t = model.schedule
    last_t = sched_t.steps - 1

    choose_threads(cfg, acc, "student", out, probe_step(model, denoiser, data, cfg, "student", acc.device), progress)
    with_teacher = lc.distill > 0
    spec = (DrawSpec("student", cfg.to_dict(), "", model.training, str(teacher_dir) if with_teacher else None)
            if draw_worker.wanted(cfg, acc, scfg.steps) else None)
    draws = StepDraws(StudentDraw(cfg, data, model, teacher_model if with_teacher else None, acc.device), spec, model,
                      scfg.steps, draw_indices(acc, scfg.grad_accum), label="student")

    def step_fn(step: int, micro: int) -> dict[str, float]:
        hr, y, noise, target = draws(step, micro)
        x_T = sched_t.prior_sample(y, noise)
        t = torch.full((y.shape[0],), last_t, dtype=torch.long, device=y.device)
        x0 = denoiser(x_T, y, t, sched_t.input_scale(t, x_T))
        sr = model.autoencoder.decode(x0)  # unclamped: clamping would stop gradients
        terms: dict[str, torch.Tensor] = {}
        if lc.distill > 0:
            if lc.distill_space == "latent":
                terms["distill"] = pixel_loss(x0, target, lc.distill_kind)
            else:
                terms["distill"] = pixel_loss(sr, model.autoencoder.decode(target), lc.distill_kind)
        return student_update(cfg, acc, step, terms, sr, hr, model.config.scale, denoiser, opt, disc, d_opt, ess)

    with draws:
        step = run_loop("student", cfg, scfg, out, acc, parts.trained, parts.optimizers, parts.schedulers, step_fn,
                        parts.ema, resume, progress, stop_at, parts.disabled)
    disabled = parts.disabled
    if step < scfg.steps:
        return StageResult(out, None, step, time.perf_counter() - t_start, disabled_terms=disabled)
    final = _final_model(model, acc.unwrap_model(denoiser), parts.ema)
    model_dir = _save_model(final, out / "model", acc)
    result = None
    if cfg.eval.enabled and acc.is_main_process:
        result = evaluate_run(cfg, out, teacher=teacher_model, student=final, device=acc.device)
    return StageResult(out, model_dir, step, time.perf_counter() - t_start, result, disabled)
