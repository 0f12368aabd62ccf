"""OpenVINO targets: IR from the fp32 ONNX graph, with the execution precision recorded, and NNCF INT8.

The IR is stored in f32 (`compress_to_fp16=False`); what differs between `openvino`,
`openvino-bf16` and `openvino-f16` is `options["inference_precision"]`, which the runner must
pin at load with `INFERENCE_PRECISION_HINT`: on CPUs with AMX the default is bf16, so an
unpinned f32 artifact would silently run in bf16 (outputs ~4e-3 off torch fp32).

`openvino-int8` (NNCF) is in `openvino_int8.py`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from vpdsr.export.targets import BuildContext, BuildResult, TargetSkipped, TargetSpec

log = logging.getLogger(__name__)
_CAPABILITY = {"bf16": "BF16", "f16": "FP16", "f32": "FP32"}


def check_precision(precision: str) -> None:
    """Raise TargetSkipped unless this machine's CPU plugin can execute in `precision`."""
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if _CAPABILITY[precision] not in caps:
        raise TargetSkipped(f"this CPU has no {precision} execution in OpenVINO (capabilities: {', '.join(caps)})")


def convert(src: Path, dst: Path):
    """ONNX -> OpenVINO IR (dst.xml + dst.bin), stored in f32; returns the ov.Model."""
    import openvino as ov

    model = ov.convert_model(str(src))
    ov.save_model(model, str(dst), compress_to_fp16=False)
    return model


def build_openvino(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    precision = spec.options["inference_precision"]
    check_precision(precision)
    graphs = {}
    for name in ctx.names():
        convert(ctx.fp32_graph(name), folder / f"{name}.xml")
        graphs[name] = f"{name}.xml"
    return BuildResult(options={"graphs": graphs, "inference_precision": precision, "device": "CPU"})
