"""Swin pieces of the ResShift port: the reference's shifted-window mask, traced masks, window layout."""
from __future__ import annotations

import pytest
import torch

from vpdsr.models.resshift.swin import (
    MASK_VALUE,
    SwinBlock,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


def reference_style_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """The mask built the way ResShift's `calculate_mask` builds it: region labels written through
    slices into an NCHW [1, 1, H, W] tensor indexed as if it were NHWC (so the first slice hits the
    size-1 channel dim and only rows get labels), windows flattened after a (0, 2, 3, 1) permute."""
    img = torch.zeros(1, 1, h, w)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for a in cuts:
        for b in cuts:
            img[:, a, b, :] = label
            label += 1
    win = window_partition(img, ws).view(-1, ws, ws, 1).permute(0, 2, 3, 1).reshape(-1, ws * ws)
    d = win.unsqueeze(1) - win.unsqueeze(2)
    return d.masked_fill(d != 0, MASK_VALUE).masked_fill(d == 0, 0.0)


@pytest.mark.parametrize("h,w,ws,shift", [(16, 16, 4, 2), (8, 8, 8, 4), (64, 64, 8, 4), (32, 48, 4, 2), (24, 8, 8, 4)])
def test_mask_equals_the_reference_construction(h, w, ws, shift):
    assert torch.equal(shifted_window_mask(h, w, ws, shift), reference_style_mask(h, w, ws, shift))


def test_reference_mask_only_separates_tokens_in_the_last_window_row():
    # The quirk the port keeps: a standard Swin mask would also split the last window column.
    m = shifted_window_mask(16, 16, 4, 2).view(4, 4, 16, 16)  # [window row, window col, N, N]
    assert (m[:3] == 0).all()
    assert (m[3] != 0).any(dim=(-1, -2)).all()


def test_traced_mask_follows_the_input_size():
    def f(x):
        return shifted_window_mask(x.shape[-2], x.shape[-1], 4, 2)

    traced = torch.jit.trace(f, torch.zeros(1, 1, 16, 16))
    for h, w in [(16, 16), (8, 24), (32, 12)]:
        assert torch.equal(traced(torch.zeros(1, 1, h, w)), shifted_window_mask(h, w, 4, 2))


def test_partition_round_trip_and_index_range():
    x = torch.randn(2, 5, 8, 12)
    assert torch.equal(window_reverse(window_partition(x, 4), 4, 2, 8, 12), x)
    idx = relative_position_index(4)
    assert idx.shape == (16, 16) and int(idx.min()) == 0 and int(idx.max()) == 48
    assert torch.equal(idx.diagonal(), torch.full((16,), 24))  # zero offset sits in the middle of the table


def test_block_clamps_window_at_small_training_size_and_fixed_masks():
    small = SwinBlock(32, resolution=4, heads=2, window_size=8, shift=4, mlp_ratio=2.0)
    assert (small.window_size, small.shift_size) == (4, 0)
    block = SwinBlock(32, resolution=16, heads=2, window_size=4, shift=2, mlp_ratio=2.0).eval()
    x = torch.randn(1, 32, 16, 8)
    with torch.no_grad():
        dynamic = block(x)
        block.fix_size((16, 8))
        assert torch.equal(block(x), dynamic)
        with pytest.raises(ValueError, match=r"fixed to \(16, 8\)"):
            block(torch.randn(1, 32, 8, 8))
