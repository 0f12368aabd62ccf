"""The ResShift family: ResShift's Swin-UNet + LDM VQGAN-f4 (teacher ResShift v1/v2/v3, one-step SinSR).

Official checkpoints convert with `vpdsr convert resshift` (see `vpdsr.models.resshift.convert`);
the converted directory loads with `vpdsr.models.from_pretrained` like any vpdsr model.
"""
from vpdsr.models.resshift.configs import DiffusionConfig, ResShiftConfig, SwinUNetConfig, VQConfig
from vpdsr.models.resshift.model import ResShiftSR

__all__ = ["ResShiftSR", "ResShiftConfig", "SwinUNetConfig", "VQConfig", "DiffusionConfig"]
