"""ModelConfig: the constructor arguments of a VPDSR model, saved as its config.json."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from vpdsr.config_fields import from_mapping
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
        d = {k: v for k, v in d.items() if k != "_class_name"} if isinstance(d, dict) else d
        if isinstance(d, dict) and d.get("scale", SCALE) != SCALE:
            raise ConfigError(f"{source}: `scale` must be {SCALE}, got {d.get('scale')}")
        return from_mapping(cls, d, base=cls(preset="custom"), source=source)


def config_dict(cfg) -> dict:
    """asdict for any of the config dataclasses (tuples become lists for JSON/YAML)."""
    return json.loads(json.dumps(asdict(cfg)))
