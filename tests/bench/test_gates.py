"""Gates over report rows: CLIPIQA drift, PSNR vs reference, latency regression, failed backends."""
from __future__ import annotations

import json

import pytest

from vpdsr.bench.gates import GateConfig, evaluate, latency_change_pct, read_baseline
from vpdsr.errors import InputError


def row(name, status="ok", p50=10.0, psnr_min=40.0, drift_worst=-0.01, reason=None):
    return {"name": name, "status": status, "reason": reason, "latency_ms": {"p50": p50} if status == "ok" else None,
            "quality": {"psnr_vs_ref_min": psnr_min, "clipiqa_drift_worst": drift_worst} if status == "ok" else None}


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
