"""ModelConfig: the constructor arguments of a VPDSR model, saved as its config.json."""
from __future__ import annotations

import json
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
        try:
            return cls(
                preset=d.pop("preset", "custom"),
                scale=d.pop("scale", SCALE),
                autoencoder=_sub(AutoencoderConfig, d.pop("autoencoder", {}), source, "autoencoder"),
                denoiser=_sub(DenoiserConfig, d.pop("denoiser", {}), source, "denoiser"),
                schedule=_sub(ScheduleConfig, d.pop("schedule", {}), source, "schedule"),
            )._no_extra(d, source)
        except TypeError as e:  # wrong value types inside a section
            raise ConfigError(f"{source}: {e}") from None

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
    d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
    return cls(**d)


def config_dict(cfg) -> dict:
    """asdict for any of the config dataclasses (tuples become lists for JSON/YAML)."""
    return json.loads(json.dumps(asdict(cfg)))
