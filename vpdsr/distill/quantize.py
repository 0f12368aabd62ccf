"""`vpdsr distill quantize`: quantization-aware distillation of a model into its own INT8 copy.

The teacher is MODEL in fp32; the student is its fake-quantized copy (`vpdsr/export/qat_model.py`:
NNCF's quantizers where `ort-int8` quantizes, weights and quantizer ranges both trained). The student
learns MODEL's own output on LR crops of any photos (no HR needed): the distill term (L2 by default:
the figure that matters is PSNR against fp32) and, optionally, HFP against the teacher's output and the
distill loop's adversarial term. It runs the one student loop of `vpdsr.distill.student` (draws seeded by
step, `run_loop`'s progress bar, checkpoints and bit-exact resume, the teacher-output cache and, for a
costly teacher, `target_crops`), with this student's optimizer: AdamW on the weights, and on every
quantizer parameter a learning rate proportional to its initial size (a range of 50 and one of 0.01 move
by the same share per step).

OUT after a run:
    quantize.json        the settings (this module's `QuantizeConfig`)
    train/               config.yaml, log.csv, checkpoint/, init/ (the untrained fake-quantized copy)
    model/               the trained fake-quantized model (`qat_model.load`)
    ort-int8/, openvino-int8/, manifest.json   the INT8 artifacts, exported and validated by `vpdsr.export`
                         against MODEL's torch fp32 output on the held-out photos, as every export is

Example:
    >>> manifest = quantize(QuantizeConfig(model="realesr-animevideov3"), "runs/anime-qat")  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vpdsr.distill.students import StudentBatch, StudentNet
from vpdsr.errors import ConfigError

log = logging.getLogger(__name__)
CONFIG_NAME = "quantize.json"


@dataclass
class QuantizeConfig:
    """Settings of one quantization-aware run (saved as OUT/quantize.json).

    Attributes:
        model: MODEL: a preset with real weights, a model directory or a shipped checkpoint.
        targets: the INT8 targets to export (ort-int8, openvino-int8).
        steps: optimizer steps.
        images: training photos, comma-separated (folders/files or samples[:subset]); LR crops are their bicubic x4.
        crop_size: HR side of a training crop (its LR is a quarter of it).
        batch_size: crops per step.
        tile: the LR tile the artifacts are exported at (and the calibration crops' size).
        calib, calib_count: the crops the quantizer ranges start from.
        lr: AdamW learning rate of the weights.
        range_lr: learning rate of each quantizer parameter, as a share of its initial size.
        distill_kind: l2 | l1 (student vs the fp32 teacher's output).
        hfp: weight of HFP against the teacher's output (0: off).
        adv: weight of the distill loop's adversarial term (0: off; its discriminator sees HR photos).
        target_crops: draw this many crops once and cache the teacher's outputs on them (a costly teacher;
            models without noise only); 0: a fresh crop every step.
        seed: every draw's seed.
        threads: torch threads.
        checkpoint_every: steps between checkpoints (resume points).
    """

    model: str
    targets: str = "ort-int8,openvino-int8"
    steps: int = 300
    images: str = "samples:train"
    crop_size: int = 192
    batch_size: int = 8
    tile: int = 64
    calib: str = "samples:calib"
    calib_count: int = 8
    lr: float = 3e-5
    range_lr: float = 3e-3
    distill_kind: str = "l2"
    hfp: float = 0.0
    adv: float = 0.0
    target_crops: int = 0
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 50

    def validate(self) -> QuantizeConfig:
        from vpdsr.export.qat_targets import qat_specs

        qat_specs(self.targets, "")  # unknown targets: a one-line InputError
        for name in ("steps", "crop_size", "batch_size", "tile", "calib_count", "threads"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"`{name}` must be at least 1, got {getattr(self, name)}")
        if self.crop_size % 4:
            raise ConfigError(f"`crop_size` must be a multiple of 4 (HR pixels of an x4 model), got {self.crop_size}")
        if self.distill_kind not in ("l1", "l2"):
            raise ConfigError(f"`distill_kind` must be l1 or l2, got {self.distill_kind!r}")
        if min(self.lr, self.range_lr, self.hfp, self.adv, self.target_crops) < 0:
            raise ConfigError("`lr`, `range_lr`, `hfp`, `adv` and `target_crops` must be >= 0")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Shipped settings per model where the defaults do not fit its cost (see docs/qat.md for the measurements).
SETTINGS: dict[str, dict] = {
    # ~0.4-1 s per LR 64 tile on 2 cores: small crops from a cached pool, sized for <= 30 min
    "realesrgan-x4plus": {"steps": 300, "crop_size": 128, "batch_size": 4, "target_crops": 512, "lr": 2e-5},
}


def settings_for(model: str, **overrides) -> QuantizeConfig:
    """The shipped settings of `model` (or the defaults), with `overrides` (None values ignored)."""
    values = {**SETTINGS.get(str(model), {}), **{k: v for k, v in overrides.items() if v is not None}}
    return QuantizeConfig(model=str(model), **values).validate()


class QatStudent(StudentNet):
    """The fake-quantized copy as the student loop's student: every weight and quantizer trains."""

    def __init__(self, qat, scheme, hfp: float = 0.0):
        super().__init__(qat, qat)
        self.scheme = scheme
        self.extra_weights = {"hfp": hfp} if hfp > 0 else {}

    def encode(self, lr: torch.Tensor):
        return None  # the student starts from the LR image itself

    def noise_shape(self, lr: torch.Tensor, y) -> tuple | None:
        return self.model.noise_shape(tuple(lr.shape))

    def forward(self, module, batch: StudentBatch, pixels: bool = True):
        args = (batch.lr,) if batch.noise is None else (batch.lr, batch.noise)
        return module(*args), None

    def distill_terms(self, lc, sr, x0, batch: StudentBatch, target_space: str) -> dict[str, torch.Tensor]:
        from vpdsr.distill.losses import hfp_loss, pixel_loss

        terms = {"distill": pixel_loss(sr, batch.target, lc.distill_kind)}
        if self.extra_weights.get("hfp"):
            terms["hfp"] = hfp_loss(sr, batch.target, lc.hfp_levels, lc.hfp_kind, lc.hfp_pool)
        return terms

    def param_groups(self, lr: float, range_lr: float) -> list[dict]:
        """AdamW groups: the weights at `lr`; each quantizer parameter at `range_lr` x its initial size."""
        from vpdsr.export.qat_model import quantizers

        groups, ids = [], set()
        # by hook name: a model loaded from disk registers its hooks in another order, and a resumed
        # optimizer's state is matched to parameters by position
        for _, q in sorted(quantizers(self.model), key=lambda item: item[0]):
            for p in q.parameters():
                if p.dtype.is_floating_point:
                    ids.add(id(p))
                    groups.append({"params": [p], "lr": range_lr * float(p.detach().abs().mean().clamp_min(1e-6))})
        weights = [p for p in self.model.parameters() if p.dtype.is_floating_point and id(p) not in ids]
        return [{"params": weights, "lr": lr}, *groups]


def distill_config(cfg: QuantizeConfig, model_config):
    """The student loop's config for this run (outputs of the fp32 model as targets, no EMA, no eval)."""
    from vpdsr.distill.config import load_config
    from vpdsr.models import preset_names
    from vpdsr.models.families import family_of

    # the loop checks the crop against `model.preset`'s size rule and knows the diffusion families' presets;
    # for any other model (a GAN) that check is `quantize`'s own (`_check_crop`)
    own = family_of(model_config).name in ("VPDSR", "ResShiftSR") and model_config.preset in preset_names()
    preset = model_config.preset if own else "tiny"
    return load_config({
        "seed": cfg.seed,
        "model": {"preset": preset},
        "data": {"images": cfg.images.split(","), "crop_size": cfg.crop_size, "batch_size": cfg.batch_size,
                 "augment": True},
        "degradation": {"mode": "bicubic"},  # the held-out photos' degradation, what a user sends
        "student": {"steps": cfg.steps, "targets": "outputs", "teacher_call": "forward", "init_from_teacher": False,
                    "target_crops": cfg.target_crops, "checkpoint_every": cfg.checkpoint_every, "log_every": 10,
                    "optim": {"lr": cfg.lr, "weight_decay": 0.0, "warmup_steps": 0, "schedule": "cosine",
                              "min_lr_ratio": 0.05, "grad_clip": 1.0}},
        "losses": {"distill": 1.0, "distill_space": "pixel", "distill_kind": cfg.distill_kind, "recon": 0.0,
                   "ess": 0.0, "hfp": 0.0, "grid": 0.0, "adv": cfg.adv},
        "accelerate": {"cpu": True, "num_threads": cfg.threads, "draw_worker": "off"},
        "eval": {"enabled": False},
    })


def quantize(cfg: QuantizeConfig, out: str | Path, resume: bool = False, progress: bool = True,
             stop_at: int | None = None, validation=None):
    """Train the fake-quantized copy of `cfg.model` and export its INT8 artifacts into `out`.

    Args:
        validation: the export's held-out images (`vpdsr.export.validation.ValidationConfig`; default: the
            three held-out photos whole).

    Returns:
        The export's manifest (None when stopped early with `stop_at`).
    """
    from vpdsr.distill.loop import Loop, make_accelerator, run_loop
    from vpdsr.distill.optim import lr_lambda
    from vpdsr.distill.student import StudentParts, student_draws, student_update, training_data
    from vpdsr.distill.teachers import plan_teacher, teacher_directory
    from vpdsr.export import qat_model
    from vpdsr.export.calibration import CalibrationSet
    from vpdsr.models.checkpoint import load_config
    from vpdsr.utils import atomic_write_text

    cfg.validate()
    out = Path(out)
    run_dir = out / "train"
    saved = out / CONFIG_NAME
    if resume and saved.is_file() and json.loads(saved.read_text()) != cfg.to_dict():
        raise ConfigError(f"--resume: {saved} was written with other settings; resume with the same ones")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(cfg.to_dict(), indent=2) + "\n")
    t0 = time.perf_counter()
    dcfg = distill_config(cfg, load_config(teacher_directory(cfg.model)))
    plan = plan_teacher(dcfg, cfg.model)
    acc = make_accelerator(dcfg, 1)
    teacher = plan.load(dcfg, acc.device)  # MODEL in fp32, frozen: the reference and the targets
    fp32 = teacher.model
    _check_crop(cfg, fp32)
    if cfg.target_crops and fp32.latent_channels:
        raise ConfigError("`target_crops` needs a model without noise: a pool's targets come from noise of their own")
    init = run_dir / "init"
    if resume and qat_model.is_qat_folder(init):
        qat, scheme, _ = qat_model.load(init)
    else:
        feeds = CalibrationSet(cfg.calib, cfg.calib_count, cfg.tile, fp32.latent_channels, cfg.seed).feeds()
        qat, scheme = qat_model.prepare(fp32, feeds, cfg.tile)
        qat_model.save(qat, scheme, init)
    net = QatStudent(qat, scheme, cfg.hfp)
    qat.train()
    opt = torch.optim.AdamW(net.param_groups(cfg.lr, cfg.range_lr), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(dcfg.student))
    module, opt = acc.prepare(qat, opt)
    trained, optimizers, schedulers = {"denoiser": module}, {"denoiser": opt}, {"denoiser": sched}
    disc = d_opt = None
    if cfg.adv > 0:
        disc, d_opt, d_sched = _discriminator(dcfg, acc)
        trained["discriminator"], optimizers["discriminator"], schedulers["discriminator"] = disc, d_opt, d_sched
    data = training_data(dcfg, teacher, progress)
    parts = StudentParts(module, opt, trained, optimizers, schedulers, disc, d_opt, None, {}, data, None)
    dcfg.save(run_dir / "config.yaml")
    draws = student_draws(dcfg, acc, net, teacher, data)

    def step_fn(step: int, micro: int) -> dict[str, float]:
        batch = StudentBatch(*draws(step, micro))
        sr, _ = net.forward(module, batch)
        terms = net.distill_terms(dcfg.losses, sr, None, batch, teacher.space)
        return student_update(dcfg, acc, step, terms, sr, batch.hr, fp32.scale, parts, net.extra_weights)

    loop = Loop("quantize", dcfg.student, run_dir, acc, trained, optimizers, schedulers, step_fn)
    with draws:
        step = run_loop(loop, resume, progress, stop_at)
    if step < cfg.steps:
        return None
    qat.eval()
    seconds = round(time.perf_counter() - t0, 1)
    qat_model.save(qat, scheme, out / "model", extra={"training": {**cfg.to_dict(), "seconds": seconds}})
    log.info(f"quantize: {cfg.steps} steps in {seconds:.0f} s; exporting {cfg.targets}")
    return export_trained(fp32, qat, scheme, out, cfg, progress, validation)


