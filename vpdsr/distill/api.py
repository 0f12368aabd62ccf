"""`run_distill`: the Python entry point of the distill stage (used by the CLI and `vpdsr pipeline`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vpdsr.distill.config import DistillConfig, load_config
from vpdsr.distill.trainer import StageResult, train_student, train_teacher
from vpdsr.errors import ConfigError

STAGES = ("teacher", "student", "all", "autoencoder")


@dataclass
class DistillResult:
    teacher: StageResult | None
    student: StageResult | None

    @property
    def model_dir(self) -> Path | None:
        """The student model directory (or the teacher's when only the teacher was trained)."""
        stage = self.student or self.teacher
        return stage.model_dir if stage else None


def run_distill(config: str | Path | dict | DistillConfig | None, out: str | Path, stage: str = "all",
                teacher: str | Path | None = None, resume: bool = False, progress: bool = True) -> DistillResult:
    """Train the teacher and/or distill the student.

    Args:
        config: a YAML path, a dict, a DistillConfig, or None for the built-in defaults.
        out: output folder; `all` writes OUT/teacher and OUT/student, a single stage writes OUT itself.
        stage: teacher | student | all | autoencoder (trains a learned vq/kl f=4 autoencoder into OUT/autoencoder).
        teacher: the teacher model directory (or teacher run directory, or shipped name); default the config's
            `student.teacher`. Needed by `student`; with `all` it means: train no teacher, distil from this one.
        resume: continue each stage from its checkpoint (a finished stage is not retrained).

    Example:
        >>> result = run_distill("configs/tiny.yaml", "runs/tiny")   # doctest: +SKIP
        >>> result.model_dir                                           # runs/tiny/student/model
    """
    if stage not in STAGES:
        raise ConfigError(f"distill stage must be one of {', '.join(STAGES)}, got {stage!r}")
    cfg = config if isinstance(config, DistillConfig) else load_config(config)
    out = Path(out)
    if resume:  # a corrupt checkpoint is one line now, not a traceback after the teacher has trained
        from vpdsr.distill.state import STATE_NAME, check_training_state

        runs = [out / "teacher", out / "student"] if stage == "all" else [out]
        for run in runs:
            if (run / "checkpoint" / STATE_NAME).is_file():  # what the trainer resumes from
                check_training_state(run / "checkpoint")
    if stage == "autoencoder":
        from vpdsr.distill.autoencoder import train_autoencoder

        train_autoencoder(cfg, out, progress=progress)
        return DistillResult(None, None)
    if stage == "teacher":
        return DistillResult(train_teacher(cfg, out, resume=resume, progress=progress), None)
    if stage == "student":
        if teacher is None and cfg.student.teacher is None:
            raise ConfigError("`vpdsr distill student` needs `--teacher DIR` (a trained teacher) or `student.teacher`")
        return DistillResult(None, train_student(cfg, teacher, out, resume=resume, progress=progress))
    if teacher is not None or cfg.student.teacher is not None:  # distil from a given teacher: train none
        return DistillResult(None, train_student(cfg, teacher, out / "student", resume=resume, progress=progress))
    t = _teacher_done(out / "teacher") if resume else None
    t = t or train_teacher(cfg, out / "teacher", resume=resume, progress=progress)
    s = train_student(cfg, t.model_dir, out / "student", resume=resume, progress=progress)
    return DistillResult(t, s)


def _teacher_done(run_dir: Path) -> StageResult | None:
    """A teacher run that already finished (its model is saved and its checkpoint is at the last step)."""
    import json

    state = run_dir / "checkpoint" / "state.json"
    cfg_path = run_dir / "config.yaml"
    if not ((run_dir / "model" / "config.json").is_file() and state.is_file() and cfg_path.is_file()):
        return None
    steps = load_config(cfg_path).teacher.steps
    step = json.loads(state.read_text())["step"]
    return StageResult(run_dir, run_dir / "model", step, 0.0) if step >= steps else None
