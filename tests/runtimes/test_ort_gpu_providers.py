"""ONNX Runtime's TensorRT and CUDA providers: the options we build (engine cache keyed by the graph's hash,
explicit profile, device id) are checked on every machine; running them needs onnxruntime-gpu and a GPU."""
from __future__ import annotations

import pytest

from tests.runtimes.test_runner_contract import RunnerContract
from tests.runtimes.tiny_artifacts import SIZE, export_fused_onnx, onnx_artifact, tiny_model
from vpdsr.runtimes import load
from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner, graph_profile, provider_list
from vpdsr.runtimes.tensorrt_common import graph_sha256, ort_engine_cache_dir

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'vpdsr[onnx]')")


def _trt_skip_reason() -> str | None:
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no TensorrtExecutionProvider here (needs onnxruntime-gpu, TensorRT and a GPU)"
    import torch

    return None if torch.cuda.is_available() else "no CUDA device"


def test_tensorrt_engine_cache_is_keyed_by_the_graph(tmp_path, monkeypatch):
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path / "cache"))
    got = dict(provider_list(["tensorrt", "cuda"], graph_sha256="ab" * 32))
    trt = got["TensorrtExecutionProvider"]
    assert trt["trt_engine_cache_path"] == str(ort_engine_cache_dir("ab" * 32))
    assert trt["trt_timing_cache_path"] == str(tmp_path / "cache" / "ort-tensorrt" / "timing")
    assert trt["trt_engine_cache_enable"] is True and trt["trt_timing_cache_enable"] is True
    assert "trt_fp16_enable" not in trt and "trt_int8_enable" not in trt  # the graph's types decide
    other = dict(provider_list("tensorrt", graph_sha256="cd" * 32))["TensorrtExecutionProvider"]
    assert other["trt_engine_cache_path"] != trt["trt_engine_cache_path"]
    mine = dict(provider_list("tensorrt", {"tensorrt": {"trt_engine_cache_path": "/x"}}, graph_sha256="ab" * 32))
    assert mine["TensorrtExecutionProvider"]["trt_engine_cache_path"] == "/x"  # the caller's own wins


def test_runner_keys_the_cache_by_its_own_file_and_tunes_the_profile_for_the_tile(tmp_path, monkeypatch):
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path / "cache"))
    path = export_fused_onnx(tmp_path / "model.onnx")  # dynamic batch, H and W
    runner = OnnxRuntimeRunner(path, providers=["tensorrt", "cuda"], trt_tile=SIZE)
    trt = dict(runner._tensorrt_providers())["TensorrtExecutionProvider"]
    assert trt["trt_engine_cache_path"] == str(ort_engine_cache_dir(graph_sha256(path)))
    c = tiny_model().latent_channels
    assert trt["trt_profile_opt_shapes"] == f"lr:4x3x{SIZE}x{SIZE},noise:4x{c}x{SIZE}x{SIZE}"
    assert trt["trt_profile_min_shapes"].startswith("lr:1x3x") and trt["trt_profile_max_shapes"].startswith("lr:8x3x")


def test_graph_profile_keeps_a_static_graph_size(tmp_path):
    import onnx

    path = export_fused_onnx(tmp_path / "model.onnx")
    model = onnx.load(str(path))
    for inp in model.graph.input:  # fix H and W at 16 (the batch stays dynamic)
        for i in (2, 3):
            inp.type.tensor_type.shape.dim[i].dim_value = 16
    onnx.save(model, str(tmp_path / "static.onnx"))
    shapes = graph_profile(tmp_path / "static.onnx", tile=64)
    assert shapes["lr"] == {"min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]}


def test_load_on_cuda_n_puts_both_gpu_providers_on_that_gpu(tmp_path):
    artifact = onnx_artifact(tmp_path / "onnx")
    runner = load(artifact, device="cuda:1", providers=["tensorrt", "cuda"])  # not activated: no GPU needed
    options = dict(runner.providers)
    assert options["TensorrtExecutionProvider"]["device_id"] == 1
    assert options["CUDAExecutionProvider"]["device_id"] == 1
    assert runner.device == "cuda:1" and runner.trt_tile is not None


class TestOnnxRuntimeTensorRT(RunnerContract):
    psnr_floor = 60.0

    def skip_reason(self):
        return _trt_skip_reason()

    def make_artifact(self, folder):
        return onnx_artifact(folder / "onnx")

    def make_runner(self, artifact):
        return load(artifact, providers=["tensorrt", "cuda"])
