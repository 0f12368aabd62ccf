"""Finding, loading and running CLIP weights (the ESS prerequisites)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny_clip import TINY_CLIP_EMBED_DIM, TINY_CLIP_RESOLUTION
from vpdsr.errors import InputError, MissingWeightsError
from vpdsr.metrics.clip_weights import (
    CLIP_WEIGHTS_ENV,
    clip_cache_candidates,
    clip_image_embedding,
    clip_preprocess,
    find_clip_weights,
    load_clip,
)


@pytest.fixture(scope="module")
def clip_model(clip_weights: Path):
    return load_clip(clip_weights)


def test_missing_weights_names_every_place_looked(empty_caches: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        find_clip_weights()
    message = str(info.value)
    assert "\n" not in message
    pyiqa_cache = empty_caches / "torch" / "hub" / "clip" / "RN50.pt"  # $TORCH_HOME/hub/clip
    openai_cache = empty_caches / "home" / ".cache" / "clip" / "RN50.pt"
    for place in (CLIP_WEIGHTS_ENV, str(pyiqa_cache), str(openai_cache), "--clip-weights"):
        assert place in message


def test_cache_follows_xdg_when_torch_home_unset(empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCH_HOME")
    assert clip_cache_candidates()[0] == empty_caches / "xdg" / "torch" / "hub" / "clip" / "RN50.pt"


def test_lookup_order(empty_caches: Path, clip_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    openai_cache = empty_caches / "home" / ".cache" / "clip" / "RN50.pt"
    openai_cache.parent.mkdir(parents=True)
    shutil.copyfile(clip_weights, openai_cache)
    assert find_clip_weights() == openai_cache

    pyiqa_cache = empty_caches / "torch" / "hub" / "clip" / "RN50.pt"
    pyiqa_cache.parent.mkdir(parents=True)
    shutil.copyfile(clip_weights, pyiqa_cache)
    assert find_clip_weights() == pyiqa_cache

    monkeypatch.setenv(CLIP_WEIGHTS_ENV, str(clip_weights))
    assert find_clip_weights() == clip_weights
    explicit = empty_caches / "explicit.pt"
    shutil.copyfile(clip_weights, explicit)
    assert find_clip_weights(explicit) == explicit


def test_wrong_explicit_or_env_path_is_reported_not_skipped(
    empty_caches: Path, clip_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyiqa_cache = empty_caches / "torch" / "hub" / "clip" / "RN50.pt"
    pyiqa_cache.parent.mkdir(parents=True)
    shutil.copyfile(clip_weights, pyiqa_cache)
    with pytest.raises(MissingWeightsError, match="nope.pt"):
        find_clip_weights(empty_caches / "nope.pt")
    monkeypatch.setenv(CLIP_WEIGHTS_ENV, str(empty_caches / "typo.pt"))
    with pytest.raises(MissingWeightsError, match=f"{CLIP_WEIGHTS_ENV}.*typo.pt"):
        find_clip_weights()


def test_state_dict_file_and_garbage_are_one_line_input_errors(tmp_path: Path, clip_model) -> None:
    state_dict_file = tmp_path / "state.pt"
    torch.save(clip_model.state_dict(), state_dict_file)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip archive")
    for path in (state_dict_file, garbage):
        with pytest.raises(InputError) as info:
            load_clip(path)
        assert "TorchScript" in str(info.value) and "\n" not in str(info.value)


def test_loaded_model_is_frozen_eval_and_has_tiny_shape(clip_model) -> None:
    assert not clip_model.training
    assert all(not p.requires_grad for p in clip_model.parameters())
    assert all(p.dtype == torch.float32 for p in clip_model.parameters())
    assert clip_model.visual.input_resolution == TINY_CLIP_RESOLUTION


def test_preprocess_matches_openai_clip_transform_at_model_resolution() -> None:
    clip = pytest.importorskip("clip")
    from PIL import Image

    rng = np.random.default_rng(0)
    # the square case and a non-square one whose short side is the model resolution
    for shape in ((TINY_CLIP_RESOLUTION, TINY_CLIP_RESOLUTION), (TINY_CLIP_RESOLUTION, 90)):
        pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        expected = clip.clip._transform(TINY_CLIP_RESOLUTION)(Image.fromarray(pixels))
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
        ours = clip_preprocess(tensor[None], TINY_CLIP_RESOLUTION)[0]
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_preprocess_downscale_is_close_to_pil_bicubic() -> None:
    """Above the model resolution PIL (uint8) and torch's antialiased bicubic agree to ~1/255."""
    clip = pytest.importorskip("clip")
    from PIL import Image
    from skimage.data import astronaut

    pixels = astronaut()[::2, ::2]  # 256x256 photo -> 64x64
    expected = clip.clip._transform(TINY_CLIP_RESOLUTION)(Image.fromarray(pixels))
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    ours = clip_preprocess(tensor[None], TINY_CLIP_RESOLUTION)[0]
    assert ours.shape == expected.shape
    # normalised units: 1/255 in [0,1] is ~0.015 here; allow a few levels for rounding/overshoot
    assert (ours - expected).abs().mean() < 0.02


def test_identical_images_have_zero_cosine_distance(clip_model) -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, 48, 80)
    a = clip_image_embedding(clip_model, images)
    b = clip_image_embedding(clip_model, images.clone())
    assert a.shape == (2, TINY_CLIP_EMBED_DIM)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    assert float((1 - (a * b).sum(-1)).abs().max()) < 1e-6
    # a different image is not at distance 0, and batching does not change the embedding
    assert float(1 - (a[0] * a[1]).sum()) > 1e-4
    torch.testing.assert_close(clip_image_embedding(clip_model, images[1:]), a[1:], atol=1e-6, rtol=0)


def test_gradient_flows_to_the_input(clip_model) -> None:
    torch.manual_seed(1)
    images = torch.rand(1, 3, 72, 72, requires_grad=True)
    target = clip_image_embedding(clip_model, torch.rand(1, 3, 72, 72))
    loss = 1 - (clip_image_embedding(clip_model, images) * target).sum()
    loss.backward()
    assert images.grad is not None
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_model.parameters())
