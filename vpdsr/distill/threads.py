"""CPU threads for training: a pinned count (reproducible weights) or a short probe at start.

Measured on the 2-core AMD EPYC machines (torch 2.14.1, tiny preset, `python -m vpdsr.distill.thread_timing`):
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

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vpdsr.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class ProbeResult:
    """Seconds per probe step for each thread count, and the count chosen."""

    chosen: int
    seconds: dict[int, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = ", ".join(f"{n}: {self.seconds[n] * 1000:.0f} ms" for n in sorted(self.seconds))
        return f"{self.chosen} thread(s) (probe, per forward+backward step: {parts})"


def probe_threads(step: Callable[[], None], counts: tuple[int, ...], repeats: int = 2,
                  clock: Callable[[], float] = time.perf_counter) -> ProbeResult:
    """Time `step` with each thread count (one untimed warm-up each), set and return the fastest.

    Args:
        step: one forward + backward pass that leaves no trace (no optimiser step; it clears its grads).
        counts: thread counts to try.
        clock: seconds (tests pass one that `step` advances).
    """
    result = ProbeResult(chosen=counts[0])
    for n in counts:
        torch.set_num_threads(n)
        step()  # warm-up: kernels are built for this count
        times = []
        for _ in range(repeats):
            t0 = clock()
            step()
            times.append(clock() - t0)
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


def choose_threads(cfg, acc, stage: str, out: Path, step: Callable[[], None], progress: bool) -> None:
    """`accelerate.num_threads: auto` on CPU: probe the counts with `step`, keep the fastest, record it in
    OUT/threads.json (the weights depend on the count: pin it there to repeat the run)."""
    from vpdsr.env import available_cpus
    from vpdsr.utils import atomic_write_text

    if cfg.accelerate.num_threads != "auto" or acc.device.type != "cpu":
        return
    result = probe_threads(step, tuple(range(1, available_cpus() + 1)))
    # on the terminal when progress is shown, in the log file always
    log.log(logging.INFO if progress else logging.DEBUG, f"{stage}: {result.summary()}")
    atomic_write_text(out / "threads.json", json.dumps(
        {"num_threads": result.chosen, "seconds_per_probe_step": result.seconds,
         "note": "the weights depend on the thread count: set accelerate.num_threads to this to repeat the run"},
        indent=1) + "\n")
