"""Model families: which config class and model class a `config.json` belongs to.

A model directory is `config.json` + `model.safetensors` (diffusers style). The config's
`_class_name` names its family (after diffusers' `_class_name`): "VPDSR" is our own
residual-shifting model (diffusers UNet + f4 autoencoder); other families (ResShift's Swin-UNet,
GAN SR networks) register here with their own config dataclass. A config file without
`_class_name` is a VPDSR config, as every checkpoint written before families existed.

Every family's model is an :class:`SRModel`: the one API that export, runtimes and bench use.

Example:
    >>> family = family_of_config({"_class_name": "VPDSR", "preset": "tiny"})
    >>> family.model_cls.__name__
    'VPDSR'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import nn

from vpdsr.errors import ConfigError

DEFAULT_FAMILY = "VPDSR"


class FamilyConfig(Protocol):
    """What a family's config dataclass provides (ModelConfig is one)."""

    preset: str
    scale: int

    def to_dict(self) -> dict: ...  # includes "_class_name"

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> FamilyConfig: ...


class SRModel(nn.Module):
    """Base of every model family: `sr = model(lr, noise)` with `lr` in [0,1], `sr` in [0,1].

    Attributes a subclass sets:
        config: its family config (`to_dict()` is the config.json).
        latent_channels: channels of the `noise` input, or None for a model without noise (GAN).
        size_multiple: LR height/width must be a multiple of this (1: any size); tiling uses it.
    """

    config: FamilyConfig
    latent_channels: int | None = None
    size_multiple: int = 1

    @property
    def scale(self) -> int:
        return int(self.config.scale)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The deploy graph's inputs: ("lr", "noise"), or ("lr",) for a model without noise."""
        return ("lr",) if not self.latent_channels else ("lr", "noise")

    def noise_shape(self, lr_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
        if not self.latent_channels:
            return None
        b, _, h, w = lr_shape
        return (b, self.latent_channels, h, w)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def stage_modules(self) -> dict[str, nn.Module] | None:
        """{"encoder", "denoiser", "decoder"} modules for split export, or None when the family has no stages."""
        return None


@dataclass(frozen=True)
class Family:
    """A registered family: its `_class_name`, config dataclass and model class."""

    name: str
    config_cls: type
    model_cls: type

    def build(self, cfg) -> SRModel:
        return self.model_cls(cfg)


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, config_cls: type, model_cls: type) -> Family:
    """Register a family under its `_class_name` (idempotent for the same classes)."""
    family = Family(name, config_cls, model_cls)
    _FAMILIES[name] = family
    return family


def _ensure_builtin() -> None:
    # Each family module registers itself on import; `vpdsr.models` imports every built-in family.
    import vpdsr.models  # noqa: F401


def family_names() -> list[str]:
    _ensure_builtin()
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    _ensure_builtin()
    if name not in _FAMILIES:
        raise ConfigError(f"unknown model family `_class_name` {name!r}; this vpdsr knows {family_names()}")
    return _FAMILIES[name]


def family_of_config(d: dict) -> Family:
    """The family of a parsed config.json (no `_class_name`: VPDSR)."""
    return get_family(str(d.get("_class_name", DEFAULT_FAMILY)))


def family_of(cfg) -> Family:
    """The family of a config object (by its class)."""
    _ensure_builtin()
    for family in _FAMILIES.values():
        if isinstance(cfg, family.config_cls):
            return family
    raise ConfigError(f"{type(cfg).__name__} is not the config of any registered model family ({family_names()})")


def config_from_dict(d: dict, source: str = "config"):
    """Parse a config.json dict into its family's config dataclass."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    return family_of_config(d).config_cls.from_dict(d, source=source)

