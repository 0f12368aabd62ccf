"""torch -> ONNX fp32 graphs of any `SRModel`: fused (`model.input_names` -> `sr`) or one graph per stage.

Exporter: the TorchScript-based one (`torch.onnx.export(..., dynamo=False)`), opset 17. Why:
it exports these model families with dynamic H/W (each graph is validated against torch), it needs no
onnxscript, and it traces diffusers' Python control flow into a plain graph. The VPDSR denoiser
pads its input to a multiple of 2**(levels-1); under tracing it always pads, with amounts computed
in the graph from the input's shape, so one dynamic graph serves every H/W (see
`vpdsr/models/denoiser.py`). The batch dimension is always dynamic; H/W are the static tile size
unless `dynamic=True`. A model with `fix_size` (ResShift's shifted-window masks) is fixed to the
tile for a static export, so the masks are constants, and unfixed for a dynamic one, so the graph
computes them from the input's shape; it is unfixed again afterwards.

Graph inputs come from the model: `lr, noise -> sr` for the diffusion families, `lr -> sr` for a
model without noise (GANSR). Graph names inside an artifact folder (`options["graphs"]` of its
entry): fused `{"model": "model.onnx"}`; split (families with `stage_modules()`)
`{"encoder": "encoder.onnx", "denoiser": "denoiser.onnx", "decoder": "decoder.onnx"}`, run in that
order, each stage reading its inputs by name: `lr` -> C; C, `noise` -> `x0`; `x0` -> `sr`, where C
is named after the denoiser stage's first argument (`y` for VPDSR, `cond` for ResShift: its
latent plus the LR image) and its channels are measured by running the encoder stage once.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import warnings
import weakref
from contextlib import contextmanager
from pathlib import Path

import torch

from vpdsr.artifacts import FUSED
from vpdsr.errors import InputError
from vpdsr.models import SRModel

OPSET = 17
EXPORTER = "torch.onnx.export(dynamo=False)"
# what the graphs compute beyond the model's own modules; part of the reuse cache key, so artifacts
# exported before a change are rebuilt: 2 = VPDSR's bicubic x4 as a convolution (1: an ONNX Resize)
GRAPH_FORM = 2
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GB; stay clear of it
_CONDITION: weakref.WeakKeyDictionary[SRModel, tuple[str, int]] = weakref.WeakKeyDictionary()


def graph_modules(model: SRModel, name: str | None = None):
    """{"model": the model} plus its stage modules; with `name`, that one module.

    Raises:
        InputError: `name` is a stage and the family has none (`--stages split` of a GAN).
    """
    stages = model.stage_modules()
    if name is not None and name != FUSED and stages is None:
        raise InputError(f"`--stages split`: a {type(model).__name__} model has no stages (it is one network "
                         f"{', '.join(model.input_names)} -> sr); export it with `--stages fused`")
    modules = {FUSED: model, **(stages or {})}
    return modules if name is None else modules[name]


def check_tile(model: SRModel, tile: int) -> None:
    """One-line InputError unless `tile` keeps the model's size rule (LR sides a multiple of `size_multiple`)."""
    m = int(model.size_multiple)
    if m > 1 and tile % m:
        lower, upper = max(m, tile // m * m), -(-tile // m) * m
        raise InputError(f"`--tile {tile}`: this {type(model).__name__} model takes LR sides that are multiples of "
                         f"{m} (its size rule), so tiles must be too; try `--tile {lower}` or `--tile {upper}`")


def condition(model: SRModel) -> tuple[str, int]:
    """(name, channels) of what the encoder stage hands the denoiser stage, measured once per model."""
    if model not in _CONDITION:
        stages = graph_modules(model)
        name = next(iter(inspect.signature(stages["denoiser"].forward).parameters))
        side = max(8, int(model.size_multiple))
        side = -(-side // model.size_multiple) * model.size_multiple
        with fixed_size(model, None), torch.no_grad():
            out = stages["encoder"](torch.zeros(1, 3, side, side))
        if tuple(out.shape[2:]) != (side, side):
            raise InputError(f"{type(model).__name__}: the encoder stage maps a {side}x{side} LR image to "
                             f"{tuple(out.shape[2:])}; stage graphs need a latent of the LR image's size")
        _CONDITION[model] = (name, int(out.shape[1]))
    return _CONDITION[model]


def graph_io(model: SRModel, name: str, tile: int | None) -> tuple[dict, dict]:
    """(inputs, outputs) of graph `name` as the manifest records them; str dims are dynamic."""
    h, w = (tile, tile) if tile else ("h", "w")
    s = model.scale
    H, W = (s * tile, s * tile) if tile else ("H", "W")
    lr = {"shape": ["batch", 3, h, w], "dtype": "float32"}
    sr = {"shape": ["batch", 3, H, W], "dtype": "float32"}
    if name == FUSED:
        noise = {"shape": ["batch", model.latent_channels, h, w], "dtype": "float32"}
        return {n: (lr if n == "lr" else noise) for n in model.input_names}, {"sr": sr}
    graph_modules(model, name)  # refuses a family without stages
    lat = {"shape": ["batch", model.latent_channels, h, w], "dtype": "float32"}
    cond_name, cond_channels = condition(model)
    cond = {"shape": ["batch", cond_channels, h, w], "dtype": "float32"}
    return {
        "encoder": ({"lr": lr}, {cond_name: cond}),
        "denoiser": ({cond_name: cond, "noise": lat}, {"x0": lat}),
        "decoder": ({"x0": lat}, {"sr": sr}),
    }[name]


@contextmanager
def _set_while(setter, value, reset):
    """`setter(value)` for the block, `setter(reset)` after it; nothing when the model has no such setter."""
    if setter is None:
        yield
        return
    setter(value)
    try:
        yield
    finally:
        setter(reset)


def fixed_size(model: SRModel, lr_hw: tuple[int, int] | None):
    """Fix a model that has `fix_size` (ResShift) to one LR size while exporting; unfixed afterwards."""
    return _set_while(getattr(model, "fix_size", None), lr_hw, None)


def deploy_form(model: SRModel):
    """The model's export form while exporting (families with `set_deploy_form`: VPDSR computes its bicubic
    x4 as a convolution); the trained form afterwards."""
    return _set_while(getattr(model, "set_deploy_form", None), True, False)


def export_graph(model: SRModel, name: str, path: Path, tile: int, dynamic: bool) -> Path:
    """Export one graph (fused "model" or a stage) to `path` and check it with the path-based checker."""
    import onnx

    module = graph_modules(model, name)
    check_tile(model, tile)
    inputs, outputs = graph_io(model, name, None if dynamic else tile)
    example = tuple(torch.rand(1, *[tile if isinstance(d, str) else d for d in spec["shape"][1:]])
                    for spec in inputs.values())
    axes = {n: {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)}
            for n, spec in {**inputs, **outputs}.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    large = _param_bytes(model) > EXTERNAL_DATA_BYTES
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), \
            fixed_size(model, None if dynamic else (tile, tile)), deploy_form(model):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, str(path), dynamo=False, opset_version=OPSET,
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


def model_sha256(model: SRModel) -> str:
    """Hash of the config and every tensor (so a preset built in memory has a stable identity too)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()
