"""OnnxRuntimeRunner: the contract on the CPU provider (CUDA where onnxruntime-gpu has it), provider handling."""
from __future__ import annotations

import numpy as np
import pytest

from tests.runtimes.test_runner_contract import RunnerContract
from tests.runtimes.tiny_artifacts import export_fused_onnx, onnx_artifact
from vpdsr.errors import ArtifactError, ConfigError, MissingDependencyError
from vpdsr.runtimes import load
from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner, provider_list

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'vpdsr[onnx]')")
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


class TestOnnxRuntimeCpu(RunnerContract):
    psnr_floor = 60.0

    def make_artifact(self, folder):
        return onnx_artifact(folder / "onnx")

    def make_runner(self, artifact):
        return load(artifact, threads=1)


class TestOnnxRuntimeCuda(RunnerContract):
    psnr_floor = 60.0

    def skip_reason(self):
        if not HAS_CUDA:
            return "onnxruntime has no CUDAExecutionProvider here (needs onnxruntime-gpu and a GPU)"
        import torch

        return None if torch.cuda.is_available() else "no CUDA device"

    def make_artifact(self, folder):
        return onnx_artifact(folder / "onnx")

    def make_runner(self, artifact):
        return load(artifact, providers=["cuda"])


def test_provider_list_maps_short_names_and_keeps_cpu_fallback():
    got = provider_list(["tensorrt", "cuda"], {"tensorrt": {"trt_fp16_enable": True}, "cuda": {"device_id": 1}})
    assert [name for name, _ in got] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_options = got[0][1]
    assert trt_options["trt_fp16_enable"] is True  # given options win ...
    assert trt_options["trt_engine_cache_enable"] is True  # ... over the defaults, which stay otherwise
    assert "ort-tensorrt" in trt_options["trt_engine_cache_path"]
    assert got[1][1] == {"device_id": 1} and got[2][1] == {}
    with pytest.raises(ConfigError, match="provider 'rocm'"):
        provider_list("rocm")


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
def test_missing_gpu_provider_is_one_line_error(tmp_path):
    r = OnnxRuntimeRunner(export_fused_onnx(tmp_path / "m.onnx"), providers="cuda")
    assert r.io_binding  # on by default for the CUDA provider
    with pytest.raises(MissingDependencyError, match="CUDAExecutionProvider") as e:
        r.activate()
    assert "\n" not in str(e.value)


def test_io_binding_on_cpu_gives_the_same_output(tmp_path):
    from tests.runtimes.tiny_artifacts import inputs

    path = export_fused_onnx(tmp_path / "m.onnx")
    feed = inputs(seed=21)
    with OnnxRuntimeRunner(path) as plain, OnnxRuntimeRunner(path, io_binding=True) as bound:
        assert (plain.infer(feed)["sr"] == bound.infer(feed)["sr"]).all()


def test_not_an_onnx_file_is_artifact_error(tmp_path):
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ArtifactError, match="onnxruntime cannot load it"):
        OnnxRuntimeRunner(bad).activate()


def test_cpu_session_defaults_and_overrides(tmp_path):
    from tests.runtimes.tiny_artifacts import export_fused_onnx, inputs
    from vpdsr.runtimes.onnxruntime_runner import CPU_SESSION_CONFIG, OnnxRuntimeRunner

    path = export_fused_onnx(tmp_path / "m.onnx")
    default = OnnxRuntimeRunner(path, threads=2)
    assert default.session_config == CPU_SESSION_CONFIG  # no spinning, dynamic block base 4
    spin = OnnxRuntimeRunner(path, threads=2, session_config={"session.intra_op.allow_spinning": 1})
    assert spin.session_config["session.intra_op.allow_spinning"] == "1"
    assert spin.session_config["session.dynamic_block_base"] == "4"
    with default, spin:
        feed = inputs(seed=2)
        np.testing.assert_allclose(default.infer(feed)["sr"], spin.infer(feed)["sr"], atol=1e-5)
        summary = default.kernel_summary()
    assert summary["int8_ops"] == 0 and summary["float_matrix_ops"] > 0
