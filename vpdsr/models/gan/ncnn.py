"""Reading ncnn model files (`.param` text + `.bin` weights) without ncnn.

`.param`: the magic 7767517, then "layer_count blob_count", then one line per layer:
`Type name n_in n_out in_blob... out_blob... key=value...`. A key <= -23300 is an array
(`-23310=2,0.1,0.2` is array 10 of 2 elements); a value with '.' or 'e' is a float, else an int.

`.bin`: the weights of the layers, in file order, with nothing between them. A convolution stores
its weights as a 4-byte tag then the data (tag 0x01306B47: fp16, padded to 4 bytes; tag 0: fp32),
then its bias as raw fp32; a PReLU stores its slopes as raw fp32. Layers of other types read
nothing. The whole file must be used: a `.bin` with bytes left over belongs to another `.param`.

Example:
    >>> graph = read_param("realesrgan-x4plus.param")
    >>> weights = read_weights(graph, "realesrgan-x4plus.bin")  # {layer name: [weight, bias]}
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vpdsr.errors import CheckpointError, InputError

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
ARRAY_BASE = -23300
# Layer types this reader knows the stored data of (everything the Real-ESRGAN graphs use).
NO_DATA = frozenset({"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU"})
WITH_DATA = frozenset({"Convolution", "PReLU"})


@dataclass
class NcnnLayer:
    """One `.param` layer line; `params` maps ncnn's integer keys to int, float or a tuple (arrays)."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, int | float | tuple] = field(default_factory=dict)
    line: int = 0

    def get(self, key: int, default=None):
        return self.params.get(key, default)


@dataclass
class NcnnGraph:
    """The layers of a `.param` file in file order."""

    path: Path
    layers: list[NcnnLayer]
    blob_count: int

    def of_type(self, kind: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if layer.type == kind]


def _number(text: str, where: str) -> int | float:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise CheckpointError(f"{where}: value {text!r} is not a number") from None


def _parse_params(tokens: list[str], where: str) -> dict[int, int | float | tuple]:
    params: dict[int, int | float | tuple] = {}
    for token in tokens:
        key_text, sep, value = token.partition("=")
        try:
            key = int(key_text)
        except ValueError:
            key = None
        if not sep or key is None:
            raise CheckpointError(f"{where}: expected key=value, got {token!r}")
        if key <= ARRAY_BASE:
            items = value.split(",")
            count = _number(items[0], where)
            if not isinstance(count, int) or count != len(items) - 1:
                raise CheckpointError(f"{where}: array {token!r} says {items[0]} elements, has {len(items) - 1}")
            params[ARRAY_BASE - key] = tuple(_number(v, where) for v in items[1:])
        else:
            params[key] = _number(value, where)
    return params


