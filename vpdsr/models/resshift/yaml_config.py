"""Read a config in ResShift's own YAML layout (`model.params`, `autoencoder.params`, `diffusion.params`).

Accepted: ResShift's `configs/realsr_swinunet_realesrgan256*.yaml` and SinSR's `configs/SinSR.yaml`
(and any config of the same targets). Sections other than those three (trainer, data, degradation,
train) are ignored; inside the three, parameters that only matter for training (dropout, use_fp16,
weighted_mse, ckpt paths) are ignored and anything this port does not implement is refused in one
line. `${a.b.c}` references (OmegaConf interpolation, e.g. `out_channels: ${autoencoder.params.embed_dim}`)
are resolved.

SinSR's `UNetModelSwin` differs in one argument: its `in_channels` counts the LR image too (6 for
the realsr model) and it has no `lq_size`. A `model.params` without `lq_size` whose `in_channels`
equals `out_channels + 3` under `cond_lq` is read that way.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from vpdsr.errors import ConfigError, InputError
from vpdsr.models.resshift.configs import DiffusionConfig, ResShiftConfig, SwinUNetConfig, VQConfig
from vpdsr.models.resshift.unet_swin import LQ_CHANNELS

TARGETS = {"model": "UNetModelSwin", "autoencoder": "VQModelTorch", "diffusion": "create_gaussian_diffusion"}
UNET_IGNORED = {"dropout", "use_fp16"}
VQ_IGNORED = {"dropout", "padding_mode", "remap", "sane_index_shape", "double_z", "resamp_with_conv"}
DIFFUSION_IGNORED = {"weighted_mse"}
SINSR_ETAS_START_CAP = math.sqrt(0.001)
_REF = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")
# The reference constructors' defaults (not the realsr values): a YAML that omits a field means these.
UNET_DEFAULTS = {"channel_mult": (1, 2, 4, 8), "conv_resample": True, "num_heads": 1, "num_head_channels": -1,
                 "use_scale_shift_norm": False, "resblock_updown": False, "swin_depth": 2, "swin_embed_dim": 96,
                 "window_size": 8, "mlp_ratio": 2.0, "patch_norm": False, "cond_lq": True}
UNET_REQUIRED = ("image_size", "in_channels", "model_channels", "out_channels", "num_res_blocks",
                 "attention_resolutions")
VQ_DEFAULTS = {"ch_mult": (1, 2, 4, 8), "in_channels": 3, "out_ch": 3}
VQ_REQUIRED = ("embed_dim", "n_embed", "ch", "num_res_blocks", "attn_resolutions", "resolution", "z_channels")
DIFFUSION_DEFAULTS = {"sf": 4, "min_noise_level": 0.01, "steps": 1000, "kappa": 1.0, "etas_end": 0.99,
                      "predict_type": "xstart", "timestep_respacing": None, "latent_flag": True}
DIFFUSION_REQUIRED = ("normalize_input", "schedule_name", "power", "scale_factor")


def load_resshift_yaml(path: str | Path) -> ResShiftConfig:
    """Parse a ResShift/SinSR YAML file into a ResShiftConfig (one-line errors naming the field)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected a ResShift YAML config or a built-in name)")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())[:160]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with `model`, `autoencoder` and `diffusion` sections")
    return config_from_resshift(doc, str(path), preset=path.stem)


def config_from_resshift(doc: dict, source: str = "config", preset: str = "custom") -> ResShiftConfig:
    """The ResShiftConfig of a parsed ResShift-layout document."""
    params = {}
    for section, target in TARGETS.items():
        sec = doc.get(section)
        if not isinstance(sec, dict) or not isinstance(sec.get("params"), dict):
            raise ConfigError(f"{source}: missing `{section}.params` (ResShift's layout has model, autoencoder "
                              "and diffusion sections, each with `target` and `params`)")
        if not str(sec.get("target", "")).endswith(target):
            raise ConfigError(f"{source}: `{section}.target` is {sec.get('target')!r}; this converter reads {target}")
        params[section] = _resolve(sec["params"], doc, source)
    try:
        sinsr = is_sinsr_layout(params["model"])
        cfg = ResShiftConfig(preset=preset, denoiser=_unet(params["model"], sinsr),
                             autoencoder=_vq(params["autoencoder"]),
                             diffusion=_diffusion(params["diffusion"]))
        if sinsr:  # SinSR's code bounds sqrt(eta_1) by sqrt(0.001) as well (not a YAML field there)
            cfg.diffusion.etas_start_cap = SINSR_ETAS_START_CAP
        return cfg.validate()
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def is_sinsr_layout(p: dict) -> bool:
    """SinSR's UNetModelSwin: no `lq_size` argument, and `in_channels` includes the LR image."""
    return (bool(p.get("cond_lq", True)) and "lq_size" not in p
            and p.get("in_channels") == p.get("out_channels", 3) + LQ_CHANNELS)


