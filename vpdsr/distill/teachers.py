"""Any model the toolkit loads, as the teacher of a student: where it is and how its targets are made.

A teacher is a model directory, a run directory holding model/, a shipped checkpoint (tiny-teacher),
or a preset with real weights on this machine (realesrgan-x4plus). Its targets come in two kinds:

- sampled (`SamplerTeacher`): the teacher is the student's own family and network (a VPDSR teacher of
  a VPDSR student, a ResShift model of its one-step copy). Its T-step sampling from the student's own
  x_T is the target, in latent space (VPD-SR's vanilla distillation); it depends on each step's
  noise, so it is computed every step (ahead, in the draw worker, where one runs).
- outputs (`OutputTeacher`): any other model (a GAN, a converted ResShift/SinSR for a VPDSR student,
  the fp32 original of a fake-quantized student): its SR output on the LR crop is the target, in
  pixels, cached on disk (vpdsr.distill.target_cache) so a resumed or repeated run does not compute
  it again. Where the student's noise has the teacher's shape they start from the same noise.

`student.targets: auto` takes sampled when the teacher is the student's family, outputs otherwise.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vpdsr.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
SAMPLED, OUTPUTS = "sampled", "outputs"


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


def teacher_directory(source: str | Path) -> Path:
    """`resolve_model_dir`, or the model directory of a preset with real weights (realesrgan-x4plus: its
    weights converted on first use)."""
    from vpdsr.models.presets import preset_weights

    try:
        return resolve_model_dir(source)
    except CheckpointError as e:
        provider = preset_weights(str(source)) if len(Path(source).parts) == 1 else None
        if provider is None:
            raise CheckpointError(f"{e}, or a preset with real weights such as realesrgan-x4plus") from None
    return Path(provider())


def family_name(model_dir: Path) -> str:
    """The `_class_name` of a model directory's config.json (VPDSR when absent); one-line CheckpointError."""
    from vpdsr.models.checkpoint import load_config
    from vpdsr.models.families import family_of

    return family_of(load_config(model_dir)).name


def target_kind(cfg, teacher_family: str) -> str:
    """`student.targets` resolved: sampled or outputs (see the module docstring)."""
    from vpdsr.models.families import family_of

    student_family = family_of(cfg.model_config()).name
    kind = cfg.student.targets
    if kind == "auto":
        return SAMPLED if teacher_family == student_family else OUTPUTS
    if kind == SAMPLED and teacher_family != student_family:
        raise ConfigError(f"`student.targets: sampled` needs a teacher of the student's family ({student_family}), "
                          f"got a {teacher_family} model: use `outputs` (its SR outputs on the LR crops)")
    return kind


class SamplerTeacher:
    """The student's own family as teacher: its T-step sampling from the student's x_T, in latent space."""

    kind = SAMPLED
    space = "latent"

    def __init__(self, model, directory: Path, sample):
        self.model, self.directory, self._sample = model, directory, sample

    @torch.no_grad()
    def target(self, y: torch.Tensor, noise: torch.Tensor, lr: torch.Tensor, generator: torch.Generator):
        return self._sample(self.model, y, noise, lr, generator)


@dataclass(frozen=True)
class OutputCall:
    """How an `OutputTeacher` is called: `forward` (one call: a GAN, a one-step model) or `sample` (its
    T-step `teacher_sample`, per-step noise seeded by `seed`); outputs clamped to [0, 1]."""

    call: str = "forward"
    seed: int = 0

    def to_dict(self) -> dict:
        return {"call": self.call, "seed": self.seed}


