"""benchmarks/gpu_compiled.py, the prepared GPU check: without CUDA it says so in one line and exits 0;
its CPU smoke mode runs the whole script (the same runner code the GPU rows use)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_compiled.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_compiled", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_one_line_and_exit_0(tmp_path, capsys):
    assert _script().main(["--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA device" in out and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_cpu_smoke_writes_every_row(tmp_path):
    assert _script().main(["--smoke", "--out", str(tmp_path / "r.json"), "--variants",
                           "eager-fp16,compiled-graphs-bf16"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["eager-fp32", "eager-fp16", "compiled-graphs-bf16"]
    assert report["gflop_per_call"] > 0 and report["peak_tflops"]["fp32"] > 0
    for row in report["rows"]:
        assert "error" not in row, row
        assert row["ms"] > 0 and row["finite"] and row["tflops"] > 0
    assert report["rows"][1]["psnr_vs_fp32"] > 40 and report["rows"][2]["runner"]["compile"] == "default"
