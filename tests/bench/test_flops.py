"""FLOPs from the torch graph on meta tensors: exact for convolutions, attention included, no weights kept."""
from __future__ import annotations

import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

from vpdsr.bench.flops import FlopCounter


class TwoConvs(torch.nn.Module):
    latent_channels = None  # no noise input, like a GAN SR network

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 48, 3, padding=1)
        self.register_buffer("gain", torch.tensor([0.5]))

    def forward(self, lr):
        g = float(self.gain[0])  # a Python read of a buffer, as a schedule constant: must keep working
        return torch.nn.functional.pixel_shuffle(self.b(torch.relu(self.a(lr))) * g, 4)


def test_convolutions_are_counted_exactly_and_weights_are_not_copied():
    model = TwoConvs()
    counter = FlopCounter(model)
    expected = 2 * 9 * (3 * 8 + 8 * 48) * 20 * 30
    assert counter.flops(20, 30) == expected
    assert counter.flops(40, 30) == 2 * expected  # per shape, not scaled: a second count
    assert all(p.is_meta for p in counter.model.parameters()) and not counter.model.gain.is_meta
    assert not any(p.is_meta for p in model.parameters())  # the caller's model is untouched


def test_a_vpdsr_model_counts_like_a_real_run_and_attention_is_included():
    from vpdsr.models import build, get_preset

    cfg = get_preset("tiny")
    cfg.denoiser = dataclasses.replace(cfg.denoiser, block_out_channels=(8, 16), attention_levels=(False, False),
                                       norm_num_groups=4)
    model = build(cfg, seed=0).eval()
    real = FlopCounterMode(display=False)
    with torch.no_grad(), real:
        model(torch.rand(1, 3, 16, 16), torch.randn(1, model.latent_channels, 16, 16))
    assert FlopCounter(model).flops(16, 16) == real.get_total_flops() > 0

    cfg.denoiser = dataclasses.replace(cfg.denoiser, attention_levels=(False, True), attention_head_dim=8)
    attn = build(cfg, seed=0).eval()
    counter = FlopCounter(attn)
    small, large = counter.flops(16, 16), counter.flops(32, 32)
    # attention grows with the square of the tokens: more than 4x the FLOPs for 4x the pixels
    assert large > 4 * small


def test_an_uncountable_model_gives_none_and_the_reason():
    class DataDependent(torch.nn.Module):
        latent_channels = None

        def forward(self, lr):
            return lr.repeat_interleave(int(lr.sum().item()) % 3 + 1, dim=1)

    counter = FlopCounter(DataDependent())
    assert counter.flops(8, 8) is None and counter.error
