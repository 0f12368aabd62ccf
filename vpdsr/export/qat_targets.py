"""INT8 targets built from a quantization-aware trained model: `ort-int8` and `openvino-int8` from QAT.

They are ordinary export targets (same names, backends, floors, validation, manifest and reuse rules as
the post-training ones in `targets.py`); only the builder differs. Nothing is calibrated here: the
ranges and weights are the trained ones. Both read one QDQ ONNX graph of the fake-quantized model
(`qat_onnx.export_qdq`, made once per export): onnxruntime runs it as it is, OpenVINO converts it to IR
(its QuantizeLinear/DequantizeLinear pairs become FakeQuantize, the int8 weights stay int8).

    >>> specs = qat_specs("ort-int8,openvino-int8", qat_sha256="ab12...")   # doctest: +SKIP
    >>> export(fp32_model, "out", specs, tile=64, quantized=qat)           # doctest: +SKIP
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path

from vpdsr.errors import InputError
from vpdsr.export.targets import TARGETS, BuildContext, BuildResult, TargetSpec

log = logging.getLogger(__name__)
QAT_TARGETS = ("ort-int8", "openvino-int8")
_BUILDERS = {"ort-int8": "vpdsr.export.qat_targets:build_qat_ort_int8",
             "openvino-int8": "vpdsr.export.qat_targets:build_qat_openvino_int8"}


def qat_specs(targets: str | list[str], qat_sha256: str) -> list[TargetSpec]:
    """The QAT variants of `targets` ("ort-int8,openvino-int8"); their options name the trained model's hash,
    so a retrained model is a new artifact (the reuse key hashes the options)."""
    names = [n.strip() for n in (targets.split(",") if isinstance(targets, str) else targets) if n.strip()]
    if not names:
        raise InputError(f"`--targets` is empty; expected a comma-separated list of {', '.join(QAT_TARGETS)}")
    specs = []
    for n in dict.fromkeys(names):
        if n not in QAT_TARGETS:
            raise InputError(f"`--targets`: {n!r} has no quantization-aware form; expected {', '.join(QAT_TARGETS)}")
        base = TARGETS[n]
        options = {k: v for k, v in base.options.items() if k != "activation_ranges"}
        specs.append(replace(base, builder=_BUILDERS[n], calibrated=False,
                             options={**options, "quantization": "qat", "qat_sha256": qat_sha256}))
    return specs


def qdq_graph(ctx: BuildContext) -> Path:
    """The fake-quantized model's QDQ ONNX (exported on first use, shared by both targets)."""
    from vpdsr.export.qat_onnx import export_qdq

    if ctx.quantized is None:
        raise InputError("a quantization-aware target needs the trained model (`export(..., quantized=...)`)")
    path = ctx.work / "qat" / "model.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        qat, scheme = ctx.quantized
        if ctx.tile != scheme.tile:
            raise InputError(f"`--tile {ctx.tile}`: the quantization-aware model was traced and trained at tile "
                             f"{scheme.tile}; export it at that tile")
        if ctx.stages != "fused":
            raise InputError("a quantization-aware model exports as one fused graph (`--stages fused`)")
        export_qdq(qat, scheme, path, ctx.dynamic)
    return path


def _qat_options(ctx: BuildContext) -> dict:
    _, scheme = ctx.quantized
    return {"qat": {"library": scheme.library, "functions": scheme.functions, "activations": scheme.activations,
                    "quantizers": len(scheme.quantizers), "kept_float": scheme.kept_float,
                    "float_policy": scheme.float_policy}}


def build_qat_ort_int8(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    from vpdsr.export.onnx_graph import OPSET

    src = qdq_graph(ctx)
    for f in src.parent.iterdir():  # the graph and any external data beside it
        if f.name.startswith("model.onnx"):
            shutil.copy2(f, folder / f.name)
    _, scheme = ctx.quantized
    return BuildResult(options={"graphs": {"model": "model.onnx"}, "opset": OPSET, "quant_format": "QDQ",
                                "per_channel": True, "symmetric": scheme.activations != "uint8",
                                **_qat_options(ctx)})


def build_qat_openvino_int8(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    from vpdsr.export.openvino_ir import convert

    convert(qdq_graph(ctx), folder / "model.xml")
    return BuildResult(options={"graphs": {"model": "model.xml"}, "device": "CPU",
                                "inference_precision": spec.options["inference_precision"], **_qat_options(ctx)})
