"""The one student loop: any teacher (vpdsr.distill.teachers), any student family (vpdsr.distill.students).

One step of micro-batch (step, micro):

    draw    hr, lr (a crop of the training photos, degraded), y = the student's latent of lr, the noise,
            the teacher's target (sampled from the same x_T, or its cached output on lr); all from
            generators seeded by (seed, step, micro), computed ahead in the draw worker where one runs
    sr, x0  the student's one call on the draw
    loss    distill (vs the teacher) + the family's terms + recon, HFP, grid, ESS, adversarial and
            feature matching vs HR, weighted by `losses`; then the alternating discriminator update

The student starts from `student.init_from`, the teacher's own weights (`init_from_teacher`, when it is
the same network) or a seeded init. What a stage writes is in vpdsr.distill.records.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vpdsr.distill import draw_worker
from vpdsr.distill.config import DistillConfig, StageConfig
from vpdsr.distill.data import CropDataset, step_generator
from vpdsr.distill.loop import Loop, draw_indices, make_accelerator, run_loop
from vpdsr.distill.optim import EMA, clip_gradients, lr_lambda, make_optimizer
from vpdsr.distill.records import StageResult, final_weights, save_model
from vpdsr.distill.students import StudentBatch, StudentNet, VPDSRStudent, one_step_probe
from vpdsr.distill.teachers import OUTPUTS, TeacherPlan, plan_teacher, resolve_model_dir
from vpdsr.errors import ConfigError

log = logging.getLogger(__name__)
DISTILL_RECORD = "distill.json"


def student_net(model, cfg: DistillConfig) -> StudentNet:
    """The StudentNet of a model's family."""
    from vpdsr.models.families import family_of

    family = family_of(model.config).name
    if family == "ResShiftSR":
        from vpdsr.distill.resshift_student import ResShiftStudent

        return ResShiftStudent(model, cfg)
    if family == "VPDSR":
        return VPDSRStudent(model)
    raise ConfigError(f"a {family} model cannot be the student of `vpdsr distill student` (VPDSR or ResShiftSR)")


class StudentDraw:
    """A student step's draw (in this process or vpdsr.distill.draw_worker): a StudentBatch."""

    def __init__(self, cfg: DistillConfig, data, net: StudentNet, teacher, device, with_target: bool):
        self.cfg, self.data, self.net, self.teacher, self.device = cfg, data, net, teacher, device
        self.with_target = with_target

    @torch.no_grad()
    def __call__(self, step: int, micro: int) -> StudentBatch:
        cfg = self.cfg
        batch = self.data.batch(step, micro, cfg.data.batch_size, "student")
        hr, lr = batch.hr.to(self.device), batch.lr.to(self.device)
        g = step_generator(cfg.seed, "student", step, 1000 + micro)
        tg = step_generator(cfg.seed, "student", step, 2000 + micro, device=str(self.device))
        y = self.net.encode(lr)
        shape = self.net.noise_shape(lr, y)
        noise = torch.randn(shape, generator=g).to(y if y is not None else lr) if shape is not None else None
        target = getattr(batch, "target", None)
        if target is not None:
            target = target.to(self.device)
        elif self.with_target:
            target = self.teacher.target(y, noise, lr, tg)
        return StudentBatch(hr, lr, y, noise, target, self.net.gt(hr))


@dataclass
class StudentParts:
    """What `setup_student` prepared: the trained module (accelerate-prepared) and its optimizer, the
    discriminator (None without `losses.adv`), ESS (None when off or skipped), the disabled terms, the
    data and the EMA; `trained`, `optimizers`, `schedulers` are keyed as `run_loop` checkpoints them."""

    module: torch.nn.Module
    opt: torch.optim.Optimizer
    trained: dict
    optimizers: dict
    schedulers: dict
    disc: torch.nn.Module | None
    d_opt: torch.optim.Optimizer | None
    ess: torch.nn.Module | None
    disabled: dict
    data: CropDataset
    ema: EMA | None


def student_ess(cfg: DistillConfig, device):
    """The ESS module (None when `losses.ess` is 0 or its CLIP weights are absent and skipped) and the
    disabled terms {term: reason}, which are also recorded in `cfg.disabled_terms`."""
    from vpdsr.distill.losses import load_ess

    disabled = dict(cfg.disabled_terms)
    ess = None
    if cfg.losses.ess > 0:
        ess, reason = load_ess(cfg.losses.clip_weights, cfg.losses.on_missing_weights, device)
        if reason:
            disabled["ess"] = reason
    cfg.disabled_terms = disabled
    return ess, disabled


