"""ONNX targets: `onnx` (fp32) and `ort-int8` (onnxruntime static QDQ); modelopt is in `modelopt_int8.py`.

INT8 calibration memory (measured on the base preset, 64x64 tiles: onnxruntime's own calibration peaked
at 16 GB RSS on a ~170 M-parameter model with 8 samples).
onnxruntime's MinMax calibrator adds a ReduceMin/ReduceMax pair after every tensor (2729 extra
outputs on base) and runs that augmented graph in a session it makes itself: graph optimisation
off, the default execution order, the CPU arena and memory patterns on. Measured: plain inference
of the graph peaks at 1.4 GB; one augmented run at 8.7 GB, the second at 15.5 GB, then flat. Two
causes: (1) in the default order the reductions run late, so nearly every activation of the whole
graph is alive at once (8.1 GB even without the arena); (2) the arena plus the memory pattern
recorded on the first run allocates a second full block on the next run (x2). The number of
samples only matters through (2); the input size scales (1). We therefore run the calibrator's
augmented graph in our own session, PRIORITY_BASED execution order (reductions run as soon as
their tensor exists), no arena, no memory pattern: 2.5 GB flat, one sample at a time from a
streaming reader, then hand the ranges to `quantize_static` through its calibration cache file.
Calibration is on static tile-sized crops; `skip_symbolic_shape` in pre-processing (dynamic H/W
breaks symbolic shape inference); external data for graphs too big for one protobuf.
`CalibMaxIntermediateOutputs` is not used: onnxruntime 1.32 drops the collected data when the
count is reached (`clear_collected_data` before `compute_data`), then fails with "No data is
collected.".

With `--int8-budget` / `--sensitivity` the ranges are computed once and every candidate graph of the
search is only `quantize_static` from that cache (no calibration), run on the validation tiles.
"""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from vpdsr.export.calibration import make_reader
from vpdsr.export.onnx_graph import EXTERNAL_DATA_BYTES, OPSET
from vpdsr.export.targets import BuildContext, BuildResult, TargetSpec, float_patterns

log = logging.getLogger(__name__)
# Kept in float for INT8 (see FLOAT_LAYERS in vpdsr/export/float_policy.py for why each one).
INT8_EXCLUDE = float_patterns("int8")


