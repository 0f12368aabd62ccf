"""Typed run config of the distill stage, loaded from YAML (unknown keys are a one-line ConfigError).

Layout of a config file (every field optional; see configs/tiny.yaml and configs/tiny-perceptual.yaml):

    seed: 0
    model:        {preset: tiny, autoencoder: {...}, denoiser: {...}, schedule: {...}}  # preset + overrides
    data:         {images: [samples:train], crop_size: 128, batch_size: 32}
    degradation:  {mode: bicubic | realesrgan, ...}                 # vpdsr.data.degrade.DegradationConfig
    teacher:      {steps, grad_accum, loss, optim: {...}, ema: {...}, checkpoint_every, log_every}
    student:      {steps, grad_accum, optim, ema, ..., init_from_teacher, teacher, init_from,
                   targets, teacher_call, target_crops, target_cache}          # any model as teacher
    losses:       {distill, recon, ess, hfp (+ hfp_kind, hfp_levels), grid, adv (+ adv_loss, adv_start_step,
                   adv_ramp_steps), feature_match weights and their choices}
    discriminator: {channels, layers, spectral_norm, lead_steps, optim: {...}}
    accelerate:   {mixed_precision: "no" | fp16 | bf16, cpu: false, num_threads: N | auto, draw_worker: auto | on | off}
    eval:         {images: samples:holdout, crop_border: 4, noise_seed: 0, perceptual, crop_size, ...}
    resshift:     {teacher_noise, pixel_decode, gt_latent}   # only with a ResShift model (configs/resshift.yaml)

Top-level sections owned by later stages (`export`, `bench`, `pipeline`) are accepted and ignored
here, so one YAML drives `vpdsr pipeline`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from vpdsr.config_fields import from_mapping
from vpdsr.errors import ConfigError

FOREIGN_SECTIONS = ("export", "bench", "pipeline")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine (or constant) decay; `grad_clip` 0 disables clipping."""

    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 20
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0


@dataclass
class EmaConfig:
    """Exponential moving average of the trained weights; the exported model is the EMA when enabled."""

    enabled: bool = False
    decay: float = 0.99
    start_step: int = 0


@dataclass
class StageConfig:
    """What both stages share: length, accumulation, optimiser, EMA, checkpoint and log cadence."""

    steps: int = 100
    grad_accum: int = 1
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    checkpoint_every: int = 100  # 0 = only at the end
    log_every: int = 10


@dataclass
class TeacherConfig(StageConfig):
    """ResShift training: t uniform in 1..T, predict x0 from (x_t, y, t); loss in latent space."""

    loss: str = "l2"  # l2 (ResShift) | l1


@dataclass
class StudentConfig(StageConfig):
    """One-step distillation from any teacher (vpdsr.distill.teachers).

    Attributes:
        teacher: the model to distil from: a model directory, a shipped checkpoint (`tiny-teacher`) or a
            preset with real weights (`realesrgan-x4plus`); `vpdsr distill all` then trains no teacher.
            null = train one (or `--teacher`).
        init_from: start the student from this model (directory or shipped name, e.g. `tiny`, the PSNR
            student) instead of the teacher; null = the teacher (or a fresh init, `init_from_teacher: false`).
        targets: auto | sampled | outputs. sampled: the teacher's T-step sampling from the student's x_T
            (a teacher of the student's own family); outputs: its SR output on the LR crop (any model);
            auto: sampled for the student's family, outputs otherwise.
        teacher_call: outputs only: auto | forward | sample (auto: `teacher_sample` for a model that
            has one and takes noise, one forward call otherwise; set forward for a one-step model such
            as SinSR).
        target_crops: outputs only: this many training crops are drawn once and the teacher's output
            on each is computed (or read from the cache) before training; steps draw their batches from
            them. 0 = a fresh crop every step, its output computed (and cached) as it is drawn.
        target_cache: outputs only: the folder of the teacher-output cache (null: $VPDSR_CACHE/
            teacher-targets), or `off`.
        target_threads: torch threads while `target_crops` are computed (0: every CPU this process may
            use; on a machine others share, 1 can be faster than 2).
        target_workers: processes that compute the missing `target_crops` outputs, this one included,
            each at `target_threads` (the same bits and cache entries as one process; 0: as many as the
            CPUs hold; 1: this process only). Needs the disk cache.
    """

    init_from_teacher: bool = True
    teacher: str | None = None
    init_from: str | None = None
    targets: str = "auto"
    teacher_call: str = "auto"
    target_crops: int = 0
    target_cache: str | None = None
    target_threads: int = 0
    target_workers: int = 1


