"""The VPD-SR distillation terms, a patch discriminator, and the teacher's ResShift loss.

The paper's exact formulas are not available; these are our readings (ARCHITECTURE.md), each
weight and choice a field of `LossConfig`:

- distillation: student x0 vs the teacher's T-step output from the same x_T. Ours: in latent
  space (for the lossless space_to_depth latent that is pixels scaled by 2), L2 by default.
- ESS: 1 - cosine similarity of CLIP image embeddings of SR and HR; frozen CLIP, CLIP's own
  preprocessing (vpdsr.metrics.clip_weights.clip_preprocess), gradients flow to SR only.
- HFP: L1 between the high-frequency Haar wavelet bands (LH, HL, HH) of SR and HR, over
  `hfp_levels` levels (each level decomposes the previous level's LL band). Ours: Haar rather
  than an FFT high-pass, because it is local (crops and tiles behave alike) and exactly zero on
  constant shifts: a smooth brightness change barely moves it. `hfp_kind: energy` compares the
  local energy of each band instead (mean |band| over `hfp_pool` x `hfp_pool` windows): an
  aligned L1 is minimised by the conditional median, which for uncertain detail is 0 (blur),
  while matching the energy asks for as much detail as HR has without asking where exactly.
- adversarial: a small patch discriminator on pixels (spectral norm), hinge (default),
  non-saturating or relativistic-average (ESRGAN's RaGAN) loss, trained alternately with the
  student; optionally feature matching (L1 between the discriminator's features of SR and HR).
- reconstruction: L1 (or Charbonnier) vs HR in pixels (ours; keeps PSNR anchored).
- block grid: a penalty on the part of SR - HR that repeats square after square with the period of
  the f=4 latent's blocks (ours; the artifact an adversarial term finds first with space_to_depth).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.errors import MissingWeightsError

# ----------------------------------------------------------------------------- simple terms

def pixel_loss(a: torch.Tensor, b: torch.Tensor, kind: str = "l1", eps: float = 1e-3) -> torch.Tensor:
    """Mean L1, L2 or Charbonnier distance."""
    d = a - b
    if kind == "l1":
        return d.abs().mean()
    if kind == "l2":
        return d.pow(2).mean()
    if kind == "charbonnier":
        return torch.sqrt(d * d + eps * eps).mean()
    raise ValueError(f"unknown pixel loss {kind!r}")


def resshift_loss(denoise, sched, x0: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                  kind: str = "l2") -> torch.Tensor:
    """ResShift's training loss: t uniform over the T steps, x_t ~ q(x_t | x0, y), predict x0.

    Args:
        denoise: `fn(x_t, y, t) -> x0_hat` (e.g. a VPDSR's `denoise`).
        sched: the ResShiftSchedule.
        generator: draws t and the noise (CPU), so a resumed run repeats them exactly.
    """
    b = x0.shape[0]
    t = torch.randint(sched.steps, (b,), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0)
    x_t = sched.q_sample(x0, y, t, eps)
    return pixel_loss(denoise(x_t, y, t), x0, kind)


# ----------------------------------------------------------------------------- HFP

def haar_bands(x: torch.Tensor, levels: int = 1) -> list[torch.Tensor]:
    """The LH, HL, HH bands of an orthonormal Haar transform, for `levels` levels, as a list.

    Odd sizes are cropped to even at each level.
    """
    bands = []
    ll = x
    for _ in range(levels):
        h, w = ll.shape[-2] // 2 * 2, ll.shape[-1] // 2 * 2
        if h == 0 or w == 0:
            break
        ll = ll[..., :h, :w]
        a, b = ll[..., 0::2, 0::2], ll[..., 0::2, 1::2]
        c, d = ll[..., 1::2, 0::2], ll[..., 1::2, 1::2]
        bands += [(a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2]
        ll = (a + b + c + d) / 2
    return bands


def hfp_loss(sr: torch.Tensor, hr: torch.Tensor, levels: int = 1, kind: str = "l1", pool: int = 4) -> torch.Tensor:
    """High-frequency perception: mean L1 between Haar high-frequency bands of SR and HR.

    Args:
        kind: l1 (band against band) or energy (local mean |band| over `pool` x `pool` windows).
    """
    pairs = zip(haar_bands(sr, levels), haar_bands(hr, levels))
    if kind == "l1":
        terms = [(a - b).abs().mean() for a, b in pairs]
    elif kind == "energy":
        terms = [(_energy(a, pool) - _energy(b, pool)).abs().mean() for a, b in pairs]
    else:
        raise ValueError(f"unknown HFP kind {kind!r}")
    return torch.stack(terms).mean()


def _energy(band: torch.Tensor, pool: int) -> torch.Tensor:
    k = max(1, min(pool, band.shape[-2], band.shape[-1]))
    return F.avg_pool2d(band.abs(), k, stride=k)


# ----------------------------------------------------------------------------- block grid

def grid_loss(sr: torch.Tensor, hr: torch.Tensor, block: int = 4, pool: int = 8) -> torch.Tensor:
    """Penalty on the locally periodic part of SR - HR with the period of the latent's blocks (ours).

    With the lossless space_to_depth latent every latent pixel decodes to one `block` x `block`
    square, so a student can add "detail" as a pattern repeated in every square (measured here: an
    adversarial term alone drew a 4-pixel mesh over every held-out photo within 150 steps, which fools
    PIQE). Here the error is split into the block's pixel positions (phases), the mean over phases is
    removed (what is left varies inside the square), and that is averaged over `pool` x `pool`
    neighbouring squares: texture that merely differs from HR averages out, a pattern repeated
    square after square does not. Mean L1 of the result.
    """
    d = F.pixel_unshuffle(sr - hr, block)  # [B, C * block^2, H / block, W / block]
    b, _, h, w = d.shape
    d = d.view(b, -1, block * block, h, w)
    d = (d - d.mean(dim=2, keepdim=True)).flatten(1, 2)
    k = max(1, min(pool, h, w))
    return F.avg_pool2d(d, k, stride=k).abs().mean()


# ----------------------------------------------------------------------------- ESS

class ESSLoss(nn.Module):
    """Explicit semantic supervision: 1 - cos(CLIP(SR), CLIP(HR)), CLIP frozen (never trained, never saved)."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.clip = clip_model
        self.clip.requires_grad_(False).eval()

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        from vpdsr.metrics.clip_weights import clip_image_embedding

        with torch.no_grad():
            target = clip_image_embedding(self.clip, hr)
        return (1.0 - (clip_image_embedding(self.clip, sr) * target).sum(-1)).mean()


def load_ess(clip_weights: str | None, on_missing: str, device) -> tuple[ESSLoss | None, str | None]:
    """(ESS module, None), or (None, reason) when weights are missing and `on_missing` is skip.

    Raises:
        MissingWeightsError: no weights and `on_missing` is error (one line naming where it looked).
    """
    from vpdsr.metrics.clip_weights import find_clip_weights, load_clip

    try:
        path = find_clip_weights(clip_weights)
    except MissingWeightsError as e:
        if on_missing == "skip":
            return None, " ".join(str(e).split())
        raise
    return ESSLoss(load_clip(path, device)), None


# ----------------------------------------------------------------------------- adversarial

class PatchDiscriminator(nn.Module):
    """A PatchGAN-style critic on pixels: strided 4x4 convs, LeakyReLU, one logit per patch."""

    def __init__(self, channels: int = 32, layers: int = 3, spectral_norm: bool = True):
        super().__init__()
        wrap = nn.utils.spectral_norm if spectral_norm else (lambda m: m)
        mods: list[nn.Module] = []
        c_in, c = 3, channels
        for _ in range(layers):
            mods += [wrap(nn.Conv2d(c_in, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True)]
            c_in, c = c, min(c * 2, channels * 8)
        mods += [wrap(nn.Conv2d(c_in, 1, 3, padding=1))]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(the activations after each LeakyReLU, the logits): one pass, for feature matching."""
        feats, h = [], x * 2.0 - 1.0
        for m in self.net:
            h = m(h)
            if isinstance(m, nn.LeakyReLU):
                feats.append(h)
        return feats, h


def feature_matching_loss(feats_fake: list[torch.Tensor], feats_real: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 distance between discriminator features (real ones are targets)."""
    return torch.stack([(f - r.detach()).abs().mean() for f, r in zip(feats_fake, feats_real)]).mean()


def generator_adv_loss(logits_fake: torch.Tensor, kind: str = "hinge",
                       logits_real: torch.Tensor | None = None) -> torch.Tensor:
    """The student's adversarial loss; `relativistic` needs the (detached) logits of real images too."""
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "relativistic":
        if logits_real is None:
            raise ValueError("the relativistic loss needs the logits of real images")
        real = logits_real.detach()
        return (F.softplus(real - logits_fake.mean()).mean() + F.softplus(-(logits_fake - real.mean())).mean()) / 2
    return F.softplus(-logits_fake).mean()


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()
    if kind == "relativistic":  # real should look more real than the average fake, and the reverse
        return (F.softplus(-(logits_real - logits_fake.mean())).mean()
                + F.softplus(logits_fake - logits_real.mean()).mean()) / 2
    return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()


def discriminator_step(disc: nn.Module, optimizer: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor,
                       kind: str = "hinge", backward=None) -> torch.Tensor:
    """One alternating update of the discriminator; `fake` is detached, so only `disc` changes.

    Args:
        backward: how to back-propagate (accelerate's `accelerator.backward`); default `loss.backward()`.
    """
    disc.requires_grad_(True)
    loss = discriminator_loss(disc(real.detach()), disc(fake.detach()), kind)
    (backward or (lambda value: value.backward()))(loss)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()
