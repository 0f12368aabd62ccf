"""vpdsr: one-step diffusion super-resolution from training to deployed engines."""
from __future__ import annotations

import logging

__version__ = "0.1.0"

# bitsandbytes (pulled in by pyiqa, imported by diffusers' quantizer probing) warns on every
# CPU import about an optional kernel package we never use.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

from vpdsr.errors import VpdsrError  # noqa: E402,F401
