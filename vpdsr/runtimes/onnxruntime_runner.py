"""ONNX Runtime runner: CPU, CUDA and TensorRT execution providers; IO binding on CUDA.

CPU session options (ONNX Runtime's threading and tuning docs), measured on the shared 2-core EPYC
(tiny student, 128x128 LR, ms): intra-op threads that spin between ops hold a core each, which on
a machine other processes share costs the most: 2 threads spinning 810, not spinning 630, not
spinning with `session.dynamic_block_base` 4 (smaller work blocks handed out as threads free up, so
a descheduled thread delays less) 506, against 477 on 1 thread. The defaults are therefore no
spinning and dynamic block base 4 (`session_config` overrides any of it); one inter-op thread, as the
graph runs sequentially; graph optimisation `all` (QDQ fusion into int8 kernels, NCHWc layouts).

TensorRT EP: its engine cache is one folder per graph (keyed by the graph's sha256, see
`vpdsr.runtimes.tensorrt_common.ort_engine_cache_dir`) and its optimisation profile is explicit
(`trt_profile_*_shapes` from the graph's inputs and the artifact's tile), so an engine is built once
per graph and shape range instead of on every new input shape. Precision is the graph's own: no
`trt_fp16_enable`/`trt_int8_enable`, so ORT builds a strongly typed TensorRT network from the fp16 or
Q/DQ graph, as our own TensorRT builder does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vpdsr.errors import ArtifactError, ConfigError, MissingDependencyError
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.common import as_float32, dim, import_optional

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
# what onnxruntime's CPU provider runs int8 matrix work as, and the float matrix ops it leaves
_INT8_OPS = ("QLinearConv", "QLinearMatMul", "MatMulIntegerToFloat", "ConvInteger", "MatMulInteger",
             "DynamicQuantizeMatMul", "QGemm", "NhwcQLinearConv")
_FLOAT_MATRIX_OPS = ("Conv", "FusedConv", "NchwcConv", "Gemm", "MatMul", "FusedMatMul", "FusedGemm")
# CPU session defaults (see the module docstring for the measurements behind them)
CPU_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0", "session.dynamic_block_base": "4"}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32"}


TRT_OPT_LEVEL = 3  # TensorRT's builder optimisation level (its default), as our own engine builder uses


def default_provider_options(provider: str, graph_sha256: str | None = None, profile: dict | None = None) -> dict:
    """Options a provider gets unless the caller overrides them.

    TensorRT EP: engines and tactic timings are cached (building an engine takes minutes, and an
    uncached session would rebuild it on every start) under $VPDSR_CACHE/ort-tensorrt, never inside
    the artifact folder, whose files are hashed: engines in one folder per graph sha256 (`graph_sha256`;
    ORT's own cache names would let two artifacts load each other's engine), tactic timings in one
    shared folder (ORT names those per GPU architecture). `profile` ({input: {"min","opt","max"}})
    becomes the explicit `trt_profile_*_shapes`. fp16/int8 stay off: the graph's own types and Q/DQ
    nodes decide the precision, as the manifest records it.
    """
    from vpdsr.runtimes.tensorrt_common import cache_root, ort_engine_cache_dir, ort_profile_options

    if provider == PROVIDERS["tensorrt"]:
        engines = ort_engine_cache_dir(graph_sha256) if graph_sha256 else cache_root() / "ort-tensorrt" / "unkeyed"
        opts = {"device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(engines),
                "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_root() / "ort-tensorrt" / "timing"),
                "trt_builder_optimization_level": TRT_OPT_LEVEL}
        return {**opts, **(ort_profile_options(profile) if profile else {})}
    if provider == PROVIDERS["cuda"]:
        return {"device_id": 0}
    return {}


def provider_list(providers, provider_options: dict | None = None, graph_sha256: str | None = None,
                  profile: dict | None = None) -> list:
    """`["tensorrt", "cuda"]` -> ORT's `[(name, options), ...]`; the CPU provider is always last as a fallback.

    `graph_sha256` and `profile` fill in the TensorRT EP's defaults (see `default_provider_options`);
    what `provider_options` gives for a provider wins over its defaults.
    """
    names = [providers] if isinstance(providers, str) else list(providers)
    given = provider_options or {}
    out = []
    for p in names:
        full = PROVIDERS.get(p.lower(), p) if isinstance(p, str) else p
        if full not in PROVIDERS.values():
            raise ConfigError(f"unknown onnxruntime provider {p!r}; expected one of {sorted(PROVIDERS)}")
        defaults = default_provider_options(full, graph_sha256, profile)
        out.append((full, {**defaults, **given.get(p, given.get(full, {}))}))
    if all(name != PROVIDERS["cpu"] for name, _ in out):
        out.append((PROVIDERS["cpu"], {}))
    return out


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX graph with onnxruntime.

    Args:
        path: the .onnx file (external data beside it is found by ORT).
        providers: "cpu", "cuda", "tensorrt" or a list in priority order (full ORT names work too).
        provider_options: {provider: {option: value}}, e.g. {"tensorrt": {"trt_fp16_enable": True,
            "trt_engine_cache_enable": True, "trt_engine_cache_path": "cache/"}, "cuda": {"device_id": 0}}.
        threads: intra-op threads (0 = ORT's default).
        io_binding: bind inputs/outputs explicitly (default: on when the first provider is CUDA/TensorRT),
            so the output is allocated once on the device and copied back in one go.
        allow_fallback: accept a session whose first provider is not the one asked for (ORT silently falls
            back to CPU when, e.g., the CUDA libraries are missing); default False: a one-line error.
        graph_optimization: none, basic, extended or all (the default).
        session_config: extra `SessionOptions.add_session_config_entry` entries; they override the CPU
            defaults (:data:`CPU_SESSION_CONFIG`).
        trt_tile: TensorRT EP only: the LR side its optimisation profile is tuned for where the graph's H/W are
            dynamic (a static graph's own size wins); None: no explicit profile.

    Example:
        >>> with OnnxRuntimeRunner("artifacts/onnx/model.onnx", providers="cpu", threads=2) as r:
        ...     sr = r.infer({"lr": lr, "noise": noise})["sr"]
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, providers="cpu", provider_options: dict | None = None, threads: int = 0,
                 io_binding: bool | None = None, allow_fallback: bool = False, precision: str = "fp32",
                 graph_optimization: str = "all", session_config: dict[str, str] | None = None,
                 name: str | None = None, trt_tile: int | None = None):
        self.path = Path(path)
        self._provider_args = (providers, provider_options)
        self.providers = provider_list(providers, provider_options)
        self.trt_tile = trt_tile
        first, first_options = self.providers[0]
        device = "cpu" if first == PROVIDERS["cpu"] else "cuda"
        super().__init__(name or f"onnxruntime-{device}", device=device, precision=precision)
        if device == "cuda" and int(first_options.get("device_id", 0)):
            self.device = f"cuda:{int(first_options['device_id'])}"
        self.threads = int(threads)
        self.io_binding = (device == "cuda") if io_binding is None else bool(io_binding)
        self.allow_fallback = allow_fallback
        self.graph_optimization = graph_optimization
        self.session_config = {**(CPU_SESSION_CONFIG if device == "cpu" else {}),
                               **{k: str(v) for k, v in (session_config or {}).items()}}
        self.session = None

    def activate_impl(self) -> None:
        ort = import_optional("onnxruntime", "the onnxruntime runner")
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: ONNX file not found")
        available = ort.get_available_providers()
        wanted = self.providers[0][0]
        if wanted not in available:
            raise MissingDependencyError(
                f"{self.name}: onnxruntime has no {wanted} here (available: {', '.join(available)}); "
                "GPU providers need onnxruntime-gpu (pip install 'vpdsr[gpu]')")
        if any(p == PROVIDERS["tensorrt"] for p, _ in self.providers):
            self.providers = self._tensorrt_providers()
        so = self._session_options(ort)
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=so,
                providers=[p for p, _ in self.providers], provider_options=[o for _, o in self.providers])
        except _load_errors(ort) as e:
            raise ArtifactError(f"{self.path}: onnxruntime cannot load it ({str(e).splitlines()[0][:300]})") from None
        got = self.session.get_providers()[0]
        if got != wanted and not self.allow_fallback:
            self.session = None
            raise MissingDependencyError(
                f"{self.name}: asked for {wanted} but onnxruntime fell back to {got} (see its log for why)")
        self._inputs = {i.name: i for i in self.session.get_inputs()}
        self._outputs = [o.name for o in self.session.get_outputs()]
        if self.io_binding:
            self._binding = self.session.io_binding()

    def _session_options(self, ort):
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1  # sequential execution: the inter-op pool would only hold threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        levels = {"none": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                  "all": "ORT_ENABLE_ALL"}
        if self.graph_optimization not in levels:
            raise ConfigError(f"`graph_optimization` must be one of {list(levels)}, got {self.graph_optimization!r}")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[self.graph_optimization])
        so.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
        for key, value in self.session_config.items():
            so.add_session_config_entry(key, value)
        return so

    def _tensorrt_providers(self) -> list:
        """The providers with the TensorRT EP's engine cache keyed by this graph's sha256 and its profile."""
        from vpdsr.runtimes.tensorrt_common import graph_sha256

        profile = graph_profile(self.path, self.trt_tile) if self.trt_tile else None
        return provider_list(*self._provider_args, graph_sha256=graph_sha256(self.path), profile=profile)

    def deactivate_impl(self) -> None:
        self.session = None
        self._binding = None

    def kernel_summary(self) -> dict:
        """What onnxruntime turns the graph into on this provider: the op types after its graph optimisation.

        A second session with the same options writes its optimised graph to a temporary file, whose nodes
        are counted (so it costs one more session build).

        Returns:
            {"engine": "onnxruntime", "ops": {op_type: n}, "int8_ops": n (QLinearConv, MatMulIntegerToFloat,
            ...), "float_matrix_ops": n (Conv, FusedConv, Gemm, MatMul still in float), "qdq_nodes": n,
            "activation_types": {"int8"|"uint8": n} (QuantizeLinear zero points of the source graph)}.
        """
        import tempfile

        import onnx

        self._require_active()
        ort = import_optional("onnxruntime", "the onnxruntime runner")
        with tempfile.TemporaryDirectory(prefix="vpdsr-ort-opt-") as tmp:
            so = self._session_options(ort)
            so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            ort.InferenceSession(str(self.path), sess_options=so, providers=[p for p, _ in self.providers],
                                 provider_options=[o for _, o in self.providers])
            graph = onnx.load(so.optimized_model_filepath, load_external_data=False).graph
        ops: dict[str, int] = {}
        for node in graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        source = onnx.load(str(self.path), load_external_data=False).graph
        inits = {i.name: i.data_type for i in source.initializer}
        acts: dict[str, int] = {}
        for node in source.node:
            if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
                zero_point_type = inits[node.input[2]]
                kind = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}.get(zero_point_type, "other")
                acts[kind] = acts.get(kind, 0) + 1
        return {"engine": "onnxruntime", "ops": ops,
                "int8_ops": sum(ops.get(k, 0) for k in _INT8_OPS),
                "float_matrix_ops": sum(ops.get(k, 0) for k in _FLOAT_MATRIX_OPS),
                "qdq_nodes": ops.get("QuantizeLinear", 0) + ops.get("DequantizeLinear", 0),
                "activation_types": acts}

    def input_metadata_impl(self) -> dict[str, tuple[str, tuple]]:
        # A float16 graph input still takes float32 here: the runner casts (the Runner I/O is float32).
        return {name: (_public_dtype(i.type), tuple(dim(d) for d in i.shape)) for name, i in self._inputs.items()}

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: _to_graph_dtype(v, self._inputs[k].type) for k, v in feed.items()}
        if not self.io_binding:
            outs = self.session.run(self._outputs, feed)
        else:
            b = self._binding
            b.clear_binding_inputs()
            b.clear_binding_outputs()
            for k, v in feed.items():
                b.bind_cpu_input(k, np.ascontiguousarray(v))
            for name in self._outputs:
                if self.device.startswith("cuda"):  # on the provider's GPU (cuda:N -> device_id N)
                    b.bind_output(name, "cuda", int(self.providers[0][1].get("device_id", 0)))
                else:
                    b.bind_output(name, "cpu")
            self.session.run_with_iobinding(b)
            outs = b.copy_outputs_to_cpu()
        return {name: as_float32(o) for name, o in zip(self._outputs, outs)}


def graph_profile(path: Path, tile: int) -> dict | None:
    """The TensorRT optimisation profile of an ONNX graph's inputs: fixed H/W as they are, dynamic H/W over
    the dynamic range with `tile` as the opt side, batch 1..MAX_BATCH. None when onnx cannot read it."""
    from vpdsr.runtimes.tensorrt_common import profile_shapes

    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # no onnx package or an unreadable header: ORT then picks shapes as they come
        return None
    initializers = {i.name for i in graph.initializer}
    shapes = {}
    for inp in graph.input:
        if inp.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[1] is None:
            return None
        static = dims[2] is not None and dims[2] == dims[3]
        one = profile_shapes({inp.name: dims[1]}, dims[2] if static else tile, dynamic=not static)[inp.name]
        if dims[0] is not None:  # a fixed batch is that batch at every bound
            one = {bound: [dims[0], *s[1:]] for bound, s in one.items()}
        shapes[inp.name] = one
    return shapes


def _load_errors(ort) -> tuple[type[BaseException], ...]:
    """ORT's own exception types for a graph it cannot load (they derive from Exception directly)."""
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidGraph", "InvalidProtobuf", "InvalidArgument", "NoSuchFile", "NotImplemented")
    return (RuntimeError, *(getattr(state, n) for n in names if hasattr(state, n)))


def _public_dtype(ort_type: str) -> str:
    dtype = _ORT_DTYPES.get(ort_type, ort_type)
    return "float32" if dtype == "float16" else dtype


def _to_graph_dtype(arr: np.ndarray, ort_type: str) -> np.ndarray:
    return arr.astype(np.float16) if ort_type == "tensor(float16)" else arr