def setup_student(cfg: DistillConfig, acc, net: StudentNet, out: Path, data) -> StudentParts:
    """Freeze the student except `net.module`, load ESS, write OUT/config.yaml, and build the optimizer,
    the discriminator (when `losses.adv` > 0) and the EMA of the student stage."""
    from vpdsr.distill.losses import PatchDiscriminator

    scfg, model, module = cfg.student, net.model, net.module
    _name_after_preset(model, cfg)
    model.requires_grad_(False)
    module.requires_grad_(True)
    model.train()
    ess, disabled = student_ess(cfg, acc.device)
    cfg.save(out / "config.yaml")
    data = data() if callable(data) else data
    opt, sched = make_optimizer(module.parameters(), scfg.optim, lr_lambda(scfg))
    trained, optimizers, schedulers = {}, {}, {}
    disc = d_opt = None
    if cfg.losses.adv > 0:
        dc = cfg.discriminator
        disc_module = PatchDiscriminator(dc.channels, dc.layers, dc.spectral_norm).to(acc.device)
        d_opt, d_sched = make_optimizer(disc_module.parameters(), dc.optim,
                                        lr_lambda(StageConfig(steps=scfg.steps, optim=dc.optim)))
        module, opt, disc, d_opt = acc.prepare(module, opt, disc_module, d_opt)
        trained["discriminator"], optimizers["discriminator"], schedulers["discriminator"] = disc, d_opt, d_sched
    else:
        module, opt = acc.prepare(module, opt)
    ema = EMA(acc.unwrap_model(module), scfg.ema.decay) if scfg.ema.enabled else None
    return StudentParts(module, opt, {"denoiser": module, **trained}, {"denoiser": opt, **optimizers},
                        {"denoiser": sched, **schedulers}, disc, d_opt, ess, disabled, data, ema)


# ----------------------------------------------------------------------------- the update

def hr_terms(cfg: DistillConfig, sr: torch.Tensor, hr: torch.Tensor, scale: int, ess) -> dict[str, torch.Tensor]:
    """The pixel-space terms against HR: recon, HFP, grid, ESS (those whose weight is on)."""
    from vpdsr.distill.losses import grid_loss, hfp_loss, pixel_loss

    lc, terms = cfg.losses, {}
    if lc.recon > 0:
        terms["recon"] = pixel_loss(sr, hr, lc.recon_kind)
    if lc.hfp > 0:
        terms["hfp"] = hfp_loss(sr, hr, lc.hfp_levels, lc.hfp_kind, lc.hfp_pool)
    if lc.grid > 0:
        terms["grid"] = grid_loss(sr, hr, scale, lc.grid_pool)
    if ess is not None:
        terms["ess"] = ess(sr.clamp(0, 1), hr)
    return terms


