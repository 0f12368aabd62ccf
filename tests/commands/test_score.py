"""`vpdsr score`: pyiqa's numbers on the same files, the JSON schema, one-line errors (exit 2)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from vpdsr.cli import main
from vpdsr.data.io import read_image, write_image
from vpdsr.data.samples import load_sample
from vpdsr.metrics.catalog import METRICS

PHOTOS = ("astronaut", "chelsea", "coffee")
SIZE = (168, 184)  # above MS-SSIM's 161 pixels a side, not square


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> tuple[Path, Path]:
    """sr/<photo>.png (blurred + noise, as PNG) and hr/<photo>.png (the clean crops)."""
    root = tmp_path_factory.mktemp("score")
    rng = np.random.default_rng(0)
    for name in PHOTOS:
        hr = load_sample(name)[: SIZE[0], : SIZE[1]]
        sr = np.clip(uniform_filter(hr, size=(3, 3, 1)) + rng.normal(0, 0.02, hr.shape), 0, 1)
        write_image(root / "hr" / f"{name}.png", hr)
        write_image(root / "sr" / f"{name}.png", sr)
    return root / "sr", root / "hr"


def _score(args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "scores.json"
    assert main(["score", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_piqe_gmsd_ms_ssim_equal_pyiqa_on_the_same_files(pairs, tmp_path):
    """The must-show: each figure is pyiqa's create_metric(name) run by pyiqa on the same PNG files."""
    pyiqa = pytest.importorskip("pyiqa")
    sr, hr = pairs
    result = _score([str(sr), "--reference", str(hr), "--metrics", "piqe,gmsd,ms_ssim"], tmp_path)
    assert [row["image"] for row in result["images"]] == [f"{n}.png" for n in PHOTOS]
    for name in ("piqe", "gmsd", "ms_ssim"):
        metric = pyiqa.create_metric(name, device="cpu")
        for row in result["images"]:
            args = (row["path"],) if name == "piqe" else (row["path"], row["reference"])
            expected = float(metric(*args).item())  # pyiqa reads the files itself (PIL, to_tensor)
            assert row[name] == expected, (name, row["image"])
        values = [row[name] for row in result["images"]]
        assert result["mean"][name] == pytest.approx(np.mean(values), rel=1e-12)
    assert len({row["piqe"] for row in result["images"]}) == 3  # the photos score differently


def test_json_schema_and_table(pairs, tmp_path, capsys, empty_caches):
    sr, hr = pairs
    result = _score([str(sr), "--reference", str(hr)], tmp_path)
    defaults = ["piqe", "gmsd", "ms_ssim", "psnr", "ssim", "clipiqa", "lpips"]
    assert result["schema"] == 1 and list(result["metrics"]) == defaults and list(result["mean"]) == defaults
    for name, info in result["metrics"].items():
        assert info["direction"] == METRICS[name].direction
        assert {"range", "needs_reference", "needs_weights", "meaning", "available", "reason", "count"} <= set(info)
    # no CLIP / AlexNet weights in the empty caches: null columns with the reason, never a number
    for name in ("clipiqa", "lpips"):
        assert result["metrics"][name]["available"] is False and result["metrics"][name]["count"] == 0
        assert "not found" in result["metrics"][name]["reason"] and result["mean"][name] is None
    row = result["images"][0]
    assert (row["height"], row["width"]) == SIZE
    assert Path(row["reference"]).name == "astronaut.png" and row["clipiqa"] is None
    truth = read_image(hr / "astronaut.png")
    from vpdsr.metrics.fidelity import psnr

    assert row["psnr"] == pytest.approx(psnr(read_image(sr / "astronaut.png"), truth), abs=1e-12)
    assert 20 < row["psnr"] < 40 and 0 < row["ssim"] < 1
    out = capsys.readouterr().out
    assert "better: lower piqe, gmsd, lpips; higher ms_ssim, psnr, ssim, clipiqa" in out
    assert "mean (3)" in out and "clipiqa: unavailable: CLIP weights not found" in out


