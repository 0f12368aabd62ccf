"""GANSR: the base of the GAN SR networks (no noise input), one class per architecture.

`GANSR(config)` returns the architecture's own class (RRDBNet or SRVGGNetCompact), so the state
dict keys are exactly basicsr's (`conv_first.weight`, `body.0.rdb1.conv1.weight`, `body.3.weight`)
and an official `.pth` loads without renaming.

Example:
    >>> model = GANSR(GANConfig(arch="srvgg", num_feat=8, num_conv=2))
    >>> type(model).__name__, model.input_names
    ('SRVGGNetCompact', ('lr',))
"""
from __future__ import annotations

import torch

from vpdsr.models.families import SRModel
from vpdsr.models.gan.config import GANConfig

_ARCH_CLASSES: dict[str, type] = {}


def register_arch(name: str):
    """Class decorator: `GANSR(config)` with `config.arch == name` builds this class."""
    def add(cls: type) -> type:
        _ARCH_CLASSES[name] = cls
        return cls

    return add


class GANSR(SRModel):
    """`sr = model(lr)`: lr [B,C,h,w] in [0,1] -> sr [B,C,scale*h,scale*w] clamped to [0,1].

    `raw(lr)` is basicsr's forward (no clamp); Real-ESRGAN's inference clamps as `forward` does.
    """

    latent_channels = None  # no noise input: the deploy graph is lr -> sr

    def __new__(cls, config: GANConfig | None = None):
        if cls is GANSR:  # dispatch on the architecture (copy/pickle call __new__ on the subclass)
            cls = _ARCH_CLASSES[config.arch]
        return super().__new__(cls)

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        self.size_multiple = config.size_multiple

    def raw(self, lr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, lr: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is not None:
            raise ValueError(f"{type(self).__name__} takes no `noise` input (input_names: {self.input_names})")
        return self.raw(lr).clamp(0.0, 1.0)
