"""TensorRT engines (fp16, INT8): need `tensorrt` and a CUDA GPU, skipped elsewhere."""
import pytest
from conftest import run_benchmark

pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'vpdsr[gpu]' on a CUDA machine)")


@pytest.mark.parametrize("target", ["tensorrt-fp16", "tensorrt-int8"])
def test_tensorrt(benchmark, artifact_runner, feed, opts, target):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device; torch sees none")
    run_benchmark(benchmark, artifact_runner(target), feed, opts)
