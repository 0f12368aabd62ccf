"""LPIPS from local weight files (random values, real file layout); never downloads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vpdsr.errors import MissingWeightsError
from vpdsr.metrics.lpips import HEADS_FILENAME, TRUNK_FILENAME, Lpips, find_lpips_weights

_CHANNELS = (64, 192, 384, 256, 256)


def _write_weights(trunk: Path, heads: Path, *, full_alexnet: bool) -> None:
    """Random AlexNet + LPIPS heads saved as torchvision / LPIPS ship them (plain state dicts)."""
    from torchvision.models import AlexNet

    torch.manual_seed(0)
    state = AlexNet().state_dict()
    if not full_alexnet:  # the classifier (57 M of 61 M parameters) is never used by LPIPS
        state = {k: v for k, v in state.items() if k.startswith("features.")}
    trunk.parent.mkdir(parents=True, exist_ok=True)
    heads.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, trunk)
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) * 0.1 for k, c in enumerate(_CHANNELS)}, heads)


@pytest.fixture(scope="module")
def lpips(tmp_path_factory: pytest.TempPathFactory) -> Lpips:
    folder = tmp_path_factory.mktemp("lpips")
    _write_weights(folder / TRUNK_FILENAME, folder / HEADS_FILENAME, full_alexnet=False)
    return Lpips(folder)


def test_missing_weights_names_both_cache_files(empty_caches: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        find_lpips_weights()
    message = str(info.value)
    assert "\n" not in message
    assert str(empty_caches / "torch" / "hub" / "checkpoints" / TRUNK_FILENAME) in message
    assert str(empty_caches / "torch" / "hub" / "pyiqa" / HEADS_FILENAME) in message


def test_identical_is_zero_and_distance_grows_with_noise(lpips: Lpips) -> None:
    from skimage.data import astronaut

    photo = astronaut()[:128, :128].astype(np.float32) / 255
    rng = np.random.default_rng(0)
    small = np.clip(photo + rng.normal(0, 0.02, photo.shape), 0, 1)
    large = np.clip(photo + rng.normal(0, 0.2, photo.shape), 0, 1)
    assert lpips.score_numpy(photo, photo) == pytest.approx(0.0, abs=1e-7)
    assert 0 < lpips.score_numpy(small, photo) < lpips.score_numpy(large, photo)
    assert lpips.score_numpy(small, photo) == pytest.approx(lpips.score_numpy(photo, small), rel=1e-5)


@pytest.mark.slow
def test_equals_pyiqa_lpips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes a full 244 MB AlexNet file, since torchvision's loader (inside pyiqa) is strict."""
    pyiqa = pytest.importorskip("pyiqa")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub"
    trunk, heads = hub / "checkpoints" / TRUNK_FILENAME, hub / "pyiqa" / HEADS_FILENAME
    _write_weights(trunk, heads, full_alexnet=True)
    torch.manual_seed(1)
    images, references = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    # pyiqa's own cache dir was fixed at its import: hand it the heads file explicitly
    reference = pyiqa.create_metric("lpips", device="cpu", pretrained_model_path=str(heads))
    with torch.no_grad():
        expected = reference(images, references).reshape(-1)
        ours = Lpips()(images, references)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)