@dataclass
class LossConfig:
    """VPD-SR terms and their weights (0 disables a term). Choices marked `ours` are not from the paper.

    Attributes:
        distill: weight of student x0 vs the teacher's T-step output from the same x_T.
        distill_space: latent | pixel (ours: latent, which for space_to_depth equals pixels x2).
        distill_kind: l1 | l2 (ours: l2, the teacher's own training loss).
        recon: weight of a reconstruction term vs HR, in pixels (ours).
        recon_kind: l1 | charbonnier.
        ess: weight of 1 - cos(CLIP(SR), CLIP(HR)) (explicit semantic supervision).
        clip_weights: CLIP file (OpenAI TorchScript format); null = the usual lookup.
        on_missing_weights: error | skip (skip: warn once, record the term as disabled).
        hfp: weight of the high-frequency perception term.
        hfp_levels: Haar wavelet levels (ours: 1 level's LH/HL/HH bands, or more).
        hfp_kind: l1 (band vs band) | energy (local band energy over `hfp_pool` windows; ours).
        hfp_pool: window of `energy` (pixels of the band).
        adv: weight of the generator's adversarial term.
        adv_loss: hinge | nonsaturating | relativistic (relativistic average, ESRGAN).
        adv_start_step: the discriminator and the adversarial term start at this step (ours).
        adv_ramp_steps: after the start, the adversarial (and feature-matching) weight rises linearly
            over this many steps (0 = at once).
        feature_match: weight of L1 between the discriminator's features of SR and HR (needs adv > 0).
        grid: weight of the block-grid penalty (vpdsr.distill.losses.grid_loss; ours).
        grid_pool: how many neighbouring latent squares (per side) the grid penalty averages over.
        pixel_reference: hr | teacher: what recon, HFP, grid, ESS and the discriminator's real images
            are (ours: `teacher` for a teacher whose look the student should keep, e.g. a GAN; it needs
            pixel targets, `student.targets: outputs`).
    """

    distill: float = 1.0
    distill_space: str = "latent"
    distill_kind: str = "l2"
    recon: float = 1.0
    recon_kind: str = "l1"
    ess: float = 0.0
    clip_weights: str | None = None
    on_missing_weights: str = "error"
    hfp: float = 0.0
    hfp_levels: int = 1
    hfp_kind: str = "l1"
    hfp_pool: int = 4
    adv: float = 0.0
    adv_loss: str = "hinge"
    adv_start_step: int = 0
    adv_ramp_steps: int = 0
    feature_match: float = 0.0
    grid: float = 0.0
    grid_pool: int = 8
    pixel_reference: str = "hr"

    def validate(self) -> None:
        _choice("losses.distill_space", self.distill_space, ("latent", "pixel"))
        _choice("losses.distill_kind", self.distill_kind, ("l1", "l2"))
        _choice("losses.recon_kind", self.recon_kind, ("l1", "charbonnier"))
        _choice("losses.on_missing_weights", self.on_missing_weights, ("error", "skip"))
        _choice("losses.adv_loss", self.adv_loss, ("hinge", "nonsaturating", "relativistic"))
        _choice("losses.hfp_kind", self.hfp_kind, ("l1", "energy"))
        _choice("losses.pixel_reference", self.pixel_reference, ("hr", "teacher"))
        for name in ("distill", "recon", "ess", "hfp", "adv", "feature_match", "grid"):
            if getattr(self, name) < 0:
                raise ConfigError(f"`losses.{name}` must be >= 0, got {getattr(self, name)}")
        if self.grid_pool < 1:
            raise ConfigError(f"`losses.grid_pool` must be >= 1, got {self.grid_pool}")
        if self.hfp_levels < 1 or self.hfp_pool < 1:
            raise ConfigError(f"`losses.hfp_levels` and `losses.hfp_pool` must be >= 1, got {self.hfp_levels}, "
                              f"{self.hfp_pool}")
        if self.adv_start_step < 0 or self.adv_ramp_steps < 0:
            raise ConfigError("`losses.adv_start_step` and `losses.adv_ramp_steps` must be >= 0")
        if self.feature_match > 0 and self.adv <= 0:
            raise ConfigError("`losses.feature_match` needs the discriminator: set `losses.adv` > 0")