def adversarial_terms(cfg: DistillConfig, acc, step: int, sr: torch.Tensor, hr: torch.Tensor,
                      disc) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The student's adversarial (and feature-matching) terms and their ramped weights; empty before
    `losses.adv_start_step` or without a discriminator."""
    from vpdsr.distill.losses import feature_matching_loss, generator_adv_loss

    lc = cfg.losses
    if disc is None or step <= lc.adv_start_step:
        return {}, {}
    d = acc.unwrap_model(disc)
    d.requires_grad_(False)
    terms = {}
    if lc.feature_match > 0 or lc.adv_loss == "relativistic":
        feats_fake, logits_fake = d.features(sr)
        with torch.no_grad():
            feats_real, logits_real = d.features(hr)
        terms["adv"] = generator_adv_loss(logits_fake, lc.adv_loss, logits_real)
        if lc.feature_match > 0:
            terms["fm"] = feature_matching_loss(feats_fake, feats_real)
    else:  # one pass, as before these options existed (keeps the shipped tiny run's numbers)
        terms["adv"] = generator_adv_loss(disc(sr), lc.adv_loss)
    ramp = min(1.0, (step - lc.adv_start_step) / lc.adv_ramp_steps) if lc.adv_ramp_steps else 1.0
    weights = {"adv": lc.adv * ramp if lc.adv_ramp_steps else lc.adv}
    if "fm" in terms:
        weights["fm"] = lc.feature_match * ramp
    return terms, weights


def student_update(cfg: DistillConfig, acc, step: int, terms: dict, sr: torch.Tensor, hr: torch.Tensor, scale: int,
                   parts: StudentParts, weights: dict[str, float] | None = None) -> dict[str, float]:
    """`terms` (the distillation ones) plus the pixel and adversarial terms against `hr` (HR, or the
    teacher's output with `losses.pixel_reference: teacher`), then the weighted backward pass, the
    optimizer step and the alternating discriminator update. `weights` names the weights of terms that
    are not `losses` fields.

    Returns:
        the logged floats: loss, every term, d_loss when the discriminator trained.
    """
    from vpdsr.distill.losses import discriminator_step

    lc, disc = cfg.losses, parts.disc
    terms.update(hr_terms(cfg, sr, hr, scale, parts.ess))
    weights = {k: (weights or {})[k] if k in (weights or {}) else getattr(lc, k) for k in terms}
    adv, adv_weights = adversarial_terms(cfg, acc, step, sr, hr, disc)
    terms.update(adv)
    weights.update(adv_weights)
    loss = sum(weights[k] * v for k, v in terms.items())
    acc.backward(loss)
    clip_gradients(acc, parts.module, cfg.student.optim.grad_clip)
    parts.opt.step()
    parts.opt.zero_grad(set_to_none=True)
    logged = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
    if disc is not None and step > lc.adv_start_step - cfg.discriminator.lead_steps:
        logged["d_loss"] = float(discriminator_step(disc, parts.d_opt, hr, sr.detach(), lc.adv_loss,
                                                    backward=acc.backward))
    return logged


# ----------------------------------------------------------------------------- the stage

def initial_student(cfg: DistillConfig, plan: TeacherPlan, teacher_model):
    """The student before training: `student.init_from`, a copy of the teacher (`init_from_teacher`, the
    default, when the teacher is the student's network) or a seeded init of the config's model."""
    from vpdsr.models import build
    from vpdsr.models.checkpoint import load_directory

    sc = cfg.student
    if sc.init_from:
        model = load_directory(resolve_model_dir(sc.init_from))
        if plan.kind != OUTPUTS and plan.family == "ResShiftSR":
            from vpdsr.distill.resshift_student import check_init_from

            check_init_from(model, teacher_model)
        return model
    if plan.kind == OUTPUTS:
        return build(cfg.model_config(), seed=cfg.seed)
    return copy.deepcopy(teacher_model) if sc.init_from_teacher else build(teacher_model.config, seed=cfg.seed)


def check_init(cfg: DistillConfig, plan: TeacherPlan) -> None:
    """`init_from_teacher` with a teacher of another network: a one-line ConfigError, before anything runs."""
    from vpdsr.models.families import family_of

    sc = cfg.student
    if plan.kind == OUTPUTS and sc.init_from_teacher and not sc.init_from:
        student = family_of(cfg.model_config()).name
        raise ConfigError(f"--teacher {plan.source} is a {plan.family} model, not the config's {student} network "
                          f"(`model.preset` {cfg.model.get('preset')!r}), so the student cannot start from its "
                          "weights: set `student.init_from` (e.g. tiny) or `student.init_from_teacher: false` to "
                          "distil its outputs, or give a teacher of the config's network")


def train_student(cfg: DistillConfig, teacher: str | Path | None, out: str | Path, resume: bool = False,
                  progress: bool = True, stop_at: int | None = None) -> StageResult:
    """Distil `teacher` (None: the config's `student.teacher`) into the one-step student in OUT."""
    teacher = teacher if teacher is not None else cfg.student.teacher
    if teacher is None:
        raise ConfigError("the student stage needs a teacher: `--teacher DIR` or `student.teacher` in the config")
    plan = plan_teacher(cfg, teacher)
    check_init(cfg, plan)
    if cfg.losses.pixel_reference == "teacher" and (plan.kind != OUTPUTS or cfg.losses.distill <= 0):
        raise ConfigError("`losses.pixel_reference: teacher` needs the teacher's outputs as targets "
                          "(`student.targets: outputs` and `losses.distill` > 0)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    scfg = cfg.student
    acc = make_accelerator(cfg, scfg.grad_accum)
    torch.manual_seed(cfg.seed + 1)  # the teacher's build, the discriminator's init: in this order (shipped bits)
    teach = plan.load(cfg, acc.device)
    net = student_net(initial_student(cfg, plan, teach.model).to(acc.device), cfg)
    parts = setup_student(cfg, acc, net, out, lambda: training_data(cfg, teach, progress))
    from vpdsr.distill.threads import choose_threads

    choose_threads(cfg, acc, "student", out,
                   one_step_probe(net, parts.module, parts.data, cfg.data.batch_size, "student", acc.device), progress)
    draws = student_draws(cfg, acc, net, teach, parts.data)
    pixels = net.needs_pixels(cfg.losses, parts.ess)
    by_teacher = cfg.losses.pixel_reference == "teacher"

    def step_fn(step: int, micro: int) -> dict[str, float]:
        batch = StudentBatch(*draws(step, micro))
        sr, x0 = net.forward(parts.module, batch, pixels)
        terms = net.distill_terms(cfg.losses, sr, x0, batch, teach.space)
        reference = batch.target if by_teacher else batch.hr
        return student_update(cfg, acc, step, terms, sr, reference, net.model.config.scale, parts, net.extra_weights)

    loop = Loop("student", scfg, out, acc, parts.trained, parts.optimizers, parts.schedulers, step_fn, parts.ema,
                parts.disabled)
    with draws:
        step = run_loop(loop, resume, progress, stop_at)
    if step < scfg.steps:
        return StageResult(out, None, step, time.perf_counter() - t_start, disabled_terms=parts.disabled)
    final = net.final(final_weights(acc.unwrap_model(parts.module), parts.ema))
    model_dir = save_model(final, out / "model", acc, {DISTILL_RECORD: distill_record(plan, teach)})
    result = None
    if cfg.eval.enabled and acc.is_main_process:
        from vpdsr.distill.evaluate import evaluate_run

        result = evaluate_run(cfg, out, teacher=teach.model, student=final, device=acc.device)
    return StageResult(out, model_dir, step, time.perf_counter() - t_start, result, parts.disabled)


def distill_record(plan: TeacherPlan, teacher) -> str:
    """distill.json beside the student's weights: which teacher it learnt from and how (read by `vpdsr pipeline`
    for the bench's teacher row)."""
    import json

    record = {"teacher": plan.source, "teacher_family": plan.family, "targets": plan.kind}
    if getattr(teacher, "cache", None) is not None:
        record["teacher_sha256"] = teacher.cache.teacher_hash
    return json.dumps(record, indent=1) + "\n"


def training_data(cfg: DistillConfig, teacher, progress: bool):
    """The crops the student trains on: the photos (a fresh crop every step), or, for an output teacher with
    `student.target_crops`, that many crops with the teacher's outputs (vpdsr.distill.target_pool)."""
    data = CropDataset(cfg.data.images, cfg.data.crop_size, cfg.degradation_config(), cfg.seed, cfg.data.augment)
    if teacher.kind == OUTPUTS and cfg.student.target_crops and cfg.losses.distill > 0:
        from vpdsr.distill.target_pool import TargetPool

        sc = cfg.student
        return TargetPool(data, teacher, sc.target_crops, cfg.seed, progress, sc.target_threads, sc.target_workers)
    return data


def student_draws(cfg: DistillConfig, acc, net: StudentNet, teacher, data):
    """The StepDraws of the stage (the draw worker where `accelerate.draw_worker` asks for one)."""
    from vpdsr.distill.draw_worker import DrawSpec, StepDraws

    with_target = cfg.losses.distill > 0
    spec = (DrawSpec("student", cfg.to_dict(), "", net.model.training, str(teacher.directory) if with_target else None)
            if draw_worker.wanted(cfg, acc, cfg.student.steps) else None)
    return StepDraws(StudentDraw(cfg, data, net, teacher if with_target else None, acc.device, with_target), spec,
                     net.model, cfg.student.steps, draw_indices(acc, cfg.student.grad_accum), label="student")


def _name_after_preset(model, cfg: DistillConfig) -> None:
    """The student's config.json names the config's preset (e.g. tiny-perceptual, distilled from tiny's
    teacher) when that preset has the same network; otherwise it keeps its teacher's name."""
    from vpdsr.models import get_preset

    name = cfg.model.get("preset") if isinstance(cfg.model, dict) else None
    if not name or name == model.config.preset:
        return
    try:
        preset = get_preset(name)
    except ConfigError:
        return
    same = all(getattr(preset, part, None) == getattr(model.config, part, None) for part in ("autoencoder", "denoiser"))
    if same:
        model.config.preset = name
