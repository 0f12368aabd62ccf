"""The machine's own limit: measured matrix-multiply peaks per precision and engine (the roofline's roof).

A figure is the best rate of a square matmul (N=1024) over a short loop, i.e. the rate this CPU
reaches when nothing else gets in the way; best-of rather than a median because a shared machine
only ever slows a run down. Engines and ops, as the backends use them:

- fp32: torch ``a @ b``, onnxruntime ``MatMul``, OpenVINO ``MatMul``;
- bf16 / fp16: torch matmul in that dtype, OpenVINO with ``INFERENCE_PRECISION_HINT`` bf16/f16
  where the CPU plugin lists the capability;
- int8: torch ``_int_mm``; onnxruntime ``MatMulInteger`` u8 x s8 (its fast x86 path) and s8 x s8;
  onnxruntime and OpenVINO on a Q/DQ ``MatMul`` (what the INT8 artifacts are: onnxruntime fuses
  it into ``MatMulIntegerToFloat``, OpenVINO into an int8 FullyConnected).

Beside the matmul peaks, the same measurement takes the memory bandwidth (a STREAM-style triad, see
:mod:`vpdsr.bench.bandwidth`): the roofline's second roof, used for each backend's attainable time.

A low-precision figure below half of the same engine's fp32 figure is marked ``emulated/unusable``
(e.g. torch fp16 on a CPU without AVX512-FP16: 0.3-0.5 GFLOP/s) and is not used as a peak.
The peak of a precision is the best usable figure over the engines. Results are cached per machine
in ``$VPDSR_CACHE/peak/`` keyed by CPU model, CPU flags, thread count and engine versions.

Example:
    >>> peaks = machine_peaks(threads=2)  # doctest: +SKIP
    >>> peaks["peak"]["int8"]["gflops"]  # doctest: +SKIP
    214.3
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from vpdsr import env

log = logging.getLogger(__name__)
SIZE = 1024
PROBE = 512  # side of the quick probe that tells an emulated dtype
SCHEMA = 2  # 2: the memory bandwidth (triad) is part of the cached figures
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
UNUSABLE_RATIO = 0.5  # a low-precision figure below this fraction of fp32 (same engine) is emulated
# The probe is one cold call (no warm-up, one timing): on a busy machine it can read several times too slow, so
# it only spares the full measurement where the dtype is plainly emulated (0.2-0.6 % of fp32 seen); everything
# else is measured like fp32 and judged by UNUSABLE_RATIO on its best-of figure.
PROBE_RATIO = 0.05


@dataclass
class Figure:
    """One measured rate: GFLOP/s (GOP/s for int8) of `op` on `engine` in `precision`."""

    precision: str
    engine: str
    op: str
    gflops: float | None
    note: str | None = None


def best_rate(fn: Callable[[], object], flop: float, seconds: float = 0.25, min_runs: int = 3) -> float:
    """GFLOP/s of the fastest of the timed calls of `fn` (one warm-up first; `seconds` of timing at least
    `min_runs` calls)."""
    fn()
    best, runs, t_end = float("inf"), 0, time.perf_counter() + seconds
    while runs < min_runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return flop / best / 1e9


def _torch_figures(n: int, threads: int, seconds: float) -> list[Figure]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    try:
        g = torch.Generator().manual_seed(0)

        def rate(dtype, size: int, secs: float) -> float:
            a, b = (torch.randn(size, size, generator=g).to(dtype) for _ in range(2))
            return best_rate(lambda: a @ b, 2.0 * size**3, secs, 1)

        fp32 = rate(torch.float32, n, seconds)
        out.append(Figure("fp32", "torch", "matmul", fp32))
        for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            # An emulated dtype runs at well under 1 GFLOP/s: one untimed-warm-up-free call of a smaller
            # matmul shows it in about a second instead of a minute.
            a, b = (torch.randn(PROBE, PROBE, generator=g).to(dtype) for _ in range(2))
            t0 = time.perf_counter()
            a @ b
            probe = 2.0 * PROBE**3 / (time.perf_counter() - t0) / 1e9
            if probe < PROBE_RATIO * fp32:
                out.append(Figure(precision, "torch", f"matmul {PROBE}^2", probe))
            else:
                out.append(Figure(precision, "torch", "matmul", rate(dtype, n, seconds)))
        a, b = (torch.randint(-127, 128, (n, n), dtype=torch.int8, generator=g) for _ in range(2))
        try:
            out.append(Figure("int8", "torch", "_int_mm", best_rate(lambda: torch._int_mm(a, b), 2.0 * n**3,
                                                                    seconds, 1)))
        except (RuntimeError, AttributeError) as e:
            out.append(Figure("int8", "torch", "_int_mm", None, f"not available: {str(e).splitlines()[0][:120]}"))
    finally:
        torch.set_num_threads(old)
    return out


def _onnx_matmul(n: int, kind: str):
    """A one-node ONNX model: fp32 MatMul, MatMulInteger (u8s8/s8s8) or a Q/DQ MatMul (u8/s8 activations)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    f32 = TensorProto.FLOAT
    inits, nodes = [], []
    if kind == "fp32":
        inits.append(numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "W"))
        nodes.append(helper.make_node("MatMul", ["A", "W"], ["Y"]))
        a_type, y_type = f32, f32
    elif kind.startswith("integer-"):
        a_type = TensorProto.UINT8 if kind == "integer-u8s8" else TensorProto.INT8
        inits.append(numpy_helper.from_array(rng.integers(-127, 128, (n, n)).astype(np.int8), "W"))
        nodes.append(helper.make_node("MatMulInteger", ["A", "W"], ["Y"]))
        y_type = TensorProto.INT32
    else:  # qdq-u8 / qdq-s8: float in and out, quantized in between, as an exported INT8 graph
        act = np.uint8 if kind == "qdq-u8" else np.int8
        inits += [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, act), "za"), numpy_helper.from_array(np.array(0, np.int8), "zw"),
                  numpy_helper.from_array(rng.integers(-127, 128, (n, n)).astype(np.int8), "Wq")]
        nodes += [helper.make_node("QuantizeLinear", ["A", "s", "za"], ["Aq"]),
                  helper.make_node("DequantizeLinear", ["Aq", "s", "za"], ["Ad"]),
                  helper.make_node("DequantizeLinear", ["Wq", "s", "zw"], ["Wd"]),
                  helper.make_node("MatMul", ["Ad", "Wd"], ["Y"])]
        a_type, y_type = f32, f32
    graph = helper.make_graph(nodes, "peak", [helper.make_tensor_value_info("A", a_type, [n, n])],
                              [helper.make_tensor_value_info("Y", y_type, [n, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _input(n: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if kind == "integer-u8s8":
        return rng.integers(0, 256, (n, n)).astype(np.uint8)
    if kind == "integer-s8s8":
        return rng.integers(-127, 128, (n, n)).astype(np.int8)
    return rng.random((n, n), dtype=np.float32)


_ORT_KINDS = (("fp32", "fp32", "MatMul"), ("int8", "integer-u8s8", "MatMulInteger u8s8"),
              ("int8", "integer-s8s8", "MatMulInteger s8s8"), ("int8", "qdq-u8", "Q/DQ MatMul u8s8"),
              ("int8", "qdq-s8", "Q/DQ MatMul s8s8"))


def _ort_figures(n: int, threads: int, seconds: float) -> list[Figure]:
    import onnxruntime as ort

    out = []
    for precision, kind, op in _ORT_KINDS:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        session = ort.InferenceSession(_onnx_matmul(n, kind).SerializeToString(), so,
                                       providers=["CPUExecutionProvider"])
        feed = {"A": _input(n, kind)}
        out.append(Figure(precision, "onnxruntime", op, best_rate(lambda: session.run(None, feed), 2.0 * n**3,
                                                                  seconds)))
    return out


def _openvino_figures(n: int, threads: int, seconds: float, work: str) -> list[Figure]:
    import onnx
    import openvino as ov

    core = ov.Core()
    caps = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    out = []
    for precision, kind, hint in (("fp32", "fp32", "f32"), ("bf16", "fp32", "bf16"), ("fp16", "fp32", "f16"),
                                  ("int8", "qdq-u8", "f32")):
        if precision in ("bf16", "fp16") and precision.upper() not in caps:
            out.append(Figure(precision, "openvino", "MatMul", None, f"the CPU plugin lacks {precision.upper()} "
                                                                     f"(capabilities: {', '.join(sorted(caps))})"))
            continue
        path = os.path.join(work, f"peak-{kind}.onnx")
        onnx.save(_onnx_matmul(n, kind), path)
        compiled = core.compile_model(core.read_model(path), "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)})
        request = compiled.create_infer_request()
        feed = {0: _input(n, kind)}
        op = "Q/DQ MatMul u8s8" if kind == "qdq-u8" else "MatMul"
        out.append(Figure(precision, "openvino", op, best_rate(lambda: request.infer(feed), 2.0 * n**3, seconds)))
    return out


def measure_peaks(threads: int, seconds: float = 0.25, size: int = SIZE) -> dict:
    """Measure every figure now (a few seconds); see the module docstring. Engines not installed are left out.

    The result's "bandwidth" is the triad's {"gbps", "engine", "op", "array_mb", "threads"}.
    """
    import tempfile

    t0 = time.perf_counter()
    figures = _torch_figures(size, threads, seconds)
    if env.version("onnxruntime") or env.version("onnxruntime-gpu"):
        figures += _ort_figures(size, threads, seconds)
    if env.version("openvino"):
        with tempfile.TemporaryDirectory(prefix="vpdsr-peak-") as work:
            figures += _openvino_figures(size, threads, seconds, work)
    from vpdsr.bench.bandwidth import triad

    bandwidth = triad(threads, seconds=seconds)
    fp32 = {f.engine: f.gflops for f in figures if f.precision == "fp32" and f.gflops}
    for f in figures:
        if f.precision in ("bf16", "fp16") and f.gflops and fp32.get(f.engine) and \
                f.gflops < UNUSABLE_RATIO * fp32[f.engine]:
            f.note = f"emulated/unusable ({f.gflops:.1f} vs fp32 {fp32[f.engine]:.0f} on {f.engine})"
    return {"schema": SCHEMA, "threads": threads, "size": size, "seconds": round(time.perf_counter() - t0, 2),
            "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg": _loadavg(),
            "cpu": env.cpu_info(), "versions": _versions(), "figures": [asdict(f) for f in figures],
            "peak": summarize(figures), "bandwidth": bandwidth}


def summarize(figures: list[Figure]) -> dict:
    """{precision: {"gflops", "engine", "op"}} from the best usable figure of each precision (None if none)."""
    out = {}
    for p in PRECISIONS:
        usable = [f for f in figures if f.precision == p and f.gflops and not f.note]
        best = max(usable, key=lambda f: f.gflops, default=None)
        out[p] = None if best is None else {"gflops": round(best.gflops, 1), "engine": best.engine, "op": best.op}
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _versions() -> dict:
    return env.versions(["torch", "onnxruntime", "onnxruntime-gpu", "openvino"], installed_only=True)


def cache_key(threads: int, size: int = SIZE) -> str:
    """CPU model + all CPU flags + threads + engine versions (+ matrix size): what decides the figures."""
    text = json.dumps([env.cpu_info()["name"], sorted(env.cpu_flags()), threads, _versions(), SCHEMA, size])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def machine_peaks(threads: int | None = None, refresh: bool = False, size: int | None = None,
                  seconds: float = 0.25) -> dict:
    """The cached figures for this machine and thread count, measured first when there are none (or `refresh`).

    Args:
        threads: CPU threads the figures are for (None: torch's current count, what the backends get).
        refresh: measure again and overwrite the cache.
        size, seconds: matrix side (default :data:`SIZE`) and timing loop per figure (see :func:`measure_peaks`).
    """
    size = size or SIZE
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    path = env.cache_dir() / "peak" / f"{cache_key(threads, size)}.json"
    if not refresh and path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("schema") == SCHEMA:
                return {**data, "cached": str(path)}
        except (OSError, ValueError):
            pass  # unreadable cache: measure again
    log.info(f"peak: measuring this machine's matmul peaks ({threads} thread(s), a few seconds)")
    data = measure_peaks(threads, seconds, size)
    try:
        from vpdsr.utils import atomic_write_text

        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as e:  # a read-only home: the figures are still returned
        log.warning(f"peak: cannot cache the figures in {path} ({e})")
    return {**data, "cached": None}


def peak_for(peaks: dict | None, precision: str) -> tuple[float | None, str | None]:
    """(GFLOP/s, the precision it is for) a backend of `precision` is measured against.

    A precision without a usable figure here (fp16 on a CPU that emulates it, fp8 on any CPU) is
    measured against the fp32 peak, and the second value says so.
    """
    if not peaks:
        return None, None
    table = peaks.get("peak") or {}
    own = table.get(precision)
    if own:
        return own["gflops"], precision
    fp32 = table.get("fp32")
    return (fp32["gflops"], "fp32") if fp32 else (None, None)