@dataclass
class ResShiftStudentConfig:
    """Choices of distilling a ResShift teacher (`model.preset` resshift-*/sinsr; SinSR's recipe, see
    vpdsr.distill.resshift_student). The student is the teacher's network, one step at t = T-1.

    Attributes:
        teacher_noise: sampled (the teacher's T-step posterior sampler with fresh noise at every step, as
            ResShift samples) | none (posterior means only: x_T maps to one target deterministically; ours,
            in the spirit of SinSR, which distils a deterministic sampler).
        pixel_decode: how the pixel-space terms (recon, HFP, grid, adversarial, ESS) reach the UNet through
            the VQ decoder's codebook lookup: straight_through (forward quantized, as deployed; gradient as
            if the lookup were the identity) | unquantized (decode the raw latent).
        gt_latent: weight of L2 between the student's x0 and the HR image's latent (SinSR's
            `finetune_use_gt`, 1.0 in its configs/SinSR.yaml); 0 disables it.
    """

    teacher_noise: str = "sampled"
    pixel_decode: str = "straight_through"
    gt_latent: float = 0.0

    def validate(self) -> None:
        _choice("resshift.teacher_noise", self.teacher_noise, ("sampled", "none"))
        _choice("resshift.pixel_decode", self.pixel_decode, ("straight_through", "unquantized"))
        if self.gt_latent < 0:
            raise ConfigError(f"`resshift.gt_latent` must be >= 0, got {self.gt_latent}")


@dataclass
class DiscriminatorConfig:
    """A small patch discriminator on pixels (ours: plain strided convs + LeakyReLU, spectral norm).

    Attributes:
        lead_steps: the discriminator trains alone this many steps before the adversarial term starts
            (`losses.adv_start_step`), so the student's first adversarial gradients are not random.
    """

    channels: int = 32
    layers: int = 3
    spectral_norm: bool = True
    lead_steps: int = 0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, betas=(0.5, 0.99), warmup_steps=0,
                                                                   schedule="constant", grad_clip=0.0))


@dataclass
class AutoencoderTrainConfig:
    """`vpdsr distill autoencoder`: reconstruction training of a learned vq/kl f=4 autoencoder (ours)."""

    steps: int = 1000
    l1: float = 1.0
    hfp: float = 0.5
    commit: float = 0.25  # vq: weight of diffusers' commitment loss
    kl: float = 1e-6  # kl: weight of the KL term
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=100))
    log_every: int = 50


@dataclass
class DataConfig:
    """Training images and crops. `images`: folders/files or samples[:subset]; holdout photos are refused."""

    images: list[str] = field(default_factory=lambda: ["samples:train"])
    crop_size: int = 128  # HR pixels, a multiple of 4 * the denoiser's size multiple
    batch_size: int = 32
    augment: bool = True  # random flips and 90-degree rotations of the crops


