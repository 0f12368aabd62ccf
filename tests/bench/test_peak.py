"""Machine peaks: every engine's figure measured, emulated dtypes told apart, cached per machine and threads."""
from __future__ import annotations

import json

import pytest

from vpdsr.bench.peak import Figure, cache_key, machine_peaks, peak_for, summarize


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_figures_of_every_installed_engine_and_a_cache_per_thread_count(cache):
    peaks = machine_peaks(threads=1, size=128, seconds=0.01)
    assert peaks["cached"] is None and peaks["threads"] == 1 and peaks["size"] == 128
    engines = {(f["engine"], f["precision"]) for f in peaks["figures"]}
    assert {("torch", "fp32"), ("torch", "bf16"), ("torch", "fp16"), ("torch", "int8")} <= engines
    pytest.importorskip("onnxruntime")
    ops = {f["op"] for f in peaks["figures"] if f["engine"] == "onnxruntime"}
    assert {"MatMul", "MatMulInteger u8s8", "MatMulInteger s8s8", "Q/DQ MatMul u8s8", "Q/DQ MatMul s8s8"} == ops
    assert peaks["peak"]["fp32"]["gflops"] > 0 and peaks["peak"]["int8"]["gflops"] > 0
    bw = peaks["bandwidth"]  # the memory roof, measured with the matmul peaks and cached with them
    assert bw["gbps"] > 0 and bw["threads"] == 1 and bw["engine"] == "torch" and "triad" in bw["op"]
    files = list((cache / "peak").glob("*.json"))
    assert [f.stem for f in files] == [cache_key(1, 128)]
    again = machine_peaks(threads=1, size=128, seconds=0.01)  # read back, not measured
    assert again["cached"] == str(files[0]) and again["figures"] == peaks["figures"]
    assert again["bandwidth"] == bw
    assert cache_key(2, 128) != cache_key(1, 128)
    json.loads(files[0].read_text())  # a plain JSON file


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


def test_info_peak_prints_every_figure_and_the_peaks(cache, monkeypatch, capsys):
    from vpdsr.bench import peak
    from vpdsr.cli import main

    monkeypatch.setattr(peak, "SIZE", 128)  # a small matrix: the test times the command, not the machine
    assert main(["info", "--peak", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "peak (measured now" in out and "Machine peak (best 128^2 matmul, 1 thread(s)" in out
    assert "memory bandwidth" in out and "triad" in out
    lines = out.splitlines()
    for precision in ("fp32", "bf16", "fp16", "int8"):
        assert any(line.split()[:2] == [precision, "torch"] for line in lines), precision
    assert main(["info", "--peak", "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["peak"]["cached"] and data["peak"]["peak"]["fp32"]["gflops"] > 0


def test_a_cache_from_before_the_bandwidth_is_measured_again(cache):
    from vpdsr.bench import peak

    path = cache / "peak" / f"{cache_key(1, 128)}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 1, "threads": 1, "size": 128, "figures": [], "peak": {}}))
    data = machine_peaks(threads=1, size=128, seconds=0.01)
    assert data["cached"] is None and data["schema"] == peak.SCHEMA and data["bandwidth"]["gbps"] > 0

