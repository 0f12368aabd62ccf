"""Export targets: a registry of small specs, and the build context every builder shares.

A builder is `fn(ctx, spec, folder) -> BuildResult`: it writes the artifact's files into
`folder` (a temporary folder renamed into place only after validation) and returns the options
the runner needs (`options["graphs"]` at least). The export then validates the folder on the
artifact's own runner. A builder raises `TargetSkipped` when the target cannot be built on this
machine (TensorRT without a GPU, f16 on a CPU without it).
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vpdsr.artifacts import graph_names
from vpdsr.errors import InputError
from vpdsr.export.calibration import CalibrationSet
from vpdsr.export.float_policy import FLOAT_LAYERS, KEEP_FLOAT, float_patterns  # noqa: F401 (re-exported)
from vpdsr.export.onnx_graph import export_graph, graph_io

log = logging.getLogger(__name__)
# Quality floors in dB PSNR against torch fp32: every target's validation must reach its floor.
FLOOR_FP32, FLOOR_HALF, FLOOR_INT8 = 60.0, 40.0, 30.0


class TargetSkipped(Exception):
    """This target cannot be built here; the message is the one-line reason."""


@dataclass(frozen=True)
class TargetSpec:
    """Attributes:
        name: target (and folder) name, e.g. "openvino-int8".
        backend: the runner that loads it: onnxruntime, openvino or tensorrt.
        precision: fp32, fp16, bf16, int8 or fp8.
        builder: "module:function" building it (imported only when used).
        floor_db: validation floor (PSNR vs torch fp32).
        calibrated: uses the calibration set (its hash enters the cache key).
        options: fixed target config recorded in the entry (e.g. the execution precision to pin).
    """

    name: str
    backend: str
    precision: str
    builder: str
    floor_db: float
    calibrated: bool = False
    options: dict = field(default_factory=dict)

    def build_fn(self) -> Callable:
        module, fn = self.builder.split(":")
        return getattr(importlib.import_module(module), fn)


@dataclass
class BuildResult:
    options: dict  # merged into the entry's options; must hold "graphs" {name: file}
    extra: dict = field(default_factory=dict)  # extra entry fields: profiles, ...


_P = "vpdsr.export."
TARGETS: dict[str, TargetSpec] = {}


def register_target(spec: TargetSpec) -> TargetSpec:
    TARGETS[spec.name] = spec
    return spec


for _spec in (
    TargetSpec("onnx", "onnxruntime", "fp32", _P + "onnx_targets:build_onnx", FLOOR_FP32),
    TargetSpec("onnx-fp16", "onnxruntime", "fp16", _P + "fp16:build_onnx_fp16", FLOOR_HALF, calibrated=True),
    TargetSpec("ort-int8", "onnxruntime", "int8", _P + "onnx_targets:build_ort_int8", FLOOR_INT8, calibrated=True,
               options={"int8_format": "fastest on this CPU (vpdsr/runtimes/int8_formats.py)"}),
    TargetSpec("modelopt-int8", "onnxruntime", "int8", _P + "modelopt_int8:build_modelopt", FLOOR_INT8,
               calibrated=True, options={"quantize_mode": "int8"}),
    TargetSpec("modelopt-fp8", "onnxruntime", "fp8", _P + "modelopt_int8:build_modelopt", FLOOR_INT8,
               calibrated=True, options={"quantize_mode": "fp8"}),
    TargetSpec("openvino", "openvino", "fp32", _P + "openvino_ir:build_openvino", FLOOR_FP32,
               options={"inference_precision": "f32"}),
    TargetSpec("openvino-bf16", "openvino", "bf16", _P + "openvino_ir:build_openvino", FLOOR_HALF,
               options={"inference_precision": "bf16"}),
    TargetSpec("openvino-f16", "openvino", "fp16", _P + "openvino_ir:build_openvino", FLOOR_HALF,
               options={"inference_precision": "f16"}),
    # activation_ranges: NNCF's statistic (vpdsr.export.openvino_int8.range_parameters); in the options, so in
    # the reuse key and in artifact.json
    TargetSpec("openvino-int8", "openvino", "int8", _P + "openvino_int8:build_openvino_int8", FLOOR_INT8,
               calibrated=True, options={"inference_precision": "f32", "activation_ranges": "minmax"}),
    TargetSpec("tensorrt-fp16", "tensorrt", "fp16", _P + "tensorrt_engine:build_tensorrt", FLOOR_HALF),
    TargetSpec("tensorrt-int8", "tensorrt", "int8", _P + "tensorrt_engine:build_tensorrt", FLOOR_INT8,
               calibrated=True),
):
    register_target(_spec)

# What `--targets all` / `cpu` mean.
ALIASES = {
    "all": list(TARGETS),
    "cpu": ["onnx", "onnx-fp16", "ort-int8", "modelopt-int8", "openvino", "openvino-bf16", "openvino-int8"],
}


def parse_targets(spec: str | list) -> list[TargetSpec]:
    """'onnx,openvino-int8' (or a list, or an alias) -> specs; an unknown name is a one-line InputError.

    A list may hold `TargetSpec`s too (targets built differently under a registered name, e.g. the
    quantization-aware ones of `vpdsr/export/qat_targets.py`); they are taken as they are.
    """
    if not isinstance(spec, str) and spec and all(isinstance(s, TargetSpec) for s in spec):
        return list({s.name: s for s in spec}.values())
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise InputError(f"`--targets` is empty; expected a comma-separated list of {', '.join(TARGETS)}")
    out: list[str] = []
    for n in names:
        expanded = ALIASES.get(n, [n])
        for e in expanded:
            if e not in TARGETS:
                raise InputError(f"`--targets`: unknown target {e!r}; expected one of {', '.join(TARGETS)} "
                                 f"(or {', '.join(ALIASES)})")
            if e not in out:
                out.append(e)
    return [TARGETS[n] for n in out]


@dataclass
class BuildContext:
    """What every builder shares: the model, the fp32 ONNX graphs (exported once), calibration."""

    model: object  # an SRModel of any family
    work: Path
    stages: str
    tile: int
    dynamic: bool
    calib: CalibrationSet
    device: str = "cuda"  # the GPU (cuda[:N]) GPU targets (TensorRT) are built on
    int8: object | None = None  # a mixed_precision.Int8Plan under --int8-budget / --sensitivity
    quantized: tuple | None = None  # (fake-quantized model, QatScheme) for quantization-aware targets
    _graphs: dict = field(default_factory=dict)
    _stage_calib: dict = field(default_factory=dict)

    def names(self, stages: str | None = None) -> tuple[str, ...]:
        return graph_names(stages or self.stages)

    def fp32_graph(self, name: str) -> Path:
        """The fp32 ONNX graph `name` ("model" or a stage), exported on first use."""
        if name not in self._graphs:
            path = self.work / "fp32" / name / f"{name}.onnx"  # own folder: external data stays beside it
            log.debug(f"exporting fp32 ONNX graph {name!r}")
            self._graphs[name] = export_graph(self.model, name, path, self.tile, self.dynamic)
        return self._graphs[name]

    def keep_float(self, kind: str, fullmatch: bool = False) -> tuple[str, ...]:
        """The layers `kind` keeps in float for this model's family (see `float_patterns`)."""
        return float_patterns(kind, fullmatch, type(self.model).__name__)

    def io(self, name: str) -> tuple[dict, dict]:
        return graph_io(self.model, name, None if self.dynamic else self.tile)

    def calib_feeds(self, stages: str | None = None) -> dict[str, list[dict]]:
        """Calibration feeds per graph of `stages` (a split chain: what the fp32 chain feeds each stage)."""
        stages = stages or self.stages
        if stages not in self._stage_calib:
            names = self.names(stages)
            if names == ("model",):
                self._stage_calib[stages] = {"model": self.calib.feeds()}
            else:
                from vpdsr.export.calibration import stage_feeds

                graphs = {n: self.fp32_graph(n) for n in names}
                self._stage_calib[stages] = stage_feeds(graphs, self.calib.feeds())
        return self._stage_calib[stages]
