"""Mapping an ncnn Real-ESRGAN graph onto RRDBNet / SRVGGNetCompact: infer the config, check every layer.

The convolutions (and PReLUs) form one chain in both networks, so their order in the file is the order
of basicsr's modules whatever topological order the exporter chose: the k-th Convolution of the file
is the k-th `nn.Conv2d` of the model. Every convolution is checked against its module (channels,
kernel, stride, padding, bias, weight count, fused activation), and every other layer by kind, count
and parameters (residual coefficients 0.2/1.0, nearest x2 / x`scale` upsampling, pixel shuffle, add),
so a file of another architecture is refused with one line naming the first layer that differs.

Example:
    >>> cfg, state = gan_from_ncnn("realesr-animevideov3-x4.param")
    >>> cfg.arch, cfg.num_conv
    ('srvgg', 16)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from vpdsr.errors import CheckpointError
from vpdsr.models.gan.config import GANConfig
from vpdsr.models.gan.model import GANSR
from vpdsr.models.gan.ncnn import NO_DATA, WITH_DATA, NcnnGraph, NcnnLayer, read_param, read_weights
from vpdsr.models.gan.rrdbnet import SLOPE as RRDB_SLOPE
from vpdsr.models.gan.srvgg import LEAKY_SLOPE as SRVGG_SLOPE

ACT_NONE, ACT_RELU, ACT_LEAKY = 0, 1, 2  # ncnn's fused activation_type (9=)
INTERP_NEAREST = 1
ELTWISE_SUM = 1
BINARY_ADD = 0


def _fail(graph: NcnnGraph, layer: NcnnLayer | None, msg: str) -> CheckpointError:
    where = f"{graph.path}:{layer.line}: {layer.type} {layer.name}" if layer else str(graph.path)
    return CheckpointError(f"{where}: {msg}")


def _close(a, b) -> bool:
    return abs(float(a) - float(b)) < 1e-6


def _fused_activation(layer: NcnnLayer) -> tuple[int, float]:
    kind = layer.get(9, ACT_NONE)
    slope = float((layer.get(10) or (0.0,))[0]) if kind == ACT_LEAKY else 0.0
    return kind, slope


def _infer_config(graph: NcnnGraph, convs: list[NcnnLayer]) -> GANConfig:
    first = convs[0]
    feat = first.get(0, 0)
    in_ch = first.get(6, 0) // max(feat * 9, 1)
    kinds = {layer.type for layer in graph.layers}
    if "PReLU" in kinds or "PixelShuffle" in kinds:
        shuffles = graph.of_type("PixelShuffle")
        if len(shuffles) != 1:
            raise _fail(graph, None, f"expected one PixelShuffle (SRVGGNetCompact), found {len(shuffles)}")
        scale = shuffles[0].get(0, 1)
        out_ch = convs[-1].get(0, 0) // max(scale * scale, 1)
        prelus, relus = graph.of_type("PReLU"), graph.of_type("ReLU")
        fused = _fused_activation(convs[0])
        if prelus:
            act = "prelu"
        elif relus:
            act = "leakyrelu" if _close(relus[0].get(0, 0.0), SRVGG_SLOPE) else "relu"
        else:
            act = "leakyrelu" if fused[0] == ACT_LEAKY else "relu"
        return GANConfig(preset="custom", arch="srvgg", scale=scale, num_in_ch=in_ch, num_out_ch=out_ch,
                         num_feat=feat, num_conv=len(convs) - 2, act_type=act)
    blocks, rest = divmod(len(convs) - 6, 15)
    if blocks < 1 or rest:
        raise _fail(graph, None, f"{len(convs)} convolutions and no PixelShuffle: neither SRVGGNetCompact nor "
                                 "RRDBNet (which has 15 per block + 6)")
    return GANConfig(preset="custom", arch="rrdbnet", scale=4, num_in_ch=in_ch, num_out_ch=convs[-1].get(0, 0),
                     num_feat=feat, num_block=blocks, num_grow_ch=convs[1].get(0, 0))


def _expected_activation(cfg: GANConfig, name: str, index: int, count: int, separate: bool) -> tuple[int, float]:
    """The fused activation ncnn stores on the conv named `name` (basicsr name), index-th of `count`.

    `separate`: SRVGG's activations are layers of their own (PReLU always; ReLU when not fused).
    """
    if cfg.arch == "rrdbnet":
        leaky = name.rsplit(".", 1)[-1] in ("conv1", "conv2", "conv3", "conv4", "conv_up1", "conv_up2", "conv_hr")
        return (ACT_LEAKY, RRDB_SLOPE) if leaky else (ACT_NONE, 0.0)
    if index == count - 1 or separate:
        return (ACT_NONE, 0.0)
    return (ACT_LEAKY, SRVGG_SLOPE) if cfg.act_type == "leakyrelu" else (ACT_RELU, 0.0)


def _check_conv(graph: NcnnGraph, layer: NcnnLayer, name: str, conv: nn.Conv2d, act: tuple[int, float]) -> None:
    def differ(what: str, got, want) -> CheckpointError:
        return _fail(graph, layer, f"{what} is {got}, `{name}` expects {want}")

    k = conv.kernel_size[0]
    checks = [("output channels (0=)", layer.get(0, 0), conv.out_channels),
              ("kernel (1=)", layer.get(1, 0), k), ("kernel height (11=)", layer.get(11, layer.get(1, 0)), k),
              ("dilation (2=)", layer.get(2, 1), 1), ("dilation height (12=)", layer.get(12, layer.get(2, 1)), 1),
              ("stride (3=)", layer.get(3, 1), 1), ("stride height (13=)", layer.get(13, layer.get(3, 1)), 1),
              ("padding (4=)", layer.get(4, 0), k // 2), ("padding top (14=)", layer.get(14, layer.get(4, 0)), k // 2),
              ("bias flag (5=)", layer.get(5, 0), 1), ("weight count (6=)", layer.get(6, 0), conv.weight.numel())]
    for pad_key in (15, 16):  # explicit right/bottom padding, when present, must equal the left/top one
        if pad_key in layer.params:
            checks.append((f"padding ({pad_key}=)", layer.get(pad_key), k // 2))
    for what, got, want in checks:
        if got != want:
            raise differ(what, got, want)
    kind, slope = _fused_activation(layer)
    if kind != act[0] or (kind == ACT_LEAKY and not _close(slope, act[1])):
        raise differ("fused activation (9=, 10=)", f"type {kind} slope {slope:g}", f"type {act[0]} slope {act[1]:g}")


def _check_others(graph: NcnnGraph, cfg: GANConfig, convs: list[NcnnLayer]) -> None:
    """Every non-conv layer: the kinds, counts and parameters the architecture has, nothing else."""
    s = cfg.scale
    if cfg.arch == "rrdbnet":
        want = {"Input": 1, "Concat": 12 * cfg.num_block, "Eltwise": 4 * cfg.num_block, "Interp": 2, "BinaryOp": 1}
    else:
        prelu = cfg.act_type == "prelu"
        separate_relu = len(graph.of_type("ReLU")) > 0
        want = {"Input": 1, "PixelShuffle": 1, "Interp": 1, "BinaryOp": 1,
                "PReLU": cfg.num_conv + 1 if prelu else 0, "ReLU": cfg.num_conv + 1 if separate_relu else 0}
    for layer in graph.layers:
        if layer.type not in want and layer.type not in ("Split", "Convolution"):
            raise _fail(graph, layer, f"a {layer.type} layer has no place in {cfg.arch}")
    for kind, count in want.items():
        found = graph.of_type(kind)
        if len(found) != count:
            extra = ""
            if kind == "Interp" and len(found) > count:
                extra = "; the x2/x3 realesr-animevideov3 files resize the x4 output afterwards: use the x4 file"
            raise _fail(graph, None, f"{cfg.arch} with {len(convs)} convolutions has {count} {kind} layer(s), "
                                     f"the file has {len(found)}{extra}")
    for layer in graph.of_type("Eltwise"):
        coeffs = tuple(layer.get(1) or ())
        if layer.get(0, 0) != ELTWISE_SUM or len(coeffs) != 2 or not (_close(coeffs[0], 0.2) and _close(coeffs[1], 1)):
            raise _fail(graph, layer, f"expected a residual sum 0.2*a + 1.0*b (0=1 1=0.2,1.0), got 0={layer.get(0, 0)} "
                                      f"coefficients {coeffs}")
    for layer in graph.of_type("Concat"):
        if layer.get(0, 0) != 0:
            raise _fail(graph, layer, f"expected a channel concat (0=0), got axis {layer.get(0)}")
    up = 2.0 if cfg.arch == "rrdbnet" else float(s)
    for layer in graph.of_type("Interp"):
        got = (layer.get(0, 0), float(layer.get(1, 1.0)), float(layer.get(2, 1.0)))
        if got[0] != INTERP_NEAREST or not (_close(got[1], up) and _close(got[2], up)):
            raise _fail(graph, layer, f"expected a nearest x{up:g} upsample (0=1 1={up:g} 2={up:g}), got "
                                      f"type {got[0]} scales {got[1]:g} x {got[2]:g}")
    for layer in graph.of_type("BinaryOp"):
        if layer.get(0, 0) != BINARY_ADD or layer.get(1, 0) != 0 or len(layer.inputs) != 2:
            raise _fail(graph, layer, "expected an add of two blobs (0=0, no scalar)")
    for layer in graph.of_type("PixelShuffle"):
        if layer.get(0, 1) != s or layer.get(1, 0) != 0:
            raise _fail(graph, layer, f"expected a torch-order pixel shuffle by {s} (0={s} 1=0), got "
                                      f"0={layer.get(0, 1)} 1={layer.get(1, 0)}")
    for layer in graph.of_type("PReLU"):
        if layer.get(0, 0) != cfg.num_feat:
            raise _fail(graph, layer, f"expected {cfg.num_feat} slopes (0=), got {layer.get(0, 0)}")
    for layer in graph.of_type("ReLU"):
        slope = SRVGG_SLOPE if cfg.act_type == "leakyrelu" else 0.0
        if not _close(layer.get(0, 0.0), slope):
            raise _fail(graph, layer, f"expected slope {slope:g} (0=), got {layer.get(0, 0.0)}")


def _check_activation_chain(graph: NcnnGraph, convs: list[NcnnLayer]) -> list[NcnnLayer]:
    """SRVGG with separate activation layers: the k-th one must read the k-th conv's output."""
    acts = [layer for layer in graph.layers if layer.type in ("PReLU", "ReLU")]
    for conv, act in zip(convs[:-1], acts):
        if act.inputs != conv.outputs:
            raise _fail(graph, act, f"reads {act.inputs}, expected the output {conv.outputs} of {conv.name}")
    return acts


