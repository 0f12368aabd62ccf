"""Typed configs of the ResShift family (Swin-UNet + LDM VQGAN-f4 + residual-shifting schedule).

Field names are ResShift's own (`configs/realsr_swinunet_realesrgan256*.yaml` of zsyOAOA/ResShift),
so a YAML in that layout maps onto these dataclasses one to one (`vpdsr.models.resshift.yaml_config`).
A model directory's config.json is `ResShiftConfig.to_dict()`:
`{"_class_name": "ResShiftSR", "preset", "scale", "denoiser": {"kind": "swin_unet", ...},
"autoencoder": {"kind": "ldm_vq", ...}, "diffusion": {...}}`.

Example:
    >>> cfg = get_preset("resshift-v3")
    >>> cfg.diffusion.steps, cfg.diffusion.min_noise_level
    (4, 0.2)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from vpdsr.config_fields import from_mapping
from vpdsr.errors import ConfigError
from vpdsr.models.presets import get_preset, register_preset

CLASS_NAME = "ResShiftSR"
GROUPS = 32  # ResShift's `normalization()` is always GroupNorm(32, C); every width must divide by it
PREDICT_TYPES = ("xstart", "residual")


@dataclass
class SwinUNetConfig:
    """ResShift's `UNetModelSwin` arguments that shape the network (inference-only ones are dropped).

    `in_channels` is the latent's channel count; with `cond_lq` the LR image (3 channels, [-1, 1])
    is concatenated, so the first convolution sees `in_channels + 3`. `attention_resolutions` are
    latent sizes relative to `image_size`: a Swin `BasicLayer` follows the first ResBlock of each such
    level and sits in the middle block. Whether a Swin block shifts, and its window size, is decided
    by `image_size` (the training size), as in the reference; the attention mask is computed for the
    actual input size.
    """

    kind: str = "swin_unet"
    image_size: int = 64
    in_channels: int = 3
    model_channels: int = 160
    out_channels: int = 3
    num_res_blocks: tuple[int, ...] = (2, 2, 2, 2)
    attention_resolutions: tuple[int, ...] = (64, 32, 16, 8)
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    conv_resample: bool = True
    num_heads: int = 1
    num_head_channels: int = 32
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    swin_depth: int = 2
    swin_embed_dim: int = 192
    window_size: int = 8
    mlp_ratio: float = 4.0
    patch_norm: bool = False
    cond_lq: bool = True

    @property
    def swin_heads(self) -> int:
        return self.num_heads if self.num_head_channels == -1 else self.swin_embed_dim // self.num_head_channels

    def validate(self) -> SwinUNetConfig:
        if self.kind != "swin_unet":
            raise ConfigError(f"`denoiser.kind` must be 'swin_unet' for the ResShift family, got {self.kind!r}")
        if len(self.num_res_blocks) != len(self.channel_mult):
            raise ConfigError(f"`denoiser.num_res_blocks` needs one entry per level ({len(self.channel_mult)}), "
                              f"got {list(self.num_res_blocks)}")
        widths = {int(m * self.model_channels) for m in self.channel_mult} | {self.swin_embed_dim}
        bad = sorted(w for w in widths if w % GROUPS)
        if bad:
            raise ConfigError(f"`denoiser` widths {bad} are not divisible by {GROUPS} (ResShift's GroupNorm groups)")
        if self.swin_heads < 1 or self.swin_embed_dim % self.swin_heads:
            raise ConfigError(f"`denoiser.swin_embed_dim` {self.swin_embed_dim} does not split into "
                              f"{self.swin_heads} heads (num_head_channels {self.num_head_channels})")
        if self.image_size % 2 ** (len(self.channel_mult) - 1):
            raise ConfigError(f"`denoiser.image_size` {self.image_size} must be divisible by "
                              f"2**{len(self.channel_mult) - 1} (the UNet's downsamplings)")
        return self

    def to_dict(self) -> dict:
        return _lists(asdict(self))


@dataclass
class VQConfig:
    """LDM `VQModelTorch` (VQGAN) arguments: `embed_dim`, `n_embed` and its `ddconfig`, flattened.

    `quantize` snaps latents to the codebook in decode, as ResShift's `decode()` does by default.
    """

    kind: str = "ldm_vq"
    embed_dim: int = 3
    n_embed: int = 8192
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: tuple[int, ...] = (2, 2, 2)
    attn_resolutions: tuple[int, ...] = ()
    resolution: int = 256
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 3
    quantize: bool = True

    @property
    def factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def validate(self) -> VQConfig:
        if self.kind != "ldm_vq":
            raise ConfigError(f"`autoencoder.kind` must be 'ldm_vq' for the ResShift family, got {self.kind!r}")
        if len(self.num_res_blocks) != len(self.ch_mult):
            raise ConfigError(f"`autoencoder.num_res_blocks` needs one entry per level ({len(self.ch_mult)}), "
                              f"got {list(self.num_res_blocks)}")
        bad = sorted({self.ch * m for m in self.ch_mult if self.ch * m % GROUPS})
        if bad:
            raise ConfigError(f"`autoencoder` widths {bad} are not divisible by {GROUPS} "
                              "(the VQGAN's GroupNorm groups)")
        if self.in_channels != 3 or self.out_ch != 3:
            raise ConfigError("`autoencoder.in_channels` and `out_ch` must be 3 (RGB)")
        return self

    def to_dict(self) -> dict:
        return _lists(asdict(self))


@dataclass
class DiffusionConfig:
    """ResShift's `create_gaussian_diffusion` arguments (its `exponential` eta schedule).

    sqrt(eta_1) = min(min_noise_level / kappa, min_noise_level[, etas_start_cap]) and
    sqrt(eta_T) = etas_end; in between sqrt(eta) grows geometrically, warped by `power`.
    `etas_start_cap` is SinSR's extra bound sqrt(0.001) (None in ResShift); with the realsr
    numbers (0.04 / 2 = 0.02 < 0.0316) it changes nothing.
    """

    schedule_name: str = "exponential"
    power: float = 0.3
    steps: int = 15
    min_noise_level: float = 0.04
    etas_end: float = 0.99
    kappa: float = 2.0
    etas_start_cap: float | None = None
    predict_type: str = "xstart"
    timestep_respacing: int | None = None
    normalize_input: bool = True
    latent_flag: bool = True
    scale_factor: float = 1.0
    sf: int = 4

    def validate(self) -> DiffusionConfig:
        if self.schedule_name != "exponential":
            raise ConfigError(f"`diffusion.schedule_name` {self.schedule_name!r} is not supported "
                              "(expected 'exponential')")
        if self.predict_type not in PREDICT_TYPES:
            raise ConfigError(f"`diffusion.predict_type` {self.predict_type!r} is not supported "
                              f"(expected one of {PREDICT_TYPES})")
        if self.steps < 2:
            raise ConfigError(f"`diffusion.steps` must be >= 2, got {self.steps}")
        if self.timestep_respacing is not None and not 1 <= self.timestep_respacing <= self.steps:
            raise ConfigError(f"`diffusion.timestep_respacing` must be in 1..{self.steps}, "
                              f"got {self.timestep_respacing}")
        if not 0 < self.etas_end <= 1 or self.kappa <= 0 or self.power <= 0 or self.min_noise_level <= 0:
            raise ConfigError("`diffusion` needs 0 < etas_end <= 1 and kappa, power, min_noise_level > 0")
        if not self.scale_factor or not math.isfinite(self.scale_factor):
            raise ConfigError(f"`diffusion.scale_factor` must be a non-zero number, got {self.scale_factor}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ResShiftConfig:
    """The whole model: what `from_pretrained` rebuilds. `scale` is the SR factor (diffusion.sf)."""

    preset: str = "custom"
    denoiser: SwinUNetConfig = field(default_factory=SwinUNetConfig)
    autoencoder: VQConfig = field(default_factory=VQConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    @property
    def scale(self) -> int:
        return int(self.diffusion.sf)

    def validate(self) -> ResShiftConfig:
        self.denoiser.validate(), self.autoencoder.validate(), self.diffusion.validate()
        if self.diffusion.sf != self.autoencoder.factor:
            # The latent then has the LR image's size: the deploy graph's `noise` is [B, C, h, w].
            raise ConfigError(f"`diffusion.sf` {self.diffusion.sf} must equal the autoencoder's downsampling "
                              f"factor {self.autoencoder.factor} (the latent has the LR image's size)")
        embed = self.autoencoder.embed_dim
        if self.denoiser.in_channels != embed or self.denoiser.out_channels != embed:
            raise ConfigError(f"`denoiser.in_channels`/`out_channels` ({self.denoiser.in_channels}/"
                              f"{self.denoiser.out_channels}) must equal `autoencoder.embed_dim` {embed}")
        return self

    def to_dict(self) -> dict:
        return {"_class_name": CLASS_NAME, "preset": self.preset, "scale": self.scale,
                "denoiser": self.denoiser.to_dict(), "autoencoder": self.autoencoder.to_dict(),
                "diffusion": self.diffusion.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> ResShiftConfig:
        d = dict(d)
        d.pop("_class_name", None)
        scale = d.pop("scale", None)
        cfg = from_mapping(cls, d, source=source)
        try:
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        if scale is not None and scale != cfg.scale:
            raise ConfigError(f"{source}: `scale` {scale} disagrees with `diffusion.sf` {cfg.scale}")
        return cfg


def _lists(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# -- named configs ---------------------------------------------------------------------------------
# realsr x4 (ResShift's configs/realsr_swinunet_realesrgan256{,_journal}.yaml; SinSR's configs/SinSR.yaml):
# one network for all four; they differ in the schedule (and in their weights, which users bring).

def _realsr(preset: str, steps: int, min_noise_level: float, etas_start_cap: float | None = None) -> ResShiftConfig:
    return ResShiftConfig(preset=preset, diffusion=DiffusionConfig(
        steps=steps, min_noise_level=min_noise_level, etas_start_cap=etas_start_cap)).validate()


@register_preset(name="resshift-v1")
def resshift_v1() -> ResShiftConfig:
    """ResShift v1 (`resshift_realsrx4_s15_v1.pth`): T=15, min_noise_level 0.04."""
    return _realsr("resshift-v1", 15, 0.04)


@register_preset(name="resshift-v2")
def resshift_v2() -> ResShiftConfig:
    """ResShift v2 (`resshift_realsrx4_s15_v2.pth`): same network and schedule as v1."""
    return _realsr("resshift-v2", 15, 0.04)


@register_preset(name="resshift-v3")
def resshift_v3() -> ResShiftConfig:
    """ResShift v3, the journal version (`resshift_realsrx4_s4_v3.pth`): T=4, min_noise_level 0.2."""
    return _realsr("resshift-v3", 4, 0.2)


@register_preset(name="sinsr")
def sinsr() -> ResShiftConfig:
    """SinSR (`SinSR_v1.pth`/`v2.pth`): the one-step student of ResShift v1, sampled once at t = T-1."""
    return _realsr("sinsr", 15, 0.04, etas_start_cap=math.sqrt(0.001))  # SinSR's code adds this bound


@register_preset(name="resshift-tiny")
def resshift_tiny() -> ResShiftConfig:
    """A 2 M-parameter config of the same architecture for tests (every code path: shifted and
    clamped windows, both ResBlock skip kinds, the VQ mid attention)."""
    return ResShiftConfig(
        preset="resshift-tiny",
        denoiser=SwinUNetConfig(image_size=16, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=(1, 1, 1),
                                attention_resolutions=(16, 8, 4), num_head_channels=16, swin_depth=2,
                                swin_embed_dim=32, window_size=4, mlp_ratio=2.0),
        autoencoder=VQConfig(n_embed=64, ch=32, ch_mult=(1, 1, 2), num_res_blocks=(1, 1, 1), resolution=64),
        diffusion=DiffusionConfig(steps=4, min_noise_level=0.2),
    ).validate()


BUILTIN = ("resshift-v1", "resshift-v2", "resshift-v3", "sinsr", "resshift-tiny")


def builtin_config(name: str) -> ResShiftConfig:
    """A named config of this family (one-line ConfigError for another name)."""
    if name not in BUILTIN:
        raise ConfigError(f"`--config` {name!r} is neither a ResShift YAML file nor a built-in name "
                          f"({', '.join(BUILTIN)})")
    return replace(get_preset(name))