def read_param(path: str | Path) -> NcnnGraph:
    """Parse a `.param` text file; one-line CheckpointError naming the line for anything odd."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected an ncnn .param file)")
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not an ncnn .param text file (binary content; "
                              "a binary .param.bin is not supported)") from None
    if not lines or lines[0].strip() != str(MAGIC):
        raise CheckpointError(f"{path}: not an ncnn .param file (first line must be the magic {MAGIC})")
    header = lines[1].split() if len(lines) > 1 else []
    if len(header) != 2 or not all(h.isdigit() for h in header):
        raise CheckpointError(f"{path}:2: expected 'layer_count blob_count', got {' '.join(header)!r}")
    layer_count, blob_count = map(int, header)
    body = [(i + 3, line.split()) for i, line in enumerate(lines[2:]) if line.strip()]
    if len(body) != layer_count:
        raise CheckpointError(f"{path}: header says {layer_count} layers, the file has {len(body)} "
                              "(truncated or edited)")
    layers, blobs = [], set()
    for lineno, tok in body:
        where = f"{path}:{lineno}"
        if len(tok) < 4 or not tok[2].isdigit() or not tok[3].isdigit():
            raise CheckpointError(f"{where}: expected 'Type name n_in n_out blobs... key=value...'")
        n_in, n_out = int(tok[2]), int(tok[3])
        if len(tok) < 4 + n_in + n_out:
            raise CheckpointError(f"{where}: layer {tok[1]} names {n_in} inputs and {n_out} outputs, "
                                  f"the line has {len(tok) - 4} blob names")
        inputs, outputs = tuple(tok[4:4 + n_in]), tuple(tok[4 + n_in:4 + n_in + n_out])
        params = _parse_params(tok[4 + n_in + n_out:], where)
        layers.append(NcnnLayer(tok[0], tok[1], inputs, outputs, params, lineno))
        blobs.update(inputs + outputs)
    if len(blobs) != blob_count:
        raise CheckpointError(f"{path}: header says {blob_count} blobs, the layers name {len(blobs)}")
    return NcnnGraph(path, layers, blob_count)


class _Cursor:
    """Reads consecutive arrays from the `.bin` bytes, naming the layer and offset on a short read."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.offset = data, path, 0

    def take(self, nbytes: int, what: str) -> bytes:
        if self.offset + nbytes > len(self.data):
            raise CheckpointError(f"{self.path}: truncated: {what} needs {nbytes} bytes at offset {self.offset}, "
                                  f"the file has {len(self.data)} bytes")
        chunk = self.data[self.offset:self.offset + nbytes]
        self.offset += nbytes
        return chunk

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * count, what), dtype="<f4").copy()

    def tagged(self, count: int, what: str) -> np.ndarray:
        at = self.offset
        (tag,) = struct.unpack("<I", self.take(4, f"{what} tag"))
        if tag == TAG_FP16:
            padded = (2 * count + 3) // 4 * 4
            return np.frombuffer(self.take(padded, what), dtype="<f2", count=count).astype(np.float32)
        if tag == TAG_FP32:
            return self.raw_fp32(count, what)
        raise CheckpointError(f"{self.path}: {what}: unknown weight tag 0x{tag:08X} at offset {at} (expected "
                              f"0x{TAG_FP16:08X} fp16 or 0 fp32; int8/quantized ncnn weights are not supported)")


def _count(layer: NcnnLayer, key: int, what: str, graph: NcnnGraph) -> int:
    value = layer.get(key, 0)
    if not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{graph.path}:{layer.line}: {layer.type} {layer.name}: {what} ({key}=) must be a "
                              f"positive integer, got {value!r}")
    return value


def read_weights(graph: NcnnGraph, path: str | Path) -> dict[str, list[np.ndarray]]:
    """The stored arrays of every layer that has some, in file order, as float32.

    Returns:
        {layer name: [weight, bias]} for a Convolution (bias only when `5=1`), [slopes] for a PReLU.

    Raises:
        CheckpointError: a layer type whose data this reader does not know, an int8 convolution, an
            unknown weight tag, a truncated file, or bytes left after the last layer.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected the ncnn .bin beside {graph.path.name})")
    cursor = _Cursor(path.read_bytes(), path)
    out: dict[str, list[np.ndarray]] = {}
    for layer in graph.layers:
        what = f"{layer.type} {layer.name}"
        if layer.type == "Convolution":
            if layer.get(8, 0):
                raise CheckpointError(f"{graph.path}:{layer.line}: {what} is int8-quantized (8=); not supported")
            arrays = [cursor.tagged(_count(layer, 6, "weight count", graph), f"{what} weights")]
            if layer.get(5, 0):
                arrays.append(cursor.raw_fp32(_count(layer, 0, "output channels", graph), f"{what} bias"))
            out[layer.name] = arrays
        elif layer.type == "PReLU":
            out[layer.name] = [cursor.raw_fp32(_count(layer, 0, "slope count", graph), f"{what} slopes")]
        elif layer.type not in NO_DATA:
            raise CheckpointError(f"{graph.path}:{layer.line}: layer type {layer.type} ({layer.name}) is not "
                                  f"supported (this reader knows {sorted(NO_DATA | WITH_DATA)})")
    left = len(cursor.data) - cursor.offset
    if left:
        raise CheckpointError(f"{path}: {left} bytes left after the last layer's weights: "
                              f"this .bin does not belong to {graph.path.name}")
    return out
