"""RRDBNet (ESRGAN; Real-ESRGAN x4plus): residual-in-residual dense blocks, nearest x2 upsampling twice.

Layer names and order are basicsr's: conv_first; body.i.rdb{1,2,3}.conv{1..5}; conv_body; conv_up1,
conv_up2 (each after a nearest x2 upsample); conv_hr; conv_last. LeakyReLU slope 0.2 after each dense
conv but the fifth, after conv_up1/conv_up2/conv_hr; residuals are scaled by 0.2. Scale 2 and 1
pixel-unshuffle the input by 2 / 4 first (basicsr's x2plus), so the trunk always upsamples by 4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.models.gan.config import GANConfig
from vpdsr.models.gan.model import GANSR, register_arch

SLOPE = 0.2
RESIDUAL_SCALE = 0.2


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and every earlier output (dense concat)."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"conv{i}", conv3x3(num_feat + (i - 1) * num_grow_ch, num_grow_ch))
        self.conv5 = conv3x3(num_feat + 4 * num_grow_ch, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), SLOPE))
        return self.conv5(torch.cat(feats, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Three dense blocks with a scaled residual around them."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


@register_arch("rrdbnet")
class RRDBNet(GANSR):
    """ESRGAN's generator; `config` fields: scale, num_in_ch, num_out_ch, num_feat, num_block, num_grow_ch."""

    def __init__(self, config: GANConfig):
        super().__init__(config)
        self.unshuffle = {1: 4, 2: 2}.get(config.scale, 1)
        feat = config.num_feat
        self.conv_first = conv3x3(config.num_in_ch * self.unshuffle ** 2, feat)
        self.body = nn.Sequential(*(RRDB(feat, config.num_grow_ch) for _ in range(config.num_block)))
        self.conv_body = conv3x3(feat, feat)
        self.conv_up1 = conv3x3(feat, feat)
        self.conv_up2 = conv3x3(feat, feat)
        self.conv_hr = conv3x3(feat, feat)
        self.conv_last = conv3x3(feat, config.num_out_ch)

    def raw(self, lr: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(lr, self.unshuffle) if self.unshuffle > 1 else lr
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2.0, mode="nearest")), SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), SLOPE))
