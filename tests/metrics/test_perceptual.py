"""PIQE, GMSD and MS-SSIM through vpdsr equal pyiqa's own metrics on the same pixels."""
from __future__ import annotations

import numpy as np
import pytest

pyiqa = pytest.importorskip("pyiqa", reason="these metrics need pyiqa (pip install 'vpdsr[metrics]')")

import torch  # noqa: E402
from scipy.ndimage import uniform_filter  # noqa: E402

from vpdsr.errors import InputError  # noqa: E402
from vpdsr.metrics.perceptual import MS_SSIM_MIN_SIDE, gmsd, ms_ssim, piqe, size_problem  # noqa: E402


def _photo(size: int = 96, name: str = "astronaut", width: int | None = None) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return img[:size, 100 : 100 + (width or size)].astype(np.float32) / 255.0


def _pyiqa(name: str, *images: np.ndarray) -> float:
    tensors = [torch.from_numpy(a.transpose(2, 0, 1).copy())[None] for a in images]
    with torch.no_grad():
        return float(pyiqa.create_metric(name, device="cpu")(*tensors).item())


def _distorted(img: np.ndarray, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(uniform_filter(img, size=(3, 3, 1)) + noise, 0, 1)


def test_piqe_equals_pyiqa():
    img = _photo()
    assert piqe(img) == pytest.approx(_pyiqa("piqe", img), abs=1e-6)


def test_piqe_ranks_blur_worse():
    img = _photo()
    blurred = uniform_filter(img, size=(7, 7, 1))
    assert piqe(blurred) > piqe(img)  # lower is better: blur must score worse


def test_piqe_refuses_wrong_shape():
    with pytest.raises(InputError, match="HxWx3"):
        piqe(np.zeros((8, 8), dtype=np.float32))


@pytest.mark.parametrize("name, fn", [("gmsd", gmsd), ("ms_ssim", ms_ssim)])
@pytest.mark.parametrize("photo", ["coffee", "chelsea"])
def test_full_reference_equals_pyiqa(name, fn, photo):
    ref = _photo(170, photo, width=190)  # odd-ish, non-square, above MS-SSIM's 161
    out = _distorted(ref)
    assert fn(out, ref) == _pyiqa(name, out, ref)  # the same computation: bit-identical


def test_directions_identical_and_distorted():
    ref = _photo(176, "coffee")
    mild, strong = np.clip(ref + 0.01, 0, 1), _distorted(ref)
    assert gmsd(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-9)
    assert 0 <= gmsd(mild, ref) < gmsd(strong, ref)  # lower is better
    assert 1 >= ms_ssim(mild, ref) > ms_ssim(strong, ref)  # higher is better


def test_ms_ssim_size_limit_is_exact():
    ref = _photo(MS_SSIM_MIN_SIDE, "coffee", width=MS_SSIM_MIN_SIDE + 40)
    out = _distorted(ref)
    assert size_problem("ms_ssim", *ref.shape[:2]) is None
    assert 0 < ms_ssim(out, ref) < 1
    small_ref, small_out = ref[:-1], out[:-1]  # 160 rows: pyiqa itself raises a RuntimeError here
    with pytest.raises(RuntimeError):
        _pyiqa("ms_ssim", small_out, small_ref)
    with pytest.raises(InputError) as info:
        ms_ssim(small_out, small_ref)
    message = str(info.value)
    assert "161x161" in message and "201x160" in message and "\n" not in message


def test_gmsd_size_limit():
    assert size_problem("gmsd", 2, 4) is None and size_problem("gmsd", 4, 2) is None
    for h, w in [(1, 10), (2, 2), (3, 3)]:  # pyiqa: a RuntimeError or NaN
        assert "GMSD needs" in size_problem("gmsd", h, w)
        with pytest.raises(InputError, match="GMSD needs"):
            gmsd(np.zeros((h, w, 3), np.float32), np.zeros((h, w, 3), np.float32))


def test_piqe_size_limit():
    assert size_problem("piqe", 8, 8) is None and 0 < piqe(_photo(8)) <= 100
    with pytest.raises(RuntimeError):  # pyiqa itself: "maximum size for tensor ... is 14"
        _pyiqa("piqe", _photo(7))
    with pytest.raises(InputError, match="PIQE needs at least 8x8 pixels"):
        piqe(_photo(7, width=100))


def test_full_reference_refuses_different_shapes():
    with pytest.raises(InputError, match="differ in size"):
        gmsd(_photo(64), _photo(64, width=65))
