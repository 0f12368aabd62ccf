"""f=4 autoencoders: lossless space-to-depth (`tiny`) and learned diffusers VQ / KL (`base`).

Every autoencoder maps an image in [0,1], [B,3,H,W], to a latent [B,C,H/4,W/4] and back;
`decode` does not clamp (the pipeline clamps once at the end).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.errors import CheckpointError, ConfigError

FACTOR = 4


@dataclass
class AutoencoderConfig:
    """Attributes:
        kind: "space_to_depth" (parameter-free, 48 channels), "vq" (diffusers VQModel) or "kl" (AutoencoderKL).
        latent_channels: C of the learned kinds (ignored for space_to_depth, which always has 48).
        block_out_channels: widths of the learned encoder/decoder (3 levels = f4).
        layers_per_block: resnet blocks per level of the learned kinds.
        num_vq_embeddings: codebook size of "vq".
        pretrained: a diffusers VQModel/AutoencoderKL directory to initialise from (e.g. the `vqvae/`
            folder of the LDM x4 upscaler); read once at build time, then saved inside our checkpoint.
        quantize_on_decode: "vq" only: snap latents to the codebook before decoding (as the VQGAN does).
    """

    kind: str = "space_to_depth"
    latent_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512)
    layers_per_block: int = 2
    num_vq_embeddings: int = 8192
    pretrained: str | None = None
    quantize_on_decode: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return d


class SpaceToDepth(nn.Module):
    """Lossless f=4 'autoencoder': each 4x4 pixel block becomes 48 channels, scaled to [-1, 1]."""

    latent_channels = 3 * FACTOR * FACTOR

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x * 2.0 - 1.0, FACTOR)

    def encode_upsampled(self, lr: torch.Tensor, phases) -> torch.Tensor:
        """`encode` of the bicubic x4 of `lr`, straight from a vpdsr.models.upsample.BicubicPhases: its phases
        are this latent's channels, so 2x - 1 goes into the convolution and no shuffle round trip is left."""
        return phases(lr, gain=2.0, offset=-1.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (F.pixel_shuffle(z, FACTOR) + 1.0) * 0.5


class DiffusersAutoencoder(nn.Module):
    """A diffusers VQModel or AutoencoderKL with f=4, on images in [0,1] (the models work in [-1,1])."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.kind = cfg.kind
        self.quantize_on_decode = cfg.quantize_on_decode
        self.model = _build_diffusers(cfg)
        self.latent_channels = self.model.config.latent_channels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2.0 - 1.0
        if self.kind == "vq":
            return self.model.encode(x).latents  # pre-quantisation latents, as ResShift uses them
        return self.model.encode(x).latent_dist.mode()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "vq":
            out = self.model.decode(z, force_not_quantize=not self.quantize_on_decode).sample
        else:
            out = self.model.decode(z).sample
        return (out + 1.0) * 0.5


def build_autoencoder(cfg: AutoencoderConfig) -> nn.Module:
    if cfg.kind == "space_to_depth":
        return SpaceToDepth()
    if cfg.kind in ("vq", "kl"):
        return DiffusersAutoencoder(cfg)
    raise ConfigError(f"`autoencoder.kind` must be space_to_depth, vq or kl, got {cfg.kind!r}")


def latent_channels(cfg: AutoencoderConfig) -> int:
    return SpaceToDepth.latent_channels if cfg.kind == "space_to_depth" else cfg.latent_channels


def _build_diffusers(cfg: AutoencoderConfig) -> nn.Module:
    from diffusers import AutoencoderKL, VQModel

    cls = VQModel if cfg.kind == "vq" else AutoencoderKL
    if cfg.pretrained:
        model = _load_pretrained(cls, Path(cfg.pretrained), cfg)
    elif "diffusers_config" in cfg.extra:
        # A saved vpdsr checkpoint: rebuild exactly the architecture it was made with.
        model = cls.from_config(cfg.extra["diffusers_config"])
    else:
        model = cls(**_fresh_kwargs(cfg))
    cfg.extra["diffusers_config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.config.items()
                                     if not k.startswith("_")}
    return model


def _fresh_kwargs(cfg: AutoencoderConfig) -> dict:
    n = len(cfg.block_out_channels)
    if n != 3:
        raise ConfigError("`autoencoder.block_out_channels` needs 3 levels for f=4, "
                          f"got {list(cfg.block_out_channels)}")
    kwargs = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=min(32, min(cfg.block_out_channels)),
    )
    if cfg.kind == "vq":
        kwargs.update(num_vq_embeddings=cfg.num_vq_embeddings, vq_embed_dim=cfg.latent_channels)
    return kwargs


def _load_pretrained(cls, path: Path, cfg: AutoencoderConfig) -> nn.Module:
    """Load a diffusers autoencoder directory (config.json + safetensors only, never pickles)."""
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: expected a diffusers {cls.__name__} directory with config.json")
    if not any(path.glob("*.safetensors")):
        raise CheckpointError(f"{path}: no *.safetensors weights "
                              "(pickled .bin files are not loaded; convert them first)")
    model = cls.from_pretrained(str(path), use_safetensors=True)
    down = 2 ** (len(model.config.block_out_channels) - 1)
    if down != FACTOR:
        raise CheckpointError(f"{path}: autoencoder downsamples by {down}, expected f={FACTOR}")
    cfg.latent_channels = model.config.latent_channels
    cfg.block_out_channels = tuple(model.config.block_out_channels)
    cfg.layers_per_block = model.config.layers_per_block
    if cfg.kind == "vq":
        cfg.num_vq_embeddings = model.config.num_vq_embeddings
    return model
