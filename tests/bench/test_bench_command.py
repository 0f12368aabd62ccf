"""`vpdsr bench` end to end on a very small model, real export artifacts and real image files."""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SMALL
from tests.runtimes.test_tensorrt_runner import tensorrt_skip_reason
from vpdsr.cli import main
from vpdsr.export.api import export

FAST = ["--tile", "16", "--overlap", "8", "--batch", "4", "--warmup", "1", "--iters", "2"]


@pytest.fixture
def no_clip(monkeypatch, tmp_path):
    """No CLIP or LPIPS weights anywhere this process looks."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("VPDSR_CLIP_WEIGHTS", raising=False)


def bench(model, images, out, *extra) -> int:
    lr, hr = images
    return main(["bench", "--model", str(model), "--images", str(lr), "--hr", str(hr), "--out", str(out), *FAST,
                 *map(str, extra)])


@pytest.fixture(scope="module")
def full_report(bench_model_dir, bench_images, bench_artifacts, tmp_path_factory):
    """One run over torch-fp32 (reference), torch-bf16, onnx and tensorrt-fp16, without CLIP weights."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("home")
    for var in ("HOME", "XDG_CACHE_HOME", "TORCH_HOME"):
        mp.setenv(var, str(home / var))
    mp.delenv("VPDSR_CLIP_WEIGHTS", raising=False)
    out = tmp_path_factory.mktemp("bench") / "report"
    try:
        rc = bench(bench_model_dir, bench_images, out, "--artifacts", bench_artifacts,
                   "--backends", "torch-bf16,onnx,tensorrt-fp16", "--min-psnr-vs-ref", "20")
    finally:
        mp.undo()
    return rc, out


