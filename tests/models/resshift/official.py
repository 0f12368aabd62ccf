"""Random weights in the official ResShift / VQGAN key layout, saved the way the official files are.

Used by the tests and by `make_golden.py` (which loads the same weights into the reference
implementation). Every value is drawn from one seeded CPU generator in key order, so the same seed
gives the same files on every machine. Scales keep activations O(1) through the random network
(ResShift's own init zeroes each ResBlock's last conv, which would hide half the network).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from vpdsr.models.resshift.convert import derived_buffers, official_shapes
from vpdsr.models.resshift.model import ResShiftSR


def _draw(key: str, shape: tuple[int, ...], g: torch.Generator, norms: set[str]) -> torch.Tensor:
    n = torch.randn(shape, generator=g)
    owner, leaf = key.rsplit(".", 1)
    if owner in norms:
        return 1.0 + 0.2 * n if leaf == "weight" else 0.2 * n  # GroupNorm affine
    if leaf == "relative_position_bias_table":
        return 0.5 * n
    if key == "quantize.embedding.weight":
        return n  # a codebook as spread as the latents, so the lookup matters
    if leaf == "bias":
        return 0.1 * n
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return n / math.sqrt(fan_in)


def random_official_states(model: ResShiftSR, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """{"unet": state, "autoencoder": state} with the official keys of `model`'s config, random values."""
    g = torch.Generator().manual_seed(seed)
    shapes = official_shapes(model)
    fixed = {**derived_buffers(model)}
    ours = model.state_dict()
    for k, v in ours.items():
        if k.endswith("relative_position_index"):
            fixed[k[len("unet."):]] = v.clone()
    states = {}
    for part, keys in shapes.items():
        norms = {n for n, m in getattr(model, part).named_modules() if isinstance(m, nn.GroupNorm)}
        states[part] = {k: fixed[k] if (part == "unet" and k in fixed) else _draw(k, shape, g, norms)
                        for k, shape in keys.items()}
    return states


def save_official(states: dict[str, dict[str, torch.Tensor]], directory: Path, wrap: bool = True) -> tuple[Path, Path]:
    """torch.save the two files (the UNet under `state_dict`, as some official files are)."""
    directory.mkdir(parents=True, exist_ok=True)
    unet, vq = directory / "unet.pth", directory / "autoencoder_vq_f4.pth"
    torch.save({"state_dict": states["unet"]} if wrap else states["unet"], unet)
    torch.save(states["autoencoder"], vq)
    return unet, vq


def make_inputs(h: int, w: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The LR image in [0, 1] and the latent noise of one comparison (the tests draw them the same way)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g), torch.randn(1, channels, h, w, generator=g)


def reference_params(cfg, sinsr: bool) -> dict:
    """Our config as the reference constructors' keyword arguments (ResShift's or SinSR's layout)."""
    u, a, d = cfg.denoiser, cfg.autoencoder, cfg.diffusion
    unet = dict(image_size=u.image_size, in_channels=u.in_channels + (3 if sinsr else 0),
                model_channels=u.model_channels, out_channels=u.out_channels, num_res_blocks=list(u.num_res_blocks),
                attention_resolutions=list(u.attention_resolutions), dropout=0, channel_mult=list(u.channel_mult),
                conv_resample=u.conv_resample, dims=2, use_fp16=False, num_heads=u.num_heads,
                num_head_channels=u.num_head_channels, use_scale_shift_norm=u.use_scale_shift_norm,
                resblock_updown=u.resblock_updown, swin_depth=u.swin_depth, swin_embed_dim=u.swin_embed_dim,
                window_size=u.window_size, mlp_ratio=u.mlp_ratio, patch_norm=u.patch_norm, cond_lq=u.cond_lq)
    if not sinsr:
        unet["lq_size"] = u.image_size
    blocks = list(a.num_res_blocks)
    vq = dict(embed_dim=a.embed_dim, n_embed=a.n_embed, ddconfig=dict(
        double_z=False, z_channels=a.z_channels, resolution=a.resolution, in_channels=3, out_ch=3, ch=a.ch,
        ch_mult=list(a.ch_mult), num_res_blocks=blocks[0] if sinsr else blocks,  # SinSR's Encoder takes an int
        attn_resolutions=list(a.attn_resolutions), dropout=0.0))
    diffusion = dict(normalize_input=d.normalize_input, schedule_name=d.schedule_name, sf=d.sf,
                     min_noise_level=d.min_noise_level, steps=d.steps, kappa=d.kappa, etas_end=d.etas_end,
                     schedule_kwargs={"power": d.power}, weighted_mse=False, predict_type=d.predict_type,
                     timestep_respacing=d.timestep_respacing, scale_factor=d.scale_factor, latent_flag=d.latent_flag)
    return {"unet": unet, "vq": vq, "diffusion": diffusion}


def write_resshift_yaml(cfg, path: Path, sinsr: bool = False, **unet_changes) -> Path:
    """`cfg` as a YAML in ResShift's (or SinSR's) own layout, with an OmegaConf reference in it."""
    p = reference_params(cfg, sinsr=sinsr)
    unet = {**p["unet"], "out_channels": "${autoencoder.params.embed_dim}", **unet_changes}
    path.write_text("\n".join([
        "model:", "  target: models.unet.UNetModelSwin", "  params: " + json.dumps(unet),
        "autoencoder:", "  target: ldm.models.autoencoder.VQModelTorch", "  use_fp16: true",
        "  params: " + json.dumps(p["vq"]),
        "diffusion:", "  target: models.script_util.create_gaussian_diffusion",
        "  params: " + json.dumps(p["diffusion"]),
        "trainer: {target: trainer.TrainerDifIR}"]))
    return path
