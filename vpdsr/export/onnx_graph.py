"""torch -> ONNX fp32 graphs: fused (`lr`, `noise` -> `sr`) or split into three stage graphs.

Exporter: the TorchScript-based one (`torch.onnx.export(..., dynamo=False)`), opset 17. Why:
it is the path seen working here on this model family with dynamic H/W (FACTS.md), it needs no
onnxscript, and it traces diffusers' Python control flow into a plain graph. The denoiser pads
its input to a multiple of 2**(levels-1); under tracing it always pads, with amounts computed in
the graph from the input's shape, so one dynamic graph serves every H/W (see
`vpdsr/models/denoiser.py`). The batch dimension is always dynamic; H/W are the static tile size
unless `dynamic=True`.

Graph names inside an artifact folder (`options["graphs"]` of its entry): fused
`{"model": "model.onnx"}`; split `{"encoder": "encoder.onnx", "denoiser": "denoiser.onnx",
"decoder": "decoder.onnx"}`, run in that order, each stage reading its inputs by name
(`lr` -> `y`; `y`, `noise` -> `x0`; `x0` -> `sr`).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch

from vpdsr.artifacts import FUSED
from vpdsr.models import VPDSR, DecoderStage, DenoiserStage, EncoderStage

OPSET = 17
EXPORTER = "torch.onnx.export(dynamo=False)"
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GB; stay clear of it


def graph_io(model: VPDSR, name: str, tile: int | None) -> tuple[dict, dict]:
    """(inputs, outputs) of graph `name` as the manifest records them; str dims are dynamic."""
    c = model.latent_channels
    h, w = (tile, tile) if tile else ("h", "w")
    H, W = (4 * tile, 4 * tile) if tile else ("H", "W")
    lr = {"shape": ["batch", 3, h, w], "dtype": "float32"}
    lat = {"shape": ["batch", c, h, w], "dtype": "float32"}
    sr = {"shape": ["batch", 3, H, W], "dtype": "float32"}
    return {
        FUSED: ({"lr": lr, "noise": lat}, {"sr": sr}),
        "encoder": ({"lr": lr}, {"y": lat}),
        "denoiser": ({"y": lat, "noise": lat}, {"x0": lat}),
        "decoder": ({"x0": lat}, {"sr": sr}),
    }[name]


def _module(model: VPDSR, name: str) -> torch.nn.Module:
    return {FUSED: model, "encoder": EncoderStage(model), "denoiser": DenoiserStage(model),
            "decoder": DecoderStage(model)}[name]


def export_graph(model: VPDSR, name: str, path: Path, tile: int, dynamic: bool) -> Path:
    """Export one graph (fused "model" or a stage) to `path` and check it with the path-based checker."""
    import onnx

    inputs, outputs = graph_io(model, name, None if dynamic else tile)
    example = tuple(torch.rand(1, *[tile if isinstance(d, str) else d for d in spec["shape"][1:]])
                    for spec in inputs.values())
    axes = {n: {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)}
            for n, spec in {**inputs, **outputs}.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    large = _param_bytes(model) > EXTERNAL_DATA_BYTES
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_module(model, name).eval(), example, str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(inputs), output_names=list(outputs), dynamic_axes=axes,
                          do_constant_folding=True, external_data=large)
    onnx.checker.check_model(str(path))  # path-based: works for graphs with external data too
    return path


def save_onnx(proto, path: Path) -> Path:
    """Save a ModelProto, with external data when it would not fit in one protobuf."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    large = proto.ByteSize() > EXTERNAL_DATA_BYTES if _fits_bytesize(proto) else True
    onnx.save_model(proto, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=path.name + ".data" if large else None)
    onnx.checker.check_model(str(path))
    return path


def _fits_bytesize(proto) -> bool:
    try:
        proto.ByteSize()
        return True
    except Exception:  # protobuf refuses to size messages over 2 GB
        return False


def _param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def model_sha256(model: VPDSR) -> str:
    """Hash of the config and every tensor (so a preset built in memory has a stable identity too)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()
