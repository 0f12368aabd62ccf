"""ONNX targets: `onnx` (fp32), `ort-int8` (onnxruntime static QDQ) and `modelopt-int8/fp8` (Q/DQ for TensorRT).

INT8 calibration memory (measured on the base preset, 64x64 tiles, FACTS.md's 16 GB peak).
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
"""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from vpdsr.export.calibration import make_reader
from vpdsr.export.onnx_graph import EXTERNAL_DATA_BYTES, OPSET
from vpdsr.export.targets import BuildContext, BuildResult, TargetSkipped, TargetSpec, float_patterns

log = logging.getLogger(__name__)
# Kept in float for INT8 (see FLOAT_LAYERS in vpdsr/export/targets.py for why each one).
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
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graphs, excluded = {}, {}
    feeds = ctx.calib_feeds()
    for name in ctx.names():
        src = ctx.fp32_graph(name)
        large = _is_large(src)
        work = ctx.work / "ort-int8" / name
        work.mkdir(parents=True, exist_ok=True)
        pre = work / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True, save_as_external_data=large)
        excluded[name] = matching_nodes(pre, ctx.keep_float("int8"))
        log.debug(f"ort-int8: calibrating {name!r} on {len(feeds[name])} samples (onnxruntime MinMax, symmetric)")
        cache = calibrate_ranges(pre, feeds[name], work, large)
        out = folder / f"{name}.onnx"
        quantize_static(
            str(pre), str(out), None, calibration_cache_path=str(cache),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=quantizable_ops(), per_channel=True, calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded[name], use_external_data_format=large,
            # symmetric activations and weights: what TensorRT's explicit quantization accepts
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        graphs[name] = out.name
    options = {"graphs": graphs, "opset": OPSET, "quant_format": "QDQ", "calibration_method": "MinMax",
               "symmetric": True, "per_channel": True, "excluded_nodes": excluded}
    return BuildResult(options=options)


def quantizable_ops() -> list[str]:
    """The op types quantize_static quantizes by default (calibration must cover the same tensors)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QDQRegistry) | set(QLinearOpsRegistry))


def calibrate_ranges(pre: Path, feeds: list[dict], work: Path, large: bool) -> Path:
    """MinMax (symmetric) ranges of every quantizable tensor, with bounded memory; returns the cache file."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(pre, quantizable_ops(), augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax, use_external_data_format=large,
                                   providers=["CPUExecutionProvider"], extra_options={"symmetric": True})
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as the calibrator: exact tensors
    opts.execution_order = ort.ExecutionOrder.PRIORITY_BASED  # reductions run as soon as their tensor exists
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    calibrator.infer_session = ort.InferenceSession(calibrator.augmented_model_path, opts,
                                                    providers=["CPUExecutionProvider"])
    calibrator.collect_data(make_reader(feeds))
    cache = work / "ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    del calibrator
    return cache


def build_modelopt(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    import importlib.util

    if importlib.util.find_spec("modelopt") is None:
        raise TargetSkipped("nvidia-modelopt is not installed; pip install 'vpdsr[modelopt]' "
                            "(without its [onnx] extra on CPU machines)")
    mode = spec.options["quantize_mode"]
    high = spec.options.get("high_precision_dtype", "fp32")  # fp16 for TensorRT's strongly typed engines
    graphs = {}
    feeds = ctx.calib_feeds()
    patterns = ctx.keep_float("int8")  # INT8_EXCLUDE + the model family's own
    for name in ctx.names():
        src = ctx.fp32_graph(name)
        out = folder / f"{name}.onnx"
        log.debug(f"modelopt-{mode}: PTQ of {name!r} on {len(feeds[name])} samples")
        _modelopt_in_subprocess(src, out, mode, feeds[name], ctx.work / f"modelopt-{mode}-{high}-{name}", high,
                                patterns)
        graphs[name] = out.name
    options = {"graphs": graphs, "quantize_mode": mode, "calibration_method": "max",
               "high_precision_dtype": high, "excluded_patterns": list(patterns)}
    if mode != "int8":
        _check_cpu_kernels(folder, graphs, mode)
    return BuildResult(options=options)


_MODELOPT_SCRIPT = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
from vpdsr.export.calibration import make_reader
src, out, mode, data, large, high = sys.argv[1:7]
arrays = np.load(data)
n = len({k.split(":")[0] for k in arrays.files})
feeds = [{k.split(":")[1]: arrays[k] for k in arrays.files if k.startswith(f"{i}:")} for i in range(n)]
quantize(onnx_path=src, quantize_mode=mode, calibration_data_reader=make_reader(feeds), calibration_method="max",
         calibration_eps=["cpu"], high_precision_dtype=high, nodes_to_exclude=sys.argv[7:],
         use_external_data_format=large == "1", output_path=out, log_level="ERROR")
"""


def _modelopt_in_subprocess(src: Path, out: Path, mode: str, feeds: list[dict], work: Path,
                            high_precision: str = "fp32", exclude: tuple[str, ...] = INT8_EXCLUDE) -> None:
    """Run modelopt's ONNX PTQ in a child process.

    Importing modelopt.onnx.quantization patches onnxruntime's quantization module in place
    (`create_calibrator`, `MinMaxCalibrater.collect_data`, ...), which would break `ort-int8` (and
    anyone else's onnxruntime quantization) later in the same process.
    """
    import subprocess
    import sys

    import numpy as np

    # absolute: the child runs with cwd=work, where relative paths (`--out runs/x`) would not resolve
    src, out, work = Path(src).resolve(), Path(out).resolve(), Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / "calib.npz"
    np.savez(data, **{f"{i}:{k}": v for i, f in enumerate(feeds) for k, v in f.items()})
    cmd = [sys.executable, "-c", _MODELOPT_SCRIPT, str(src), str(out), mode, str(data),
           "1" if _is_large(src) else "0", high_precision, *exclude]
    res = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    if res.returncode != 0 or not out.is_file():
        tail = [line for line in res.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise RuntimeError(f"modelopt {mode} quantization failed: {tail[0][:300]}")


def _check_cpu_kernels(folder: Path, graphs: dict[str, str], mode: str) -> None:
    """TargetSkipped when onnxruntime's CPU provider cannot load a graph (no FP8 Q/DQ kernels there)."""
    from vpdsr.errors import ArtifactError
    from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    for f in graphs.values():
        try:
            with OnnxRuntimeRunner(folder / f):
                pass
        except ArtifactError as e:
            raise TargetSkipped(f"modelopt-{mode} graph does not run on onnxruntime CPU ({_one_line(e)})") from None


def _is_large(path: Path) -> bool:
    return sum(f.stat().st_size for f in path.parent.iterdir()) > EXTERNAL_DATA_BYTES


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
