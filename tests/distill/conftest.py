"""Tiny distill runs: a 2-level 16-channel denoiser, 32-pixel crops of two small photos written by the test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def train_images(tmp_path_factory) -> Path:
    from vpdsr.data.io import write_image

    folder = tmp_path_factory.mktemp("train_images")
    rng = np.random.default_rng(0)
    for i in range(2):
        small = rng.random((6, 8, 3))
        img = np.kron(small, np.ones((8, 8, 1)))  # blocky 48x64 photo stand-in with edges
        write_image(folder / f"img{i}.png", np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1))
    return folder


def tiny_config(images: Path, **sections) -> dict:
    """A config dict for runs of a few seconds; `sections` override top-level sections."""
    cfg = {
        "seed": 3,
        "model": {"preset": "tiny", "denoiser": {"block_out_channels": [16, 16], "attention_levels": [False, False],
                                                 "norm_num_groups": 8}},
        "data": {"images": [str(images)], "crop_size": 32, "batch_size": 2},
        "degradation": {"mode": "bicubic"},
        "teacher": {"steps": 4, "checkpoint_every": 2, "log_every": 1, "optim": {"warmup_steps": 1}},
        "student": {"steps": 4, "checkpoint_every": 2, "log_every": 1, "optim": {"warmup_steps": 1}},
        "losses": {"distill": 1.0, "recon": 1.0, "hfp": 0.1, "adv": 0.01, "ess": 0.0},
        "discriminator": {"channels": 8, "layers": 2},
        "accelerate": {"mixed_precision": "no", "cpu": True},
        "eval": {"enabled": False},
    }
    cfg.update(sections)
    return cfg