def test_report_schema(full_report):
    rc, out = full_report
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == 1 and report["images"] == 2 and report["reference"] == "torch-fp32"
    assert isinstance(report["model"], dict) and isinstance(report["environment"], dict)
    names = [b["name"] for b in report["backends"]]
    assert names == ["torch-fp32", "torch-bf16", "onnx", "tensorrt-fp16"]
    for b in report["backends"]:
        assert {"name", "target", "precision", "device", "status", "reason", "latency_ms", "throughput_ips",
                "peak_mem_mb", "quality"} <= set(b)
    for b in report["backends"][:3]:
        assert b["status"] == "ok", b["reason"]
        lat = b["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["n"] == 2
        assert b["throughput_ips"] == pytest.approx(1000.0 / lat["mean"])
        assert b["peak_mem_mb"] >= 0
        q = b["quality"]
        assert {"clipiqa", "clipiqa_drift", "psnr_vs_ref", "ssim_vs_ref"} <= set(q)
        assert len(q["per_image"]) == 2 and q["psnr_vs_hr"] > 15
    ref, bf16, onnx = report["backends"][:3]
    assert ref["quality"]["psnr_vs_ref"] is None and ref["quality"]["ssim_vs_ref"] is None  # not compared with itself
    # bf16 really differs from fp32; the ONNX graph reproduces torch closely
    assert 25 < bf16["quality"]["psnr_vs_ref"] < onnx["quality"]["psnr_vs_ref"]
    assert onnx["quality"]["ssim_vs_ref"] > 0.99
    assert onnx["call_latency_ms"]["tile"] == 16
    # roofline: FLOPs of the 2x2 tiles of 16 (24x24 LR, overlap 8), the machine's peak, the tiling overhead
    peaks = report["roofline"]["peak"]
    assert peaks["fp32"]["gflops"] > 0 and report["roofline"]["threads"] >= 1
    for b in (ref, onnx):
        r = b["roofline"]
        assert r["plan"]["tiles"] == 4 and r["tiling_overhead"] == pytest.approx(4 * 16 * 16 / (24 * 24))
        assert r["gflop_per_image"] > 0 and r["gflops"] > 0 and r["peak_gflops"] == peaks["fp32"]["gflops"]
        assert r["peak_pct"] == pytest.approx(100 * r["gflops"] / r["peak_gflops"])
        assert r["ms_per_mpix"] == pytest.approx(b["latency_ms"]["p50"] / (96 * 96 / 1e6))
    assert ref["roofline"]["gflop_per_image"] == pytest.approx(onnx["roofline"]["gflop_per_image"])
    gates = report["gates"]
    gated = {"torch-bf16", "onnx"} | ({"tensorrt-fp16"} if tensorrt_skip_reason() is None else set())
    assert {(g["name"], g["backend"]) for g in gates} == {("min-psnr-vs-ref", name) for name in gated}
    assert all(g["passed"] for g in gates) and report["passed"] is True
    assert report["verdict"]["text"].startswith("every gate held (min-psnr-vs-ref)")


def test_skipped_backend_is_listed_with_reason(full_report):
    _, out = full_report
    report = json.loads((out / "report.json").read_text())
    trt = report["backends"][-1]
    if tensorrt_skip_reason() is None:  # TensorRT and a GPU here: the engine was built, and it runs
        assert trt["status"] == "ok", trt["reason"]
        return
    assert trt["status"] == "skipped" and trt["reason"] and "\n" not in trt["reason"]
    assert trt["latency_ms"] is None and trt["quality"] is None
    assert "tensorrt-fp16" in (out / "report.md").read_text()


def test_no_clip_weights_gives_null_with_reason(full_report):
    _, out = full_report
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["clipiqa"]["available"] is False
    for b in report["backends"][:3]:
        q = b["quality"]
        assert q["clipiqa"] is None and q["clipiqa_drift"] is None
        assert q["clipiqa_reason"].startswith("unavailable: ") and "RN50.pt" in q["clipiqa_reason"]
        assert all(r["clipiqa"] is None for r in q["per_image"])


def test_html_is_self_contained_with_plots_and_crops(full_report):
    _, out = full_report
    page = (out / "report.html").read_text()
    assert page.count("<svg") >= 2  # latency bars and the latency-vs-drift scatter
    assert re.search(r"src='data:image/png;base64,[A-Za-z0-9+/]{1000,}", page)  # the crops
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", page)
    md = (out / "report.md").read_text()
    assert "| torch-fp32 |" in md and "| onnx |" in md and "min-psnr-vs-ref" in md


def test_failing_gate_exits_1_and_names_it(bench_model_dir, bench_images, tmp_path, capsys, no_clip):
    rc = bench(bench_model_dir, bench_images, tmp_path / "r", "--backends", "torch-bf16", "--min-psnr-vs-ref", "200")
    err = capsys.readouterr().err
    assert rc == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("vpdsr bench: error:") and "min-psnr-vs-ref[torch-bf16]" in last
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["passed"] is False and report["gates"][0]["passed"] is False
    assert "FAIL" in (tmp_path / "r" / "report.md").read_text()


def test_corrupt_image_exits_2_and_writes_nothing(bench_model_dir, bench_images, tmp_path, capsys, no_clip):
    lr, hr = bench_images
    bad = tmp_path / "lr"
    bad.mkdir()
    for p in lr.iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    data = (lr / "coffee.png").read_bytes()
    (bad / "zz_broken.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "report"
    rc = main(["bench", "--model", str(bench_model_dir), "--images", str(bad), "--out", str(out), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "zz_broken.png" in err[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]


def test_clipiqa_gate_without_weights_is_bad_input(bench_model_dir, bench_images, tmp_path, capsys, no_clip):
    rc = bench(bench_model_dir, bench_images, tmp_path / "r", "--max-clipiqa-drift", "0.1")
    assert rc == 2
    assert "max-clipiqa-drift" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_with_clip_weights_clipiqa_numbers_and_gate(bench_model_dir, bench_images, clip_weights, tmp_path):
    rc = bench(bench_model_dir, bench_images, tmp_path / "r", "--backends", "torch-bf16",
               "--clip-weights", clip_weights, "--max-clipiqa-drift", "0.5")
    assert rc == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    ref, bf16 = report["backends"]
    for b in (ref, bf16):
        assert 0 < b["quality"]["clipiqa"] < 1
        assert all(0 < r["clipiqa"] < 1 for r in b["quality"]["per_image"])
    drifts = [r["clipiqa"] - q["clipiqa"] for r, q in zip(bf16["quality"]["per_image"], ref["quality"]["per_image"])]
    assert bf16["quality"]["clipiqa_drift"] == pytest.approx(sum(drifts) / 2)
    assert bf16["quality"]["clipiqa_drift_worst"] == pytest.approx(min(drifts))
    assert report["bicubic"]["clipiqa"] is not None
    assert [g["name"] for g in report["gates"]] == ["max-clipiqa-drift"] and report["passed"]


def test_latency_regression_gate_against_baseline(bench_model_dir, bench_images, tmp_path, capsys, no_clip):
    assert bench(bench_model_dir, bench_images, tmp_path / "first") == 0
    base = json.loads((tmp_path / "first" / "report.json").read_text())
    fast = json.loads(json.dumps(base))
    # Baselines far outside any real timing (1 us, 1000 s) so the verdict cannot depend on machine load.
    fast["backends"][0]["latency_ms"]["p50"] = 1e-3
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    rc = bench(bench_model_dir, bench_images, tmp_path / "second", "--baseline", tmp_path / "fast.json",
               "--max-latency-regression", "50")
    assert rc == 1
    assert "max-latency-regression[torch-fp32]" in capsys.readouterr().err
    slow = json.loads(json.dumps(base))
    slow["backends"][0]["latency_ms"]["p50"] = 1e6
    (tmp_path / "slow.json").write_text(json.dumps(slow))
    rc = bench(bench_model_dir, bench_images, tmp_path / "third", "--baseline", tmp_path / "slow.json",
               "--max-latency-regression", "50")
    assert rc == 0
    row = json.loads((tmp_path / "third" / "report.json").read_text())["backends"][0]
    assert row["latency_change_pct"] < -50


def test_unknown_backend_is_bad_input(bench_model_dir, bench_images, tmp_path, capsys, no_clip):
    rc = bench(bench_model_dir, bench_images, tmp_path / "r", "--backends", "nonsense")
    assert rc == 2 and "nonsense" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_split_artifact_reports_per_stage_latency(bench_model_dir, bench_images, tmp_path, no_clip):
    pytest.importorskip("onnxruntime")
    export(str(bench_model_dir), tmp_path / "art", "onnx", stages="split", tile=16, validation=SMALL)
    assert bench(bench_model_dir, bench_images, tmp_path / "r", "--artifacts", tmp_path / "art") == 0
    onnx = json.loads((tmp_path / "r" / "report.json").read_text())["backends"][1]
    assert onnx["status"] == "ok" and onnx["stages"] == "split"
    stages = onnx["stage_latency_ms"]
    assert set(stages) == {"encoder", "denoiser", "decoder"}
    assert all(s["p50"] > 0 and s["n"] == onnx["call_latency_ms"]["n"] for s in stages.values())
    assert sum(s["mean"] for s in stages.values()) <= onnx["call_latency_ms"]["mean"] * 1.01
    assert onnx["quality"]["psnr_vs_ref"] > 60


def test_reference_that_cannot_run_is_bad_input(bench_model_dir, bench_images, tmp_path, capsys, no_clip):
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only refusal")
    rc = bench(bench_model_dir, bench_images, tmp_path / "r", "--device", "cuda")
    assert rc == 2 and "no CUDA device" in capsys.readouterr().err and not (tmp_path / "r").exists()


@pytest.mark.gpu
def test_torch_on_cuda_half_precisions(bench_model_dir, bench_images, tmp_path, no_clip):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    assert bench(bench_model_dir, bench_images, tmp_path / "r", "--device", "cuda",
                 "--backends", "torch-fp16,torch-bf16") == 0
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["backends"]
    assert [r["status"] for r in rows] == ["ok"] * 3
    for r in rows:
        assert r["device"].startswith("cuda") and r["peak_gpu_mem_mb"] > 0 and r["call_latency_ms"]["p50"] > 0
    assert all(25 < r["quality"]["psnr_vs_ref"] < 200 for r in rows[1:])


def test_default_auto_tiling_and_threads(bench_model_dir, bench_images, bench_artifacts, tmp_path, no_clip):
    lr, hr = bench_images
    out = tmp_path / "report"
    rc = main(["bench", "--model", str(bench_model_dir), "--images", str(lr), "--out", str(out), "--artifacts",
               str(bench_artifacts), "--backends", "onnx", "--warmup", "1", "--iters", "1"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    probe = report["environment"]["threads_probe"]
    assert probe["threads"] in (1, probe["max_threads"]) and report["environment"]["threads"] == probe["threads"]
    ref, onnx = report["backends"][:2]
    assert ref["tiling"]["mode"] == "auto" and ref["tiling"]["plan"]["tiles"] == 1  # dynamic torch: whole 24x24
    assert ref["roofline"]["tiling_overhead"] == 1.0
    assert onnx["tiling"]["plan"]["tile"] == [16, 16]  # the static artifact keeps its 16x16 tiles
    assert onnx["roofline"]["tiling_overhead"] == pytest.approx(4 * 256 / 576)
    text = (out / "report.md").read_text()
    assert "## Roofline" in text and "whole image" in text and "static 16x16 engine" in text
