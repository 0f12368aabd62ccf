"""The VPD-SR model: autoencoder + residual denoiser + ResShift schedule.

Deploy graph (ARCHITECTURE.md): inputs `lr` [B,3,h,w] in [0,1] and `noise` [B,C,h,w] (explicit,
so every backend sees the same noise), output `sr` [B,3,4h,4w] in [0,1], in three stages:
`encode` (bicubic x4 + E) -> `student_step` (one denoiser call) -> `decode` (D, clamp).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.models.autoencoder import FACTOR, SpaceToDepth, build_autoencoder, latent_channels
from vpdsr.models.config import ModelConfig
from vpdsr.models.denoiser import ResidualDenoiser
from vpdsr.models.families import SRModel, register_family
from vpdsr.models.schedule import ResShiftSchedule
from vpdsr.models.upsample import BicubicPhases, bicubic_upsample


class VPDSR(SRModel):
    """One model class for teacher and student: the same network, sampled with T steps or one."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.autoencoder = build_autoencoder(config.autoencoder)
        self.latent_channels = latent_channels(config.autoencoder)
        self.denoiser = ResidualDenoiser(config.denoiser, self.latent_channels)
        self.schedule = ResShiftSchedule(config.schedule)
        self.size_multiple = 1  # the denoiser pads internally, so any LR size works
        # export graphs compute the bicubic x4 as a fixed convolution (vpdsr.models.upsample: ONNX Resize was
        # half of ort-int8's time on tiny); training and torch inference keep F.interpolate, so the shipped
        # weights reproduce bit for bit
        self.upsample = BicubicPhases(config.scale)
        self.deploy_form = False

    # -- stages -------------------------------------------------------------------------------
    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """y = E(bicubic_x4(lr)); the latent has the LR image's size."""
        if self.deploy_form:
            if isinstance(self.autoencoder, SpaceToDepth) and self.config.scale == FACTOR:
                return self.autoencoder.encode_upsampled(lr, self.upsample)
            return self.autoencoder.encode(bicubic_upsample(lr, self.upsample))
        up = F.interpolate(lr, scale_factor=self.config.scale, mode="bicubic", align_corners=False)
        return self.autoencoder.encode(up)

    def set_deploy_form(self, on: bool) -> None:
        """Export graphs on (the bicubic x4 as a convolution) or off (F.interpolate, as trained)."""
        self.deploy_form = bool(on)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(z).clamp(0.0, 1.0)

    def denoise(self, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0_hat = f(x_t, y, t) with 0-based steps t [B]."""
        return self.denoiser(x_t, y, t, self.schedule.input_scale(t, x_t))

    def student_step(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The one-step student in latent space: x0_hat = f(x_T, y, T) with x_T = y + kappa sqrt(eta_T) noise."""
        t = torch.full((y.shape[0],), self.schedule.steps - 1, dtype=torch.long, device=y.device)
        return self.denoise(self.schedule.prior_sample(y, noise), y, t)

    # -- full graphs --------------------------------------------------------------------------
    def forward(self, lr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The fused deploy graph: sr = D(student_step(E(up(lr)), noise)), clamped to [0, 1]."""
        return self.decode(self.student_step(self.encode(lr), noise))

    @torch.no_grad()
    def teacher_sample(self, lr: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None,
                       steps: int | None = None) -> torch.Tensor:
        """T-step posterior sampling from the same x_T as the student; returns sr in [0,1]."""
        return self.decode(self.teacher_sample_latent(self.encode(lr), noise, generator))

    def teacher_sample_latent(self, y: torch.Tensor, noise: torch.Tensor,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """T-step sampling in latent space (ResShift's posterior q(x_{t-1} | x_t, x0_hat))."""
        x = self.schedule.prior_sample(y, noise)
        for t in reversed(range(self.schedule.steps)):
            tt = torch.full((y.shape[0],), t, dtype=torch.long, device=y.device)
            x0 = self.denoise(x, y, tt)
            mean, std = self.schedule.posterior(x, x0, t)
            if std > 0:
                eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = mean + std * eps
            else:
                x = mean
        return x

    def make_noise(self, lr: torch.Tensor, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(self.noise_shape(tuple(lr.shape)), generator=g).to(lr)

    def stage_modules(self) -> dict[str, nn.Module]:
        return {"encoder": EncoderStage(self), "denoiser": DenoiserStage(self), "decoder": DecoderStage(self)}


class EncoderStage(nn.Module):
    """`lr` -> `y` (exportable alone)."""

    def __init__(self, model: VPDSR):
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.model.encode(lr)


class DenoiserStage(nn.Module):
    """(`y`, `noise`) -> `x0` (one student step)."""

    def __init__(self, model: VPDSR):
        super().__init__()
        self.model = model

    def forward(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.model.student_step(y, noise)


class DecoderStage(nn.Module):
    """`x0` -> `sr` in [0, 1]."""

    def __init__(self, model: VPDSR):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


register_family("VPDSR", ModelConfig, VPDSR)
