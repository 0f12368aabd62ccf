"""PyTorch eager runner: the reference backend (cpu/cuda; fp32, fp16, bf16)."""
from __future__ import annotations

import numpy as np
import torch

from vpdsr.errors import ConfigError, MissingDependencyError
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.common import canonical_precision

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRunner(Runner):
    """Runs a VPDSR model (or any module `fn(lr, noise) -> sr`, or `fn(lr) -> sr` without noise) in eager mode.

    Reduced precision comes in two modes: ``autocast`` (default; weights stay fp32, matmuls and
    convolutions run in fp16/bf16, normalisations stay fp32 as torch's autocast lists say) or
    ``cast`` (``model.to(dtype)``, i.e. ``model.half()``: everything in fp16/bf16). On CUDA the
    timing uses CUDA events on the current stream, so asynchronous kernels are counted.

    Example:
        >>> with TorchRunner(from_pretrained("tiny"), precision="bf16") as runner:
        ...     sr = runner.infer({"lr": lr, "noise": noise})["sr"]
    """

    backend = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "fp32", mode: str = "autocast",
                 noise_channels: int | None = None, name: str | None = None):
        precision = canonical_precision(precision, ("fp32", "fp16", "bf16"), "precision")
        if mode not in ("autocast", "cast"):
            raise ConfigError(f"`mode` must be 'autocast' or 'cast', got {mode!r}")
        super().__init__(name or f"torch-{precision}", device=str(device), precision=precision)
        self.model = model
        self.mode = mode
        # `noise_channels=0` (or a model whose `latent_channels` is 0/None): the module takes `lr` alone.
        if noise_channels is None and not hasattr(model, "latent_channels"):
            raise ConfigError("TorchRunner: pass `noise_channels` for a module without `latent_channels` "
                              "(0 for a module that takes no noise)")
        self._channels = (noise_channels if noise_channels is not None else model.latent_channels) or None
        self._torch_device: torch.device | None = None
        self.size_multiple = int(getattr(model, "size_multiple", 1) or 1)  # LR sides the model takes
        self.scale = int(getattr(model, "scale", 4))

    @classmethod
    def from_pretrained(cls, model_spec: str, device: str = "cpu", precision: str = "fp32", **kw) -> TorchRunner:
        """A runner over a model directory or preset name (see `vpdsr.models.from_pretrained`)."""
        from vpdsr.models import from_pretrained

        return cls(from_pretrained(model_spec), device=device, precision=precision, **kw)

    # -- Runner ---------------------------------------------------------------------------------
    def activate_impl(self) -> None:
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError(f"{self.name}: device {self.device!r} asked for, but torch sees no CUDA device")
        if dev.type not in ("cpu", "cuda"):
            raise ConfigError(f"`device` must be cpu or cuda[:N], got {self.device!r}")
        dtype = _DTYPES[self.precision]
        weights = dtype if self.mode == "cast" else torch.float32
        self.model.to(device=dev, dtype=weights).eval()
        self._torch_device = dev
        if dev.type == "cuda":
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))

    def deactivate_impl(self) -> None:
        # Give device memory back; the module itself stays usable for a later activate().
        if self._torch_device is not None and self._torch_device.type == "cuda":
            self.model.to("cpu")
            torch.cuda.empty_cache()
        self._torch_device = None

    def input_metadata_impl(self) -> dict[str, tuple[str, tuple]]:
        meta = {"lr": ("float32", ("B", 3, "h", "w"))}
        if self._channels:
            meta["noise"] = ("float32", ("B", self._channels, "h", "w"))
        return meta

    @torch.inference_mode()
    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dev, dtype = self._torch_device, _DTYPES[self.precision]
        cast = dtype if self.mode == "cast" else torch.float32
        args = [torch.from_numpy(np.ascontiguousarray(feed[k])).to(dev, cast, non_blocking=True)
                for k in (("lr", "noise") if self._channels else ("lr",))]
        use_autocast = self.mode == "autocast" and self.precision != "fp32"
        with torch.autocast(dev.type, dtype=dtype, enabled=use_autocast):
            sr = self.model(*args)
        return {"sr": sr.float().cpu().numpy()}

    @property
    def noise_channels(self) -> int | None:
        return int(self._channels) if self._channels else None

    # -- timing: CUDA events on GPU, perf_counter on CPU -----------------------------------------
    def _timer_start(self) -> None:
        if self._torch_device is not None and self._torch_device.type == "cuda":
            self._events[0].record()
        else:
            super()._timer_start()

    def _timer_stop(self) -> float:
        if self._torch_device is not None and self._torch_device.type == "cuda":
            self._events[1].record()
            self._events[1].synchronize()
            return self._events[0].elapsed_time(self._events[1]) / 1000.0
        return super()._timer_stop()