def _unet(p: dict, sinsr: bool) -> SwinUNetConfig:
    p = dict(p)
    if p.pop("dims", 2) != 2:
        raise ConfigError("`model.params.dims` must be 2")
    if p.pop("cond_mask", False):
        raise ConfigError("`model.params.cond_mask` (inpainting) is not supported")
    lq_size = p.pop("lq_size", 256)
    if sinsr:
        p["in_channels"] -= LQ_CHANNELS
    elif p.get("cond_lq", True) and lq_size != p.get("image_size"):
        raise ConfigError(f"`model.params.lq_size` {lq_size} differs from image_size {p.get('image_size')}: "
                          "ResShift's LR feature extractor is not supported")
    return _fields(SwinUNetConfig, {**UNET_DEFAULTS, **p}, UNET_IGNORED, "model.params", UNET_REQUIRED)


def _vq(p: dict) -> VQConfig:
    p = dict(p)
    dd = p.pop("ddconfig", None)
    if not isinstance(dd, dict):
        raise ConfigError("`autoencoder.params.ddconfig` is missing")
    if dd.get("double_z", False):
        raise ConfigError("`autoencoder.params.ddconfig.double_z` must be false for a VQ model")
    if not dd.get("resamp_with_conv", True):
        raise ConfigError("`autoencoder.params.ddconfig.resamp_with_conv: false` is not supported")
    for key in ("remap", "sane_index_shape"):
        if p.get(key):
            raise ConfigError(f"`autoencoder.params.{key}` is not supported")
    merged = {**VQ_DEFAULTS, **{k: v for k, v in p.items() if k not in VQ_IGNORED}, **dd}
    return _fields(VQConfig, merged, VQ_IGNORED, "autoencoder.params", VQ_REQUIRED)


def _diffusion(p: dict) -> DiffusionConfig:
    p = dict(p)
    kwargs = p.pop("schedule_kwargs", None) or {}
    if set(kwargs) - {"power"}:
        raise ConfigError(f"`diffusion.params.schedule_kwargs` {sorted(kwargs)}: only `power` is supported")
    if "power" in kwargs:
        p["power"] = kwargs["power"]
    return _fields(DiffusionConfig, {**DIFFUSION_DEFAULTS, **p}, DIFFUSION_IGNORED, "diffusion.params",
                   DIFFUSION_REQUIRED)


def _fields(cls, p: dict, ignored: set[str], where: str, required: tuple[str, ...]):
    missing = [k for k in required if p.get(k) is None]
    if missing:
        raise ConfigError(f"`{where}` lacks {missing} (the reference has no default for them)")
    names = {f for f in cls.__dataclass_fields__ if f != "kind"}
    unknown = sorted(set(p) - names - ignored)
    if unknown:
        raise ConfigError(f"`{where}` has field(s) this port does not implement: {unknown}")
    kept = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items() if k in names}
    if isinstance(kept.get("num_res_blocks"), int):  # an int in the reference: the same at every level
        levels = kept.get("channel_mult", kept.get("ch_mult"))
        kept["num_res_blocks"] = (kept["num_res_blocks"],) * len(levels)
    try:
        return cls(**kept)
    except TypeError as e:
        raise ConfigError(f"`{where}`: {e}") from None


def _resolve(value, doc: dict, source: str, depth: int = 0):
    """Replace whole-string `${a.b.c}` references by the referenced value."""
    if depth > 8:
        raise ConfigError(f"{source}: `${{...}}` references nest too deep")
    if isinstance(value, dict):
        return {k: _resolve(v, doc, source, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, doc, source, depth) for v in value]
    m = _REF.match(value) if isinstance(value, str) else None
    if not m:
        return value
    node = doc
    for part in m.group(1).split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{source}: reference {value} does not resolve")
        node = node[part]
    return _resolve(node, doc, source, depth + 1)
