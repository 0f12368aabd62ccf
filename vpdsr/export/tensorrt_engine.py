"""TensorRT targets, the TensorRT 10.12+/11 way: strongly typed engines built with Polygraphy's loaders.

- `tensorrt-fp16`: the `onnx-fp16` target's graph (fp16 inside, fp32 I/O, normalisations and the VQ
  lookup kept in fp32 as that target checked stage by stage), built as a *strongly typed* network:
  TensorRT keeps the graph's types instead of choosing precisions under a builder flag.
- `tensorrt-int8`: modelopt's Q/DQ graph (explicit quantization, no calibrator), with fp16 as the
  high-precision type between the Q/DQ pairs (modelopt's recommendation for TensorRT), strongly typed.
No precision builder flag is set: TensorRT 10.12 deprecated BuilderFlag.FP16/INT8/BF16/FP8 and 11
removed them (vpdsr/runtimes/tensorrt_common.py says which versions this supports).

The network, config and engine come from Polygraphy's loaders (`NetworkFromOnnxPath(strongly_typed=True)`,
`CreateConfig(profiles, builder_optimization_level, load_timing_cache)`, `EngineFromNetwork(save_timing_cache)`,
`SaveEngine`). One optimisation profile per graph from the tile (static) or the dynamic range.
The timing cache lives in $VPDSR_CACHE/tensorrt/, named after the GPU and TensorRT release, so it
outlives the export's temporary build folder. The engine is built on the export's device
(`cuda:N`), and `engine.json` (`vpdsr.artifacts.engine_record`) records the TensorRT version, GPU
and profiles the runner checks before loading. Where TensorRT or a CUDA device is missing (TensorRT's
PyPI packages fetch its libraries from NVIDIA's own index at install time), the target is skipped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from vpdsr.artifacts import engine_record, write_engine_metadata
from vpdsr.errors import CapabilityError
from vpdsr.export.targets import BuildContext, BuildResult, TargetSkipped, TargetSpec
from vpdsr.runtimes.tensorrt_common import check_supported, profile_shapes, timing_cache_path, version_tuple

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """How engines are built (recorded in engine.json).

    Attributes:
        builder_optimization_level: 0-5; 3 is TensorRT's default balance of build time and speed.
        hardware_compatibility: None, or "ampere+" (one engine for every GPU of compute capability >= 8.0,
            somewhat slower).
        version_compatible: build with VERSION_COMPATIBLE (later TensorRT releases of the same major run it).
    """

    builder_optimization_level: int = 3
    hardware_compatibility: str | None = None
    version_compatible: bool = False


def require_tensorrt(device: str = "cuda"):
    """Import tensorrt, check its version and the CUDA device, or raise TargetSkipped with the reason."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TargetSkipped("TensorRT is not installed (the tensorrt wheels need NVIDIA's index and a CUDA "
                            "machine: pip install 'vpdsr[gpu]' there)") from None
    from vpdsr.runtimes.cuda import require_cuda

    try:
        check_supported(trt.__version__)
        require_cuda(device, "TensorRT engine build")
    except CapabilityError as e:
        raise TargetSkipped(str(e)) from None
    return trt


def polygraphy_loader(onnx_path: Path, engine_path: Path, shapes: dict, timing_cache: Path,
                      cfg: EngineConfig = EngineConfig(), strongly_typed: bool = True, hardware_level=None):
    """The Polygraphy loader chain that builds and saves one engine (nothing runs until it is called).

    Args:
        onnx_path, engine_path: source graph and the engine file to write.
        shapes: {input: {"min","opt","max"}} (`vpdsr.runtimes.tensorrt_common.profile_shapes`).
        timing_cache: read if present, then written back with what this build measured.
        cfg: builder options.
        strongly_typed: the network creation flag (always on; TensorRT 11 ignores it: every network is).
        hardware_level: a `trt.HardwareCompatibilityLevel` for `cfg.hardware_compatibility`.
    """
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, Profile, SaveEngine
    from polygraphy.logger import G_LOGGER

    profile = Profile()
    for name, s in shapes.items():
        profile.add(name, min=tuple(s["min"]), opt=tuple(s["opt"]), max=tuple(s["max"]))
    with G_LOGGER.verbosity(G_LOGGER.WARNING):  # its "TF32 is disabled" note: TF32 stays off for fp32 fidelity
        config = CreateConfig(profiles=[profile], builder_optimization_level=cfg.builder_optimization_level,
                              load_timing_cache=str(timing_cache) if Path(timing_cache).is_file() else None,
                              hardware_compatibility_level=hardware_level,
                              version_compatible=cfg.version_compatible or None)
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=strongly_typed)
    engine = EngineFromNetwork(network, config=config, save_timing_cache=str(timing_cache))
    return SaveEngine(engine, path=str(engine_path))


