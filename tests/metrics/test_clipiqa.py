"""CLIPIQA: same numbers as pyiqa's own metric, clear errors when it cannot run."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vpdsr.errors import InputError, MissingWeightsError
from vpdsr.metrics.clipiqa import ClipIqa


@pytest.fixture(scope="module")
def clipiqa(clip_weights: Path) -> ClipIqa:
    return ClipIqa(clip_weights)


def test_scores_equal_pyiqa_clipiqa(clipiqa: ClipIqa, clip_weights: Path) -> None:
    import pyiqa

    torch.manual_seed(0)
    images = torch.rand(3, 3, 40, 56)
    images[1] = images[1] * 0.2  # a dark one, so the scores differ
    reference = pyiqa.create_metric("clipiqa", device="cpu", backbone=str(clip_weights))
    with torch.no_grad():
        expected = reference(images).reshape(-1)
    ours = clipiqa.score(images)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
    assert ((ours > 0) & (ours < 1)).all()
    assert float(ours.max() - ours.min()) > 1e-6  # the tiny CLIP tells images apart


def test_score_numpy_matches_score(clipiqa: ClipIqa) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((33, 47, 3), dtype=np.float32)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    assert clipiqa.score_numpy(image) == pytest.approx(float(clipiqa.score(tensor)[0]), abs=1e-7)
    as_uint8 = (image * 255).round().astype(np.uint8)
    assert clipiqa.score_numpy(as_uint8) == pytest.approx(
        float(clipiqa.score(torch.from_numpy(as_uint8).permute(2, 0, 1)[None].float() / 255)[0]), abs=1e-7
    )


@pytest.mark.parametrize(
    "bad, needle",
    [
        (torch.rand(3, 16, 16), "[B,3,H,W]"),
        (torch.rand(1, 1, 16, 16), "[B,3,H,W]"),
        (torch.rand(1, 3, 16, 16) * 2, "[0, 1]"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "float"),
    ],
)
def test_bad_input_is_one_line_input_error(clipiqa: ClipIqa, bad: torch.Tensor, needle: str) -> None:
    with pytest.raises(InputError) as info:
        clipiqa.score(bad)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_available_reports_reason(empty_caches: Path, clip_weights: Path) -> None:
    ok, reason = ClipIqa.available()
    assert not ok
    assert "CLIP weights not found" in reason and "\n" not in reason
    with pytest.raises(MissingWeightsError):
        ClipIqa()

    cache = empty_caches / "torch" / "hub" / "clip" / "RN50.pt"  # where pyiqa would download it
    cache.parent.mkdir(parents=True)
    shutil.copyfile(clip_weights, cache)
    assert ClipIqa.available() == (True, str(cache))