@dataclass
class AccelerateConfig:
    """Device, precision and CPU threads.

    Attributes:
        num_threads: torch CPU threads (0 = torch's default), or auto: a short probe at the start of each
            stage picks the fastest count (vpdsr.distill.threads). The weights depend on the count, so a
            config whose result is shipped pins it.
        draw_worker: auto | on | off: compute each step's crops, latents, noise and teacher targets ahead in
            a worker process on a core the training leaves free (vpdsr.distill.draw_worker; same tensors).
    """

    mixed_precision: str = "no"  # no | fp16 | bf16
    cpu: bool = False  # force CPU even where a GPU exists
    num_threads: int | str = 0
    draw_worker: str = "auto"  # auto | on | off


@dataclass
class EvalConfig:
    """End-of-run evaluation on held-out photos (PSNR/SSIM on Y, `crop_border` pixels cropped; PIQE).

    Attributes:
        perceptual: also score PIQE (no weights needed).
        crop_size: also score the squares of this side on a grid over each image (0 = full images only).
        crops_per_image: only each image's this many most detailed grid squares (0 = all of them).
        noise_control: std of the Gaussian noise of the `+noise` control rows (0 = none; 0.005 = 1.3/255).
        clipiqa: also score CLIPIQA where CLIP weights are found (`losses.clip_weights` or the usual lookup).
        crops_png: write crops.png (each photo's most detailed square, every method side by side).
        compare: one-step models scored beside the student (e.g. tiny-perceptual): rows, crops.png columns.
    """

    enabled: bool = True
    images: list[str] = field(default_factory=lambda: ["samples:holdout"])
    crop_border: int = 4
    noise_seed: int = 0
    max_side: int = 0  # HR images are center-cropped to at most this (0 = whole image)
    perceptual: bool = True
    crop_size: int = 128
    crops_per_image: int = 4
    noise_control: float = 0.005
    clipiqa: bool = True
    crops_png: bool = True
    compare: list[str] = field(default_factory=list)


