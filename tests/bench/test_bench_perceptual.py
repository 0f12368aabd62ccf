"""PIQE, GMSD and MS-SSIM in `vpdsr bench`: pyiqa's own numbers on each backend's output, drift against the
reference, the two gates, and what the report and --help say they mean."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vpdsr.cli import main
from vpdsr.runtimes import load
from vpdsr.runtimes.tiling import TileConfig
from vpdsr.runtimes.torch_runner import TorchRunner
from vpdsr.runtimes.upscale import Upscaler

pyiqa = pytest.importorskip("pyiqa", reason="PIQE/GMSD/MS-SSIM need pyiqa (pip install 'vpdsr[metrics]')")
LR = 48  # x4 = 192 output pixels a side: MS-SSIM needs 161
TILING = ["--tile", "16", "--overlap", "8", "--batch", "4", "--seed", "0"]


@pytest.fixture(scope="module")
def big_image(tmp_path_factory):
    from vpdsr.data.io import write_image
    from vpdsr.data.samples import load_sample

    folder = tmp_path_factory.mktemp("big")
    hr = load_sample("astronaut")[40 : 40 + 4 * LR, 180 : 180 + 4 * LR]
    lr = hr.reshape(LR, 4, LR, 4, 3).mean(axis=(1, 3)).astype(np.float32)
    write_image(folder / "astronaut.png", lr)
    return folder


@pytest.fixture(scope="module")
def report(bench_model_dir, bench_artifacts, big_image, tmp_path_factory):
    out = tmp_path_factory.mktemp("perceptual") / "r"
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(out.parent / "torch"))  # no CLIP/LPIPS weights: they are null, PIQE is not
    try:
        rc = main(["bench", "--model", str(bench_model_dir), "--artifacts", str(bench_artifacts), "--backends", "onnx",
                   "--images", str(big_image), "--out", str(out), *TILING, "--warmup", "0", "--iters", "1",
                   "--max-piqe-drift", "5", "--min-ms-ssim-vs-ref", "0.99"])
    finally:
        mp.undo()
    return rc, out, json.loads((out / "report.json").read_text())


def _sr(runner, image) -> np.ndarray:
    with runner:
        return Upscaler(runner, TileConfig(16, 8, 4), seed=0)(image)


def _nchw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def test_values_are_pyiqas_on_each_backends_output(report, bench_model_dir, bench_artifacts, big_image):
    rc, _, rep = report
    assert rc == 0, rep["verdict"]
    from vpdsr.data.io import read_image

    lr = read_image(big_image / "astronaut.png")
    ref_sr = _sr(TorchRunner.from_pretrained(str(bench_model_dir)), lr)
    onnx_sr = _sr(load(bench_artifacts / "onnx"), lr)
    with torch.inference_mode():
        piqe = pyiqa.create_metric("piqe", device="cpu")
        ref_piqe, onnx_piqe = piqe(_nchw(ref_sr)).item(), piqe(_nchw(onnx_sr)).item()
        ms_ssim = pyiqa.create_metric("ms_ssim", device="cpu")(_nchw(onnx_sr), _nchw(ref_sr)).item()
        gmsd = pyiqa.create_metric("gmsd", device="cpu")(_nchw(onnx_sr), _nchw(ref_sr)).item()
    ref, onnx = rep["backends"]
    assert ref["quality"]["piqe"] == pytest.approx(ref_piqe, abs=1e-9)
    assert onnx["quality"]["piqe"] == pytest.approx(onnx_piqe, abs=1e-9)
    assert onnx["quality"]["piqe_drift"] == pytest.approx(onnx_piqe - ref_piqe, abs=1e-9)
    assert onnx["quality"]["ms_ssim_vs_ref"] == pytest.approx(ms_ssim, abs=1e-9) and ms_ssim > 0.99
    assert onnx["quality"]["gmsd_vs_ref"] == pytest.approx(gmsd, abs=1e-9)
    assert ref["quality"]["piqe_drift"] == 0.0 and "ms_ssim_vs_ref" not in ref["quality"]  # not against itself
    assert 0 < rep["bicubic"]["piqe"] <= 100  # the baseline row gets PIQE too


def test_gates_and_what_the_report_says(report):
    _, out, rep = report
    gates = {(g["name"], g["backend"]): g for g in rep["gates"]}
    assert set(gates) == {("max-piqe-drift", "onnx"), ("min-ms-ssim-vs-ref", "onnx")}
    assert all(g["passed"] for g in gates.values())
    assert rep["verdict"]["text"] == "every gate held (max-piqe-drift, min-ms-ssim-vs-ref)"
    md = (out / "report.md").read_text()
    assert "| PIQE |" in md and "MS-SSIM vs ref min" in md and "GMSD vs ref" in md
    assert "- piqe (lower is better, 0..100)" in md and "- ms_ssim (higher is better, 0..1)" in md
    assert rep["metrics"]["piqe"]["available"] and rep["metrics"]["piqe"]["direction"] == "lower"
    html = (out / "report.html").read_text()
    assert "<th>PIQE</th>" in html and "piqe (lower is better" in html


def test_ms_ssim_gate_on_images_too_small_is_bad_input(bench_model_dir, bench_images, tmp_path, capsys):
    lr, _ = bench_images  # 24x24 LR: 96-pixel outputs
    rc = main(["bench", "--model", str(bench_model_dir), "--images", str(lr), "--out", str(tmp_path / "r"), *TILING,
               "--min-ms-ssim-vs-ref", "0.9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "161" in err[0] and "--min-ms-ssim-vs-ref" in err[0]
    assert not (tmp_path / "r").exists()


def test_small_images_leave_ms_ssim_null_with_the_reason(bench_model_dir, bench_images, tmp_path):
    lr, _ = bench_images
    assert main(["bench", "--model", str(bench_model_dir), "--images", str(lr), "--out", str(tmp_path / "r"), *TILING,
                 "--backends", "torch-bf16", "--warmup", "0", "--iters", "1"]) == 0
    q = json.loads((tmp_path / "r" / "report.json").read_text())["backends"][1]["quality"]
    assert q["ms_ssim_vs_ref"] is None and "161" in q["ms_ssim_vs_ref_reason"]
    assert q["piqe"] is not None and q["gmsd_vs_ref"] is not None


def test_help_says_what_each_metric_means_and_which_way_is_better(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for line in ("piqe", "ms_ssim", "gmsd", "clipiqa"):
        assert any(row.startswith(line + " ") and "better" in row for row in text.splitlines()), line
    assert "--max-piqe-drift" in text and "--min-ms-ssim-vs-ref" in text and "--allow-failed" in text
    assert "skipped = cannot run on this machine" in " ".join(text.split())
