"""A tiny CLIP saved in OpenAI's TorchScript format, for tests that need CLIP weights.

No pretrained CLIP is available offline, so tests build one with pyiqa's own
``pyiqa.archs.clip_model.CLIP`` and random weights (fixed seed), and save it the way OpenAI's
``RN50.pt`` is saved: weights converted to fp16 as OpenAI's ``convert_weights`` does, the model
traced on ``encode_image`` and written with ``torch.jit.save``. pyiqa's loader rebuilds the
eager model from the archive's state dict, inferring the architecture from tensor shapes, so
the same loader code runs as with the real file. BatchNorm statistics are calibrated on
random smooth images so that the random network tells images apart (cosine distances of
0.03-0.3 between photos instead of ~1e-4).

Architecture (about 15 MB on disk, most of it the 49408 x 64 token embedding):

- image tower: ModifiedResNet (as RN50), one bottleneck per stage, width 16
  (8 attention-pool heads, inferred as width * 32 / 64), input 64 x 64, embedding 32;
- text tower: 1 transformer layer, width 64, 1 head (pyiqa infers heads as width / 64, so
  a width below 64 cannot be loaded), context 77, OpenAI's vocabulary size 49408 (the BPE
  tokenizer that ships with the ``clip`` package emits ids up to 49407).

Usage: ``make_tiny_clip(tmp_path / "RN50.pt")``; needs pyiqa (``pytest.importorskip("pyiqa")``).
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch

TINY_CLIP_RESOLUTION = 64
TINY_CLIP_EMBED_DIM = 32

_built: dict[int, Path] = {}  # seed -> first file built in this process (later calls copy it)


def make_tiny_clip(path: str | Path, seed: int = 0) -> Path:
    """Build (or copy from this test run's cache) a tiny CLIP archive at ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cached = _built.get(seed)
    if cached is not None and cached.is_file():
        if cached.resolve() != path.resolve():
            shutil.copyfile(cached, path)
        return path
    _build(path, seed)
    _built[seed] = path
    return path


def _build(path: Path, seed: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources deprecation, tracer warnings
        from pyiqa.archs.clip_model import CLIP, convert_weights

        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = CLIP(
                embed_dim=TINY_CLIP_EMBED_DIM,
                image_resolution=TINY_CLIP_RESOLUTION,
                vision_layers=(1, 1, 1, 1),
                vision_width=16,
                vision_patch_size=None,
                context_length=77,
                vocab_size=49408,
                transformer_width=64,
                transformer_heads=1,
                transformer_layers=1,
            ).eval()
            _calibrate_batchnorm(model)
            example = torch.rand(1, 3, TINY_CLIP_RESOLUTION, TINY_CLIP_RESOLUTION)
        finally:
            torch.random.set_rng_state(generator_state)
        traced = torch.jit.trace_module(model, {"encode_image": (example, torch.tensor(False))})
        # The traced module shares the eager parameters: converting them afterwards stores
        # fp16 weights in the archive, as in OpenAI's files.
        convert_weights(model)
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(traced, str(tmp))
    tmp.replace(path)


def _calibrate_batchnorm(model: torch.nn.Module) -> None:
    """Set BatchNorm statistics from a batch of random smooth images (data-dependent init).

    With default statistics (mean 0, var 1) and zero bn3 gammas a random ResNet maps every
    image to nearly the same embedding (cosine distance ~1e-4); normalised activations make
    the tiny CLIP tell images apart, as ESS and CLIPIQA tests need.
    """
    size = TINY_CLIP_RESOLUTION
    images = torch.cat(
        [
            torch.nn.functional.interpolate(torch.rand(4, 3, cells, cells), size=(size, size), mode="bicubic")
            for cells in (2, 4, 8, 16, 64)
        ]
    ).clamp(0, 1)
    for name, param in model.visual.named_parameters():
        if name.endswith("bn3.weight"):
            torch.nn.init.uniform_(param, 0.5, 1.5)
    for module in model.visual.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
    model.visual.train()
    with torch.no_grad():
        model.encode_image(images, False)
    model.eval()
