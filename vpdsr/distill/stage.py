"""The parts of a distillation stage both students share (VPDSR's own and ResShift's): accelerator,
thread choice, optimiser and schedule, EMA, the CSV log, the training loop, the student's draws and
update, model directories. `trainer.py` (VPDSR) and `resshift_student.py` both build on it."""

import copy
import csv
import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vpdsr.distill.config import DistillConfig, StageConfig
from vpdsr.distill.data import CropDataset, step_generator
from vpdsr.distill.state import load_training_state, save_training_state
from vpdsr.errors import CheckpointError, ConfigError
from vpdsr.utils import atomic_write_text

LOG_COLUMNS = ("step", "lr", "loss", "distill", "gt_latent", "recon", "ess", "hfp", "grid", "adv", "fm", "d_loss", "seconds")


@dataclass
class StageResult:
    run_dir: Path
    model_dir: Path | None  # None when stopped early (stop_at)
    step: int
    seconds: float
    eval: dict | None = None
    disabled_terms: dict = field(default_factory=dict)


def make_accelerator(cfg: DistillConfig, grad_accum: int):
    from accelerate import Accelerator

    if isinstance(cfg.accelerate.num_threads, int) and cfg.accelerate.num_threads:
        torch.set_num_threads(cfg.accelerate.num_threads)
    return Accelerator(cpu=cfg.accelerate.cpu, mixed_precision=cfg.accelerate.mixed_precision,
                       gradient_accumulation_steps=grad_accum)


def choose_threads(cfg: DistillConfig, acc, stage: str, out: Path, step: Callable[[], None], progress: bool) -> None:
    """`accelerate.num_threads: auto` on CPU: probe the counts (vpdsr.distill.threads), record the choice."""
    import json

    from vpdsr.distill.threads import probe_threads
    from vpdsr.env import available_cpus

    if cfg.accelerate.num_threads != "auto" or acc.device.type != "cpu":
        return
    result = probe_threads(step, tuple(range(1, available_cpus() + 1)))
    if progress:
        print(f"{stage}: {result.summary()}", file=sys.stderr, flush=True)
    atomic_write_text(out / "threads.json", json.dumps(
        {"num_threads": result.chosen, "seconds_per_probe_step": result.seconds,
         "note": "the weights depend on the thread count: set accelerate.num_threads to this to repeat the run"},
        indent=1) + "\n")


def probe_step(model, denoiser, data: CropDataset, cfg: DistillConfig, stage: str, device) -> Callable[[], None]:
    """One forward + backward pass of the one-step call on the stage's first batch; gradients cleared
    afterwards and nothing else touched (the batch draw is stateless), so probing changes no result."""
    batch = data.batch(1, 0, cfg.data.batch_size, stage)
    lr, hr = batch.lr.to(device), batch.hr.to(device)
    params = [p for p in denoiser.parameters() if p.requires_grad]

    def step() -> None:
        with torch.no_grad():
            y = model.encode(lr)
        x_T = model.schedule.prior_sample(y, torch.zeros_like(y))
        t = torch.full((y.shape[0],), model.schedule.steps - 1, dtype=torch.long, device=y.device)
        sr = model.autoencoder.decode(denoiser(x_T, y, t, model.schedule.input_scale(t, x_T)))
        (sr - hr).abs().mean().backward()
        for p in params:
            p.grad = None

    return step


def lr_lambda(scfg: StageConfig) -> Callable[[int], float]:
    o, total = scfg.optim, max(1, scfg.steps)

    def f(step: int) -> float:
        if o.warmup_steps and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        p = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))

    return f


def make_optimizer(params, scfg_optim, lam: Callable[[int], float]):
    opt = torch.optim.AdamW(params, lr=scfg_optim.lr, betas=tuple(scfg_optim.betas), weight_decay=scfg_optim.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lam)


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


