"""CPU threads for training: a fixed count where numerics depend on it, a probed one where they do not.

Measured on the 2-core machines (AMD EPYC, torch 2.14.1): one distillation step with 1 and with 2
torch threads gives different weights (the weight-gradient reductions of convolutions, the
discriminator's spectral-norm power iteration and the optimiser's gradient-norm clipping are split
across threads), while the denoiser's forward pass, gradients with respect to inputs, and the
teacher's gradient-free sampling give the same bits with any thread count. So:

- `accelerate.num_threads` (the "train threads") runs everything that shapes the weights:
  backward, discriminator, losses, optimiser. The shipped tiny weights were made with 1.
- `accelerate.forward_threads` runs the denoiser's forward passes (and the teacher's sampling):
  `same` (= num_threads), a number, or `auto`: a short probe at start times a forward pass with
  each count and checks that a forward (at that count) + backward (at num_threads) step gives
  gradients bit-identical to the train-threads step; the fastest identical count wins. Because
  the count cannot change the result, it is re-checked every `reprobe_every` steps (a busy
  machine makes 2 threads on 2 cores several times slower than 1) and switched freely.

On a GPU none of this applies (the plan is inert).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
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
    """What the start-up probe measured: seconds per forward pass and bit-identity, per thread count."""

    train_threads: int
    chosen: int
    seconds: dict[int, float] = field(default_factory=dict)
    identical: dict[int, bool] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{n}: {self.seconds[n] * 1000:.0f} ms/forward" + ("" if self.identical.get(n, True) else
                                                                      " (gradients differ: not used)")
                 for n in sorted(self.seconds)]
        return f"forward threads {self.chosen} (train threads {self.train_threads}; probe: {', '.join(parts)})"


class ThreadPlan:
    """Switches torch's thread count around forward passes; inert when `enabled` is False (GPU, `same`).

    Args:
        train_threads: the count everything else runs with (0 = leave torch's setting).
        forward_threads: the count forward passes start with.
        candidates: counts allowed for forward passes (all checked bit-identical).
        reprobe_every: every this many steps one step's forward passes try another candidate; the
            faster (running mean) stays. 0 = never.
    """

    def __init__(self, train_threads: int, forward_threads: int, candidates: tuple[int, ...] = (),
                 reprobe_every: int = 0, enabled: bool = True):
        self.train_threads = train_threads or torch.get_num_threads()
        self.current = forward_threads or self.train_threads
        self.candidates = tuple(candidates) or (self.current,)
        self.reprobe_every = reprobe_every if len(self.candidates) > 1 else 0
        self.enabled = enabled and (self.current != self.train_threads or len(self.candidates) > 1)
        self.mean: dict[int, float] = {}
        self._trial: int | None = None
        self._step_seconds = 0.0
        self.switches: list[tuple[int, int]] = []  # (step, new count)

    @contextmanager
    def forward(self):
        """Run the enclosed forward passes with the forward thread count, then restore the train count."""
        if not self.enabled:
            yield
            return
        n = self._trial or self.current
        torch.set_num_threads(n)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._step_seconds += time.perf_counter() - t0
            torch.set_num_threads(self.train_threads)

    def step_done(self, step: int) -> None:
        """Book this step's forward time; maybe start (or conclude) a trial of another count."""
        if not self.enabled:
            return
        n, dt = self._trial or self.current, self._step_seconds
        self._step_seconds = 0.0
        self.mean[n] = dt if n not in self.mean else 0.8 * self.mean[n] + 0.2 * dt
        if self._trial is not None:
            if self.mean[self._trial] < self.mean.get(self.current, float("inf")):
                self.current = self._trial
                self.switches.append((step, self.current))
            self._trial = None
        elif self.reprobe_every and step % self.reprobe_every == 0:
            others = [c for c in self.candidates if c != self.current]
            self._trial = others[(step // self.reprobe_every) % len(others)]


def parse_forward_threads(value) -> int | str:
    """`same`, `auto` or a positive integer (YAML may give an int or a numeric string)."""
    if isinstance(value, bool):
        raise ConfigError(f"`accelerate.forward_threads` must be same, auto or a positive integer, got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        n = int(value)
        if n < 1:
            raise ConfigError(f"`accelerate.forward_threads` must be >= 1, got {n}")
        return n
    if value in ("same", "auto"):
        return value
    raise ConfigError(f"`accelerate.forward_threads` must be same, auto or a positive integer, got {value!r}")


def probe(forward: Callable[[], torch.Tensor], params: list[torch.nn.Parameter], train_threads: int,
          candidates: tuple[int, ...], repeats: int = 2) -> ProbeResult:
    """Time `forward` with each thread count and check forward(count) + backward(train) gradients.

    Args:
        forward: builds a scalar loss from the trained module (the same inputs every call).
        params: the parameters whose gradients must be bit-identical.
        train_threads: the count backward (and the reference forward) runs with.
        candidates: thread counts to try (train_threads is always one).
    """
    result = ProbeResult(train_threads, train_threads)
    reference = _grads(forward, params, train_threads, train_threads)
    for n in sorted({train_threads, *candidates}):
        torch.set_num_threads(n)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                forward()
            times.append(time.perf_counter() - t0)
        result.seconds[n] = min(times)
        result.identical[n] = n == train_threads or grads_equal(_grads(forward, params, n, train_threads), reference)
    torch.set_num_threads(train_threads)
    usable = [n for n in result.seconds if result.identical[n]]
    result.chosen = min(usable, key=lambda n: result.seconds[n])
    return result


def _grads(forward, params, forward_threads: int, train_threads: int) -> list:
    for p in params:
        p.grad = None
    torch.set_num_threads(forward_threads)
    loss = forward()
    torch.set_num_threads(train_threads)
    loss.backward()
    grads = [p.grad.clone() if p.grad is not None else None for p in params]
    for p in params:
        p.grad = None
    return grads


def grads_equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
                                    for x, y in zip(a, b))


MODES = {"1 thread": (1, "same"), "forward 2, train 1": (1, 2), "2 threads": (2, "same")}


def measure(config, steps: int = 20, student_steps: int = 8, rounds: int = 2, teacher="tiny-teacher") -> list[dict]:
    """Seconds per step of the teacher and the student stage for each of `MODES`, side by side.

    Modes alternate within each round (so a change of machine load hits all of them), the loop's own
    clock is read from log.csv (set-up and evaluation excluded), and each mode's weights are
    compared bit for bit with the first mode's.

    Example:
        python -m vpdsr.distill.threads configs/tiny.yaml --steps 20 --student-steps 8
    """
    import csv
    import tempfile
    from pathlib import Path

    from safetensors.torch import load_file

    from vpdsr.distill.config import load_config
    from vpdsr.distill.trainer import train_student, train_teacher

    rows: dict[str, dict] = {m: {"mode": m, "teacher_s": [], "student_s": []} for m in MODES}
    first: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for mode, (train, forward) in MODES.items():
                cfg = load_config(config)
                cfg.accelerate.num_threads, cfg.accelerate.forward_threads = train, forward
                cfg.eval.enabled = False
                cfg.teacher.log_every = cfg.student.log_every = 1
                for stage, n, run in (("teacher", steps, lambda c, o: train_teacher(c, o, progress=False, stop_at=steps)),
                                      ("student", student_steps,
                                       lambda c, o: train_student(c, teacher, o, progress=False, stop_at=student_steps))):
                    if not n:
                        continue
                    out = Path(tmp) / f"{stage}-{r}-{mode.replace(' ', '_').replace(',', '')}"
                    run(cfg, out)
                    log = list(csv.DictReader((out / "log.csv").open()))
                    rows[mode][f"{stage}_s"].append(float(log[-1]["seconds"]) / n)
                    weights = load_file(str(out / "checkpoint" / "modules.safetensors"))
                    ref = first.setdefault(stage, weights)
                    same = all(torch.equal(ref[k], weights[k]) for k in ref)
                    rows[mode][f"{stage}_identical"] = rows[mode].get(f"{stage}_identical", True) and same
    for row in rows.values():
        for stage in ("teacher", "student"):
            times = row.pop(f"{stage}_s")
            row[f"{stage}_s_per_step"] = min(times) if times else None
            row[f"{stage}_s_all"] = times
    return list(rows.values())


def _main(argv=None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(description="steps/s of distillation with 1 and 2 threads, side by side")
    p.add_argument("config")
    p.add_argument("--steps", type=int, default=20, help="teacher steps per mode and round")
    p.add_argument("--student-steps", type=int, default=8, help="student steps per mode and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--teacher", default="tiny-teacher", help="the student stage's teacher")
    args = p.parse_args(argv)
    rows = measure(args.config, args.steps, args.student_steps, args.rounds, args.teacher)
    print("| mode | teacher s/step (steps/s) | student s/step (steps/s) | weights as with 1 thread |")
    print("|---|---|---|---|")
    for r in rows:
        cells = []
        for stage in ("teacher", "student"):
            s = r[f"{stage}_s_per_step"]
            cells.append(f"{s:.3f} ({1 / s:.2f})" if s else "")
        same = all(r.get(f"{st}_identical", True) for st in ("teacher", "student"))
        print(f"| {r['mode']} | {cells[0]} | {cells[1]} | {'identical' if same else 'DIFFERENT'} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
