"""OpenVINO runner: device, ALWAYS-pinned execution precision, performance hint, streams, threads.

Why the precision is always pinned: OpenVINO's CPU plugin picks bf16 by default on CPUs with
AMX/AVX512-BF16 (FACTS.md: ~4e-3 off torch here) and f32 elsewhere, so an unpinned model gives
drift figures that change from one CPU to the next. We set `INFERENCE_PRECISION_HINT` on every
compile and check that the compiled model reports it back.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vpdsr.errors import ArtifactError, CapabilityError, ConfigError
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.common import as_float32, canonical_precision, dim, import_optional

_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
# OPTIMIZATION_CAPABILITIES entry a device must list to execute in that precision
_CAPABILITY = {"bf16": "BF16", "fp16": "FP16", "fp32": "FP32"}
_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


class OpenVINORunner(Runner):
    """Runs an OpenVINO IR (.xml + .bin) or an ONNX file with OpenVINO.

    Args:
        path: model.xml (or model.onnx).
        device: OpenVINO device ("CPU", "GPU", ...).
        precision: execution precision of the non-quantized ops: f32/fp32, bf16, f16/fp16. Always pinned.
        performance_hint: LATENCY (one request at a time, the default) or THROUGHPUT.
        streams: NUM_STREAMS (None: the hint decides).
        threads: INFERENCE_NUM_THREADS (None/0: all cores).
        cache_dir: OpenVINO's compiled-model cache (CACHE_DIR), None for none.

    Example:
        >>> with OpenVINORunner("artifacts/openvino-bf16/model.xml", precision="bf16") as r:
        ...     sr = r.infer({"lr": lr, "noise": noise})["sr"]
    """

    backend = "openvino"

    def __init__(self, path: str | Path, device: str = "CPU", precision: str = "fp32",
                 performance_hint: str = "LATENCY", streams: int | None = None, threads: int | None = None,
                 cache_dir: str | Path | None = None, name: str | None = None):
        precision = canonical_precision(precision, tuple(_OV_PRECISION), "precision")
        if performance_hint.upper() not in _HINTS:
            raise ConfigError(f"`performance_hint` must be one of {list(_HINTS)}, got {performance_hint!r}")
        super().__init__(name or f"openvino-{_OV_PRECISION[precision]}", device=device.upper(), precision=precision)
        self.path = Path(path)
        self.performance_hint = performance_hint.upper()
        self.streams, self.threads, self.cache_dir = streams, threads, cache_dir
        self.compiled = None

    def config(self, supported: set[str] | None = None) -> dict[str, str]:
        """The compile properties (all as strings, OpenVINO's own spelling)."""
        cfg = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[self.precision], "PERFORMANCE_HINT": self.performance_hint,
               "EXECUTION_MODE_HINT": "ACCURACY" if self.precision == "fp32" else "PERFORMANCE"}
        if self.streams:
            cfg["NUM_STREAMS"] = str(int(self.streams))
        if self.threads:
            cfg["INFERENCE_NUM_THREADS"] = str(int(self.threads))
        if self.cache_dir:
            cfg["CACHE_DIR"] = str(self.cache_dir)
        if supported is None or "DYNAMIC_QUANTIZATION_GROUP_SIZE" in supported:
            # The CPU plugin may quantize activations of fully connected layers on the fly: not what was asked.
            cfg["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"
        return cfg

    def activate_impl(self) -> None:
        ov = import_optional("openvino", "the openvino runner")
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: OpenVINO model not found")
        core = ov.Core()
        if self.device not in core.available_devices and self.device.split(".")[0] not in core.available_devices:
            raise CapabilityError(f"{self.name}: OpenVINO device {self.device!r} not present "
                                f"(available: {', '.join(core.available_devices)})")
        caps = set(core.get_property(self.device, "OPTIMIZATION_CAPABILITIES"))
        if self.precision != "fp32" and _CAPABILITY[self.precision] not in caps:
            raise CapabilityError(f"{self.name}: OpenVINO device {self.device} cannot execute in "
                                f"{_OV_PRECISION[self.precision]} (its capabilities: {', '.join(sorted(caps))})")
        supported = set(core.get_property(self.device, "SUPPORTED_PROPERTIES"))
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, self.device, self.config(supported))
        except RuntimeError as e:
            raise ArtifactError(f"{self.path}: OpenVINO cannot compile it ({str(e).strip().splitlines()[0][:300]})") from None
        want = _OV_PRECISION[self.precision]
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != want:
            raise ArtifactError(f"{self.name}: OpenVINO compiled {self.path.name} in {got}, asked for {want}")
        self.execution_precision = want
        self._request = self.compiled.create_infer_request()
        self._inputs = {_port_name(p): p for p in self.compiled.inputs}
        self._outputs = [_port_name(p) for p in self.compiled.outputs]

    def deactivate_impl(self) -> None:
        self._request = None
        self.compiled = None

    def input_metadata_impl(self) -> dict[str, tuple[str, tuple]]:
        meta = {}
        for name, port in self._inputs.items():
            shape = tuple(dim(d.get_length()) if d.is_static else "?" for d in port.get_partial_shape())
            dtype = port.get_element_type().to_dtype().name
            meta[name] = ("float32" if dtype == "float16" else dtype, shape)
        return meta

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: (v.astype(np.float16) if self._inputs[k].get_element_type().to_dtype() == np.float16 else v)
                for k, v in feed.items()}
        result = self._request.infer(feed)
        # `infer` returns views of the request's buffers, overwritten by the next call: copy.
        return {name: as_float32(np.array(result[port], copy=True))
                for name, port in zip(self._outputs, self.compiled.outputs)}


def _port_name(port) -> str:
    """The graph's own tensor name: ONNX imports also attach internal names like `/DepthToSpace_output_0`."""
    names = sorted(port.get_names())
    public = [n for n in names if not n.startswith("/")]
    return (public or names or [port.get_any_name()])[0]