def gan_from_ncnn(param: str | Path, bin_path: str | Path | None = None) -> tuple[GANConfig, dict[str, torch.Tensor]]:
    """Read an ncnn Real-ESRGAN model into (config, basicsr-named float32 state dict).

    Args:
        param: the `.param` file.
        bin_path: its `.bin` (default: the same name with `.bin`).

    Raises:
        CheckpointError: one line naming the file, the layer and what differs from the architecture.
    """
    param = Path(param)
    graph = read_param(param)
    convs = graph.of_type("Convolution")
    if len(convs) < 2:
        raise _fail(graph, None, f"{len(convs)} convolutions: not a Real-ESRGAN network")
    for layer in graph.layers:  # unknown kinds first: their weights cannot even be read
        if layer.type not in NO_DATA | WITH_DATA:
            raise _fail(graph, layer, "this layer kind is not part of RRDBNet or SRVGGNetCompact")
    cfg = _infer_config(graph, convs)
    with torch.device("meta"):  # shapes only: no init cost for 16.7 M parameters
        model = GANSR(cfg)
    modules = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if len(modules) != len(convs):
        raise _fail(graph, None, f"{len(convs)} convolutions, {cfg.arch} {cfg.to_dict()} has {len(modules)}")
    separate = bool(graph.of_type("PReLU") or graph.of_type("ReLU"))
    for i, (layer, (name, conv)) in enumerate(zip(convs, modules)):
        _check_conv(graph, layer, name, conv, _expected_activation(cfg, name, i, len(convs), separate))
    _check_others(graph, cfg, convs)
    acts = _check_activation_chain(graph, convs) if cfg.arch == "srvgg" else []
    arrays = read_weights(graph, Path(bin_path) if bin_path else param.with_suffix(".bin"))
    state: dict[str, torch.Tensor] = {}
    for layer, (name, conv) in zip(convs, modules):
        weight, bias = arrays[layer.name]
        state[f"{name}.weight"] = torch.from_numpy(weight.reshape(tuple(conv.weight.shape)))
        state[f"{name}.bias"] = torch.from_numpy(bias)
    prelu_names = [n for n, m in model.named_modules() if isinstance(m, nn.PReLU)]
    for name, layer in zip(prelu_names, [a for a in acts if a.type == "PReLU"]):
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(arrays[layer.name][0]))
    return cfg, state
