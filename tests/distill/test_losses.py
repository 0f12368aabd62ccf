"""Properties of the VPD-SR loss terms."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vpdsr.distill.losses import (
    ESSLoss,
    PatchDiscriminator,
    discriminator_loss,
    discriminator_step,
    feature_matching_loss,
    generator_adv_loss,
    haar_bands,
    hfp_loss,
    pixel_loss,
)


def _photo(seed: int = 0, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(2, 3, 8, 8, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0.1, 0.9)


def test_hfp_zero_for_identical_images():
    x = _photo()
    assert hfp_loss(x, x.clone(), levels=2).item() == 0.0


def test_hfp_grows_with_high_frequency_noise():
    x = _photo()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    small, large = hfp_loss(x + 0.01 * noise, x), hfp_loss(x + 0.05 * noise, x)
    assert 0 < small < large
    assert large > 3 * small


def test_hfp_barely_moves_under_smooth_brightness_shift():
    x = _photo()
    h = x.shape[-1]
    ramp = torch.linspace(0, 0.1, h).view(1, 1, 1, h)  # smooth brightness change of up to 0.1
    shifted = x + 0.05 + ramp
    noisy = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    # The brightness shift changes pixels by 0.05-0.15, far more than the noise (~0.01) ...
    assert pixel_loss(shifted, x) > 5 * pixel_loss(noisy, x)
    # ... yet moves HFP far less than the noise does.
    assert hfp_loss(shifted, x) < 0.1 * hfp_loss(noisy, x)


def test_haar_bands_are_orthonormal():
    x = _photo()
    bands = haar_bands(x, levels=1)
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    ll = (a + b + c + d) / 2
    energy = sum(t.pow(2).sum() for t in bands) + ll.pow(2).sum()
    torch.testing.assert_close(energy, x.pow(2).sum(), rtol=1e-5, atol=1e-4)


def test_ess_zero_for_identical_images_and_uses_clip_preprocessing(clip_weights):
    from vpdsr.metrics.clip_weights import CLIP_MEAN, CLIP_STD, load_clip

    clip = load_clip(clip_weights)  # the real loader, on a tiny CLIP in OpenAI's TorchScript format
    ess = ESSLoss(clip)
    hr, other = _photo(0, 96), _photo(5, 96)
    assert abs(ess(hr, hr.clone()).item()) < 1e-5
    d = ess(other, hr)
    assert d.item() > 1e-4

    # Reference: CLIP's preprocessing written out by hand (bicubic antialiased resize of the short
    # side to the model's resolution, center crop, OpenAI mean/std), then cosine distance.
    res = clip.visual.input_resolution
    def embed(x, normalise=True):
        x = F.interpolate(x, size=(res, res), mode="bicubic", antialias=True, align_corners=False)
        if normalise:
            x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return F.normalize(clip.encode_image(x, pos_embedding=False).float(), dim=-1)
    expected = (1 - (embed(other) * embed(hr)).sum(-1)).mean()
    unnormalised = (1 - (embed(other, False) * embed(hr, False)).sum(-1)).mean()
    torch.testing.assert_close(d, expected, rtol=1e-3, atol=1e-5)
    assert abs(unnormalised.item() - d.item()) > 1e-3 * max(d.item(), 1e-6)


def test_ess_gradients_reach_sr_but_not_clip(clip_weights):
    from vpdsr.metrics.clip_weights import load_clip

    ess = ESSLoss(load_clip(clip_weights))
    sr = _photo(1, 64).requires_grad_(True)
    ess(sr, _photo(0, 64)).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in ess.clip.parameters())


def test_discriminator_step_changes_only_the_discriminator():
    torch.manual_seed(0)
    student = torch.nn.Conv2d(3, 3, 3, padding=1)
    disc = PatchDiscriminator(channels=8, layers=2)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    hr = _photo()
    fake = student(hr)  # part of the student's graph: the step must not push gradients into it
    before_s = {k: v.clone() for k, v in student.state_dict().items()}
    before_d = {k: v.clone() for k, v in disc.state_dict().items()}
    loss = discriminator_step(disc, opt, hr, fake, "hinge")
    assert torch.isfinite(loss)
    assert all(torch.equal(before_s[k], v) for k, v in student.state_dict().items())
    assert all(p.grad is None for p in student.parameters())
    assert any(not torch.equal(before_d[k], v) for k, v in disc.state_dict().items())


def test_energy_hfp_ignores_where_detail_sits_but_not_how_much():
    x = _photo()
    g = torch.Generator().manual_seed(3)
    texture = 0.05 * torch.randn(x.shape, generator=g)
    hr = x + texture
    moved = x + texture.roll(1, dims=-1)  # the same detail, one pixel to the side
    # aligned L1 prefers losing the detail altogether (blur) to detail one pixel off ...
    assert hfp_loss(moved, hr, 1, "l1") > hfp_loss(x, hr, 1, "l1")
    # ... the energy form prefers the misplaced detail, by far
    assert hfp_loss(moved, hr, 1, "energy", pool=4) < 0.5 * hfp_loss(x, hr, 1, "energy", pool=4)
    assert hfp_loss(x, hr, 2, "energy", pool=4) > 0


def test_relativistic_losses_compare_real_with_the_average_fake():
    real, fake = torch.full((4, 1, 3, 3), 2.0), torch.full((4, 1, 3, 3), -2.0)
    # a discriminator that already tells them apart has a small loss, the student a large one
    d_good, g_bad = discriminator_loss(real, fake, "relativistic"), generator_adv_loss(fake, "relativistic", real)
    assert d_good < 0.05 and g_bad > 3.0
    torch.testing.assert_close(d_good, F.softplus(torch.tensor(-4.0)))  # softplus(-(2 - (-2)))
    # swapping the roles swaps the losses
    torch.testing.assert_close(generator_adv_loss(real, "relativistic", fake), d_good)
    # gradients reach the fake logits only
    f = fake.clone().requires_grad_(True)
    r = real.clone().requires_grad_(True)
    generator_adv_loss(f, "relativistic", r).backward()
    assert f.grad.abs().sum() > 0 and r.grad is None


def test_feature_matching_uses_one_pass_and_detached_real_features():
    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=8, layers=3, spectral_norm=False)
    x = _photo()
    feats, logits = disc.features(x)
    assert len(feats) == 3
    torch.testing.assert_close(logits, disc(x))
    sr = _photo(4).requires_grad_(True)
    feats_fake, _ = disc.features(sr)
    loss = feature_matching_loss(feats_fake, feats)
    assert loss > 0
    loss.backward()
    assert sr.grad.abs().sum() > 0
    assert feature_matching_loss(feats, [f.clone() for f in feats]).item() == 0.0


def test_grid_penalty_sees_a_repeated_block_pattern_not_varying_texture():
    from vpdsr.distill.losses import grid_loss

    x = _photo(0, 96)
    pattern = 0.02 * torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    mesh = x + pattern.repeat(1, 1, 24, 24)  # the same 4x4 pattern in every square
    texture = x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))  # differs square by square
    assert grid_loss(x, x.clone()).item() == 0.0
    # averaging over more squares leaves the repeated pattern as it is, and shrinks the varying texture
    assert grid_loss(mesh, x, pool=8).item() == pytest.approx(grid_loss(mesh, x, pool=2).item(), rel=1e-5)
    assert grid_loss(texture, x, pool=8) < 0.3 * grid_loss(texture, x, pool=2)
    assert grid_loss(mesh, x, pool=8) > 2 * grid_loss(texture, x, pool=8)
    # a smooth brightness change has no pattern inside the squares
    assert grid_loss(x + 0.1, x).item() < 1e-6