def test_small_image_gets_null_ms_ssim_with_reason(tmp_path):
    photo = load_sample("rocket")[:100, :120]
    write_image(tmp_path / "sr" / "rocket_x4.png", np.clip(photo * 0.9, 0, 1))  # `vpdsr upscale` naming
    write_image(tmp_path / "hr" / "rocket.jpg", photo)
    result = _score([str(tmp_path / "sr"), "--reference", str(tmp_path / "hr"), "--metrics", "ms_ssim,gmsd"],
                    tmp_path)
    row = result["images"][0]
    assert row["ms_ssim"] is None and "161x161" in row["reasons"]["ms_ssim"] and "120x100" in row["reasons"]["ms_ssim"]
    assert row["gmsd"] > 0 and "gmsd" not in row["reasons"]
    assert result["mean"]["ms_ssim"] is None and result["metrics"]["ms_ssim"]["count"] == 0


def test_identical_images_psnr_is_the_string_inf(pairs, tmp_path):
    _, hr = pairs
    result = _score([str(hr / "coffee.png"), "--reference", str(hr), "--metrics", "psnr,ms_ssim"], tmp_path)
    assert result["images"][0]["psnr"] == "inf" and result["mean"]["psnr"] == "inf"
    assert result["images"][0]["ms_ssim"] == pytest.approx(1.0, abs=1e-9)


def test_bmp_and_other_pillow_formats_score_as_their_png(pairs, tmp_path):
    """The classic IQA sets (LIVE, CSIQ, TID2013) are BMP: same pixels, same figures as the PNGs."""
    from PIL import Image

    sr, hr = pairs
    for folder, ext in (("sr-bmp", ".bmp"), ("hr-bmp", ".bmp"), ("sr-ppm", ".ppm")):
        (tmp_path / folder).mkdir()
        for png in (hr if folder.startswith("hr") else sr).iterdir():
            Image.open(png).save(tmp_path / folder / (png.stem + ext))
    metrics = ["--metrics", "psnr,ssim"]
    png = _score([str(sr), "--reference", str(hr), *metrics], tmp_path)
    for images, ext in (("sr-bmp", ".bmp"), ("sr-ppm", ".ppm")):
        other = _score([str(tmp_path / images), "--reference", str(tmp_path / "hr-bmp"), *metrics], tmp_path)
        assert [r["image"] for r in other["images"]] == [f"{p}{ext}" for p in PHOTOS]
        assert [(r["psnr"], r["ssim"]) for r in other["images"]] == [(r["psnr"], r["ssim"]) for r in png["images"]]


def test_directory_input_skips_non_images_and_labels_clashing_names(pairs, tmp_path):
    sr, hr = pairs
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not an image")
    write_image(other / "coffee.png", read_image(hr / "coffee.png"))
    result = _score([str(sr), str(other), str(sr / "coffee.png"), "--metrics", "piqe"], tmp_path)
    paths = [row["path"] for row in result["images"]]
    assert len(paths) == 4 and len(set(paths)) == 4  # sr/coffee.png given twice is scored once
    assert [row["image"] for row in result["images"]] == paths  # coffee twice: labels are paths
    assert result["metrics"]["piqe"]["count"] == 4 and all(row["reference"] is None for row in result["images"])


def test_clipiqa_with_weights_equals_pyiqa(pairs, tmp_path, clip_weights):
    import pyiqa

    sr, _ = pairs
    result = _score([str(sr), "--metrics", "clipiqa", "--clip-weights", str(clip_weights)], tmp_path)
    metric = pyiqa.create_metric("clipiqa", device="cpu", backbone=str(clip_weights))
    for row in result["images"]:
        assert row["clipiqa"] == pytest.approx(float(metric(row["path"]).item()), abs=1e-6)
    assert result["metrics"]["clipiqa"]["available"] is True


