"""What a training stage leaves on disk: log.csv, the resumable checkpoint, the saved model, and the
stage's result.

Run directory of a stage (OUT/teacher or OUT/student):
    config.yaml     the resolved config (with `disabled_terms`)
    log.csv         one row per `log_every` steps: each loss term, the learning rate, seconds
    checkpoint/     the latest training state (vpdsr.distill.state: safetensors + JSON, atomic)
    model/          the trained model, loadable with vpdsr.models.from_pretrained
    eval.json/.md   held-out evaluation (vpdsr.distill.evaluate)
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vpdsr.distill.optim import EMA
from vpdsr.distill.state import load_training_state, save_training_state
from vpdsr.utils import atomic_write_text

LOG_COLUMNS = ("step", "lr", "loss", "distill", "gt_latent", "recon", "ess", "hfp", "grid", "adv", "fm", "d_loss",
               "seconds")


@dataclass
class StageResult:
    run_dir: Path
    model_dir: Path | None  # None when stopped early (stop_at)
    step: int
    seconds: float
    eval: dict | None = None
    disabled_terms: dict = field(default_factory=dict)


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


class Checkpoint:
    """OUT/checkpoint of a stage: the trained modules, their optimizers and schedulers, the EMA.

    Args:
        directory: the checkpoint folder.
        modules, optimizers, schedulers: keyed alike ("denoiser", "discriminator"); modules unwrapped.
    """

    def __init__(self, directory: Path, modules: dict, optimizers: dict, schedulers: dict, ema: EMA | None):
        self.directory, self.modules, self.optimizers, self.schedulers = directory, modules, optimizers, schedulers
        self.ema = ema

    def restore(self, device) -> int:
        """Load the checkpoint (if there is one) into the modules, optimizers, schedulers and EMA; its step or 0."""
        if not (self.directory / "state.json").is_file():
            return 0
        state = load_training_state(self.directory, self.modules, self.optimizers, self.schedulers)
        if self.ema is not None:
            self.ema.restore(state["tensors"], int(state["extra"].get("ema_updates", 0)), device)
        return int(state["step"])

    def save(self, stage: str, step: int) -> None:
        ema = self.ema
        save_training_state(self.directory, step, self.modules, self.optimizers, self.schedulers,
                            ema.tensors() if ema is not None else None,
                            {"ema_updates": ema.updates if ema else 0, "stage": stage})


def save_model(model, directory: Path, acc, extra_files: dict[str, str] | None = None) -> Path:
    """`save_pretrained` (with `extra_files` beside the weights) on the main process; every process waits."""
    from vpdsr.models import save_pretrained

    if acc.is_main_process:
        save_pretrained(model, directory, extra_files)
    acc.wait_for_everyone()
    return directory


def final_weights(module: torch.nn.Module, ema: EMA | None) -> dict[str, torch.Tensor]:
    """What the saved model holds for the trained module: the EMA when enabled, else its own weights."""
    return ema.shadow if ema is not None else module.state_dict()
