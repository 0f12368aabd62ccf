"""PIQE through vpdsr equals pyiqa's own metric on the same pixels."""
from __future__ import annotations

import numpy as np
import pytest

pyiqa = pytest.importorskip("pyiqa", reason="PIQE needs pyiqa (pip install 'vpdsr[metrics]')")

import torch  # noqa: E402

from vpdsr.errors import InputError  # noqa: E402
from vpdsr.metrics.perceptual import piqe  # noqa: E402


def _photo(size: int = 96) -> np.ndarray:
    from skimage import data

    return data.astronaut()[:size, 100 : 100 + size].astype(np.float32) / 255.0


def test_piqe_equals_pyiqa():
    img = _photo()
    ref = pyiqa.create_metric("piqe", device="cpu")(torch.from_numpy(img.transpose(2, 0, 1).copy())[None]).item()
    assert piqe(img) == pytest.approx(ref, abs=1e-6)


def test_piqe_ranks_blur_worse():
    img = _photo()
    from scipy.ndimage import uniform_filter

    blurred = uniform_filter(img, size=(7, 7, 1))
    assert piqe(blurred) > piqe(img)  # lower is better: blur must score worse


def test_piqe_refuses_wrong_shape():
    with pytest.raises(InputError, match="HxWx3"):
        piqe(np.zeros((8, 8), dtype=np.float32))
