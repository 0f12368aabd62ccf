"""vpdsr: one-step diffusion super-resolution from training to deployed engines."""
from __future__ import annotations

__version__ = "0.1.0"

from vpdsr.errors import VpdsrError  # noqa: E402,F401
