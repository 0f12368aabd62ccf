"""PyTorch runner: the reference backend (cpu/cuda; fp32, fp16, bf16, fp8), eager or compiled, CUDA graphs.

GPU path (each switch is an argument, recorded by `describe()` in the bench report):
- `channels_last` (default on CUDA): NHWC activations and weights, the layout cuDNN's fp16/bf16
  tensor-core convolutions run in without transposes;
- `compile`: `torch.compile(model, mode=...)` (TorchInductor: fused, autotuned kernels), one graph
  per input shape (`dynamic=False`: tiles are static);
- `cuda_graphs`: each input shape captured once into a CUDA graph and replayed
  (`vpdsr.runtimes.cuda.CudaGraphs`); a capture that fails falls back to eager with the reason;
- `precision="fp8"`: FP8 linear layers on GPUs with compute capability >= 8.9
  (`vpdsr.runtimes.fp8`, `torch._scaled_mm`), everything else bf16.
On CUDA the timing uses CUDA events on the device's stream, so asynchronous kernels are counted.
"""
from __future__ import annotations

import copy
import logging
from contextlib import nullcontext

import numpy as np
import torch

from vpdsr.errors import CapabilityError, ConfigError
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.common import canonical_precision
from vpdsr.runtimes.cuda import CudaEventTimer, CudaGraphs, capability, cuda_index, is_cuda, require_cuda

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16", "bf16", "fp8")
# the dtype the non-fp8 parts compute in (fp8 covers linear layers only: the rest runs in bf16)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}
# torch.compile modes (torch.compile's docs); "default" is mode=None
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class TorchRunner(Runner):
    """Runs a VPDSR model (or any module `fn(lr, noise) -> sr`, or `fn(lr) -> sr` without noise).

    Args:
        model: the module (moved to `device`; `mode="cast"` also changes its dtype).
        device: "cpu", "cuda" or "cuda:N".
        precision: fp32, fp16, bf16, or fp8 (CUDA with compute capability >= 8.9: FP8 linear layers, bf16 rest).
        mode: "autocast" (default; weights stay fp32, matmuls and convolutions run in fp16/bf16, normalisations
            in fp32 as torch's autocast lists say) or "cast" (`model.to(dtype)`: everything in fp16/bf16).
        noise_channels: channels of `noise` for a module without `latent_channels` (0: it takes `lr` alone).
        compile: a torch.compile mode (see COMPILE_MODES), or None for eager.
        compile_backend: torch.compile's backend ("inductor"; "eager"/"aot_eager" trace without generating code).
        cuda_graphs: capture each input shape into a CUDA graph and replay it (CUDA only).
        channels_last: NHWC memory format; None: on for CUDA, off on CPU.
        max_graphs: CUDA graphs kept at most (one per input shape; each holds its activations' memory).

    Example:
        >>> with TorchRunner(from_pretrained("base"), device="cuda", precision="fp16",
        ...                  compile="max-autotune-no-cudagraphs", cuda_graphs=True) as runner:
        ...     sr = runner.infer({"lr": lr, "noise": noise})["sr"]
    """

    backend = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "fp32", mode: str = "autocast",
                 noise_channels: int | None = None, name: str | None = None, compile: str | None = None,
                 compile_backend: str = "inductor", cuda_graphs: bool = False, channels_last: bool | None = None,
                 max_graphs: int = 8):
        precision = canonical_precision(precision, PRECISIONS, "precision")
        if mode not in ("autocast", "cast"):
            raise ConfigError(f"`mode` must be 'autocast' or 'cast', got {mode!r}")
        device = str(device)
        if is_cuda(device):
            device = f"cuda:{cuda_index(device)}" if ":" in device else "cuda"
        elif device != "cpu":
            raise ConfigError(f"`device` must be cpu or cuda[:N], got {device!r}")
        if compile is not None and compile not in COMPILE_MODES:
            raise ConfigError(f"`compile` must be one of {list(COMPILE_MODES)} (torch.compile modes) or None, "
                              f"got {compile!r}")
        if cuda_graphs and not is_cuda(device):
            raise ConfigError(f"`cuda_graphs` needs a CUDA device; got device {device!r}")
        if cuda_graphs and compile == "reduce-overhead":
            raise ConfigError("`cuda_graphs` with torch.compile mode 'reduce-overhead' would capture twice: that mode "
                              "already replays CUDA graphs (use mode 'max-autotune-no-cudagraphs' or 'default')")
        super().__init__(name or f"torch-{precision}", device=device, precision=precision)
        self.model = model
        self.mode = mode
        # `noise_channels=0` (or a model whose `latent_channels` is 0/None): the module takes `lr` alone.
        if noise_channels is None and not hasattr(model, "latent_channels"):
            raise ConfigError("TorchRunner: pass `noise_channels` for a module without `latent_channels` "
                              "(0 for a module that takes no noise)")
        self._channels = (noise_channels if noise_channels is not None else model.latent_channels) or None
        self.compile, self.compile_backend = compile, compile_backend
        self.cuda_graphs, self.max_graphs = bool(cuda_graphs), int(max_graphs)
        self.channels_last = is_cuda(device) if channels_last is None else bool(channels_last)
        self._torch_device: torch.device | None = None
        self._graphs: CudaGraphs | None = None
        self._timer: CudaEventTimer | None = None
        self.fp8_layers: dict | None = None
        self.size_multiple = int(getattr(model, "size_multiple", 1) or 1)  # LR sides the model takes
        self.scale = int(getattr(model, "scale", 4))

    @classmethod
    def from_pretrained(cls, model_spec: str, device: str = "cpu", precision: str = "fp32", **kw) -> TorchRunner:
        """A runner over a model directory or preset name (see `vpdsr.models.from_pretrained`)."""
        from vpdsr.models import from_pretrained

        return cls(from_pretrained(model_spec), device=device, precision=precision, **kw)

    # -- Runner ---------------------------------------------------------------------------------
    def activate_impl(self) -> None:
        dev = require_cuda(self.device, self.name) if is_cuda(self.device) else torch.device("cpu")
        if self.precision == "fp8":
            self._require_fp8(dev)
        dtype = _DTYPES[self.precision]
        # fp8 replaces layers: on a copy, so the caller's module stays as it was
        module = copy.deepcopy(self.model) if self.precision == "fp8" else self.model
        module.to(device=dev, dtype=dtype if self.mode == "cast" else torch.float32).eval()
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.precision == "fp8":
            from vpdsr.runtimes.fp8 import convert_linear_to_fp8

            self.fp8_layers = convert_linear_to_fp8(module, torch.bfloat16)
            log.info(f"{self.name}: {len(self.fp8_layers['converted'])} linear layer(s) in fp8, "
                     f"{len(self.fp8_layers['kept'])} kept; convolutions run in bf16")
        fn = module
        if self.compile is not None:
            inductor = self.compile_backend == "inductor"
            mode = None if self.compile == "default" or not inductor else self.compile
            fn = torch.compile(module, mode=mode, backend=self.compile_backend, dynamic=False)
        if self.cuda_graphs:
            self._graphs = CudaGraphs(fn, max_graphs=self.max_graphs)
            fn = self._graphs
        self._module, self._fn, self._torch_device = module, fn, dev
        self._timer = CudaEventTimer(dev) if dev.type == "cuda" else None

    def _require_fp8(self, dev: torch.device) -> None:
        from vpdsr.runtimes.fp8 import MIN_CAPABILITY, fp8_supported

        need = ".".join(map(str, MIN_CAPABILITY))
        if dev.type != "cuda":
            raise CapabilityError(f"{self.name}: fp8 runs on CUDA GPUs with compute capability >= {need} "
                                  f"(FP8 tensor cores); device is {self.device!r}")
        cc = capability(dev)
        if not fp8_supported(cc):
            raise CapabilityError(f"{self.name}: fp8 needs compute capability >= {need}; "
                                  f"{torch.cuda.get_device_name(dev)} has {cc[0]}.{cc[1]}")

    def deactivate_impl(self) -> None:
        # Give device memory back (graphs, compiled code, the fp8 copy); the caller's module stays usable.
        self._fn = self._graphs = self._module = None
        if self.channels_last:
            self.model.to(memory_format=torch.contiguous_format)
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
        dev = self._torch_device
        args = [torch.from_numpy(np.ascontiguousarray(feed[k])).to(dev, non_blocking=True)
                for k in (("lr", "noise") if self._channels else ("lr",))]
        with torch.cuda.device(dev) if dev.type == "cuda" else nullcontext():
            return {"sr": self.forward(*args).float().cpu().numpy()}

    @torch.inference_mode()
    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        """The model on device tensors (cast, layout, autocast, compiled/graphed as configured).

        `benchmarks/gpu_compiled.py` times this directly: the engine without the host copies.
        With CUDA graphs the result is the graph's static output: read it before the next call.
        """
        dtype = _DTYPES[self.precision]
        if self.mode == "cast":
            args = [a.to(dtype) for a in args]
        if self.channels_last:
            args = [a.contiguous(memory_format=torch.channels_last) for a in args]
        use_autocast = self.mode == "autocast" and self.precision != "fp32"
        # autocast's cast cache would keep tensors from capture time alive across replays: off with graphs
        with torch.autocast(self._torch_device.type, dtype=dtype, enabled=use_autocast,
                            cache_enabled=False if self.cuda_graphs else None):
            return self._fn(*args)

    @property
    def noise_channels(self) -> int | None:
        return int(self._channels) if self._channels else None

    def describe(self) -> dict:
        """The GPU options this runner applies, and what they did (graphs captured, fallbacks, fp8 layers)."""
        out = {"compile": self.compile, "channels_last": self.channels_last, "mode": self.mode,
               "cuda_graphs": self._graphs.describe() if self._graphs is not None else self.cuda_graphs}
        if self.compile is not None and self.compile_backend != "inductor":
            out["compile_backend"] = self.compile_backend
        if self.fp8_layers is not None:
            out["fp8_linear_layers"] = len(self.fp8_layers["converted"])
            out["fp8_kept_layers"] = len(self.fp8_layers["kept"])
        return out

    # -- timing: CUDA events on GPU, perf_counter on CPU -----------------------------------------
    def _timer_start(self) -> None:
        if self._timer is not None:
            self._timer.start()
        else:
            super()._timer_start()

    def _timer_stop(self) -> float:
        return self._timer.stop() if self._timer is not None else super()._timer_stop()
