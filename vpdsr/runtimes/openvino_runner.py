"""OpenVINO runner: device, ALWAYS-pinned execution precision, performance hint, streams, threads.

Performance hints (OpenVINO's "high-level performance hints" guide): LATENCY runs one request on
all its threads; THROUGHPUT splits the cores into streams that each run a request on their own
threads. A batch of tiles is a throughput job: under THROUGHPUT the runner feeds the batch's tiles
one by one to the plugin's optimal number of infer requests (one per stream), round robin, and
stacks the outputs (the model is not reshaped to the batch). Measured on the shared 2-core EPYC
(tiny student, 64x64 tiles, 8 tiles): 54.5 ms/tile (2 streams x 1 thread) against 72.0 (LATENCY,
batch 4) for openvino-int8, 103.9 against 141.5 for f32: independent streams wait at no barrier for a
descheduled thread. `AUTO` (the default) keeps both: LATENCY for a single image or tile, and a
THROUGHPUT compile of the same model, made on the first call with more than one tile.

Why the precision is always pinned: OpenVINO's CPU plugin picks bf16 by default on CPUs with
AMX/AVX512-BF16 (outputs ~4e-3 off torch fp32) and f32 elsewhere, so an unpinned model gives
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
_HINTS = ("AUTO", "LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
_MATRIX_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")


class OpenVINORunner(Runner):
    """Runs an OpenVINO IR (.xml + .bin) or an ONNX file with OpenVINO.

    Args:
        path: model.xml (or model.onnx).
        device: OpenVINO device ("CPU", "GPU", ...).
        precision: execution precision of the non-quantized ops: f32/fp32, bf16, f16/fp16. Always pinned.
        performance_hint: AUTO (the default: LATENCY for batch 1, THROUGHPUT streams for tile batches),
            LATENCY (one request at a time) or THROUGHPUT (a batch is spread over streams); see above.
        streams: NUM_STREAMS of the THROUGHPUT compile (None: the hint decides).
        threads: INFERENCE_NUM_THREADS of the LATENCY compile (None/0: all cores); a THROUGHPUT compile
            gets all cores (its streams wait at no common barrier).
        cache_dir: OpenVINO's compiled-model cache (CACHE_DIR), None for none.

    Example:
        >>> with OpenVINORunner("artifacts/openvino-bf16/model.xml", precision="bf16") as r:
        ...     sr = r.infer({"lr": lr, "noise": noise})["sr"]
    """

    backend = "openvino"

    def __init__(self, path: str | Path, device: str = "CPU", precision: str = "fp32",
                 performance_hint: str = "AUTO", streams: int | None = None, threads: int | None = None,
                 cache_dir: str | Path | None = None, name: str | None = None):
        precision = canonical_precision(precision, tuple(_OV_PRECISION), "precision")
        if performance_hint.upper() not in _HINTS:
            raise ConfigError(f"`performance_hint` must be one of {list(_HINTS)}, got {performance_hint!r}")
        super().__init__(name or f"openvino-{_OV_PRECISION[precision]}", device=device.upper(), precision=precision)
        self.path = Path(path)
        self.performance_hint = performance_hint.upper()
        self.streams, self.threads, self.cache_dir = streams, threads, cache_dir
        self.compiled = None
        self._throughput = None  # (compiled model, [infer requests]) for tile batches

    def config(self, supported: set[str] | None = None, hint: str | None = None) -> dict[str, str]:
        """The compile properties (all as strings, OpenVINO's own spelling) for `hint` (default: the runner's,
        AUTO meaning LATENCY)."""
        hint = hint or ("LATENCY" if self.performance_hint == "AUTO" else self.performance_hint)
        cfg = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[self.precision], "PERFORMANCE_HINT": hint,
               "EXECUTION_MODE_HINT": "ACCURACY" if self.precision == "fp32" else "PERFORMANCE"}
        if self.streams and hint != "LATENCY":
            cfg["NUM_STREAMS"] = str(int(self.streams))
        if self.threads and hint == "LATENCY":
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
        self._supported = set(core.get_property(self.device, "SUPPORTED_PROPERTIES"))
        self._core = core
        try:
            self._model = core.read_model(str(self.path))
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:300]
            raise ArtifactError(f"{self.path}: OpenVINO cannot read it ({first})") from None
        self.compiled = self._compile(None)
        self.execution_precision = _OV_PRECISION[self.precision]
        if self.performance_hint == "THROUGHPUT":
            self._start_throughput(self.compiled)
        self._request = self.compiled.create_infer_request()
        self._inputs = {_port_name(p): p for p in self.compiled.inputs}
        self._outputs = [_port_name(p) for p in self.compiled.outputs]

    def _compile(self, hint: str | None):
        try:
            compiled = self._core.compile_model(self._model, self.device, self.config(self._supported, hint))
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:300]
            raise ArtifactError(f"{self.path}: OpenVINO cannot compile it ({first})") from None
        want = _OV_PRECISION[self.precision]
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != want:
            raise ArtifactError(f"{self.name}: OpenVINO compiled {self.path.name} in {got}, asked for {want}")
        return compiled

    def _start_throughput(self, compiled) -> None:
        n = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._throughput = (compiled, [compiled.create_infer_request() for _ in range(n)])

    def deactivate_impl(self) -> None:
        # Requests before the compiled models that own them.
        if self._throughput is not None:
            compiled, requests = self._throughput
            self._throughput = None
            for request in requests:
                request.wait()
            del requests, compiled
        self._request = None
        self.compiled = None
        self._model = None

    def kernel_summary(self) -> dict:
        """What the CPU plugin compiled the matrix layers into (from the runtime model of the active runner).

        Returns:
            {"engine": "openvino", "layers": {"Convolution u8": n, ...}, "primitives": {"brgconv_avx512_...": n}}
            for Convolution / GroupConvolution / Deconvolution / FullyConnected / MatMul layers.
        """
        self._require_active()
        layers, primitives = {}, {}
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            if kind not in _MATRIX_LAYERS:
                continue
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
            layers[f"{kind} {precision}"] = layers.get(f"{kind} {precision}", 0) + 1
            prim = info["primitiveType"].astype(str) if "primitiveType" in info else "?"
            primitives[prim] = primitives.get(prim, 0) + 1
        return {"engine": "openvino", "layers": layers, "primitives": primitives}

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
        batch = next(iter(feed.values())).shape[0]
        if batch > 1 and self.performance_hint in ("AUTO", "THROUGHPUT"):
            return self._infer_streams(feed, batch)
        result = self._request.infer(feed)
        # `infer` returns views of the request's buffers, overwritten by the next call: copy.
        return {name: as_float32(np.array(result[port], copy=True))
                for name, port in zip(self._outputs, self.compiled.outputs)}

    def _infer_streams(self, feed: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        """One request per sample over the THROUGHPUT compile's streams; outputs stacked in order.

        The requests are started and waited on from this thread, round robin: no Python callback runs on
        OpenVINO's threads (an AsyncInferQueue with a callback aborted the process now and then when it was
        torn down).
        """
        if self._throughput is None:
            self._start_throughput(self._compile("THROUGHPUT"))
        compiled, requests = self._throughput
        results: list[dict[str, np.ndarray] | None] = [None] * batch
        pending: dict[int, int] = {}  # request index -> sample it runs

        def collect(i: int) -> None:
            request = requests[i]
            request.wait()
            results[pending.pop(i)] = {name: np.array(request.get_tensor(port).data, copy=True)
                                       for name, port in zip(self._outputs, compiled.outputs)}

        for k in range(batch):
            i = k % len(requests)
            if i in pending:
                collect(i)
            requests[i].start_async({name: v[k : k + 1] for name, v in feed.items()})
            pending[i] = k
        for i in list(pending):
            collect(i)
        return {name: as_float32(np.concatenate([r[name] for r in results])) for name in self._outputs}


def _port_name(port) -> str:
    """The graph's own tensor name: ONNX imports also attach internal names like `/DepthToSpace_output_0`."""
    names = sorted(port.get_names())
    public = [n for n in names if not n.startswith("/")]
    return (public or names or [port.get_any_name()])[0]
