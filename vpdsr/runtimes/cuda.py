"""CUDA helpers shared by the GPU runners: device names, capabilities, event timing, CUDA graphs.

`torch` is a hard dependency, so the CUDA runtime is reached through it (no pycuda/cuda-python).
Nothing here initialises CUDA at import time; device names are parsed without touching a GPU, so
the refusals (`cuda:x`, `gpu`, `cuda:-1`) are one-line errors on any machine.
"""
from __future__ import annotations

import logging
import re

from vpdsr.errors import CapabilityError, ConfigError

log = logging.getLogger(__name__)
_CUDA_NAME = re.compile(r"cuda(?::(\d+))?")


def is_cuda(device: str | None) -> bool:
    """True for "cuda" and "cuda:N" (whatever N), False for anything else."""
    return str(device or "").split(":")[0].lower() == "cuda"


def cuda_index(device: str) -> int:
    """`"cuda"` -> 0, `"cuda:N"` -> N.

    Raises:
        ConfigError: anything else ("gpu", "cuda:x", "cuda:-1", "cuda:0:1").
    """
    m = _CUDA_NAME.fullmatch(str(device).strip().lower())
    if m is None:
        raise ConfigError(f"`device` must be cuda or cuda:N (N a GPU index >= 0), got {device!r}")
    return int(m.group(1) or 0)


def require_cuda(device: str, what: str):
    """The `torch.device` of `device` ("cuda[:N]") after checking this machine has that GPU.

    Args:
        device: "cuda" or "cuda:N".
        what: who asks, for the message (e.g. "torch-fp16").

    Raises:
        ConfigError: not a CUDA device name.
        CapabilityError: torch sees no CUDA device, or fewer than N+1 of them.
    """
    import torch

    index = cuda_index(device)
    if not torch.cuda.is_available():
        raise CapabilityError(f"{what}: device {device!r} asked for, but torch sees no CUDA device")
    count = torch.cuda.device_count()
    if index >= count:
        raise CapabilityError(f"{what}: device cuda:{index} asked for, but this machine has {count} CUDA device(s) "
                              f"(cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def capability(dev) -> tuple[int, int]:
    """(major, minor) compute capability of a torch CUDA device."""
    import torch

    return tuple(torch.cuda.get_device_capability(dev))


def capability_text(cc) -> str:
    """(8, 9) / [8, 9] / "8.9" -> "8.9"."""
    return ".".join(str(int(x)) for x in cc) if isinstance(cc, (list, tuple)) else str(cc)


class CudaEventTimer:
    """Seconds between `start()` and `stop()` on one CUDA stream, counted by CUDA events.

    Kernels are asynchronous: a host clock around a launch measures the launch, not the work.
    Events recorded on the stream the work runs on, and a synchronise on the end event, count
    the work itself.
    """

    def __init__(self, dev, stream=None):
        import torch

        with torch.cuda.device(dev):
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        self.dev, self.stream = dev, stream

    def _stream(self):
        import torch

        return self.stream if self.stream is not None else torch.cuda.current_stream(self.dev)

    def start(self) -> None:
        self._events[0].record(self._stream())

    def stop(self) -> float:
        self._events[1].record(self._stream())
        self._events[1].synchronize()
        return self._events[0].elapsed_time(self._events[1]) / 1000.0


class CudaGraphs:
    """`fn(*tensors)` captured into one CUDA graph per input signature (shapes, dtypes), then replayed.

    Replaying a graph launches every kernel of the call at once, so the host's per-kernel launch
    cost (large beside a small tile's kernels) disappears. A graph fixes its input and output
    addresses: inputs are copied into the graph's own static tensors, and the returned output is
    the graph's static output, valid until the next call (the runner copies it to the host at once).
    All graphs share one memory pool: safe because no output outlives the next replay.

    A capture that fails (an op that synchronises, a CPU copy in the forward) is not retried:
    every later call runs `fn` eagerly and `fallback_reason` says why; so does a call with an
    input signature beyond `max_graphs` (each graph holds its activations' memory).
    """

    def __init__(self, fn, max_graphs: int = 8, warmup: int = 2):
        self.fn, self.max_graphs, self.warmup = fn, int(max_graphs), int(warmup)
        self.graphs: dict[tuple, tuple] = {}
        self.fallback_reason: str | None = None  # capture failed: every call runs eagerly
        self.overflow_reason: str | None = None  # too many shapes: the new ones run eagerly
        self.eager_calls = 0
        self._pool = None

    @staticmethod
    def signature(args) -> tuple:
        return tuple((tuple(a.shape), str(a.dtype), str(a.device)) for a in args)

    def __call__(self, *args):
        key = self.signature(args)
        entry = self.graphs.get(key)
        if entry is None and self.fallback_reason is None:
            if len(self.graphs) >= self.max_graphs:
                if self.overflow_reason is None:
                    self.overflow_reason = (f"more than {self.max_graphs} input shapes (one CUDA graph each): "
                                            "new shapes run eagerly")
                    log.warning(self.overflow_reason)
            else:
                entry = self._capture(key, args)
        if entry is None:
            self.eager_calls += 1
            return self.fn(*args)
        static_in, static_out, graph = entry
        for s, a in zip(static_in, args):
            s.copy_(a)
        graph.replay()
        return static_out

    def _capture(self, key: tuple, args):
        import torch

        static_in = [a.clone() for a in args]
        side = torch.cuda.Stream(device=args[0].device)
        side.wait_stream(torch.cuda.current_stream(args[0].device))
        with torch.cuda.stream(side):  # warm-up off the capture stream: lazy inits, cudnn autotuning
            for _ in range(self.warmup):
                self.fn(*static_in)
        torch.cuda.current_stream(args[0].device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                static_out = self.fn(*static_in)
        except RuntimeError as e:
            torch.cuda.synchronize(args[0].device)
            first = " ".join(str(e).split())[:200]
            self.fallback_reason = f"CUDA graph capture failed ({first}); running eagerly"
            log.warning(self.fallback_reason)
            return None
        self._pool = graph.pool()
        self.graphs[key] = (static_in, static_out, graph)
        log.debug(f"captured a CUDA graph for inputs {[tuple(a.shape) for a in args]}")
        return self.graphs[key]

    def describe(self) -> dict:
        """What the report records: graphs captured, eager calls and the fallback reason."""
        return {"graphs": len(self.graphs), "eager_calls": self.eager_calls,
                "fallback_reason": self.fallback_reason or self.overflow_reason}
