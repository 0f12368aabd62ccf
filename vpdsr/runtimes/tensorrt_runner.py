"""TensorRT runner (10.12+ / 11): a serialized engine, named I/O tensors, `execute_async_v3` on a CUDA stream.

Device buffers are torch CUDA tensors (torch is a hard dependency, so no pycuda/cuda-python is
needed); the stream is a torch stream on the engine's GPU (`device="cuda:N"`: deserialised, run and
timed there), whose handle TensorRT enqueues on. Timing uses CUDA events on that stream.
TensorRT's PyPI packages fetch its libraries from NVIDIA's own index at install time, so it is
missing from many machines (CPU ones included): this module imports `tensorrt` only inside
`activate`, and its tests skip where it is missing or there is no CUDA device.

An engine only runs on the TensorRT release and the GPU architecture it was built for. The
export writes that beside the engine (`vpdsr.artifacts.engine_record`: tensorrt_version, gpu_name,
compute_capability); we check it, comparing versions as numbers, before deserializing, so a
mismatch is one line instead of a TensorRT log dump.

Engines are strongly typed (vpdsr/export/tensorrt_engine.py): their I/O tensors have the ONNX
graph's types (fp32 for our graphs; an fp16 or bf16 I/O tensor is cast on the GPU).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vpdsr.artifacts import read_engine_metadata
from vpdsr.errors import ArtifactError, InputError
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.common import dim, import_optional
from vpdsr.runtimes.cuda import CudaEventTimer, capability_text, require_cuda
from vpdsr.runtimes.tensorrt_common import check_supported, same_release, version_tuple

# TensorRT DataType names -> torch dtype names (trt.nptype has no bf16/fp8: numpy lacks them)
_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                 "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8_e4m3fn"}
_HALF_IO = ("float16", "bfloat16")  # the Runner I/O stays float32: cast on the device


def check_engine_compatibility(meta: dict, trt_version: str, gpu_name: str, compute_capability, source: str = "engine"):
    """Raise ArtifactError (one line) if `meta` says the engine was built for another TensorRT or GPU.

    Args:
        meta: what the export recorded: `tensorrt_version`, `gpu_name`, `compute_capability` ("8.9" or
            [8, 9]) and optionally `hardware_compatibility` ("ampere+": runs on any compute capability >= 8.0)
            and `version_compatible` (True: built with VERSION_COMPATIBLE, any later release of that major runs it).
        trt_version, gpu_name, compute_capability: this machine's.
        source: the engine's path, for the message.
    """
    built_trt = meta.get("tensorrt_version")
    if built_trt and not same_release(built_trt, trt_version):
        newer_ok = meta.get("version_compatible") and version_tuple(built_trt)[0] == version_tuple(trt_version)[0] \
            and version_tuple(trt_version) >= version_tuple(built_trt)
        if not newer_ok:
            raise ArtifactError(f"{source}: built with TensorRT {built_trt}, this machine has TensorRT {trt_version}; "
                                "rebuild the engine here (`vpdsr export --targets tensorrt-...`)")
    built_cc = meta.get("compute_capability")
    here_cc = capability_text(compute_capability)
    if built_cc is not None and version_tuple(capability_text(built_cc)) != version_tuple(here_cc):
        hw = str(meta.get("hardware_compatibility", "")).lower()
        if not (hw in ("ampere+", "ampere_plus") and version_tuple(here_cc) >= (8, 0)):
            raise ArtifactError(f"{source}: built for {meta.get('gpu_name', 'a GPU')} (compute capability "
                                f"{capability_text(built_cc)}), this GPU is {gpu_name} ({here_cc}); "
                                "rebuild the engine here")


# Why the execution below is ours and not Polygraphy's `TrtRunner` (polygraphy 0.53), which drives
# the same calls (set_input_shape, set_tensor_address, execute_async_v3): it does not keep the
# Runner contract (vpdsr/runtimes/base.py) in five places.
# - I/O: ours is numpy float32 in and out, cast on the GPU for an fp16/bf16 engine tensor; TrtRunner
#   copies the bytes it is given, so the feed must already have the engine's dtype, and returns it.
# - Device: ours runs on `cuda:N`; TrtRunner has no device argument and allocates its stream and
#   buffers on whatever device is current in the calling thread.
# - Timing: ours is CUDA events on the engine's stream; TrtRunner's `inference_time` is host
#   `time.time()` around copies, execution and a stream synchronise.
# - Errors: ours are one line (InputError for a shape outside the profile, ArtifactError else);
#   TrtRunner logs multi-line messages to stdout (`G_LOGGER.critical`) before raising.
# - CUDA runtime: ours needs only torch; TrtRunner's stream and copies go through Polygraphy's ctypes
#   libcudart, which it looks for in LD_LIBRARY_PATH, /usr/local/cuda/lib64, /usr/lib and
#   site-packages/nvidia/cuda_runtime/lib, not in site-packages/nvidia/cu13/lib where torch's CUDA 13
#   wheels put it: a pip-only install without a CUDA toolkit cannot create its stream.
# The first four could be bridged by a wrapper as long as this loop; the fifth only by changing the
# user's environment. Polygraphy stays what the export uses to build (vpdsr/export/tensorrt_engine.py).
class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine.

    Args:
        engine_path: the .engine/.plan file.
        metadata: build metadata (see `check_engine_compatibility`); default: read from beside the engine.
        device: "cuda" or "cuda:N".
        profile: optimisation profile index to use.

    Example:
        >>> with TensorRTRunner("artifacts/tensorrt-fp16/model.plan", device="cuda:1") as r:
        ...     sr = r.infer({"lr": lr, "noise": noise})["sr"]
    """

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, metadata: dict | None = None, device: str = "cuda",
                 profile: int = 0, precision: str = "fp16", name: str | None = None):
        from vpdsr.runtimes.cuda import cuda_index

        cuda_index(device)  # a bad device name is a ConfigError now, not at activate
        super().__init__(name or f"tensorrt-{precision}", device=device, precision=precision)
        self.engine_path = Path(engine_path)
        self.metadata = metadata
        self.profile = profile

    def activate_impl(self) -> None:
        import torch

        trt = import_optional("tensorrt", "the tensorrt runner")
        check_supported(trt.__version__)
        self._dev = require_cuda(self.device, self.name)
        if not self.engine_path.is_file():
            raise ArtifactError(f"{self.engine_path}: engine file not found")
        meta = self.metadata if self.metadata is not None else read_engine_metadata(self.engine_path)
        check_engine_compatibility(meta, trt.__version__, torch.cuda.get_device_name(self._dev),
                                   torch.cuda.get_device_capability(self._dev), str(self.engine_path))
        with torch.cuda.device(self._dev):  # TensorRT allocates on the current device
            self._logger = trt.Logger(trt.Logger.ERROR)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:
                raise ArtifactError(f"{self.engine_path}: TensorRT {trt.__version__} could not deserialize it "
                                    "(another TensorRT version or GPU, or a damaged file)")
            self.context = self.engine.create_execution_context()
            self._stream = torch.cuda.Stream(self._dev)
            self._timer = CudaEventTimer(self._dev, self._stream)
            if self.profile:
                self.context.set_optimization_profile_async(self.profile, self._stream.cuda_stream)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [n for n in names if is_input[n]]
        self._outputs = [n for n in names if not is_input[n]]
        self._dtype = {n: _torch_dtype_name(self.engine.get_tensor_dtype(n)) for n in names}

    def deactivate_impl(self) -> None:
        self.context = self.engine = self._runtime = None

    def input_metadata_impl(self) -> dict[str, tuple[str, tuple]]:
        meta = {}
        for n in self._inputs:
            dtype = self._dtype[n]
            meta[n] = ("float32" if dtype in _HALF_IO else dtype,
                       tuple(dim(d) for d in self.engine.get_tensor_shape(n)))
        return meta

    def _check_profile(self, name: str, shape: tuple) -> None:
        lo, _, hi = self.engine.get_tensor_profile_shape(name, self.profile)
        if any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            raise InputError(f"{self.name}: input `{name}` shape {shape} is outside the engine's profile "
                             f"{tuple(lo)}..{tuple(hi)}")

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        keep = []  # device tensors must outlive the asynchronous execution
        with torch.cuda.device(self._dev), torch.cuda.stream(self._stream):
            for n in self._inputs:
                arr = np.ascontiguousarray(feed[n])
                self._check_profile(n, arr.shape)
                t = torch.from_numpy(arr).to(self._dev, non_blocking=True).to(getattr(torch, self._dtype[n]))
                self.context.set_input_shape(n, tuple(arr.shape))
                self.context.set_tensor_address(n, t.data_ptr())
                keep.append(t)
            outs = {}
            for n in self._outputs:
                shape = tuple(self.context.get_tensor_shape(n))
                t = torch.empty(shape, dtype=getattr(torch, self._dtype[n]), device=self._dev)
                self.context.set_tensor_address(n, t.data_ptr())
                outs[n] = t
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise ArtifactError(f"{self.engine_path}: TensorRT execution failed")
            result = {n: t.float().cpu().numpy() for n, t in outs.items()}
        return result

    # -- timing: CUDA events on the engine's stream ---------------------------------------------
    def _timer_start(self) -> None:
        self._timer.start()

    def _timer_stop(self) -> float:
        return self._timer.stop()


def _torch_dtype_name(trt_dtype) -> str:
    """A TensorRT DataType (e.g. `DataType.HALF`) -> the torch dtype name (`float16`)."""
    key = str(trt_dtype).rsplit(".", 1)[-1].upper()
    if key not in _TORCH_DTYPES:
        raise ArtifactError(f"engine I/O tensor of TensorRT type {trt_dtype}: not one vpdsr can feed")
    return _TORCH_DTYPES[key]
