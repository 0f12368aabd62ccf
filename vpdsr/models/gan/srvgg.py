"""SRVGGNetCompact (Real-ESRGAN's realesr-animevideov3 / realesr-general-x4v3): a plain conv stack in LR space.

`body` is basicsr's ModuleList: conv(in, feat), act, then `num_conv` x (conv(feat, feat), act), then
conv(feat, out * scale^2); the output is pixel-shuffled and added to the nearest-upsampled input, so the
network learns a residual. Activations: PReLU (one slope per channel, `body.{odd}.weight`), ReLU, or
LeakyReLU with slope 0.1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.models.gan.config import GANConfig
from vpdsr.models.gan.model import GANSR, register_arch

LEAKY_SLOPE = 0.1


def activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=LEAKY_SLOPE)
    return nn.ReLU()


@register_arch("srvgg")
class SRVGGNetCompact(GANSR):
    """`config` fields: scale, num_in_ch, num_out_ch, num_feat, num_conv, act_type."""

    def __init__(self, config: GANConfig):
        super().__init__(config)
        feat, act = config.num_feat, config.act_type
        layers: list[nn.Module] = [nn.Conv2d(config.num_in_ch, feat, 3, 1, 1), activation(act, feat)]
        for _ in range(config.num_conv):
            layers += [nn.Conv2d(feat, feat, 3, 1, 1), activation(act, feat)]
        layers.append(nn.Conv2d(feat, config.num_out_ch * config.scale ** 2, 3, 1, 1))
        self.body = nn.ModuleList(layers)

    def raw(self, lr: torch.Tensor) -> torch.Tensor:
        out = lr
        for layer in self.body:
            out = layer(out)
        base = F.interpolate(lr, scale_factor=float(self.config.scale), mode="nearest")
        return F.pixel_shuffle(out, self.config.scale) + base
