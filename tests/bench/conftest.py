"""Fixtures of the benchmark tests: a very small trained-looking model, LR/HR images, artifacts."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SMALL
from vpdsr.export.api import export

LR_SIZE = 24  # LR pixels: 2x2 tiles of 16 with overlap 8


@pytest.fixture(scope="session")
def bench_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-preset model with an 8/16-channel UNet, saved in the real format (config.json + safetensors).

    The residual head starts at zero (output = bicubic), so it is set to small random values:
    then reduced-precision backends really differ from fp32 and drift is measurable.
    """
    from vpdsr.models import build, get_preset, save_pretrained

    cfg = get_preset("tiny")
    cfg.denoiser = dataclasses.replace(
        cfg.denoiser, block_out_channels=(8, 16), attention_levels=(False, False), norm_num_groups=4
    )
    model = build(cfg, seed=0)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        conv = model.denoiser.unet.conv_out
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.02)
        conv.bias.zero_()
    return save_pretrained(model, tmp_path_factory.mktemp("model") / "student")


@pytest.fixture(scope="session")
def bench_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(lr_dir, hr_dir): two photo crops, LR 24x24 and HR 96x96, as PNG files."""
    from vpdsr.data.io import write_image
    from vpdsr.data.samples import load_sample

    root = tmp_path_factory.mktemp("images")
    for name, (y, x) in {"astronaut": (40, 180), "coffee": (100, 200)}.items():
        hr = load_sample(name)[y : y + 4 * LR_SIZE, x : x + 4 * LR_SIZE]
        lr = hr.reshape(LR_SIZE, 4, LR_SIZE, 4, 3).mean(axis=(1, 3)).astype(np.float32)  # box x4 downscale
        write_image(root / "hr" / f"{name}.png", hr)
        write_image(root / "lr" / f"{name}.png", lr)
    return root / "lr", root / "hr"


@pytest.fixture(scope="session")
def bench_artifacts(bench_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export folder made by the real export code: ONNX fp32 (runs here) and TensorRT fp16 (skipped here)."""
    pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'vpdsr[onnx]')")
    out = tmp_path_factory.mktemp("artifacts") / "artifacts"
    export(str(bench_model_dir), out, "onnx,tensorrt-fp16", tile=16, validation=SMALL)
    return out
