"""TorchRunner: the contract on CPU fp32 and bf16 (and CUDA where present), plus its own options."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.runtimes.test_runner_contract import RunnerContract
from tests.runtimes.tiny_artifacts import inputs, psnr, tiny_model, torch_reference
from vpdsr.errors import ConfigError
from vpdsr.runtimes import load
from vpdsr.runtimes.torch_runner import TorchRunner

NO_CUDA = None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"


class TestTorchFp32(RunnerContract):
    psnr_floor = 100.0  # the reference itself: identical up to run-to-run noise

    def make_runner(self, artifact):
        return TorchRunner(tiny_model(), device="cpu", precision="fp32")


class TestTorchBf16Cpu(RunnerContract):
    psnr_floor = 40.0

    def make_runner(self, artifact):
        return TorchRunner(tiny_model(), device="cpu", precision="bf16")


class TestTorchFp16Cuda(RunnerContract):
    psnr_floor = 40.0

    def skip_reason(self):
        return NO_CUDA

    def make_runner(self, artifact):
        import copy

        return TorchRunner(copy.deepcopy(tiny_model()), device="cuda", precision="fp16")


class TestTorchBf16CudaCast(RunnerContract):
    psnr_floor = 40.0

    def skip_reason(self):
        return NO_CUDA

    def make_runner(self, artifact):
        import copy

        return TorchRunner(copy.deepcopy(tiny_model()), device="cuda", precision="bf16", mode="cast")


def test_bf16_cast_mode_runs_weights_in_bf16_and_stays_close():
    import copy

    model = copy.deepcopy(tiny_model())
    feed = inputs(seed=11)
    with TorchRunner(model, precision="bf16", mode="cast") as r:
        assert next(model.parameters()).dtype == torch.bfloat16
        sr = r.infer(feed)["sr"]
    assert sr.dtype == np.float32
    assert psnr(sr, torch_reference(feed)) >= 35.0  # everything in bf16, normalisations too


def test_unknown_precision_and_mode_are_config_errors():
    with pytest.raises(ConfigError, match="precision"):
        TorchRunner(tiny_model(), precision="int4")
    with pytest.raises(ConfigError, match="mode"):
        TorchRunner(tiny_model(), mode="jit")


def test_load_preset_with_torch_backend_and_precision():
    with load("tiny", backend="torch", precision="bf16") as r:
        assert isinstance(r, TorchRunner) and r.precision == "bf16"
        feed = {"lr": np.zeros((1, 3, 8, 8), np.float32),
                "noise": np.zeros((1, r.noise_channels, 8, 8), np.float32)}
        assert r.infer(feed)["sr"].shape == (1, 3, 32, 32)


def test_load_model_directory_with_torch_backend(tmp_path):
    from vpdsr.models import save_pretrained

    save_pretrained(tiny_model(), tmp_path / "student")
    feed = inputs(seed=12)
    with load(tmp_path / "student") as r:
        np.testing.assert_allclose(r.infer(feed)["sr"], torch_reference(feed), atol=1e-6)
