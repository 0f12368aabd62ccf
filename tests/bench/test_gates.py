"""Gates over report rows: CLIPIQA drift, PSNR vs reference, latency regression, failed backends."""
from __future__ import annotations

import json

import pytest

from vpdsr.bench.gates import GateConfig, apply_required, evaluate, latency_change_pct, read_baseline, verdict
from vpdsr.errors import InputError


def row(name, status="ok", p50=10.0, psnr_min=40.0, drift_worst=-0.01, reason=None, piqe_worst=1.0, ms_ssim_min=0.99):
    quality = {"psnr_vs_ref_min": psnr_min, "clipiqa_drift_worst": drift_worst, "piqe_drift_worst": piqe_worst,
               "ms_ssim_vs_ref_min": ms_ssim_min}
    return {"name": name, "status": status, "reason": reason, "latency_ms": {"p50": p50} if status == "ok" else None,
            "quality": quality if status == "ok" else None}


ROWS = [row("torch-fp32", psnr_min=float("inf"), drift_worst=None), row("onnx", psnr_min=60.0, drift_worst=-0.002),
        row("ort-int8", psnr_min=31.0, drift_worst=-0.03), row("tensorrt-fp16", "skipped", reason="no GPU")]


def by_name(gates):
    return {(g.name, g.backend): g for g in gates}


def test_psnr_gate_per_backend_and_reference_not_gated():
    gates = by_name(evaluate(ROWS, "torch-fp32", GateConfig(min_psnr_vs_ref=35.0)))
    assert set(gates) == {("min-psnr-vs-ref", "onnx"), ("min-psnr-vs-ref", "ort-int8")}
    assert gates["min-psnr-vs-ref", "onnx"].passed and gates["min-psnr-vs-ref", "onnx"].value == 60.0
    assert not gates["min-psnr-vs-ref", "ort-int8"].passed
    assert "31" in gates["min-psnr-vs-ref", "ort-int8"].detail


def test_clipiqa_drift_gate_allows_a_drop_of_at_most_x():
    gates = by_name(evaluate(ROWS, "torch-fp32", GateConfig(max_clipiqa_drift=0.01)))
    assert gates["max-clipiqa-drift", "onnx"].passed
    assert not gates["max-clipiqa-drift", "ort-int8"].passed
    assert all(g.passed for g in evaluate(ROWS, "torch-fp32", GateConfig(max_clipiqa_drift=0.05)))
    # a gain in CLIPIQA is no failure
    assert evaluate([row("a"), row("b", drift_worst=0.2)], "a", GateConfig(max_clipiqa_drift=0.0))[0].passed


def test_latency_regression_against_baseline():
    baseline = {"schema": 1, "backends": [row("torch-fp32", p50=10.0), row("onnx", p50=5.0)]}
    now = [row("torch-fp32", p50=10.5), row("onnx", p50=6.0), row("new", p50=1.0)]
    gates = by_name(evaluate(now, "torch-fp32", GateConfig(max_latency_regression=10.0, baseline=baseline)))
    assert set(gates) == {("max-latency-regression", "torch-fp32"), ("max-latency-regression", "onnx")}
    assert gates["max-latency-regression", "torch-fp32"].passed
    assert gates["max-latency-regression", "torch-fp32"].value == pytest.approx(5.0)
    assert not gates["max-latency-regression", "onnx"].passed
    assert gates["max-latency-regression", "onnx"].value == pytest.approx(20.0)
    assert latency_change_pct(row("x", p50=8.0), row("x", p50=10.0)) == pytest.approx(-20.0)


def test_latency_gate_needs_a_baseline():
    with pytest.raises(InputError, match="--baseline"):
        GateConfig(max_latency_regression=5.0)


def test_failed_backend_is_a_failed_gate():
    gates = evaluate([row("torch-fp32"), row("onnx", "failed", reason="boom")], "torch-fp32", GateConfig())
    assert [(g.name, g.backend, g.passed) for g in gates] == [("backend-ran", "onnx", False)]


