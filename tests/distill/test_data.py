"""Training crops: deterministic per (seed, stage, step), degraded on the fly, holdout photos refused."""
from __future__ import annotations

import pytest
import torch

from vpdsr.data.degrade import DegradationConfig
from vpdsr.distill.data import CropDataset
from vpdsr.errors import ConfigError


@pytest.mark.parametrize("mode", ["bicubic", "realesrgan"])
def test_batches_are_a_function_of_seed_and_step(train_images, mode):
    deg = DegradationConfig.from_dict({"mode": mode})
    data = CropDataset([str(train_images)], 32, deg, seed=1)
    a, b = data.batch(5, 0, 3, "teacher"), data.batch(5, 0, 3, "teacher")
    assert a.hr.shape == (3, 3, 32, 32) and a.lr.shape == (3, 3, 8, 8)
    assert torch.equal(a.hr, b.hr) and torch.equal(a.lr, b.lr)
    assert not torch.equal(a.hr, data.batch(6, 0, 3, "teacher").hr)
    assert not torch.equal(a.hr, CropDataset([str(train_images)], 32, deg, seed=2).batch(5, 0, 3, "teacher").hr)
    assert 0.0 <= float(a.lr.min()) and float(a.lr.max()) <= 1.0


def test_realesrgan_lr_differs_from_plain_bicubic(train_images):
    kw = dict(images=[str(train_images)], crop_size=32, seed=0)
    clean = CropDataset(degradation=DegradationConfig.from_dict({"mode": "bicubic"}), **kw).batch(1, 0, 4, "student")
    real = CropDataset(degradation=DegradationConfig.from_dict({"mode": "realesrgan"}), **kw).batch(1, 0, 4, "student")
    assert torch.equal(clean.hr, real.hr)
    assert (clean.lr - real.lr).abs().mean() > 1e-3


def test_holdout_photos_are_refused():
    with pytest.raises(ConfigError, match="held-out"):
        CropDataset(["samples:holdout"], 32, DegradationConfig.from_dict({"mode": "bicubic"}))
