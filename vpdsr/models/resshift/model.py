"""ResShiftSR: ResShift's Swin-UNet + VQGAN-f4 behind the vpdsr model API (`sr = model(lr, noise)`).

`lr` and `sr` are in [0, 1]; ResShift works in [-1, 1] and the conversion happens here. The
one-step graph is SinSR's sampler: y = E(bicubic_sf(lq)) * scale_factor, x_T = y + kappa sqrt(eta_T)
noise, x0 = f(x_T / sqrt(kappa^2 eta_T + 1), T-1, lq), sr = D(x0 / scale_factor) (codebook lookup,
clamp). `teacher_sample` is ResShift's T-step posterior sampler from the same x_T.

Stages for split export: `encoder` lr -> cond, `denoiser` (cond, noise) -> x0, `decoder` x0 -> sr.
With `cond_lq` the denoiser needs the LR image as well as y, so `cond` is concat(y, lq) along
channels ([B, C+3, h, w]); the denoiser splits it. The graphs stay lr -> . -> . -> sr with two
inputs to the denoiser.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.errors import InputError
from vpdsr.models.families import SRModel, register_family
from vpdsr.models.resshift.configs import CLASS_NAME, ResShiftConfig
from vpdsr.models.resshift.schedule import ResShiftDiffusion
from vpdsr.models.resshift.unet_swin import LQ_CHANNELS, SwinUNet
from vpdsr.models.resshift.vq_f4 import VQModelF4
from vpdsr.models.vpdsr import DecoderStage  # x0 -> model.decode(x0): the same for every family with stages


class ResShiftSR(SRModel):
    """One class for the teacher (ResShift, T steps) and the one-step student (SinSR)."""

    def __init__(self, config: ResShiftConfig):
        super().__init__()
        self.config = config.validate()
        self.unet = SwinUNet(config.denoiser)
        self.autoencoder = VQModelF4(config.autoencoder)
        self.diffusion = ResShiftDiffusion(config.diffusion)
        self.latent_channels = config.autoencoder.embed_dim
        self.cond_lq = config.denoiser.cond_lq
        self.condition_channels = self.latent_channels + (LQ_CHANNELS if self.cond_lq else 0)
        self.size_multiple = self.unet.size_multiple  # latent = LR size (sf equals the VQ factor)

    # -- sizes --------------------------------------------------------------------------------
    def check_size(self, lr: torch.Tensor) -> None:
        """One-line InputError unless the LR sides are multiples of `size_multiple` (eager mode only)."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        h, w = lr.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            raise InputError(f"LR size {h}x{w}: this ResShift model needs height and width that are multiples of {m} "
                             "(window_size x 2^(levels-1)); pad the image to that (ResShift reflect-pads) or tile it")

    def pad_lr(self, lr: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Reflect-pad right/bottom to the size rule, as ResShift's sampler does; returns (padded, (h, w))."""
        h, w = lr.shape[-2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"  # reflect needs pad < size
            lr = F.pad(lr, (0, pw, 0, ph), mode=mode)
        return lr, (h, w)

    # -- stages -------------------------------------------------------------------------------
    @staticmethod
    def to_lq(lr: torch.Tensor) -> torch.Tensor:
        return lr * 2.0 - 1.0

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """y = E(bicubic_sf(lq)) * scale_factor, the LR image's latent."""
        d = self.config.diffusion
        up = F.interpolate(self.to_lq(lr), scale_factor=d.sf, mode="bicubic", align_corners=False)
        return self.autoencoder.encode(up) * d.scale_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """sr in [0, 1] from a latent (codebook lookup unless `autoencoder.quantize` is off)."""
        out = self.autoencoder.decode(z / self.config.diffusion.scale_factor)
        return (out.clamp(-1.0, 1.0) + 1.0) * 0.5

    def denoise(self, x_t: torch.Tensor, y: torch.Tensor, t: int, lr: torch.Tensor | None = None) -> torch.Tensor:
        """x0_hat = f(x_t, y, t) at 0-based sampling step t; `lr` in [0, 1] is the condition when `cond_lq`."""
        d = self.diffusion
        lq = self.to_lq(lr) if self.cond_lq else None
        out = self.unet(d.scale_input(x_t, t), d.network_timestep(t, x_t.shape[0], x_t.device), lq)
        return d.to_xstart(out, y)

    def student_step(self, y: torch.Tensor, noise: torch.Tensor, lr: torch.Tensor | None = None) -> torch.Tensor:
        """One network call at t = T-1 from x_T = y + kappa sqrt(eta_T) noise (SinSR's one-step sampler)."""
        return self.denoise(self.diffusion.prior_sample(y, noise), y, self.diffusion.steps - 1, lr)

    # -- full graphs --------------------------------------------------------------------------
    def forward(self, lr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """sr = D(student_step(E(up(lr)), noise)), in [0, 1]. lr [B,3,h,w]; noise [B,C,h,w]."""
        self.check_size(lr)
        return self.decode(self.student_step(self.encode(lr), noise, lr))

    @torch.no_grad()
    def teacher_sample(self, lr: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None,
                       steps: int | None = None) -> torch.Tensor:
        """ResShift's T-step sampler from x_T = y + kappa sqrt(eta_T) noise; returns sr in [0, 1].

        Per-step noise comes from `generator` (the global RNG when None, so that seeding torch gives
        the reference sampler's draws). `steps` must be None or the config's (respacing is a config field).
        """
        if steps not in (None, self.diffusion.steps):
            raise InputError(f"`steps` {steps}: this model samples with {self.diffusion.steps} steps "
                             "(set `diffusion.timestep_respacing` in its config for fewer)")
        self.check_size(lr)
        return self.decode(self.teacher_sample_latent(self.encode(lr), noise, lr, generator))

    def teacher_sample_latent(self, y: torch.Tensor, noise: torch.Tensor, lr: torch.Tensor | None = None,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """T steps of x_{t-1} ~ q(x_{t-1} | x_t, x0_hat) in latent space, ending with x0_hat at t = 0."""
        x = self.diffusion.prior_sample(y, noise)
        for t in reversed(range(self.diffusion.steps)):
            mean, std = self.diffusion.posterior(x, self.denoise(x, y, t, lr), t)
            # drawn at t = 0 too (and multiplied by 0), as the reference does: same RNG stream
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + std * eps if t > 0 else mean
        return x

    def make_noise(self, lr: torch.Tensor, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(self.noise_shape(tuple(lr.shape)), generator=g).to(lr)

    # -- export helpers -----------------------------------------------------------------------
    def fix_size(self, lr_hw: tuple[int, int] | None) -> ResShiftSR:
        """Static tiles: precompute every shifted-window mask for LR size `lr_hw`, so a traced graph
        holds them as constants. None: masks are computed from each input's shape (dynamic H/W)."""
        self.unet.fix_size(lr_hw)
        return self

    def stage_modules(self) -> dict[str, nn.Module]:
        return {"encoder": EncoderStage(self), "denoiser": DenoiserStage(self), "decoder": DecoderStage(self)}


class EncoderStage(nn.Module):
    """`lr` -> `cond`: the latent y, with the LR image in [-1, 1] appended when `cond_lq`."""

    def __init__(self, model: ResShiftSR):
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        self.model.check_size(lr)
        y = self.model.encode(lr)
        return torch.cat([y, self.model.to_lq(lr)], dim=1) if self.model.cond_lq else y


class DenoiserStage(nn.Module):
    """(`cond`, `noise`) -> `x0` (one student step)."""

    def __init__(self, model: ResShiftSR):
        super().__init__()
        self.model = model

    def forward(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        c = self.model.latent_channels
        y = cond[:, :c]
        lr = (cond[:, c:] + 1.0) * 0.5 if self.model.cond_lq else None
        return self.model.student_step(y, noise, lr)


register_family(CLASS_NAME, ResShiftConfig, ResShiftSR)