def export_trained(fp32, qat, scheme, out: Path, cfg: QuantizeConfig, progress: bool = True, validation=None):
    """The INT8 artifacts of the trained model in `out`, validated against `fp32` (`vpdsr.export.export`)."""
    from vpdsr.export import export
    from vpdsr.export.onnx_graph import model_sha256
    from vpdsr.export.qat_targets import qat_specs

    specs = qat_specs(cfg.targets, model_sha256(qat))
    return export(fp32, out, specs, tile=scheme.tile, progress=progress, quantized=(qat, scheme),
                  validation=validation)


def _check_crop(cfg: QuantizeConfig, model) -> None:
    multiple = int(model.scale) * int(model.size_multiple)
    if cfg.crop_size % multiple:
        raise ConfigError(f"`crop_size` {cfg.crop_size}: this {type(model).__name__} takes HR crops that are multiples "
                          f"of {multiple} (x{model.scale}, LR sides a multiple of {model.size_multiple})")
    from vpdsr.export.onnx_graph import check_tile

    check_tile(model, cfg.tile)


def _discriminator(dcfg, acc):
    from vpdsr.distill.config import StageConfig
    from vpdsr.distill.losses import PatchDiscriminator
    from vpdsr.distill.optim import lr_lambda, make_optimizer

    dc = dcfg.discriminator
    disc = PatchDiscriminator(dc.channels, dc.layers, dc.spectral_norm).to(acc.device)
    d_opt, d_sched = make_optimizer(disc.parameters(), dc.optim,
                                    lr_lambda(StageConfig(steps=dcfg.student.steps, optim=dc.optim)))
    disc, d_opt = acc.prepare(disc, d_opt)
    return disc, d_opt, d_sched
