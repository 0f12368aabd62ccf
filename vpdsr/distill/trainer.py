"""The two training stages on Hugging Face accelerate: the multi-step teacher and the one-step student.

The same code runs on one CPU, one GPU or several (DDP through `accelerate launch`), with bf16/fp16
autocast on GPU (`accelerate.mixed_precision`) and gradient accumulation (`<stage>.grad_accum`).
Only the denoiser trains (the autoencoder is frozen; `tiny`'s has no parameters). The teacher is
trained here; the student, from any teacher into any student family, in vpdsr.distill.student. Both
run the same loop (vpdsr.distill.loop) and write the same run directory (vpdsr.distill.records).

Exact resume: every random draw of step k (crops, degradation, t, noise, the teacher's sampling
noise) comes from generators seeded by (seed, stage, k), and the checkpoint holds the modules,
EMA, optimizers, schedulers, torch RNG states and the step (vpdsr.distill.state, no pickle).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from vpdsr.distill import draw_worker
from vpdsr.distill.config import DistillConfig
from vpdsr.distill.data import CropDataset, step_generator
from vpdsr.distill.loop import Loop, draw_indices, make_accelerator, run_loop
from vpdsr.distill.optim import EMA, clip_gradients, lr_lambda, make_optimizer
from vpdsr.distill.records import StageResult, final_weights, save_model
from vpdsr.distill.student import train_student
from vpdsr.errors import ConfigError

__all__ = ["StageResult", "TeacherDraw", "train_student", "train_teacher"]


class TeacherDraw:
    """A teacher step's draw (vpdsr.distill.draw_worker): the HR latent x0 and LR latent y of batch (step, micro)."""

    def __init__(self, cfg: DistillConfig, data: CropDataset, model, device):
        self.batch_size, self.data, self.model, self.device = cfg.data.batch_size, data, model, device

    @torch.no_grad()
    def __call__(self, step: int, micro: int):
        batch = self.data.batch(step, micro, self.batch_size, "teacher")
        hr, lr = batch.hr.to(self.device), batch.lr.to(self.device)
        return self.model.autoencoder.encode(hr), self.model.encode(lr)


def train_teacher(cfg: DistillConfig, out: str | Path, resume: bool = False, progress: bool = True,
                  stop_at: int | None = None) -> StageResult:
    """Train the multi-step teacher with ResShift's loss; writes OUT (see vpdsr.distill.records)."""
    from vpdsr.distill.evaluate import evaluate_run
    from vpdsr.distill.losses import resshift_loss
    from vpdsr.distill.students import VPDSRStudent, one_step_probe
    from vpdsr.distill.threads import choose_threads
    from vpdsr.models import build

    if cfg.is_resshift():
        raise ConfigError(f"`model.preset` {cfg.model.get('preset')!r} is a ResShift model: vpdsr does not train "
                          "ResShift teachers; convert one (`vpdsr convert resshift`) and pass it as `--teacher DIR`")
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

    choose_threads(cfg, acc, "teacher", out,
                   one_step_probe(VPDSRStudent(model), denoiser, data, cfg.data.batch_size, "teacher", acc.device),
                   progress)
    wanted = draw_worker.wanted(cfg, acc, scfg.steps)
    spec = draw_worker.DrawSpec("teacher", cfg.to_dict(), "", model.training) if wanted else None
    draws = draw_worker.StepDraws(TeacherDraw(cfg, data, model, acc.device), spec, model, scfg.steps,
                                  draw_indices(acc, scfg.grad_accum), label="teacher")

    def step_fn(step: int, micro: int) -> dict[str, float]:
        x0, y = draws(step, micro)
        g = step_generator(cfg.seed, "teacher", step, 1000 + micro)
        loss = resshift_loss(lambda x, yy, t: denoiser(x, yy, t, model.schedule.input_scale(t, x)),
                             model.schedule, x0, y, g, scfg.loss)
        acc.backward(loss)
        clip_gradients(acc, denoiser, scfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach())}

    with draws:
        step = run_loop(Loop("teacher", scfg, out, acc, {"denoiser": denoiser}, {"denoiser": opt},
                             {"denoiser": sched}, step_fn, ema), resume, progress, stop_at)
    if step < scfg.steps:
        return StageResult(out, None, step, time.perf_counter() - t_start)
    final = VPDSRStudent(model).final(final_weights(acc.unwrap_model(denoiser), ema))
    model_dir = save_model(final, out / "model", acc)
    result = None
    if cfg.eval.enabled and acc.is_main_process:
        result = evaluate_run(cfg, out, teacher=final, student=None, device=acc.device)
    return StageResult(out, model_dir, step, time.perf_counter() - t_start, result)