def test_piqe_drift_gate_bounds_the_worst_rise():
    rows = [row("ref"), row("a", piqe_worst=2.0), row("b", piqe_worst=-3.0), row("c", piqe_worst=None)]
    gates = by_name(evaluate(rows, "ref", GateConfig(max_piqe_drift=1.5)))
    assert not gates["max-piqe-drift", "a"].passed and "2 (at most 1.5)" in gates["max-piqe-drift", "a"].detail
    assert gates["max-piqe-drift", "b"].passed  # PIQE went down: better
    assert not gates["max-piqe-drift", "c"].passed  # not measured is no pass


def test_ms_ssim_gate_bounds_the_lowest_image():
    gates = by_name(evaluate([row("ref"), row("a", ms_ssim_min=0.95), row("b", ms_ssim_min=0.999)], "ref",
                             GateConfig(min_ms_ssim_vs_ref=0.98)))
    assert not gates["min-ms-ssim-vs-ref", "a"].passed and gates["min-ms-ssim-vs-ref", "b"].passed
    with pytest.raises(InputError, match="0..1"):
        GateConfig(min_ms_ssim_vs_ref=2.0)
    with pytest.raises(InputError, match=">= 0"):
        GateConfig(max_piqe_drift=-1.0)


def test_required_skip_fails_and_allowed_failure_passes():
    rows = [row("ref"), row("trt", "skipped", reason="no GPU"), row("ov", "failed", reason="boom")]
    cfg = GateConfig(require=frozenset({"trt"}), allow_failed=frozenset({"ov"}))
    apply_required(rows, cfg.require)
    assert rows[1]["status"] == "failed" and rows[1]["reason"] == "required (--require) but skipped: no GPU"
    gates = by_name(evaluate(rows, "ref", cfg))
    assert not gates["backend-ran", "trt"].passed and gates["backend-ran", "ov"].passed
    out = verdict(rows, list(gates.values()), cfg)
    assert out["passed"] is False and out["failed_backends"] == ["trt"] and out["allowed_failed"] == ["ov"]
    assert out["text"] == "FAILED: backend trt failed; failed but allowed: ov"


@pytest.mark.parametrize(("cfg", "text"), [
    (GateConfig(), "no gates set; 1 skipped (cannot run here)"),
    (GateConfig(min_psnr_vs_ref=30.0), "every gate held (min-psnr-vs-ref); 1 skipped (cannot run here)"),
    (GateConfig(min_psnr_vs_ref=50.0), "FAILED: min-psnr-vs-ref[ort-int8]; 1 skipped (cannot run here)"),
])
def test_verdict_says_when_no_gate_was_set(cfg, text):
    out = verdict(ROWS, evaluate(ROWS, "torch-fp32", cfg), cfg)
    assert out["text"] == text and out["passed"] == (not text.startswith("FAILED"))
    assert out["gates_set"] == cfg.thresholds_set() and out["skipped"] == ["tensorrt-fp16"]


def test_read_baseline_rejects_non_reports(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_baseline(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_baseline(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"schema": 7}))
    with pytest.raises(InputError, match="not a vpdsr report"):
        read_baseline(tmp_path / "other.json")
    (tmp_path / "ok.json").write_text(json.dumps({"schema": 1, "backends": []}))
    assert read_baseline(tmp_path / "ok.json")["backends"] == []
    for rows, where in ((["abc"], "`backends[0]` must be an object"), ([{"name": 3}], "`backends[0]`.name"),
                        ([{"name": "a", "latency_ms": [1]}], "latency_ms must be an object"),
                        ([{"name": "a", "latency_ms": {"p50": True}}], "p50 must be a number")):
        (tmp_path / "rows.json").write_text(json.dumps({"schema": 1, "backends": rows}))
        with pytest.raises(InputError, match=where.replace("[", r"\[").replace("]", r"\]")):
            read_baseline(tmp_path / "rows.json")
