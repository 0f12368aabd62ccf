"""GAN SR networks with real weights (Real-ESRGAN RRDBNet x4plus, SRVGGNetCompact): no noise input.

Importing this package registers the `GANSR` family and the `realesrgan-*` presets.
"""
from vpdsr.models.families import register_family
from vpdsr.models.gan.config import CLASS_NAME, GANConfig
from vpdsr.models.gan.model import GANSR
from vpdsr.models.gan.rrdbnet import RRDBNet
from vpdsr.models.gan.srvgg import SRVGGNetCompact

register_family(CLASS_NAME, GANConfig, GANSR)

from vpdsr.models.gan import presets  # noqa: E402,F401  (registers the realesrgan-* presets)

__all__ = ["GANConfig", "GANSR", "RRDBNet", "SRVGGNetCompact"]
