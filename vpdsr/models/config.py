"""ModelConfig: the constructor arguments of a VPDSR model, saved as its config.json."""
from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields

from vpdsr.errors import ConfigError
from vpdsr.models.autoencoder import AutoencoderConfig
from vpdsr.models.denoiser import DenoiserConfig
from vpdsr.models.schedule import ScheduleConfig

SCALE = 4
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; `preset` is informational (where it started from)."""

    preset: str = "tiny"
    scale: int = SCALE
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def to_dict(self) -> dict:
        return {
            "_class_name": "VPDSR",
            "preset": self.preset,
            "scale": self.scale,
            "autoencoder": self.autoencoder.to_dict(),
            "denoiser": self.denoiser.to_dict(),
            "schedule": self.schedule.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> ModelConfig:
        d = dict(d)
        d.pop("_class_name", None)
        if d.get("scale", SCALE) != SCALE:
            raise ConfigError(f"{source}: `scale` must be {SCALE}, got {d.get('scale')}")
        return cls(
            preset=_typed(str, d.pop("preset", "custom"), source, "preset"),
            scale=d.pop("scale", SCALE),
            autoencoder=_sub(AutoencoderConfig, d.pop("autoencoder", {}), source, "autoencoder"),
            denoiser=_sub(DenoiserConfig, d.pop("denoiser", {}), source, "denoiser"),
            schedule=_sub(ScheduleConfig, d.pop("schedule", {}), source, "schedule"),
        )._no_extra(d, source)

    def _no_extra(self, rest: dict, source: str) -> ModelConfig:
        if rest:
            raise ConfigError(f"{source}: unknown model config field(s) {sorted(rest)}")
        return self


def _sub(cls, d: dict, source: str, section: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: `{section}` must be a mapping")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown} in `{section}` (known: {sorted(names)})")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _typed(hints[k], v, source, f"{section}.{k}") for k, v in d.items()})


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}


def _typed(hint, value, source: str, where: str):
    """`value` checked against a field's type (`X | None`, `tuple[X, ...]` or a plain type): lists become
    tuples and integers floats where the field says so; anything else is a ConfigError naming the field."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _typed(hint, value, source, where)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: `{where}` must be a list, got {value!r}")
        return tuple(_typed(args[0], v, source, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 4e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint in (int, float):  # a bool is an int to Python, never to a config
        ok = isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(f"{source}: `{where}` must be {_KINDS.get(hint, hint.__name__)}, got {value!r}")
    return float(value) if hint is float else value


def config_dict(cfg) -> dict:
    """asdict for any of the config dataclasses (tuples become lists for JSON/YAML)."""
    return json.loads(json.dumps(asdict(cfg)))
