"""CPU threads for training: a pinned count (reproducible weights) or a short probe at start.

Measured on the 2-core AMD EPYC machines (torch 2.14.1, tiny preset, `python -m vpdsr.distill.threads`):
- The thread count changes the weights. 30 teacher steps with 1 and with 2 threads differ by up to
  2.4e-7, 12 student steps by up to 8.7e-4 (the weight-gradient reductions of the convolutions, the
  discriminator's spectral-norm power iteration and gradient-norm clipping split their sums across
  threads); the same count gives the same bits every time. So a config whose weights are shipped
  (configs/tiny.yaml, configs/tiny-perceptual.yaml) pins the count they were made with: 1.
- The denoiser's forward pass, gradients with respect to inputs and the teacher's gradient-free
  sampling give the same bits with 1 or 2 threads, but running forward passes with 2 threads and the
  rest with 1 was slower than 1 thread throughout (0.52 vs 0.37 s per teacher step, 8.5 vs 1.1 s per
  student step): each change of the count makes oneDNN build its convolution kernels again.
- 2 threads for everything: 1.36x (teacher) and 1.65x (student) faster on a quiet machine, several
  times SLOWER when other jobs share the 2 cores.

`accelerate.num_threads: auto` therefore runs a short probe at the start of a stage: a few forward +
backward passes on the first batch with each count (1 .. the CPUs this process may use), the fastest
wins and is written to threads.json. The run reproduces with that count (set it to repeat the run).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from vpdsr.errors import ConfigError


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class ProbeResult:
    """Seconds per probe step for each thread count, and the count chosen."""

    chosen: int
    seconds: dict[int, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = ", ".join(f"{n}: {self.seconds[n] * 1000:.0f} ms" for n in sorted(self.seconds))
        return f"{self.chosen} thread(s) (probe, per forward+backward step: {parts})"


def probe_threads(step: Callable[[], None], counts: tuple[int, ...], repeats: int = 2) -> ProbeResult:
    """Time `step` with each thread count (one untimed warm-up each), set and return the fastest.

    Args:
        step: one forward + backward pass that leaves no trace (no optimiser step; it clears its grads).
        counts: thread counts to try.
    """
    result = ProbeResult(chosen=counts[0])
    for n in counts:
        torch.set_num_threads(n)
        step()  # warm-up: kernels are built for this count
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        result.seconds[n] = min(times)
    result.chosen = min(result.seconds, key=result.seconds.get)
    torch.set_num_threads(result.chosen)
    return result


def parse_num_threads(value) -> int | str:
    """`auto` or an integer >= 0 (0 = leave torch's default)."""
    if value == "auto":
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"`accelerate.num_threads` must be auto or an integer >= 0, got {value!r}")
    return value


def measure(config, steps: int = 20, student_steps: int = 8, rounds: int = 2, teacher="tiny-teacher",
            counts: tuple[int, ...] = (1, 2)) -> list[dict]:
    """Seconds per step of the teacher and the student stage with each thread count, side by side.

    Counts alternate within each round (a change of machine load hits all of them), the loop's own
    clock is read from log.csv (set-up and evaluation excluded), and each count's weights are
    compared bit for bit with the first count's.

    Example:
        python -m vpdsr.distill.threads configs/tiny.yaml --steps 20 --student-steps 8
    """
    import csv
    import tempfile
    from pathlib import Path

    from safetensors.torch import load_file

    from vpdsr.distill.config import load_config
    from vpdsr.distill.trainer import train_student, train_teacher

    rows: dict[int, dict] = {n: {"threads": n, "teacher_s_all": [], "student_s_all": []} for n in counts}
    first: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for n in counts:
                cfg = load_config(config)
                cfg.accelerate.num_threads = n
                cfg.eval.enabled = False
                cfg.teacher.log_every = cfg.student.log_every = 1
                stages = (("teacher", steps, lambda c, o: train_teacher(c, o, progress=False, stop_at=steps)),
                          ("student", student_steps,
                           lambda c, o: train_student(c, teacher, o, progress=False, stop_at=student_steps)))
                for stage, k, run in stages:
                    if not k:
                        continue
                    out = Path(tmp) / f"{stage}-{r}-{n}"
                    run(cfg, out)
                    log = list(csv.DictReader((out / "log.csv").open()))
                    rows[n][f"{stage}_s_all"].append(float(log[-1]["seconds"]) / k)
                    weights = load_file(str(out / "checkpoint" / "modules.safetensors"))
                    ref = first.setdefault(stage, weights)
                    same = all(torch.equal(ref[key], weights[key]) for key in ref)
                    rows[n][f"{stage}_identical"] = rows[n].get(f"{stage}_identical", True) and same
    for row in rows.values():
        for stage in ("teacher", "student"):
            times = row[f"{stage}_s_all"]
            row[f"{stage}_s_per_step"] = min(times) if times else None
    return list(rows.values())


def _main(argv=None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(description="steps/s of distillation with 1 and 2 threads, side by side")
    p.add_argument("config")
    p.add_argument("--steps", type=int, default=20, help="teacher steps per count and round")
    p.add_argument("--student-steps", type=int, default=8, help="student steps per count and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--teacher", default="tiny-teacher", help="the student stage's teacher")
    args = p.parse_args(argv)
    rows = measure(args.config, args.steps, args.student_steps, args.rounds, args.teacher)
    print("| threads | teacher s/step (steps/s) | student s/step (steps/s) | weights as with the first count |")
    print("|---|---|---|---|")
    for r in rows:
        cells = []
        for stage in ("teacher", "student"):
            s = r[f"{stage}_s_per_step"]
            cells.append(f"{s:.3f} ({1 / s:.2f})" if s else "")
        same = all(r.get(f"{st}_identical", True) for st in ("teacher", "student"))
        print(f"| {r['threads']} | {cells[0]} | {cells[1]} | {'identical' if same else 'DIFFERENT'} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
