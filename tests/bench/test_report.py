"""Report writing: JSON without NaN/inf, the Markdown table, atomic writes that keep other files."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vpdsr.bench.harness import BenchResult, choose_crop
from vpdsr.bench.report import json_safe, markdown, write_report


def minimal_report(**over) -> dict:
    row = {"name": "torch-fp32", "target": "torch-fp32", "precision": "fp32", "device": "cpu", "status": "ok",
           "reason": None, "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "mean": 1.5}, "throughput_ips": 666.7,
           "peak_mem_mb": 1.0, "quality": {"clipiqa": None, "clipiqa_drift": None, "psnr_vs_ref": math.inf,
                                           "ssim_vs_ref": 1.0,
                                           "per_image": [{"name": "a", "clipiqa": None, "psnr_vs_ref": math.inf}]}}
    report = {"schema": 1, "model": {"source": "m"}, "images": 1, "image_names": ["a"], "reference": "torch-fp32",
              "seed": 0, "tiling": {"tile": 16, "overlap": 8}, "latency_config": {"warmup": 1, "iters": 2},
              "metrics": {"clipiqa": {"available": False, "reason": "unavailable: no weights"}}, "bicubic": {},
              "backends": [row], "gates": [], "passed": True,
              "environment": {"cpu": {"name": "cpu", "cores": 2}, "torch_threads": 2, "gpus": []}, "created": "now"}
    report.update(over)
    return report


def test_json_safe_has_no_nan_or_infinity():
    data = json_safe({"a": math.inf, "b": -math.inf, "c": math.nan, "d": np.float32(0.5), "e": np.int64(3),
                      "f": (1, np.bool_(True))})
    assert data == {"a": "inf", "b": "-inf", "c": None, "d": 0.5, "e": 3, "f": [1, True]}
    json.dumps(data, allow_nan=False)


def test_markdown_table_and_notes():
    md = markdown(minimal_report())
    assert "| torch-fp32 | fp32 | cpu | ok | 1.0 | 2.0 | 3.0 | 1.5 | 666.70 |" in md
    assert "| inf |" in md  # identical images: PSNR inf, not a number made up
    assert "clipiqa: unavailable: no weights" in md
    assert "No gates were set." in md


def test_write_report_keeps_other_files_in_out(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = BenchResult(report=minimal_report(), crops={})
    write_report(tmp_path, result)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "report.json").read_text())["backends"][0]["quality"]["psnr_vs_ref"] == "inf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "report.html", "report.json", "report.md"]


def test_write_report_replaces_an_older_report(tmp_path):
    out = tmp_path / "report"
    write_report(out, BenchResult(report=minimal_report(seed=1), crops={}))
    write_report(out, BenchResult(report=minimal_report(seed=2), crops={}))
    assert json.loads((out / "report.json").read_text())["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_choose_crop_finds_the_detailed_region():
    img = np.zeros((200, 300, 3), np.float32)
    img[120:180, 200:260] = np.random.default_rng(0).random((60, 60, 3))
    y, x, size = choose_crop(img, 64)
    assert size == 64 and 100 <= y <= 130 and 180 <= x <= 210
    assert choose_crop(img[:40, :50], 64)[2] == 40


GATE = {"name": "min-psnr-vs-ref", "backend": "onnx", "threshold": 30, "value": 40.0, "passed": True, "detail": "ok"}


@pytest.mark.parametrize(("gates", "failed", "banner", "css"), [
    ([], [], "no gates set", "none"),  # nothing was checked: not shown as a green pass
    ([GATE], [], "every gate held (min-psnr-vs-ref)", "pass"),
    ([{**GATE, "threshold": 200, "passed": False}], [], "FAILED: min-psnr-vs-ref[onnx]", "fail"),
    ([], ["onnx"], "FAILED: backend onnx failed", "fail"),
])
def test_verdict_banner_in_md_and_html(tmp_path, gates, failed, banner, css):
    from vpdsr.bench.gates import BACKEND_RAN, Gate, GateConfig, verdict

    rows = [{"name": "torch-fp32", "status": "ok"}, {"name": "onnx", "status": "failed" if failed else "ok"}]
    objs = [Gate(**g) for g in gates] + [Gate(BACKEND_RAN, n, 0, "boom", False, "failed: boom") for n in failed]
    cfg = GateConfig(min_psnr_vs_ref=gates[0]["threshold"] if gates else None)
    outcome = verdict(rows, objs, cfg)
    report = minimal_report(gates=[g.to_dict() for g in objs], passed=outcome["passed"], verdict=outcome)
    write_report(tmp_path / "r", BenchResult(report=report, crops={}))
    page = (tmp_path / "r" / "report.html").read_text()
    assert f"<span class='verdict {css}'>{banner}" in page
    assert f"**{banner}" in (tmp_path / "r" / "report.md").read_text()
    assert outcome["passed"] == (css != "fail")


def test_without_matplotlib_the_report_is_written_without_figures(tmp_path, monkeypatch):
    """Plots need the metrics extra: without matplotlib report.html says so, and the plane is a table only."""
    import sys

    from vpdsr.bench.plane_report import plane_section

    row = minimal_report()["backends"][0]
    rows = [{**row, "quality": {**row["quality"], "psnr_vs_hr": 28.0, "piqe": 70.0}}]
    baselines = [{"name": "bicubic", "kind": "bicubic", "status": "ok", "quality": {"psnr_vs_hr": 27.0, "piqe": 80.0}}]
    report = minimal_report(backends=rows, baselines=baselines, plane=plane_section(rows, baselines))
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] or ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib now raises ImportError
    write_report(tmp_path / "r", BenchResult(report=report, crops={}))
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.html", "report.json", "report.md"]
    assert "plots need matplotlib" in (tmp_path / "r" / "report.html").read_text()
    assert "| torch-fp32 | backend | 28.00 | 70.0 |" in (tmp_path / "r" / "report.md").read_text()