@dataclass
class DistillConfig:
    seed: int = 0
    model: dict = field(default_factory=lambda: {"preset": "tiny"})
    data: DataConfig = field(default_factory=DataConfig)
    degradation: dict = field(default_factory=lambda: {"mode": "bicubic"})
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    accelerate: AccelerateConfig = field(default_factory=AccelerateConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    autoencoder_training: AutoencoderTrainConfig = field(default_factory=AutoencoderTrainConfig)
    resshift: ResShiftStudentConfig = field(default_factory=ResShiftStudentConfig)
    disabled_terms: dict = field(default_factory=dict)  # filled at run time: {term: reason}

    # -- derived ---------------------------------------------------------------------------
    def model_config(self):
        """The model config of `model.preset`'s family plus any section overrides: VPDSR presets take
        autoencoder/denoiser/schedule, ResShift presets (resshift-*, sinsr) denoiser/autoencoder/diffusion."""
        from vpdsr.models import get_preset
        from vpdsr.models.families import family_of

        spec = dict(self.model)
        preset = spec.pop("preset", "tiny")
        cfg = get_preset(preset)
        base = cfg.to_dict()
        sections = [k for k, v in base.items() if isinstance(v, dict)]
        for section, values in spec.items():
            if section not in sections or not isinstance(values, dict):
                raise ConfigError(f"unknown key `model.{section}` (expected preset, {', '.join(sections)})")
            base[section].update(values)
        return family_of(cfg).config_cls.from_dict(base, source="config `model`")

    def is_resshift(self) -> bool:
        """Whether `model` is a ResShift-family model (distilled by vpdsr.distill.resshift_student)."""
        from vpdsr.models.resshift import ResShiftConfig

        return isinstance(self.model_config(), ResShiftConfig)

    def degradation_config(self):
        from vpdsr.data.degrade import DegradationConfig

        return DegradationConfig.from_dict(self.degradation)

    def validate(self) -> DistillConfig:
        self.losses.validate()
        self.resshift.validate()
        _choice("accelerate.mixed_precision", self.accelerate.mixed_precision, ("no", "fp16", "bf16"))
        _choice("accelerate.draw_worker", self.accelerate.draw_worker, ("auto", "on", "off"))
        from vpdsr.distill.threads import parse_num_threads

        self.accelerate.num_threads = parse_num_threads(self.accelerate.num_threads)
        for stage in ("teacher", "student"):
            s = getattr(self, stage)
            if s.steps < 0 or s.grad_accum < 1:
                raise ConfigError(f"`{stage}.steps` must be >= 0 and `{stage}.grad_accum` >= 1")
            _choice(f"{stage}.optim.schedule", s.optim.schedule, ("cosine", "constant"))
        _choice("teacher.loss", self.teacher.loss, ("l1", "l2"))
        _choice("student.targets", self.student.targets, ("auto", "sampled", "outputs"))
        _choice("student.teacher_call", self.student.teacher_call, ("auto", "forward", "sample"))
        if min(self.student.target_crops, self.student.target_threads, self.student.target_workers) < 0:
            raise ConfigError(f"`student.target_crops`, `student.target_threads` and `student.target_workers` must "
                              f"be >= 0, got {self.student.target_crops}, {self.student.target_threads}, "
                              f"{self.student.target_workers}")
        if not 0 <= self.discriminator.lead_steps <= self.losses.adv_start_step:
            raise ConfigError(f"`discriminator.lead_steps` must be in 0..losses.adv_start_step "
                              f"({self.losses.adv_start_step}), got {self.discriminator.lead_steps}")
        if min(self.eval.crop_size, self.eval.crops_per_image, self.eval.noise_control) < 0:
            raise ConfigError("`eval.crop_size`, `eval.crops_per_image` and `eval.noise_control` must be >= 0")
        mcfg = self.model_config()
        multiple = mcfg.scale * _size_multiple(mcfg)
        if self.data.crop_size % multiple or self.data.crop_size <= 0:
            raise ConfigError(f"`data.crop_size` must be a positive multiple of {multiple}, got {self.data.crop_size}")
        self.degradation_config()
        return self

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def save(self, path: Path) -> Path:
        import yaml

        from vpdsr.utils import atomic_write_text

        return atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_config(source: str | Path | dict | None) -> DistillConfig:
    """Read a YAML file (or a dict; None = built-in defaults) into a validated DistillConfig.

    Raises:
        ConfigError: one line naming the unknown key or the bad value.
    """
    if source is None:
        return DistillConfig().validate()
    if isinstance(source, dict):
        data, where = source, "config"
    else:
        import yaml

        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    data = {k: v for k, v in data.items() if k not in FOREIGN_SECTIONS}
    accelerate = data.get("accelerate")
    if isinstance(accelerate, dict) and accelerate.get("mixed_precision") is False:
        data["accelerate"] = {**accelerate, "mixed_precision": "no"}  # YAML 1.1 reads a bare `no` as false
    try:
        return from_mapping(DistillConfig, data).validate()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _size_multiple(mcfg) -> int:
    """LR sides must be multiples of this: the VPDSR denoiser's rule, or a ResShift UNet's (window size x
    2^(levels-1), read off a model built on the meta device: no weights are allocated)."""
    from vpdsr.models.resshift import ResShiftConfig

    if not isinstance(mcfg, ResShiftConfig):
        return mcfg.denoiser.size_multiple
    import torch

    from vpdsr.models.resshift import ResShiftSR

    with torch.device("meta"):
        return ResShiftSR(mcfg).size_multiple


def _choice(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"`{where}` must be one of {', '.join(allowed)}, got {value!r}")


def default_config_path(name: str = "tiny") -> Path:
    """The packaged copy of configs/<name>.yaml (vpdsr/configs/), so installed packages have it too."""
    path = Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no packaged config {name!r} at {path}")
    return path
