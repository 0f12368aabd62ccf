"""The training loop every stage runs (teacher, student, any student family): resume, then `steps`
optimizer steps of `grad_accum` micro-batches each, with the log, the EMA and checkpoints.

A stage supplies a `Loop`: what trains (modules, optimizers, schedulers, EMA) and `step_fn(step,
micro)`, which draws micro-batch `micro` of step `step`, runs the forward and backward passes and
returns the logged loss terms. Everything random in a step comes from generators seeded by (seed,
stage, step, micro), so a resumed run repeats an uninterrupted one bit for bit.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vpdsr.distill.config import DistillConfig, StageConfig
from vpdsr.distill.optim import EMA
from vpdsr.distill.records import Checkpoint, CsvLog

log = logging.getLogger(__name__)


def make_accelerator(cfg: DistillConfig, grad_accum: int):
    """accelerate's Accelerator for the config's device and precision (and the pinned thread count)."""
    from accelerate import Accelerator

    if isinstance(cfg.accelerate.num_threads, int) and cfg.accelerate.num_threads:
        torch.set_num_threads(cfg.accelerate.num_threads)
    return Accelerator(cpu=cfg.accelerate.cpu, mixed_precision=cfg.accelerate.mixed_precision,
                       gradient_accumulation_steps=grad_accum)


def draw_indices(acc, grad_accum: int) -> list[int]:
    """The micro-batch draw indices `run_loop` passes for each step, in order (each DDP rank its own)."""
    return [micro * acc.num_processes + acc.process_index for micro in range(grad_accum)]


@dataclass
class Loop:
    """What one stage trains.

    Attributes:
        stage: teacher | student (the progress bar, the log lines, the checkpoint's `stage`).
        scfg: the stage's length, accumulation, EMA start and cadences.
        out: the run directory (log.csv and checkpoint/ go there).
        accelerator: accelerate's Accelerator.
        trained, optimizers, schedulers: keyed alike; "denoiser" is the network whose learning rate is
            logged and whose EMA is kept (any trained module, whatever its family calls it).
        step_fn: `step_fn(step, draw index) -> {term: float}`, one micro-batch's update.
        ema: the EMA of trained["denoiser"], or None.
        disabled: {term: reason} of the loss terms switched off (logged as "disabled").
    """

    stage: str
    scfg: StageConfig
    out: Path
    accelerator: object
    trained: dict
    optimizers: dict
    schedulers: dict
    step_fn: Callable[[int, int], dict[str, float]]
    ema: EMA | None = None
    disabled: dict = field(default_factory=dict)


def run_loop(loop: Loop, resume: bool = False, progress: bool = True, stop_at: int | None = None) -> int:
    """Train `loop` from its checkpoint (with `resume`) to `scfg.steps`, or stop after step `stop_at`.

    Returns the last completed step.
    """
    from tqdm import tqdm

    acc, scfg = loop.accelerator, loop.scfg
    unwrapped = {n: acc.unwrap_model(m) for n, m in loop.trained.items()}
    ckpt = Checkpoint(loop.out / "checkpoint", unwrapped, loop.optimizers, loop.schedulers, loop.ema)
    start = ckpt.restore(acc.device) if resume else 0
    # one log.csv, rank 0's: every rank writing its own rows into the same file interleaves them
    csv_log = CsvLog(loop.out / "log.csv", start) if acc.is_main_process else None
    for term, reason in loop.disabled.items():
        log.warning(f"warning: {loop.stage}: loss term `{term}` disabled: {reason}")
    bar = tqdm(total=scfg.steps, initial=start, desc=loop.stage, unit="step", disable=not progress or None,
               dynamic_ncols=True, file=sys.stderr)
    t0 = time.perf_counter()
    step = start
    micros = draw_indices(acc, scfg.grad_accum)  # each DDP rank draws its own batches
    for step in range(start + 1, scfg.steps + 1):
        terms = _accumulate(loop, step, micros)
        for s in loop.schedulers.values():
            s.step()
        if loop.ema is not None and step > scfg.ema.start_step:
            loop.ema.update(unwrapped["denoiser"])
        shown = {k: f"{v:.4f}" for k, v in terms.items()}
        bar.set_postfix(shown, refresh=False)
        bar.update(1)
        if csv_log is not None and (step % scfg.log_every == 0 or step == scfg.steps):
            row = {"step": step, "lr": f"{loop.optimizers['denoiser'].param_groups[0]['lr']:.3e}",
                   "seconds": f"{time.perf_counter() - t0:.3f}", **shown}
            csv_log.write({**row, **{t: "disabled" for t in loop.disabled}})
        if (scfg.checkpoint_every and step % scfg.checkpoint_every == 0) or step in (scfg.steps, stop_at):
            if acc.is_main_process:
                ckpt.save(loop.stage, step)
        if stop_at is not None and step >= stop_at:
            break
    bar.close()
    return step


def _accumulate(loop: Loop, step: int, micros: list[int]) -> dict[str, float]:
    """The `grad_accum` micro-batches of one step; their logged terms averaged."""
    terms: dict[str, float] = {}
    for draw in micros:
        with loop.accelerator.accumulate(*loop.trained.values()), loop.accelerator.autocast():
            for k, v in loop.step_fn(step, draw).items():
                terms[k] = terms.get(k, 0.0) + v / len(micros)
    return terms
