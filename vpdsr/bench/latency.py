"""Latency measurement: warm-up, a count or a time budget, percentiles, throughput, peak memory.

What is timed: one *request*, i.e. a callable that upscales one whole image (tiled), measured
with ``time.perf_counter`` around the call. The backend's own engine timing (CUDA events on
GPU, see :mod:`vpdsr.runtimes.base`) is collected separately per engine call by the harness.

Peak memory (:class:`PeakMemory`): a background thread samples the process's resident set size
(psutil) every few milliseconds while a backend is loaded and run; the figure is the highest
sample minus the RSS just before the backend was loaded, in MiB. ``ru_maxrss`` was not used:
it is a high-water mark of the whole process, so a backend that needs less than an earlier one
would read 0. Sampling can miss a spike shorter than the interval, so the figure is a lower
bound of the true peak. On CUDA, ``torch.cuda.max_memory_allocated`` is reported as well.

Example:
    >>> stats = summarize([0.010, 0.012, 0.011], images_per_call=1)
    >>> round(stats.p50_ms, 3)
    11.0
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from vpdsr.errors import ConfigError

MIB = 1024 * 1024


@dataclass(frozen=True)
class LatencyConfig:
    """How long to measure.

    Attributes:
        warmup: untimed calls first (lazy initialisation, caches, JIT).
        iters: timed calls at most.
        budget_s: stop early once this many seconds of timed calls have passed (None: no limit);
            at least one timed call always runs.
        threads: CPU threads for the backends (None: the library default; "auto": 1 or all cores,
            whichever a short probe at the start finds faster, see :func:`vpdsr.env.probe_threads`).
    """

    warmup: int = 2
    iters: int = 10
    budget_s: float | None = None
    threads: int | str | None = None

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ConfigError(f"`warmup` must be >= 0, got {self.warmup}")
        if self.iters < 1:
            raise ConfigError(f"`iters` must be >= 1, got {self.iters}")
        if self.budget_s is not None and self.budget_s <= 0:
            raise ConfigError(f"`budget_s` must be > 0 seconds, got {self.budget_s}")
        if self.threads is not None and self.threads != "auto" and (not isinstance(self.threads, int)
                                                                    or self.threads < 1):
            raise ConfigError(f"`threads` must be >= 1 or 'auto', got {self.threads!r}")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of timed calls, in milliseconds; throughput in images per second."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    throughput_ips: float

    def latency_dict(self) -> dict[str, float]:
        """The report's ``latency_ms`` object."""
        return {"p50": self.p50_ms, "p90": self.p90_ms, "p99": self.p99_ms, "mean": self.mean_ms,
                "min": self.min_ms, "max": self.max_ms, "std": self.std_ms, "n": self.n}

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples_s: list[float], images_per_call: int = 1) -> LatencyStats:
    """Percentiles (linear interpolation, numpy's default), mean and throughput of timings.

    Args:
        samples_s: duration of each timed call in seconds.
        images_per_call: images one call processes; throughput = images_per_call / mean.
    """
    if not samples_s:
        raise ConfigError("no latency samples to summarize")
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    mean = float(ms.mean())
    return LatencyStats(
        n=len(ms), p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=mean, min_ms=float(ms.min()),
        max_ms=float(ms.max()), std_ms=float(ms.std()),
        throughput_ips=images_per_call * 1000.0 / mean if mean > 0 else float("inf"),
    )


def measure(fn: Callable[[], object], cfg: LatencyConfig,
            on_call: Callable[[int, int], None] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Call ``fn`` ``cfg.warmup`` times untimed, then time up to ``cfg.iters`` calls.

    Args:
        fn: one request (it must block until its result is ready).
        cfg: counts and budget.
        on_call: ``on_call(done, planned)`` after every call (warm-up included), for progress.
        clock: seconds (tests pass one that ``fn`` advances).

    Returns:
        The duration of each timed call, seconds.
    """
    planned = cfg.warmup + cfg.iters
    for i in range(cfg.warmup):
        fn()
        if on_call:
            on_call(i + 1, planned)
    samples: list[float] = []
    spent = 0.0
    while len(samples) < cfg.iters:
        t0 = clock()
        fn()
        samples.append(clock() - t0)
        spent += samples[-1]
        if on_call:
            on_call(cfg.warmup + len(samples), planned)
        if cfg.budget_s is not None and spent >= cfg.budget_s:
            break
    return samples


class PeakMemory:
    """Peak RSS growth of this process while the ``with`` block runs (see the module docstring).

    Example:
        >>> with PeakMemory() as mem:
        ...     buf = bytearray(50 * MIB)
        >>> mem.peak_mb >= 0
        True
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        return self._process.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakMemory:
        import psutil

        self._process = psutil.Process()
        self.baseline = self.peak = self._rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="vpdsr-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._rss())

    def sample_now(self) -> None:
        """Take a sample from the caller's thread (right after a call, where usage is highest)."""
        self.peak = max(self.peak, self._rss())

    @property
    def peak_mb(self) -> float:
        return max(0, self.peak - self.baseline) / MIB


def cuda_peak_reset(device: str) -> None:
    """Reset torch's CUDA peak-allocation counter when ``device`` is a CUDA device."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():  # else the runner itself refuses the device, in one line
            torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mb(device: str) -> float | None:
    """``torch.cuda.max_memory_allocated`` in MiB for a CUDA device, else None."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated(device) / MIB if torch.cuda.is_available() else None
