"""TensorRT targets: `tensorrt-fp16` (from the fp32 graph) and `tensorrt-int8` (from the Q/DQ graph).

Written against the TensorRT 10 Python API (explicit batch is the default network mode in 10).
The engine is built with one optimisation profile per graph (min/opt/max from the tile, or from
the dynamic range), a timing cache stored beside it, and a builder optimisation level; an
`engine.json` (`vpdsr.artifacts.engine_record`, the keys the runner reads) records the TensorRT
version, the GPU name and compute capability and the profiles, so a loader can refuse an engine
built for another TensorRT or GPU in one line. The export validates the engines on the
TensorRT runner, as for every other backend.

INT8 uses explicit quantization: the modelopt Q/DQ graph (`modelopt-int8`'s form), built with
the same calibration set, so TensorRT needs no calibrator. Where TensorRT or a CUDA device is
missing (every machine this project is developed on, FACTS.md), the target is skipped.
"""
from __future__ import annotations

from pathlib import Path

from vpdsr.artifacts import engine_record, write_engine_metadata
from vpdsr.export.targets import BuildContext, BuildResult, TargetSkipped, TargetSpec

OPT_LEVEL = 3
MAX_BATCH = 8
DYNAMIC_RANGE = (32, 128, 256)  # LR min/opt/max side for --dynamic engines


def require_tensorrt():
    """Import tensorrt and check for a CUDA device, or raise TargetSkipped with the reason."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TargetSkipped("TensorRT is not installed (the tensorrt wheels need NVIDIA's index and a CUDA "
                            "machine: pip install 'vpdsr[gpu]' there)") from None
    import torch

    if not torch.cuda.is_available():
        raise TargetSkipped("no CUDA device: TensorRT engines are built on the GPU they run on")
    return trt


def profiles(ctx: BuildContext, inputs: dict) -> dict:
    """{input: {"min","opt","max"}} shapes; the batch dimension spans 1..MAX_BATCH (opt 4)."""
    lo, opt, hi = DYNAMIC_RANGE if ctx.dynamic else (ctx.tile,) * 3
    out = {}
    for name, spec in inputs.items():
        c = spec["shape"][1]
        out[name] = {"min": [1, c, lo, lo], "opt": [4, c, opt, opt], "max": [MAX_BATCH, c, hi, hi]}
    return out


def build_tensorrt(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    trt = require_tensorrt()
    import torch

    int8 = spec.precision == "int8"
    if int8:
        from vpdsr.export.onnx_targets import build_modelopt

        qdq = ctx.work / "tensorrt-qdq"
        qdq.mkdir(parents=True, exist_ok=True)
        sources = {n: qdq / f for n, f in build_modelopt(ctx, _qdq_spec(), qdq).options["graphs"].items()}
    else:
        sources = {n: ctx.fp32_graph(n) for n in ctx.names()}
    logger = trt.Logger(trt.Logger.WARNING)
    cache_path = folder / "timing.cache"
    graphs, all_profiles = {}, {}
    for name, src in sources.items():
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(src)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {src.name}: {errors}")
        config = builder.create_builder_config()
        config.builder_optimization_level = OPT_LEVEL
        config.set_flag(trt.BuilderFlag.FP16)
        if int8:
            config.set_flag(trt.BuilderFlag.INT8)  # with Q/DQ nodes: explicit quantization, no calibrator
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        shapes = profiles(ctx, ctx.io(name)[0])
        profile = builder.create_optimization_profile()
        for inp, s in shapes.items():
            profile.set_shape(inp, s["min"], s["opt"], s["max"])
        config.add_optimization_profile(profile)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {name!r}")
        (folder / f"{name}.plan").write_bytes(bytes(engine))
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        graphs[name], all_profiles[name] = f"{name}.plan", shapes
    record = engine_record(trt.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability(),
                           builder_optimization_level=OPT_LEVEL, precision=spec.precision)
    write_engine_metadata(folder, {**record, "profiles": all_profiles})
    return BuildResult(options={"graphs": graphs, "engine": record}, extra={"profiles": [all_profiles]})


def _qdq_spec() -> TargetSpec:
    from vpdsr.export.targets import TARGETS

    return TARGETS["modelopt-int8"]