def build_engine(onnx_path: Path, engine_path: Path, shapes: dict, device: str = "cuda",
                 cfg: EngineConfig = EngineConfig()) -> dict:
    """Build one strongly typed engine from `onnx_path` on GPU `device`; returns its `engine_record`.

    Raises:
        TargetSkipped: no TensorRT, an unsupported TensorRT, or no such CUDA device here.
    """
    import torch
    from polygraphy.logger import G_LOGGER

    from vpdsr.runtimes.cuda import require_cuda

    trt = require_tensorrt(device)
    dev = require_cuda(device, "TensorRT engine build")
    gpu, cc = torch.cuda.get_device_name(dev), torch.cuda.get_device_capability(dev)
    cache = timing_cache_path(gpu, cc, trt.__version__)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # TensorRT 11 keeps STRONGLY_TYPED as an ignored, deprecated flag; should a release drop it, every
    # network is strongly typed anyway
    typed = version_tuple(trt.__version__)[0] < 11 or hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    level = trt.HardwareCompatibilityLevel.AMPERE_PLUS if cfg.hardware_compatibility == "ampere+" else None
    loader = polygraphy_loader(onnx_path, engine_path, shapes, cache, cfg, strongly_typed=typed, hardware_level=level)
    with torch.cuda.device(dev), G_LOGGER.verbosity(G_LOGGER.WARNING):  # TensorRT builds on the current GPU
        loader()
    log.debug(f"TensorRT engine {engine_path.name} built on {gpu} (timing cache {cache})")
    extra = {"hardware_compatibility": cfg.hardware_compatibility} if cfg.hardware_compatibility else {}
    return engine_record(trt.__version__, gpu, cc, builder_optimization_level=cfg.builder_optimization_level,
                         version_compatible=cfg.version_compatible, strongly_typed=True, **extra)


def engine_sources(ctx: BuildContext, spec: TargetSpec) -> tuple[dict[str, Path], dict]:
    """The ONNX graphs a TensorRT target is built from ({graph name: path}) and the options they record."""
    from vpdsr.export.targets import TARGETS

    work = ctx.work / f"{spec.name}-source"
    work.mkdir(parents=True, exist_ok=True)
    if spec.precision == "int8":
        from vpdsr.export.modelopt_int8 import build_modelopt

        qdq = TARGETS["modelopt-int8"]
        qdq = replace(qdq, options={**qdq.options, "high_precision_dtype": "fp16"})
        result = build_modelopt(ctx, qdq, work)
    else:
        from vpdsr.export.fp16 import build_onnx_fp16

        result = build_onnx_fp16(ctx, TARGETS["onnx-fp16"], work)
    graphs = result.options["graphs"]
    recorded = {k: v for k, v in result.options.items() if k != "graphs"}
    return {name: work / file for name, file in graphs.items()}, recorded


def build_tensorrt(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    device = getattr(ctx, "device", None) or "cuda"
    require_tensorrt(device)  # skip before the source graphs are made
    sources, recorded = engine_sources(ctx, spec)
    multiple = int(getattr(ctx.model, "size_multiple", 1) or 1)
    cfg = EngineConfig()
    graphs, all_profiles, record = {}, {}, {}
    for name, src in sources.items():
        channels = {inp: s["shape"][1] for inp, s in ctx.io(name)[0].items()}
        shapes = profile_shapes(channels, ctx.tile, ctx.dynamic, multiple)
        record = build_engine(src, folder / f"{name}.plan", shapes, device, cfg)
        graphs[name], all_profiles[name] = f"{name}.plan", shapes
    record = {**record, "precision": spec.precision}
    write_engine_metadata(folder, {**record, "profiles": all_profiles})
    return BuildResult(options={"graphs": graphs, "engine": record, "source": recorded, "device": device},
                       extra={"profiles": [all_profiles]})