def build_onnx(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    graphs = {}
    for name in ctx.names():
        src = ctx.fp32_graph(name)
        for f in src.parent.iterdir():  # the graph and any external-data files beside it
            shutil.copy2(f, folder / f.name)
        graphs[name] = src.name
    return BuildResult(options={"graphs": graphs, "opset": OPSET})


def matching_nodes(path: Path, patterns=INT8_EXCLUDE) -> list[str]:
    """Names of the nodes of an ONNX graph whose name matches any regex in `patterns`."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    rx = [re.compile(p) for p in patterns]
    return [n.name for n in graph.node if any(r.search(n.name) for r in rx)]


def build_ort_int8(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from vpdsr.runtimes.int8_formats import ort_int8_format

    graphs, excluded, extra = {}, {}, {}
    feeds = ctx.calib_feeds()
    fmt = ort_int8_format()  # u8 x s8 where this CPU runs it fastest (x86), matrix ops only: see int8_formats.py
    for name in ctx.names():
        src = ctx.fp32_graph(name)
        large = _is_large(src)
        work = ctx.work / "ort-int8" / name
        work.mkdir(parents=True, exist_ok=True)
        pre = work / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True, save_as_external_data=large)
        excluded[name] = matching_nodes(pre, ctx.keep_float("int8"))
        log.debug(f"ort-int8: calibrating {name!r} on {len(feeds[name])} samples (onnxruntime MinMax, symmetric)")
        cache = calibrate_ranges(pre, feeds[name], work, large, symmetric=fmt.symmetric_activations,
                                 op_types=list(fmt.op_types))
        out = folder / f"{name}.onnx"

        def quantize(dst: Path, kept: list[str], pre=pre, cache=cache, large=large) -> Path:
            return ort_quantize(pre, dst, cache, kept, large, fmt)

        added = []
        if ctx.int8 is not None:
            added, extra = _ort_budget(ctx, spec, src, pre, quantize, excluded[name], work, folder)
        quantize(out, excluded[name] + added)
        if extra.get("accuracy_control"):
            extra["accuracy_control"]["latency_ms"] = ort_latency(
                {"fp32": src, "all_int8": work / "all-int8.onnx", "final": out}, ctx.int8.feeds[0])
        graphs[name] = out.name
    options = {"graphs": graphs, "opset": OPSET, "quant_format": "QDQ", "calibration_method": "MinMax",
               "symmetric": fmt.symmetric_activations, "per_channel": True, "excluded_nodes": excluded,
               "int8_format": fmt.to_dict(), "float_policy": list(ctx.keep_float("int8")), **extra}
    return BuildResult(options=options)


def ort_quantize(pre: Path, dst: Path, cache: Path, excluded: list[str], large: bool, fmt=None) -> Path:
    """`quantize_static` of `pre` from cached ranges (no calibration), `excluded` nodes held in float; `fmt`: an
    :class:`vpdsr.runtimes.int8_formats.OrtInt8Format` (default: s8 x s8 symmetric, every quantizable op)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    # default: symmetric s8 activations and weights, what TensorRT's explicit quantization accepts
    args = fmt.quantize_static_args() if fmt is not None else {
        "quant_format": QuantFormat.QDQ, "activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8,
        "op_types_to_quantize": quantizable_ops(),
        "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True}}
    quantize_static(
        str(pre), str(dst), None, calibration_cache_path=str(cache), per_channel=True,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(excluded), use_external_data_format=large,
        **args,
    )
    return dst


def _ort_budget(ctx: BuildContext, spec: TargetSpec, src: Path, pre: Path, quantize, policy: list[str],
                work: Path, folder: Path) -> tuple[list[str], dict]:
    from vpdsr.export.mixed_precision import choose_kept

    all_int8 = quantize(work / "all-int8.onnx", policy)
    candidates = quantizable_candidates(pre, all_int8, policy)
    candidate = work / "candidate.onnx"
    feeds = ctx.int8.feeds

    def run(kept: list[str]) -> list:
        return ort_outputs(quantize(candidate, policy + kept), feeds)

    return choose_kept(ctx.int8, spec.name, candidates, run, folder)


def quantizable_candidates(graph: Path, quantized: Path, policy: list[str]) -> list[str]:
    """Nodes the budget search may hold in float: quantized in the all-INT8 graph, of a quantizable op type."""
    import onnx

    from vpdsr.export.float_policy import quantized_nodes

    ops = set(quantizable_ops())
    types = {n.name: n.op_type for n in onnx.load(str(graph), load_external_data=False).graph.node}
    skip = set(policy)
    return [n for n in quantized_nodes(quantized) if types.get(n) in ops and n not in skip]


def ort_outputs(path: Path, feeds: list[dict], batch: int = 8) -> list:
    """The graph's `sr` on each feed (onnxruntime CPU, batches of `batch`), as HxWx3 arrays."""
    import numpy as np

    from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    out = []
    with OnnxRuntimeRunner(path) as runner:
        for i in range(0, len(feeds), batch):
            chunk = feeds[i:i + batch]
            sr = runner.infer({k: np.concatenate([f[k] for f in chunk]) for k in chunk[0]})["sr"]
            out += [s.transpose(1, 2, 0) for s in sr]
    return out


def ort_latency(paths: dict[str, Path], feed: dict, threads: int = 1) -> dict:
    """Median ms of one tile on each graph (onnxruntime CPU, `threads` threads), interleaved in this process."""
    from contextlib import ExitStack

    from vpdsr.export.search import side_by_side_ms
    from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    with ExitStack() as stack:
        runners = {k: stack.enter_context(OnnxRuntimeRunner(p, threads=threads)) for k, p in paths.items()}
        ms = side_by_side_ms({k: (lambda r=r: r.infer(feed)) for k, r in runners.items()})
    return {**ms, "threads": threads}


def quantizable_ops() -> list[str]:
    """The op types quantize_static quantizes by default (calibration must cover the same tensors)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QDQRegistry) | set(QLinearOpsRegistry))


def bounded_session_options():
    """Session options for a calibrator's augmented graph with bounded memory (see the module docstring)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as the calibrator: exact tensors
    opts.execution_order = ort.ExecutionOrder.PRIORITY_BASED  # reductions run as soon as their tensor exists
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    return opts


def calibrate_ranges(pre: Path, feeds: list[dict], work: Path, large: bool, symmetric: bool = True,
                     op_types: list[str] | None = None) -> Path:
    """MinMax ranges (symmetric or not) of the tensors of `op_types` (default: every quantizable op), with bounded
    memory; returns the cache file."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        create_calibrator,
        save_tensors_data,
    )

    calibrator = create_calibrator(pre, op_types or quantizable_ops(),
                                   augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax, use_external_data_format=large,
                                   providers=["CPUExecutionProvider"], extra_options={"symmetric": symmetric})
    calibrator.infer_session = ort.InferenceSession(calibrator.augmented_model_path, bounded_session_options(),
                                                    providers=["CPUExecutionProvider"])
    calibrator.collect_data(make_reader(feeds))
    cache = work / "ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    del calibrator
    return cache


def _is_large(path: Path) -> bool:
    return sum(f.stat().st_size for f in path.parent.iterdir()) > EXTERNAL_DATA_BYTES

