"""Machine peaks: every engine's figure measured, emulated dtypes told apart, cached per machine and threads.

The engines' figures are injected (`engines`): what the tests check is what is made of them, on any CPU.
"""
from __future__ import annotations

import json

import pytest

from vpdsr import env
from vpdsr.bench import bandwidth, peak
from vpdsr.bench.peak import Figure, cache_key, machine_peaks, peak_for, summarize


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def engines(monkeypatch):
    """Each engine's figures as a probe on some CPU gave them (torch's bf16 emulated), the calls counted: the
    machinery around the measurement runs for real, the measurement itself is benchmarks/' business."""
    calls = []

    def fake(engine, figures):
        def measure(n, threads, seconds, *work):
            calls.append((engine, n, threads))
            return [Figure(p, engine, op, g * threads if g else g, note) for p, op, g, note in figures]

        return measure

    monkeypatch.setattr(peak, "_torch_figures", fake("torch", [
        ("fp32", "matmul", 100.0, None), ("bf16", "matmul 512^2", 0.3, None), ("fp16", "matmul 512^2", 0.4, None),
        ("int8", "_int_mm", 180.0, None)]))
    monkeypatch.setattr(peak, "_ort_figures", fake("onnxruntime", [
        ("fp32", "MatMul", 90.0, None), ("int8", "MatMulInteger u8s8", 300.0, None),
        ("int8", "MatMulInteger s8s8", 20.0, None)]))
    monkeypatch.setattr(peak, "_openvino_figures", fake("openvino", [
        ("fp32", "MatMul", 110.0, None), ("bf16", "MatMul", None, "the CPU plugin lacks BF16")]))

    def triad(threads, seconds=0.25):
        calls.append(("triad", None, threads))
        return {"gbps": 20.0 * threads, "engine": "torch", "op": bandwidth.OP, "array_mb": 64, "threads": threads}

    monkeypatch.setattr(bandwidth, "triad", triad)
    return calls


def test_figures_are_cached_per_machine_and_thread_count(cache, engines):
    peaks = machine_peaks(threads=1, size=128, seconds=0.01)
    assert peaks["cached"] is None and peaks["threads"] == 1 and peaks["size"] == 128
    assert ("torch", 128, 1) in engines
    # an emulated dtype (below half the same engine's fp32) is told apart, never a peak
    bf16 = next(f for f in peaks["figures"] if f["engine"] == "torch" and f["precision"] == "bf16")
    assert bf16["note"].startswith("emulated/unusable (0.3 vs fp32 100 on torch)")
    best = peaks["peak"]
    fp32, int8 = best["fp32"], best["int8"]
    assert fp32["gflops"] in (100.0, 110.0) and int8 == {"gflops": 300.0, "engine": "onnxruntime",
                                                          "op": "MatMulInteger u8s8"}
    assert best["bf16"] is None and best["fp16"] is None
    assert peaks["bandwidth"]["gbps"] == 20.0 and ("triad", None, 1) in engines  # measured and cached with them
    files = list((cache / "peak").glob("*.json"))
    assert [f.stem for f in files] == [cache_key(1, 128)]
    json.loads(files[0].read_text())  # a plain JSON file
    measured = len(engines)
    again = machine_peaks(threads=1, size=128, seconds=0.01)  # read back, not measured
    assert again["cached"] == str(files[0]) and again["figures"] == peaks["figures"] and len(engines) == measured
    assert again["bandwidth"] == peaks["bandwidth"]
    two = machine_peaks(threads=2, size=128, seconds=0.01)  # another thread count: its own figures and file
    assert two["cached"] is None and cache_key(2, 128) != cache_key(1, 128) and len(engines) > measured
    assert two["peak"]["int8"]["gflops"] == 600.0 and len(list((cache / "peak").glob("*.json"))) == 2
    files[0].write_text("{not json")  # a damaged cache is measured again
    assert machine_peaks(threads=1, size=128, seconds=0.01)["cached"] is None
    assert machine_peaks(threads=1, size=128, seconds=0.01, refresh=True)["cached"] is None


