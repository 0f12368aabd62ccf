"""ONNX targets: `onnx` (fp32), `ort-int8` (onnxruntime static QDQ) and `modelopt-int8/fp8` (Q/DQ for TensorRT).

INT8 calibration memory. onnxruntime's MinMax calibrator adds a ReduceMin/ReduceMax pair after
every tensor and runs the augmented graph with graph optimisations off, so one calibration run
keeps far more activations alive than inference does, and their size scales with the input:
at a whole photo's size the base preset's decoder alone has 128-channel activations at 4x the
LR size (e.g. 512 px LR -> 2048x2048x128 fp32 = 2 GB each). We calibrate on static tile-sized
crops (the exported tile), one sample per run (a streaming CalibrationDataReader), MinMax with
per-tensor reductions, `skip_symbolic_shape` in pre-processing (dynamic H/W breaks symbolic shape
inference), and external data for graphs too big for one protobuf. `CalibMaxIntermediateOutputs`
is not used: onnxruntime 1.32 drops the collected data when the count is reached
(`clear_collected_data` before `compute_data`) and then fails with "No data is collected.".
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from vpdsr.export.calibration import make_reader
from vpdsr.export.evaluate import ort_fn
from vpdsr.export.onnx_graph import EXTERNAL_DATA_BYTES, OPSET
from vpdsr.export.targets import BuildContext, BuildResult, TargetSkipped, TargetSpec

# Kept in float for INT8 (regexes over ONNX node names; the module path is in the name):
# the autoencoder decoder's last convolution maps straight to pixels, and the VQ codebook lookup
# (distances + ArgMin) must pick the same code as fp32.
INT8_EXCLUDE = (r"autoencoder/model/decoder/conv_out/", r"autoencoder/model/quantize/")


def build_onnx(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    graphs = {}
    for name in ctx.names():
        src = ctx.fp32_graph(name)
        for f in src.parent.iterdir():  # the graph and any external-data files beside it
            shutil.copy2(f, folder / f.name)
        graphs[name] = src.name
    return BuildResult(options={"graphs": graphs, "opset": OPSET}, fns=_fns(folder, graphs))


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
        pre = ctx.work / "ort-int8" / f"{name}.pre.onnx"
        pre.parent.mkdir(parents=True, exist_ok=True)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True, save_as_external_data=large)
        excluded[name] = matching_nodes(pre)
        out = folder / f"{name}.onnx"
        ctx.log(f"  calibrating {name!r} on {len(feeds[name])} samples (onnxruntime MinMax, symmetric)")
        quantize_static(
            str(pre), str(out), make_reader(feeds[name]),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded[name],
            use_external_data_format=large,
            # symmetric activations and weights: what TensorRT's explicit quantization accepts
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        graphs[name] = out.name
    options = {"graphs": graphs, "opset": OPSET, "quant_format": "QDQ", "calibration_method": "MinMax",
               "symmetric": True, "per_channel": True, "excluded_nodes": excluded}
    return BuildResult(options=options, fns=_fns(folder, graphs))


def build_modelopt(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as e:
        raise TargetSkipped(f"nvidia-modelopt is not importable ({str(e).splitlines()[0]}); "
                            "pip install 'vpdsr[modelopt]'") from None
    mode = spec.options["quantize_mode"]
    graphs = {}
    feeds = ctx.calib_feeds()
    for name in ctx.names():
        src = ctx.fp32_graph(name)
        out = folder / f"{name}.onnx"
        ctx.log(f"  modelopt {mode} PTQ of {name!r} on {len(feeds[name])} samples")
        quantize(
            onnx_path=str(src), quantize_mode=mode, calibration_data_reader=make_reader(feeds[name]),
            calibration_method="max", calibration_eps=["cpu"], high_precision_dtype="fp32",
            nodes_to_exclude=list(INT8_EXCLUDE), use_external_data_format=_is_large(src),
            output_path=str(out), log_level="ERROR",
        )
        if not out.is_file():
            raise TargetSkipped(f"modelopt wrote no {mode} graph for {name!r}")
        graphs[name] = out.name
    options = {"graphs": graphs, "quantize_mode": mode, "calibration_method": "max",
               "high_precision_dtype": "fp32", "excluded_patterns": list(INT8_EXCLUDE)}
    try:
        fns = _fns(folder, graphs)
    except Exception as e:  # e.g. an FP8 Q/DQ graph that the CPU provider has no kernels for
        if mode == "int8":
            raise
        raise TargetSkipped(f"modelopt-{mode} graph does not run on onnxruntime CPU ({_one_line(e)})") from None
    return BuildResult(options=options, fns=fns)


def _fns(folder: Path, graphs: dict[str, str]) -> list:
    return [ort_fn(folder / f) for f in graphs.values()]


def _is_large(path: Path) -> bool:
    return sum(f.stat().st_size for f in path.parent.iterdir()) > EXTERNAL_DATA_BYTES


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
