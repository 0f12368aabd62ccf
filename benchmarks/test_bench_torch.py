"""Torch eager (the reference backend): fp32, bf16, and fp16 where the device has it."""
import pytest
from conftest import run_benchmark


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_torch(benchmark, model, feed, opts, precision):
    from vpdsr.runtimes.torch_runner import TorchRunner

    if precision == "fp16" and not str(opts["device"]).startswith("cuda"):
        pytest.skip("torch fp16 on CPU is emulated and not a deployment target; use --device cuda")
    run_benchmark(benchmark, TorchRunner(model, device=opts["device"], precision=precision), feed, opts)
