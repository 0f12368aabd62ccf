"""OpenVINO (CPU): f32, bf16 (AMX where present), f16, INT8 (NNCF)."""
import pytest
from conftest import run_benchmark

pytest.importorskip("openvino", reason="pip install 'vpdsr[openvino]'")


@pytest.mark.parametrize("target", ["openvino", "openvino-bf16", "openvino-f16", "openvino-int8"])
def test_openvino(benchmark, artifact_runner, feed, opts, target):
    run_benchmark(benchmark, artifact_runner(target), feed, opts)
