"""A reference forward of an ncnn graph in plain numpy (float64), written from the ncnn file layout alone.

This is deliberately a separate code path from `vpdsr.models.gan` (its own `.param` tokenizer and `.bin`
reader, no torch, no basicsr names): it interprets the layers in file order over named blobs, so
the converted torch model is checked against what the ncnn files themselves say, not against a
second copy of our own mapping.

Supported layers: Input, Split, Concat, Convolution (with fused ReLU/LeakyReLU), Eltwise (sum with
coefficients), BinaryOp (add), Interp (nearest, integer scale), PixelShuffle (mode 0), PReLU, ReLU.

Example:
    >>> net = NcnnNet.load("realesrgan-x4plus.param")
    >>> sr = net.forward(lr_chw)  # float64 [3, 4h, 4w], unclamped
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FP16_TAG = bytes.fromhex("476b3001")  # 0x01306B47 little-endian


def _value(text: str):
    return float(text) if ("." in text or "e" in text.lower()) else int(text)


class NcnnNet:
    def __init__(self, layers: list[dict]):
        self.layers = layers

    @classmethod
    def load(cls, param: str | Path, bin_path: str | Path | None = None) -> NcnnNet:
        param = Path(param)
        rows = [line.split() for line in param.read_text().splitlines()[2:] if line.strip()]
        data = Path(bin_path or param.with_suffix(".bin")).read_bytes()
        pos = 0

        def fp32(n: int) -> np.ndarray:
            nonlocal pos
            out = np.frombuffer(data, "<f4", count=n, offset=pos).astype(np.float64)
            pos += 4 * n
            return out

        layers = []
        for row in rows:
            kind, name, n_in, n_out = row[0], row[1], int(row[2]), int(row[3])
            ins, outs = row[4:4 + n_in], row[4 + n_in:4 + n_in + n_out]
            params = {}
            for kv in row[4 + n_in + n_out:]:
                k, v = kv.split("=")
                if int(k) <= -23300:
                    params[-23300 - int(k)] = [_value(x) for x in v.split(",")[1:]]
                else:
                    params[int(k)] = _value(v)
            layer = {"type": kind, "name": name, "in": ins, "out": outs, "p": params}
            if kind == "Convolution":
                n = params[6]
                tag = data[pos:pos + 4]
                pos += 4
                if tag == FP16_TAG:
                    layer["w"] = np.frombuffer(data, "<f2", count=n, offset=pos).astype(np.float64)
                    pos += (2 * n + 3) // 4 * 4
                else:
                    assert tag == b"\0\0\0\0", f"{name}: weight tag {tag.hex()}"
                    layer["w"] = fp32(n)
                out_c = params[0]
                layer["w"] = layer["w"].reshape(out_c, -1, params[1], params.get(11, params[1]))
                layer["b"] = fp32(out_c) if params.get(5, 0) else np.zeros(out_c)
            elif kind == "PReLU":
                layer["slope"] = fp32(params[0])
            layers.append(layer)
        assert pos == len(data), f"{len(data) - pos} bytes of {bin_path} unused"
        return cls(layers)

    def forward(self, image: np.ndarray) -> np.ndarray:
        """`image` [C,H,W] -> the graph's last output (float64), computed layer by layer in file order."""
        blobs: dict[str, np.ndarray] = {}
        for layer in self.layers:
            kind, p = layer["type"], layer["p"]
            xs = [blobs[b] for b in layer["in"]]
            if kind == "Input":
                ys = [np.asarray(image, dtype=np.float64)]
            elif kind == "Split":
                ys = [xs[0]] * len(layer["out"])
            elif kind == "Concat":
                ys = [np.concatenate(xs, axis=0)]
            elif kind == "Convolution":
                ys = [_activate(_conv(xs[0], layer["w"], layer["b"], p.get(4, 0)), p.get(9, 0), p.get(10, [0.0]))]
            elif kind == "Eltwise":
                assert p.get(0) == 1, "only Eltwise sum"
                coeffs = p.get(1, [1.0] * len(xs))
                ys = [sum(c * x for c, x in zip(coeffs, xs))]
            elif kind == "BinaryOp":
                assert p.get(0, 0) == 0 and len(xs) == 2, "only BinaryOp add of two blobs"
                ys = [xs[0] + xs[1]]
            elif kind == "Interp":
                assert p.get(0) == 1, "only nearest Interp"
                sh, sw = int(round(p[1])), int(round(p[2]))
                ys = [xs[0].repeat(sh, axis=1).repeat(sw, axis=2)]
            elif kind == "PixelShuffle":
                assert p.get(1, 0) == 0
                r = p[0]
                c, h, w = xs[0].shape
                blocks = xs[0].reshape(c // (r * r), r, r, h, w).transpose(0, 3, 1, 4, 2)
                ys = [blocks.reshape(c // (r * r), h * r, w * r)]
            elif kind == "PReLU":
                s = layer["slope"][:, None, None]
                ys = [np.where(xs[0] > 0, xs[0], xs[0] * s)]
            elif kind == "ReLU":
                ys = [np.where(xs[0] > 0, xs[0], xs[0] * p.get(0, 0.0))]
            else:
                raise NotImplementedError(kind)
            blobs.update(zip(layer["out"], ys))
        return blobs[self.layers[-1]["out"][0]]


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    """Stride-1 convolution, zero padding `pad`: [C,H,W] * [O,C,kh,kw] -> [O,H',W']."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(xp, w.shape[2:], axis=(1, 2))  # [C, H', W', kh, kw]
    return np.tensordot(w, windows, axes=([1, 2, 3], [0, 3, 4])) + b[:, None, None]


def _activate(y: np.ndarray, kind: int, params) -> np.ndarray:
    if kind == 1:
        return np.maximum(y, 0.0)
    if kind == 2:
        return np.where(y > 0, y, y * params[0])
    assert kind == 0, f"activation type {kind}"
    return y