class CsvLog:
    """log.csv; on resume, rows after the resumed step (written before a kill) are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = []
        if resume_step and path.is_file():
            rows = [r for r in csv.DictReader(path.open()) if int(r["step"]) <= resume_step]
        buf = io.StringIO()
        w = csv.DictWriter(buf, LOG_COLUMNS)
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(path, buf.getvalue())

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, LOG_COLUMNS, extrasaction="ignore").writerow(row)


def run_loop(stage: str, cfg: DistillConfig, scfg: StageConfig, out: Path, accelerator, trained: dict,
             optimizers: dict, schedulers: dict, step_fn: Callable[[int, int], dict[str, float]],
             ema: EMA | None, resume: bool, progress: bool, stop_at: int | None, disabled: dict) -> int:
    """The shared loop: resume, then `steps` optimizer steps of `grad_accum` micro-batches each.

    Returns the last completed step.
    """
    from tqdm import tqdm

    ckpt = out / "checkpoint"
    start = 0
    unwrapped = {n: accelerator.unwrap_model(m) for n, m in trained.items()}
    if resume and (ckpt / "state.json").is_file():
        state = load_training_state(ckpt, unwrapped, optimizers, schedulers)
        start = int(state["step"])
        if ema is not None:
            ema.shadow = {k[len("ema."):]: v.to(accelerator.device) for k, v in state["tensors"].items() if k.startswith("ema.")}
            ema.updates = int(state["extra"].get("ema_updates", 0))
    # one log.csv, rank 0's: every rank writing its own rows into the same file interleaves them
    log = CsvLog(out / "log.csv", start) if accelerator.is_main_process else None
    for term, reason in disabled.items():
        print(f"warning: {stage}: loss term `{term}` disabled: {reason}", file=sys.stderr)
    bar = tqdm(total=scfg.steps, initial=start, desc=stage, unit="step", disable=not progress or None,
               dynamic_ncols=True, file=sys.stderr)
    t0 = time.perf_counter()
    step = start
    for step in range(start + 1, scfg.steps + 1):
        terms: dict[str, float] = {}
        for micro in range(scfg.grad_accum):
            draw = draw_indices(accelerator, scfg.grad_accum)[micro]  # each DDP rank draws its own batch
            with accelerator.accumulate(*trained.values()), accelerator.autocast():
                for k, v in step_fn(step, draw).items():
                    terms[k] = terms.get(k, 0.0) + v / scfg.grad_accum
        for s in schedulers.values():
            s.step()
        if ema is not None and step > scfg.ema.start_step:
            ema.update(unwrapped["denoiser"])
        shown = {k: f"{v:.4f}" for k, v in terms.items()}
        bar.set_postfix(shown, refresh=False)
        bar.update(1)
        if log is not None and (step % scfg.log_every == 0 or step == scfg.steps):
            row = {"step": step, "lr": f"{optimizers['denoiser'].param_groups[0]['lr']:.3e}",
                   "seconds": f"{time.perf_counter() - t0:.3f}", **shown}
            row.update({t: "disabled" for t in disabled})
            log.write(row)
        if (scfg.checkpoint_every and step % scfg.checkpoint_every == 0) or step == scfg.steps or step == stop_at:
            extra_t = {f"ema.{k}": v for k, v in ema.shadow.items()} if ema is not None else None
            if accelerator.is_main_process:
                save_training_state(ckpt, step, unwrapped, optimizers, schedulers, extra_t,
                                    {"ema_updates": ema.updates if ema else 0, "stage": stage})
        if stop_at is not None and step >= stop_at:
            break
    bar.close()
    return step


@torch.no_grad()
def student_draw(cfg: DistillConfig, data: CropDataset, device, model, step: int, micro: int):
    """Step `step`'s (hr, lr, y = model.encode(lr), noise, teacher generator): every draw from generators
    seeded by (seed, step, micro), so a resumed run repeats them exactly."""
    batch = data.batch(step, micro, cfg.data.batch_size, "student")
    hr, lr = batch.hr.to(device), batch.lr.to(device)
    g = step_generator(cfg.seed, "student", step, 1000 + micro)
    tg = step_generator(cfg.seed, "student", step, 2000 + micro, device=str(device))
    y = model.encode(lr)
    return hr, lr, y, torch.randn(y.shape, generator=g).to(y), tg


class TeacherDraw:
    """A teacher step's draw (vpdsr.distill.draw_worker): the HR latent x0 and LR latent y of batch (step, micro)."""

    def __init__(self, cfg: DistillConfig, data: CropDataset, model, device):
        self.batch_size, self.data, self.model, self.device = cfg.data.batch_size, data, model, device

    @torch.no_grad()
    def __call__(self, step: int, micro: int):
        batch = self.data.batch(step, micro, self.batch_size, "teacher")
        hr, lr = batch.hr.to(self.device), batch.lr.to(self.device)
        return self.model.autoencoder.encode(hr), self.model.encode(lr)


class StudentDraw:
    """A student step's draw (vpdsr.distill.draw_worker): (hr, y, noise, the teacher's
    T-step latent from that noise, or None without a teacher)."""

    def __init__(self, cfg: DistillConfig, data: CropDataset, model, teacher, device):
        self.cfg, self.data, self.model, self.teacher, self.device = cfg, data, model, teacher, device

    @torch.no_grad()
    def __call__(self, step: int, micro: int):
        hr, _, y, noise, tg = student_draw(self.cfg, self.data, self.device, self.model, step, micro)
        target = self.teacher.teacher_sample_latent(y, noise, generator=tg) if self.teacher is not None else None
        return hr, y, noise, target


def draw_indices(acc, grad_accum: int) -> list[int]:
    """The micro-batch draw indices `run_loop` passes for each step, in order (each DDP rank its own)."""
    return [micro * acc.num_processes + acc.process_index for micro in range(grad_accum)]


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


def family_name(model_dir: Path) -> str:
    """The `_class_name` of a model directory's config.json (VPDSR when absent); one-line CheckpointError."""
    from vpdsr.models.checkpoint import load_config
    from vpdsr.models.families import family_of

    return family_of(load_config(model_dir)).name


