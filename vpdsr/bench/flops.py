"""Model FLOPs counted once from the torch graph (torch.utils.flop_counter), without computing anything.

A copy of the model whose parameters are `meta` tensors (shape only, no data: the counter holds no
weights) runs on `meta` inputs, so a 1-TFLOP forward is counted in well under a second; buffers stay
real, so Python code that reads a schedule constant (`float(etas[-1])`) still works. Ops that mix a real buffer
with a meta activation are moved to `meta` by a small dispatch mode. Counts are 2 FLOPs per
multiply-add (the flop counter's convention), for batch 1, per input shape (attention makes a
whole-image pass cost more than its tiles: counted per shape, not scaled).

On meta tensors torch picks the math path of scaled-dot-product attention (bmm + softmax), which
the counter counts; on CPU the real run uses a fused flash kernel the counter does not register,
so counting a real run would leave attention out.

Example:
    >>> counter = FlopCounter(from_pretrained("tiny"))  # doctest: +SKIP
    >>> counter.flops(64, 64) / 1e9  # doctest: +SKIP
    2.27
"""
from __future__ import annotations

import logging

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map_only

log = logging.getLogger(__name__)


class _MetaWhereMixed(TorchDispatchMode):
    """Runs an op on `meta` as soon as one of its tensors is on `meta` (real buffers meet meta activations)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        if any(isinstance(t, torch.Tensor) and t.is_meta for t in flat):
            args, kwargs = tree_map_only(torch.Tensor, lambda t: t if t.is_meta else t.to("meta"), (args, kwargs))
        return func(*args, **kwargs)


class FlopCounter:
    """FLOPs of one forward of `model` (batch 1) per LR input size, cached per size.

    Args:
        model: an `SRModel` (`latent_channels` None: it takes `lr` alone) or any module
            `fn(lr[, noise]) -> sr`.
        noise_channels: channels of the noise input when the module has no `latent_channels`.
    """

    def __init__(self, model: torch.nn.Module, noise_channels: int | None = None):
        import copy

        # deepcopy with every parameter pre-mapped to its meta twin: structure and buffers are copied,
        # weights are not (a 171 M-parameter model costs a few MB here)
        memo = {id(p): torch.nn.Parameter(p.detach().to("meta"), requires_grad=False) for p in model.parameters()}
        self.model = copy.deepcopy(model, memo).eval()
        self.noise_channels = getattr(model, "latent_channels", None) if noise_channels is None else noise_channels
        self._cache: dict[tuple[int, int], int | None] = {}
        self.error: str | None = None

    def flops(self, h: int, w: int) -> int | None:
        """FLOPs of one call on an LR input of h x w; None when the graph cannot be counted (see `error`)."""
        key = (int(h), int(w))
        if key not in self._cache:
            self._cache[key] = self._count(*key)
        return self._cache[key]

    def _count(self, h: int, w: int) -> int | None:
        from torch.utils.flop_counter import FlopCounterMode

        inputs = [torch.empty(1, 3, h, w, device="meta")]
        if self.noise_channels:
            inputs.append(torch.empty(1, self.noise_channels, h, w, device="meta"))
        counter = FlopCounterMode(display=False)
        try:
            with torch.no_grad(), _MetaWhereMixed(), counter:
                self.model(*inputs)
        except Exception as e:  # a graph the meta path cannot trace (data-dependent code): no figure, a reason
            self.error = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            log.warning(f"flops: cannot count the model's FLOPs at {h}x{w} ({self.error})")
            return None
        return int(counter.get_total_flops())
