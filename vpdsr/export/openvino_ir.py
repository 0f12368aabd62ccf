"""OpenVINO targets: IR from the fp32 ONNX graph, with the execution precision recorded, and NNCF INT8.

The IR is stored in f32 (`compress_to_fp16=False`); what differs between `openvino`,
`openvino-bf16` and `openvino-f16` is `options["inference_precision"]`, which the runner must
pin at load with `INFERENCE_PRECISION_HINT`: on CPUs with AMX the default is bf16, so an
unpinned f32 artifact would silently run in bf16 (FACTS.md).

`openvino-int8`: `nncf.quantize` with the shared calibration set, the performance preset
(symmetric), and an ignored scope keeping the precision-sensitive layers in float: the
autoencoder decoder's last convolution (straight to pixels), the VQ codebook lookup, the
denoiser's output convolution (its residual is added to y and decoded, so its error reaches the
image unattenuated) and the encoder's bicubic upscale of the LR image (`FLOAT_LAYERS` in
vpdsr/export/targets.py). NNCF's own log and progress bars go to the run's log file.
"""
from __future__ import annotations

import logging
from pathlib import Path

from vpdsr.export.targets import BuildContext, BuildResult, TargetSkipped, TargetSpec, float_patterns

log = logging.getLogger(__name__)
NNCF_IGNORED = float_patterns("nncf-int8", fullmatch=True)
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


def build_openvino_int8(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    import nncf
    import openvino as ov

    from vpdsr.logs import adopt, stdout_to_log

    adopt("nncf")  # NNCF prints to stdout by itself: into the log file instead, under a CLI session

    precision = spec.options["inference_precision"]
    graphs, ignored = {}, {}
    feeds = ctx.calib_feeds()
    patterns = ctx.keep_float("nncf-int8", fullmatch=True)  # NNCF_IGNORED + the model family's own
    for name in ctx.names():
        model = ov.convert_model(str(ctx.fp32_graph(name)))
        names = [op.get_friendly_name() for op in model.get_ops()]
        scope = nncf.IgnoredScope(patterns=list(patterns), validate=False)
        ignored[name] = _matched(names, patterns)
        log.debug(f"openvino-int8: NNCF INT8 of {name!r} on {len(feeds[name])} samples "
                  f"({len(ignored[name])} ops ignored)")
        with stdout_to_log("nncf"):  # its rich progress bars
            quantized = nncf.quantize(model, nncf.Dataset(feeds[name]), subset_size=len(feeds[name]),
                                      preset=nncf.QuantizationPreset.PERFORMANCE, ignored_scope=scope)
        ov.save_model(quantized, str(folder / f"{name}.xml"), compress_to_fp16=False)
        graphs[name] = f"{name}.xml"
    options = {"graphs": graphs, "inference_precision": precision, "device": "CPU", "nncf_preset": "performance",
               "ignored_patterns": list(patterns), "ignored_ops": ignored}
    return BuildResult(options=options)


def _matched(names: list[str], patterns) -> list[str]:
    import re

    rx = [re.compile(p) for p in patterns]
    return [n for n in names if any(r.fullmatch(n) for r in rx)]
