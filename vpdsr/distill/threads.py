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
