"""score_images and its helpers, called as a library (bench reuses them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vpdsr.data.io import write_image
from vpdsr.errors import InputError
from vpdsr.metrics.score import ScoreOptions, match_references, resolve_metrics, score_images


def _write(path: Path, value: float = 0.5, size: tuple[int, int] = (40, 48)) -> Path:
    rng = np.random.default_rng(int(value * 100))
    write_image(path, np.clip(value + rng.normal(0, 0.1, (*size, 3)), 0, 1))
    return path


def test_exact_stem_wins_over_the_upscale_suffix(tmp_path):
    refs = tmp_path / "refs"
    exact, stripped = _write(refs / "a_x4.jpg"), _write(refs / "a.png")
    images = [_write(tmp_path / "a_x4.png"), _write(tmp_path / "b" / "a_x2.png")]
    assert match_references(images, refs) == [exact, stripped]


def test_missing_references_are_counted(tmp_path):
    _write(tmp_path / "refs" / "z.png")
    images = [_write(tmp_path / f"i{k}.png") for k in range(5)]
    with pytest.raises(InputError, match=r"i0.png, i1.png, i2.png and 2 more"):
        match_references(images, tmp_path / "refs")


def test_default_metrics_without_reference_are_no_reference_only():
    assert resolve_metrics(ScoreOptions(), has_reference=False) == ["piqe", "clipiqa"]
    assert "ms_ssim" in resolve_metrics(ScoreOptions(), has_reference=True)


def test_tiny_images_get_reasons_not_crashes(tmp_path, empty_caches):
    pytest.importorskip("pyiqa")
    names = ("piqe", "gmsd", "ms_ssim", "psnr", "ssim", "clipiqa", "lpips")
    image = _write(tmp_path / "tiny.png", size=(3, 3))
    ref = _write(tmp_path / "refs" / "tiny.png", 0.6, size=(3, 3))
    result = score_images([image], [ref], ScoreOptions(metrics=names[:5]))
    row = result["images"][0]
    assert row["psnr"] is not None
    assert set(row["reasons"]) == {"piqe", "gmsd", "ms_ssim", "ssim"}
    assert all(row[m] is None for m in row["reasons"])
    # under the defaults the networks are unavailable here (empty caches): a metric-wide reason instead
    result = score_images([image], [ref])
    assert set(result["images"][0]["reasons"]) == {"piqe", "gmsd", "ms_ssim", "ssim"}
    assert result["metrics"]["clipiqa"]["reason"].startswith("unavailable: CLIP weights not found")


def test_all_black_image_piqe_is_null_with_reason(tmp_path):
    pytest.importorskip("pyiqa")
    black = tmp_path / "black.png"
    write_image(black, np.zeros((32, 32, 3), np.float32))
    row = score_images([black], options=ScoreOptions(metrics=("piqe",)))["images"][0]
    assert row["piqe"] is None and "NaN" in row["reasons"]["piqe"]


def test_reference_count_must_match(tmp_path):
    with pytest.raises(InputError, match="2 images but 1 references"):
        score_images([_write(tmp_path / "a.png"), _write(tmp_path / "b.png")], [_write(tmp_path / "c.png")])


def test_clipiqa_below_its_network_size_is_null_with_reason(tmp_path, clip_weights):
    small, fine = _write(tmp_path / "small.png", size=(20, 64)), _write(tmp_path / "fine.png", size=(31, 31))
    options = ScoreOptions(metrics=("clipiqa",), clip_weights=str(clip_weights))
    small_row, fine_row = score_images([small, fine], options=options)["images"]
    assert small_row["clipiqa"] is None and "31x31" in small_row["reasons"]["clipiqa"]
    assert 0 < fine_row["clipiqa"] < 1


def test_without_pyiqa_default_metrics_are_null_and_named_ones_fail(tmp_path, monkeypatch, empty_caches):
    import sys

    from vpdsr.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "pyiqa", None)  # `import pyiqa` now raises ImportError
    image = _write(tmp_path / "a.png", size=(40, 40))
    result = score_images([image])
    assert result["images"][0]["piqe"] is None
    assert "pip install 'vpdsr[metrics]'" in result["metrics"]["piqe"]["reason"]
    with pytest.raises(MissingDependencyError, match="pyiqa"):
        score_images([image], options=ScoreOptions(metrics=("piqe",)))
