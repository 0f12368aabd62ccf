"""GANConfig: the constructor arguments of a GAN SR network (RRDBNet or SRVGGNetCompact), its config.json.

The field names are basicsr's constructor arguments, so a Real-ESRGAN training option file maps
onto them one to one. Each architecture uses its own fields; config.json holds only those.

Example:
    >>> GANConfig(arch="srvgg", num_conv=16).to_dict()["_class_name"]
    'GANSR'
"""
from __future__ import annotations

from dataclasses import dataclass

from vpdsr.config_fields import from_mapping
from vpdsr.errors import ConfigError

CLASS_NAME = "GANSR"
ARCHS = ("rrdbnet", "srvgg")
ACTIVATIONS = ("prelu", "relu", "leakyrelu")
COMMON_FIELDS = ("preset", "arch", "scale", "num_in_ch", "num_out_ch", "num_feat")
ARCH_FIELDS = {
    "rrdbnet": ("num_block", "num_grow_ch"),
    "srvgg": ("num_conv", "act_type"),
}
RRDB_SCALES = (1, 2, 4)  # basicsr: x2 / x1 pixel-unshuffle the input first


@dataclass
class GANConfig:
    """Attributes:
        preset: where the config came from (informational).
        arch: "rrdbnet" (ESRGAN / Real-ESRGAN x4plus) or "srvgg" (SRVGGNetCompact, realesr-*-v3).
        scale: upscaling factor (rrdbnet: 1, 2 or 4; srvgg: any >= 1).
        num_in_ch / num_out_ch: image channels (3).
        num_feat: feature channels.
        num_block: rrdbnet only: RRDB blocks in the trunk (23 for x4plus, 6 for x4plus-anime).
        num_grow_ch: rrdbnet only: growth channels of each dense block (32).
        num_conv: srvgg only: convolutions in the body between the first and the last one (16 or 32).
        act_type: srvgg only: "prelu" (one slope per channel), "relu" or "leakyrelu" (slope 0.1).
    """

    preset: str = "custom"
    arch: str = "rrdbnet"
    scale: int = 4
    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    num_conv: int = 16
    act_type: str = "prelu"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"`arch` must be one of {list(ARCHS)}, got {self.arch!r}")
        ints = ("scale", "num_in_ch", "num_out_ch", "num_feat") + tuple(
            f for f in ARCH_FIELDS[self.arch] if f != "act_type")
        for name in ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"`{name}` must be a positive integer, got {value!r}")
        if self.arch == "rrdbnet" and self.scale not in RRDB_SCALES:
            raise ConfigError(f"rrdbnet `scale` must be one of {list(RRDB_SCALES)}, got {self.scale}")
        if self.arch == "srvgg" and self.num_in_ch != self.num_out_ch:  # the output adds the upsampled input
            raise ConfigError(f"srvgg needs `num_in_ch` == `num_out_ch`, "
                              f"got {self.num_in_ch} and {self.num_out_ch}")
        if self.arch == "srvgg" and self.act_type not in ACTIVATIONS:
            raise ConfigError(f"`act_type` must be one of {list(ACTIVATIONS)}, got {self.act_type!r}")

    @property
    def size_multiple(self) -> int:
        """LR height/width must be a multiple of this (rrdbnet x2/x1 pixel-unshuffle by 2/4)."""
        return {1: 4, 2: 2}.get(self.scale, 1) if self.arch == "rrdbnet" else 1

    def to_dict(self) -> dict:
        keep = COMMON_FIELDS + ARCH_FIELDS[self.arch]
        return {"_class_name": CLASS_NAME, **{k: getattr(self, k) for k in keep}}

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> GANConfig:
        d = {k: v for k, v in d.items() if k != "_class_name"} if isinstance(d, dict) else d
        cfg = from_mapping(cls, d, source=source)
        foreign = sorted(set(d) - set(COMMON_FIELDS) - set(ARCH_FIELDS[cfg.arch]))
        if foreign:  # another architecture's field: config.json holds only this one's
            raise ConfigError(f"{source}: field(s) {foreign} do not apply to arch {cfg.arch!r}")
        return cfg
