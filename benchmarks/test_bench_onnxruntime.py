"""ONNX Runtime (CPU provider): fp32, fp16, INT8 (onnxruntime QDQ and modelopt QDQ)."""
import pytest
from conftest import run_benchmark

pytest.importorskip("onnxruntime", reason="pip install 'vpdsr[onnx]'")


@pytest.mark.parametrize("target", ["onnx", "onnx-fp16", "ort-int8", "modelopt-int8"])
def test_onnxruntime(benchmark, artifact_runner, feed, opts, target):
    run_benchmark(benchmark, artifact_runner(target), feed, opts)
