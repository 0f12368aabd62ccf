"""The Runner contract (after Polygraphy's BaseRunner).

The base class owns the checks (is it active, are the inputs the right names/dtypes/shapes) and
the timing; a backend implements only `activate_impl`, `infer_impl`, `deactivate_impl` and
`input_metadata_impl`. Runners are context managers. Inputs and outputs are numpy float32 NCHW:
`lr` [B,3,h,w], `noise` [B,C,h,w] -> `sr` [B,3,4h,4w]. `noise` is the diffusion models' explicit
noise; a model without one (a GAN SR network) takes `lr` alone, and its `noise_channels` is None.

Timing contract: `last_inference_time()` is the wall time of the last `infer_impl` call, measured
with `time.perf_counter` on CPU; GPU runners override `_timer_start/_timer_stop` (CUDA events or
a synchronise) so that asynchronous work is counted.
"""
from __future__ import annotations

import abc
import time

import numpy as np

from vpdsr.errors import InputError, VpdsrError


class Runner(abc.ABC):
    """Base of every backend runner.

    Example:
        >>> with load("artifacts/openvino-int8") as runner:
        ...     sr = runner.infer({"lr": lr, "noise": noise})["sr"]
    """

    backend = "abstract"
    size_multiple = 1  # LR height/width must be a multiple of this (the model family's; tiling keeps to it)
    scale = 4  # `sr` is this many times `lr` (x4 unless the model says otherwise)

    def __init__(self, name: str | None = None, device: str = "cpu", precision: str = "fp32"):
        self.name = name or self.backend
        self.device = device
        self.precision = precision
        self.is_active = False
        self._last_time: float | None = None

    # -- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def activate_impl(self) -> None: ...

    @abc.abstractmethod
    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def input_metadata_impl(self) -> dict[str, tuple[str, tuple]]:
        """{name: (dtype, shape)}; a dimension that is not an int is dynamic."""

    def deactivate_impl(self) -> None:  # noqa: B027 (optional hook: most runners hold nothing to free)
        """Free what activate_impl took; runners that hold nothing need not override it."""

    # -- owned by the base ----------------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def get_input_metadata(self) -> dict[str, tuple[str, tuple]]:
        self._require_active()
        return self.input_metadata_impl()

    def infer(self, feed: dict[str, np.ndarray], check_inputs: bool = True) -> dict[str, np.ndarray]:
        """Run one inference; checks the feed against the input metadata first."""
        self._require_active()
        if check_inputs:
            self._check_feed(feed)
        self._timer_start()
        out = self.infer_impl(feed)
        self._last_time = self._timer_stop()
        return out

    def last_inference_time(self) -> float | None:
        """Seconds spent in the last `infer_impl` (see the timing contract above)."""
        return self._last_time

    @property
    def noise_channels(self) -> int | None:
        """Channels of the `noise` input; None for a model that takes no noise."""
        meta = self.get_input_metadata()
        if "noise" not in meta:
            return None
        shape = meta["noise"][1]
        if not isinstance(shape[1], int):
            raise VpdsrError(f"{self.name}: the `noise` input's channel count is not fixed ({shape})")
        return shape[1]

    def as_tile_fn(self):
        """`fn(lr, noise) -> sr` for `vpdsr.runtimes.tiling.upscale_tiled` (noise None: `lr` alone)."""
        return lambda lr, noise: self.infer({"lr": lr} if noise is None else {"lr": lr, "noise": noise})["sr"]

    # -- timing hooks (GPU runners override) ----------------------------------------------------
    def _timer_start(self) -> None:
        self._t0 = time.perf_counter()

    def _timer_stop(self) -> float:
        return time.perf_counter() - self._t0

    # -- checks ---------------------------------------------------------------------------------
    def _require_active(self) -> None:
        if not self.is_active:
            raise VpdsrError(f"runner {self.name!r} is not active: use `with runner:` or call activate() first")

    def _check_feed(self, feed: dict[str, np.ndarray]) -> None:
        meta = self.input_metadata_impl()
        missing, extra = sorted(set(meta) - set(feed)), sorted(set(feed) - set(meta))
        if missing or extra:
            raise InputError(f"{self.name}: inputs {sorted(feed)} do not match the model's {sorted(meta)}")
        for name, (dtype, shape) in meta.items():
            arr = feed[name]
            if not isinstance(arr, np.ndarray):
                raise InputError(f"{self.name}: input `{name}` must be a numpy array, got {type(arr).__name__}")
            if str(arr.dtype) != dtype:
                raise InputError(f"{self.name}: input `{name}` has dtype {arr.dtype}, expected {dtype}")
            if len(arr.shape) != len(shape) or any(
                isinstance(s, int) and s >= 0 and s != a for s, a in zip(shape, arr.shape)
            ):
                raise InputError(f"{self.name}: input `{name}` has shape {tuple(arr.shape)}, expected {tuple(shape)}")