def _bad_cases(sr: Path, hr: Path, tmp: Path) -> dict:
    odd = tmp / "odd"
    write_image(odd / "coffee.png", read_image(hr / "coffee.png")[:-2])
    twice = tmp / "twice"
    write_image(twice / "coffee.png", read_image(hr / "coffee.png"))
    write_image(twice / "coffee.jpg", read_image(hr / "coffee.png"))
    broken = tmp / "broken"
    broken.mkdir()
    (broken / "coffee.png").write_bytes((hr / "coffee.png").read_bytes()[:300])
    return {
        "missing reference": ([str(sr), "--reference", str(tmp / "partial")], "with the stem of chelsea.png"),
        "no such folder": ([str(sr), "--reference", str(tmp / "nope")], "not a folder"),
        "reference of another size": ([str(sr / "coffee.png"), "--reference", str(odd)], "184x166"),
        "ambiguous reference": ([str(sr / "coffee.png"), "--reference", str(twice)], "ambiguous"),
        "full-reference without --reference": ([str(sr), "--metrics", "piqe,gmsd"], "--reference DIR"),
        "unknown metric": ([str(sr), "--metrics", "piqe,niqe"], "unknown metric niqe"),
        "clipiqa asked without weights": ([str(sr), "--metrics", "clipiqa"], "RN50.pt"),
        "corrupt image": ([str(broken / "coffee.png"), "--metrics", "piqe"], "corrupt or truncated"),
        "not an image": ([str(tmp / "partial" / "notes.txt")], "is not an image Pillow can read"),
        "crop larger than the image": ([str(sr), "--reference", str(hr), "--crop-border", "90"], "leaves no pixels"),
    }


@pytest.mark.parametrize("case", [
    "missing reference", "no such folder", "reference of another size", "ambiguous reference",
    "full-reference without --reference", "unknown metric", "clipiqa asked without weights", "corrupt image",
    "not an image", "crop larger than the image",
])
def test_user_errors_exit_2_one_line_no_json(case, pairs, tmp_path, capsys, empty_caches):
    sr, hr = pairs
    partial = tmp_path / "partial"
    write_image(partial / "astronaut.png", read_image(hr / "astronaut.png"))
    (partial / "notes.txt").write_text("x")
    args, needle = _bad_cases(sr, hr, tmp_path)[case]
    out = tmp_path / "scores.json"
    assert main(["score", *args, "--json", str(out)]) == 2
    err = _one_error_line(capsys)
    assert needle in err
    assert not out.exists()
    if case == "clipiqa asked without weights":  # it says where it looked
        assert str(empty_caches / "torch" / "hub" / "clip" / "RN50.pt") in err


def test_json_naming_a_folder_is_refused_before_scoring(pairs, tmp_path, capsys):
    sr, _ = pairs
    assert main(["score", str(sr), "--metrics", "piqe", "--json", str(tmp_path)]) == 2
    assert "is a folder" in _one_error_line(capsys)
    assert capsys.readouterr().out == ""  # nothing was scored


def test_help_explains_every_metric(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = capsys.readouterr().out
    for name, info in METRICS.items():
        assert name in text and info.meaning in text
    assert "lower better" in text and "higher better" in text


def test_lpips_with_weights_equals_the_lpips_module(pairs, tmp_path):
    from tests.metrics.test_lpips import _write_weights
    from vpdsr.metrics.lpips import HEADS_FILENAME, TRUNK_FILENAME, Lpips

    folder = tmp_path / "lpips"
    _write_weights(folder / TRUNK_FILENAME, folder / HEADS_FILENAME, full_alexnet=False)
    sr, hr = pairs
    result = _score([str(sr), "--reference", str(hr), "--metrics", "lpips", "--lpips-weights", str(folder)], tmp_path)
    net = Lpips(folder)
    for row in result["images"]:
        expected = net.score_numpy(read_image(row["path"]), read_image(row["reference"]))
        assert row["lpips"] == pytest.approx(expected, abs=1e-7) and row["lpips"] > 0