@dataclass
class StudentParts:
    """What `setup_student` prepared: the trained module (accelerate-prepared), its optimizer, the
    discriminator (None without `losses.adv`), ESS (None when off or skipped), data and EMA; `trained`,
    `optimizers`, `schedulers` are keyed "denoiser" (and "discriminator"), as `run_loop` checkpoints them."""

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


def setup_student(cfg: DistillConfig, acc, model, module: torch.nn.Module, out: Path) -> StudentParts:
    """Freeze `model` except `module` (the network that trains), load ESS, write OUT/config.yaml, and
    build the data, optimizer, discriminator (when `losses.adv` > 0) and EMA of the student stage."""
    from vpdsr.distill.losses import PatchDiscriminator

    scfg = cfg.student
    _name_after_preset(model, cfg)
    model.requires_grad_(False)
    module.requires_grad_(True)
    model.train()
    ess, disabled = student_ess(cfg, acc.device)
    cfg.save(out / "config.yaml")
    data = CropDataset(cfg.data.images, cfg.data.crop_size, cfg.degradation_config(), cfg.seed, cfg.data.augment)
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


def student_update(cfg: DistillConfig, acc, step: int, terms: dict, sr: torch.Tensor, hr: torch.Tensor, scale: int,
                   denoiser, opt, disc, d_opt, ess, weights: dict[str, float] | None = None) -> dict[str, float]:
    """The pixel-space terms of one student step (recon, HFP, grid, ESS, adversarial, feature matching),
    added to `terms` (the latent ones), then the weighted backward pass, the optimizer step and the
    alternating discriminator update. `weights` names the weights of terms that are not `losses` fields.

    Returns:
        the logged floats: loss, every term, d_loss when the discriminator trained.
    """
    from vpdsr.distill.losses import (
        discriminator_step,
        feature_matching_loss,
        generator_adv_loss,
        grid_loss,
        hfp_loss,
        pixel_loss,
    )

    lc = cfg.losses
    if lc.recon > 0:
        terms["recon"] = pixel_loss(sr, hr, lc.recon_kind)
    if lc.hfp > 0:
        terms["hfp"] = hfp_loss(sr, hr, lc.hfp_levels, lc.hfp_kind, lc.hfp_pool)
    if lc.grid > 0:
        terms["grid"] = grid_loss(sr, hr, scale, lc.grid_pool)
    if ess is not None:
        terms["ess"] = ess(sr.clamp(0, 1), hr)
    adv_on = disc is not None and step > lc.adv_start_step
    d_on = disc is not None and step > lc.adv_start_step - cfg.discriminator.lead_steps
    weights = {k: (weights or {})[k] if k in (weights or {}) else getattr(lc, k) for k in terms}
    if adv_on:
        d = acc.unwrap_model(disc)
        d.requires_grad_(False)
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
        weights["adv"] = lc.adv * ramp if lc.adv_ramp_steps else lc.adv
        if "fm" in terms:
            weights["fm"] = lc.feature_match * ramp
    loss = sum(weights[k] * v for k, v in terms.items())
    acc.backward(loss)
    _clip(acc, denoiser, cfg.student.optim.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    logged = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
    if d_on:
        logged["d_loss"] = float(discriminator_step(disc, d_opt, hr, sr.detach(), lc.adv_loss, backward=acc.backward))
    return logged


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory, a run directory holding `model/` (e.g. OUT/teacher), or a shipped checkpoint
    name (`tiny`, `tiny-teacher`: folders of vpdsr/checkpoints)."""
    from vpdsr.models.checkpoint import SHIPPED

    p = Path(path)
    if (p / "config.json").is_file():
        return p
    if (p / "model" / "config.json").is_file():
        return p / "model"
    if not p.exists() and len(p.parts) == 1 and (SHIPPED / p.name / "config.json").is_file():
        return SHIPPED / p.name
    shipped = ", ".join(sorted(d.name for d in SHIPPED.iterdir() if (d / "config.json").is_file()))
    raise CheckpointError(f"{p}: expected a model directory (config.json + model.safetensors), a run directory "
                          f"holding model/, or a shipped checkpoint ({shipped})")


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


def _clip(acc, module, max_norm: float) -> None:
    if max_norm > 0 and acc.sync_gradients:
        acc.clip_grad_norm_(module.parameters(), max_norm)


def _final_model(model, denoiser, ema: EMA | None):
    final = copy.deepcopy(model).cpu().eval()
    final.denoiser.load_state_dict(ema.shadow if ema is not None else denoiser.state_dict())
    return final.requires_grad_(False)


def _save_model(model, directory: Path, acc) -> Path:
    from vpdsr.models import save_pretrained

    if acc.is_main_process:
        save_pretrained(model, directory)
    acc.wait_for_everyone()
    return directory