class OutputTeacher:
    """Any model as teacher: its SR output on each LR crop, in pixels, cached on disk.

    Args:
        model: an SRModel (frozen, eval).
        directory: where it was loaded from (the draw worker loads it again).
        call: how it is called.
        cache: its TargetCache, or None (compute every time).
    """

    kind = OUTPUTS
    space = "pixel"

    def __init__(self, model, directory: Path, call: OutputCall, cache):
        self.model, self.directory, self.call, self.cache = model, directory, call, cache

    def noise_for(self, lr1: torch.Tensor, noise1: torch.Tensor | None, generator: torch.Generator | None):
        """The teacher's noise for one crop: the student's where the shapes agree, else drawn from `generator`
        (None for a model without noise)."""
        from vpdsr.distill.evaluate import fit_size

        shape = self.model.noise_shape(tuple(fit_size(self.model, lr1)[0].shape))  # padded to its size rule
        if shape is None:
            return None
        if noise1 is not None and tuple(noise1.shape) == tuple(shape):
            return noise1
        return torch.randn(shape, generator=generator).to(lr1)

    @torch.no_grad()
    def output(self, lr1: torch.Tensor, noise1: torch.Tensor | None) -> torch.Tensor:
        """The teacher's SR of one crop [1,3,h,w] (from the cache when it is there)."""
        if self.cache is None:
            return self._run(lr1, noise1)
        return self.cache.get_or_compute(lr1, noise1, lambda: self._run(lr1, noise1))

    def _run(self, lr1: torch.Tensor, noise1: torch.Tensor | None) -> torch.Tensor:
        from vpdsr.distill.evaluate import fit_size

        lr_in, keep = fit_size(self.model, lr1)
        args = (lr_in,) if noise1 is None else (lr_in, noise1)
        if self.call.call == "sample":
            g = torch.Generator(device=lr1.device).manual_seed(self.call.seed)
            sr = self.model.teacher_sample(*args, generator=g)
        else:
            sr = self.model(*args)
        return keep(sr).clamp(0.0, 1.0).contiguous()

    @torch.no_grad()
    def target(self, y, noise: torch.Tensor | None, lr: torch.Tensor, generator: torch.Generator | None):
        """The outputs of a batch, crop by crop (a crop's output never depends on the others in its batch)."""
        outs = []
        for i in range(lr.shape[0]):
            lr1 = lr[i:i + 1]
            outs.append(self.output(lr1, self.noise_for(lr1, None if noise is None else noise[i:i + 1], generator)))
        return torch.cat(outs)


@dataclass(frozen=True)
class TeacherPlan:
    """A teacher found and checked, not yet loaded (`load` builds it: after the stage seeds torch)."""

    source: str
    directory: Path
    family: str
    kind: str  # sampled | outputs

    def load(self, cfg, device):
        """The SamplerTeacher or OutputTeacher, frozen, on `device`."""
        from vpdsr.models.checkpoint import load_directory

        if self.kind == OUTPUTS:
            return output_teacher(cfg, self.directory, device)
        model = load_directory(self.directory).to(device).eval().requires_grad_(False)
        if self.family == "ResShiftSR":
            from vpdsr.distill.resshift_student import teacher_target

            mode = cfg.resshift.teacher_noise
            return SamplerTeacher(model, self.directory, lambda m, y, n, lr, g: teacher_target(m, y, n, lr, g, mode))
        return SamplerTeacher(model, self.directory, lambda m, y, n, lr, g: m.teacher_sample_latent(y, n, generator=g))


def plan_teacher(cfg, source: str | Path) -> TeacherPlan:
    """Find `source` and check it against the config (one-line CheckpointError / ConfigError), reading
    config files only: nothing is built or written."""
    directory = teacher_directory(source)
    family = family_name(directory)
    kind = target_kind(cfg, family)
    if kind == SAMPLED and family == "ResShiftSR":
        from vpdsr.distill.resshift_student import check_teacher

        check_teacher(cfg, directory)
    return TeacherPlan(str(source), directory, family, kind)


def output_teacher(cfg, directory: Path, device) -> OutputTeacher:
    """`directory`'s model as an OutputTeacher with its target cache (`student.target_cache`)."""
    from vpdsr.distill.target_cache import TargetCache, model_hash
    from vpdsr.models.checkpoint import load_directory

    model = load_directory(directory).to(device).eval().requires_grad_(False)
    call = cfg.student.teacher_call
    if call == "auto":
        call = "sample" if hasattr(model, "teacher_sample") and model.latent_channels else "forward"
    if call == "sample" and not hasattr(model, "teacher_sample"):
        raise ConfigError(f"`student.teacher_call: sample`: a {type(model).__name__} model has no multi-step sampler")
    how = OutputCall(call, cfg.seed)
    sc = cfg.student
    cache = None
    if sc.target_cache != "off":
        cache = TargetCache(Path(sc.target_cache) if sc.target_cache else None, model_hash(model), how.to_dict())
    return OutputTeacher(model, directory, how, cache)
