"""TorchRunner's GPU path: what runs on CPU here (channels_last, torch.compile, the refusals, a forward
torch.compile traces whole), and the CUDA parts (CUDA graphs, fp16/bf16 compiled, fp8) where a GPU is present."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.runtimes.test_runner_contract import RunnerContract
from tests.runtimes.tiny_artifacts import inputs, psnr, tiny_model, torch_reference
from vpdsr.errors import CapabilityError, ConfigError
from vpdsr.runtimes.torch_runner import TorchRunner

NO_CUDA = None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"


def _fp8_skip_reason() -> str | None:
    if NO_CUDA:
        return NO_CUDA
    cc = torch.cuda.get_device_capability()
    return None if cc >= (8, 9) else f"fp8 needs compute capability >= 8.9; this GPU has {cc[0]}.{cc[1]}"


def test_channels_last_on_cpu_matches_the_reference():
    feed = inputs(batch=2, seed=3)
    with TorchRunner(copy.deepcopy(tiny_model()), channels_last=True) as r:
        assert r.describe()["channels_last"] is True
        sr = r.infer(feed)["sr"]
    np.testing.assert_allclose(sr, torch_reference(feed), atol=1e-5)


def test_channels_last_defaults_follow_the_device():
    assert TorchRunner(tiny_model()).channels_last is False
    assert TorchRunner(tiny_model(), device="cuda:0").channels_last is True  # no GPU needed to construct


def test_compiled_forward_matches_eager():
    """torch.compile's real tracing (dynamo + the `eager` backend: no code generation, seconds not minutes)."""
    torch._dynamo.reset()
    feed = inputs(seed=4)
    with TorchRunner(copy.deepcopy(tiny_model()), compile="default", compile_backend="eager") as r:
        sr = r.infer(feed)["sr"]
        assert r.describe()["compile"] == "default" and r.describe()["compile_backend"] == "eager"
    np.testing.assert_allclose(sr, torch_reference(feed), atol=1e-5)


def test_the_deploy_forward_traces_as_one_graph():
    """No graph break (a float read from a tensor) and so no host<->device copy in the forward: the
    conditions for torch.compile to see the whole model and for a CUDA graph capture to succeed."""
    torch._dynamo.reset()
    feed = inputs(seed=5)
    with torch.inference_mode():
        explained = torch._dynamo.explain(tiny_model())(torch.from_numpy(feed["lr"]), torch.from_numpy(feed["noise"]))
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.slow
def test_inductor_compiled_on_cpu_stays_at_reference_quality():
    torch._dynamo.reset()
    feed = inputs(seed=6)
    with TorchRunner(copy.deepcopy(tiny_model()), compile="max-autotune-no-cudagraphs") as r:
        sr = r.infer(feed)["sr"]
    assert psnr(sr, torch_reference(feed)) >= 80.0  # fused kernels reorder float sums: not bit-identical


def test_refusals_are_one_line_config_errors():
    cases = [({"compile": "fast"}, "`compile` must be one of"),
             ({"cuda_graphs": True}, "`cuda_graphs` needs a CUDA device"),
             ({"device": "cuda", "cuda_graphs": True, "compile": "reduce-overhead"}, "would capture twice"),
             ({"device": "gpu"}, "`device` must be cpu or cuda"),
             ({"device": "cuda:x"}, "cuda or cuda:N"),
             ({"precision": "int4"}, "precision")]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message) as e:
            TorchRunner(tiny_model(), **kwargs)
        assert "\n" not in str(e.value)


@pytest.mark.skipif(NO_CUDA is None, reason="the refusal is for machines without CUDA")
def test_cuda_on_a_machine_without_it_is_a_capability_error():
    with pytest.raises(CapabilityError, match="torch sees no CUDA device"):
        TorchRunner(tiny_model(), device="cuda:0", precision="fp16").activate()


def test_fp8_on_cpu_is_a_capability_error_naming_what_it_needs():
    with pytest.raises(CapabilityError, match="compute capability >= 8.9"):
        TorchRunner(tiny_model(), device="cpu", precision="fp8").activate()


class TestTorchFp16CudaCompiledGraphs(RunnerContract):
    psnr_floor = 40.0

    def skip_reason(self):
        return NO_CUDA

    def make_runner(self, artifact):
        return TorchRunner(copy.deepcopy(tiny_model()), device="cuda", precision="fp16", mode="cast",
                           compile="max-autotune-no-cudagraphs", cuda_graphs=True)


class TestTorchBf16CudaGraphs(RunnerContract):
    psnr_floor = 40.0

    def skip_reason(self):
        return NO_CUDA

    def make_runner(self, artifact):
        return TorchRunner(copy.deepcopy(tiny_model()), device="cuda", precision="bf16", cuda_graphs=True)


@pytest.mark.skipif(NO_CUDA is not None, reason=NO_CUDA or "")
def test_cuda_graphs_capture_once_per_shape_and_replay():
    with TorchRunner(copy.deepcopy(tiny_model()), device="cuda", cuda_graphs=True) as r:
        for seed in (1, 2):  # the second call of a shape replays: its output must follow its own input
            feed = inputs(seed=seed)
            assert psnr(r.infer(feed)["sr"], torch_reference(feed)) >= 60.0
        r.infer(inputs(batch=2, seed=3))
        info = r.describe()["cuda_graphs"]
    assert info["graphs"] == 2 and info["eager_calls"] == 0 and info["fallback_reason"] is None


@pytest.mark.skipif(NO_CUDA is not None, reason=NO_CUDA or "")
def test_cuda_graph_capture_failure_falls_back_with_the_reason():
    from vpdsr.runtimes.cuda import CudaGraphs

    def syncs(x):
        return x * float(x.sum())  # a device->host read: not allowed while capturing

    graphs = CudaGraphs(syncs)
    x = torch.ones(4, device="cuda")
    assert torch.equal(graphs(x), x * 4) and torch.equal(graphs(x), x * 4)
    assert graphs.fallback_reason and "capture failed" in graphs.fallback_reason and graphs.eager_calls == 2


@pytest.mark.skipif(_fp8_skip_reason() is not None, reason=_fp8_skip_reason() or "")
def test_fp8_on_a_gpu_with_fp8_tensor_cores():
    from vpdsr.models import DenoiserConfig, ModelConfig, build

    cfg = ModelConfig(preset="test", denoiser=DenoiserConfig(block_out_channels=(32, 64),
                                                             attention_levels=(False, True), norm_num_groups=16))
    model = build(cfg, seed=0).eval()
    feed = inputs(seed=7)
    feed["noise"] = np.random.default_rng(7).standard_normal((1, model.latent_channels, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(feed["lr"]), torch.from_numpy(feed["noise"])).numpy()
    with TorchRunner(model, device="cuda", precision="fp8") as r:
        sr = r.infer(feed)["sr"]
        assert r.describe()["fp8_linear_layers"] > 0
    assert psnr(sr, ref) >= 30.0
