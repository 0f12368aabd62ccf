"""`vpdsr pipeline`: the bench inputs it makes, and (slow) the whole job on the shipped tiny model."""
from __future__ import annotations

import json

import pytest

from vpdsr.cli import main
from vpdsr.commands.pipeline import default_config, make_bench_inputs


def test_bench_inputs_are_hr_photos_and_their_x4_lr(tmp_path):
    from vpdsr.data.io import read_image

    lr_dir, hr_dir = make_bench_inputs(tmp_path, "samples:demo")
    lr, hr = read_image(lr_dir / "astronaut.png"), read_image(hr_dir / "astronaut.png")
    assert hr.shape == (512, 512, 3) and lr.shape == (128, 128, 3)
    # the LR is the HR's bicubic x4 downscale: close to a 4x4 box average of it
    box = hr.reshape(128, 4, 128, 4, 3).mean(axis=(1, 3))
    assert abs(lr - box).mean() < 0.02


def test_default_config_is_found():
    cfg = default_config()
    assert cfg is not None and cfg.name == "tiny.yaml"


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path, monkeypatch):
    from vpdsr.models.checkpoint import SHIPPED

    if not (SHIPPED / "tiny" / "model.safetensors").is_file():
        pytest.skip("no shipped tiny checkpoint: the pipeline would train for ~10 minutes")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no CLIP weights: CLIPIQA null, still exit 0
    run = tmp_path / "run"
    assert main(["pipeline", "--out", str(run), "--targets", "onnx,openvino-int8,tensorrt-fp16", "--iters", "2"]) == 0
    report = json.loads((run / "report" / "report.json").read_text())
    names = [b["name"] for b in report["backends"]]
    assert names == ["torch-fp32", "onnx", "openvino-int8", "tensorrt-fp16"]
    assert report["images"] == 3 and report["hr"] is True
    ran = [b for b in report["backends"] if b["status"] == "ok"]
    assert all(b["latency_ms"] for b in ran)
    assert all(0 < b["quality"]["piqe"] <= 100 for b in ran)  # PIQE per backend, offline (no weights)
    assert all(b["quality"]["ms_ssim_vs_ref"] > 0.9 and b["quality"]["piqe_drift"] is not None for b in ran[1:])
    assert report["verdict"]["text"].startswith("no gates set") and report["passed"] is True
    assert (run / "report" / "report.html").is_file() and (run / "pipeline.json").is_file()