def test_every_installed_engine_is_measured():
    """A real measurement at a tiny size: which figures exist, never how fast (that is benchmarks/')."""
    peaks = peak.measure_peaks(threads=1, seconds=0.0, size=32)
    engines = {(f["engine"], f["precision"]) for f in peaks["figures"]}
    assert {("torch", "fp32"), ("torch", "bf16"), ("torch", "fp16"), ("torch", "int8")} <= engines
    assert all(f["gflops"] is None or f["gflops"] > 0 for f in peaks["figures"])
    assert all(f["gflops"] is not None or f["note"] for f in peaks["figures"])  # no figure without a reason
    if env.version("onnxruntime") or env.version("onnxruntime-gpu"):
        ops = {f["op"] for f in peaks["figures"] if f["engine"] == "onnxruntime"}
        assert {"MatMul", "MatMulInteger u8s8", "MatMulInteger s8s8", "Q/DQ MatMul u8s8", "Q/DQ MatMul s8s8"} == ops
    if env.version("openvino"):
        assert {f["precision"] for f in peaks["figures"] if f["engine"] == "openvino"} == set(peak.PRECISIONS)
    bw = peaks["bandwidth"]  # the triad: a figure of this machine, with how it was taken
    assert bw["gbps"] > 0 and bw["threads"] == 1 and "triad" in bw["op"] and bw["array_mb"] == bandwidth.ARRAY_MB


def test_emulated_dtype_is_never_a_peak_and_falls_back_to_fp32():
    figures = [Figure("fp32", "torch", "matmul", 100.0), Figure("fp16", "torch", "matmul", 0.4, "emulated/unusable"),
               Figure("bf16", "openvino", "MatMul", 180.0), Figure("int8", "onnxruntime", "x", 300.0),
               Figure("int8", "openvino", "y", 250.0), Figure("fp32", "openvino", "MatMul", 120.0)]
    table = summarize(figures)
    assert table["fp32"] == {"gflops": 120.0, "engine": "openvino", "op": "MatMul"}
    assert table["fp16"] is None and table["int8"]["engine"] == "onnxruntime"
    peaks = {"peak": table}
    assert peak_for(peaks, "int8") == (300.0, "int8")
    assert peak_for(peaks, "fp16") == (120.0, "fp32")  # no usable fp16 here: measured against fp32
    assert peak_for(peaks, "fp8") == (120.0, "fp32")
    assert peak_for(None, "fp32") == (None, None)


def test_info_peak_prints_every_figure_and_the_peaks(cache, engines, monkeypatch, capsys):
    from vpdsr.cli import main

    monkeypatch.setattr(peak, "SIZE", 128)
    assert main(["info", "--peak", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "peak (measured now" in out and "Machine peak (best 128^2 matmul, 1 thread(s)" in out
    lines = out.splitlines()
    for precision in ("fp32", "bf16", "fp16", "int8"):
        assert any(line.split()[:2] == [precision, "torch"] for line in lines), precision
    assert any("MatMulInteger u8s8" in line and "300.0 GOP/s" in line for line in lines)
    assert any("emulated/unusable" in line for line in lines)
    assert "memory bandwidth 20.0 GB/s (triad" in out
    assert main(["info", "--peak", "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["peak"]["cached"] and data["peak"]["peak"]["fp32"]["gflops"] > 0


def test_a_cache_from_before_the_bandwidth_is_measured_again(cache, engines):
    path = cache / "peak" / f"{cache_key(1, 128)}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 1, "threads": 1, "size": 128, "figures": [], "peak": {}}))
    data = machine_peaks(threads=1, size=128, seconds=0.01)
    assert data["cached"] is None and data["schema"] == peak.SCHEMA and data["bandwidth"]["gbps"] == 20.0
