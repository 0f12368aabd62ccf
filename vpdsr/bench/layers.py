"""Per-layer cost of one engine call, from the torch graph: FLOPs and the bytes of the tensors each layer touches.

A *layer* is one matrix operation of the forward pass (convolution, matrix product, batched matrix
product of attention): the ops the matmul peak is a roof for. For each, on `meta` tensors (shapes
only, nothing computed; the same meta copy of the model as :class:`vpdsr.bench.flops.FlopCounter`):

- FLOPs: torch's own formulas (``torch.utils.flop_counter``), 2 per multiply-add;
- elements moved: its inputs (activations and weights, each read once) and its output (written once).

Bytes are elements times the element size of the backend's precision (fp32 4, bf16/fp16 2, int8 and
fp8 1). The ops between the matrix layers (bias, activations, residual adds, normalisations) are
counted as fused into their neighbours, moving nothing of their own, as the engines' fusions do for
most of them. So the attainable time built on this (:mod:`vpdsr.bench.roofline`) is a lower bound:
an INT8 graph whose every matrix layer reads and writes int8, a float graph with every elementwise op fused.

Example:
    >>> layers = LayerCounter(from_pretrained("tiny")).layers(64, 64)  # doctest: +SKIP
    >>> sum(l.flops for l in layers) / 1e9  # doctest: +SKIP
    2.27
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from vpdsr.bench.flops import FlopCounter, _MetaWhereMixed

log = logging.getLogger(__name__)
ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "fp8": 1}


@dataclass(frozen=True)
class Layer:
    """One matrix op of a call: its aten name, FLOPs, and elements read (inputs, weights) and written."""

    op: str
    flops: int
    read: int
    written: int

    def bytes(self, precision: str) -> int:
        return (self.read + self.written) * ELEMENT_BYTES.get(precision, 4)


class _Recorder(TorchDispatchMode):
    """Records every op torch has a FLOP formula for, with the elements of its tensor inputs and outputs."""

    def __init__(self):
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.registry = flop_registry
        self.layers: list[Layer] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in self.registry:
            r = func.decompose(*args, **kwargs)  # composite ops (linear, sdpa's math path) reach mm/bmm inside
            if r is not NotImplemented:
                return r
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        flops = int(self.registry[packet](*args, **kwargs, out_val=out))
        inputs, _ = tree_flatten((args, kwargs))
        outputs, _ = tree_flatten(out)
        read = sum(t.numel() for t in inputs if isinstance(t, torch.Tensor))
        written = sum(t.numel() for t in outputs if isinstance(t, torch.Tensor))
        self.layers.append(Layer(str(packet).split(".")[-1], flops, read, written))
        return out


class LayerCounter:
    """The matrix layers of one call of `model` per input shape (batch included), cached per shape.

    Args:
        model: as for :class:`vpdsr.bench.flops.FlopCounter` (an `SRModel`, or a module `fn(lr[, noise])`).
        noise_channels: channels of the noise input when the module has no `latent_channels`.
    """

    def __init__(self, model: torch.nn.Module, noise_channels: int | None = None):
        meta = FlopCounter(model, noise_channels)
        self.model, self.noise_channels = meta.model, meta.noise_channels
        self._cache: dict[tuple[int, int, int], list[Layer] | None] = {}
        self.error: str | None = None

    def layers(self, h: int, w: int, batch: int = 1) -> list[Layer] | None:
        """The matrix layers of one call on a batch of `batch` LR inputs of h x w; None if it cannot be traced."""
        key = (int(h), int(w), int(batch))
        if key not in self._cache:
            self._cache[key] = self._trace(*key)
        return self._cache[key]

    def _trace(self, h: int, w: int, batch: int) -> list[Layer] | None:
        inputs = [torch.empty(batch, 3, h, w, device="meta")]
        if self.noise_channels:
            inputs.append(torch.empty(batch, self.noise_channels, h, w, device="meta"))
        recorder = _Recorder()
        try:
            with torch.no_grad(), _MetaWhereMixed(), recorder:
                self.model(*inputs)
        except Exception as e:  # a graph the meta path cannot trace: no figure, a reason
            self.error = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            log.warning(f"layers: cannot trace the model's layers at {batch}x{h}x{w} ({self.error})")
            return None
        return recorder.layers
