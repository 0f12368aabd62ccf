"""GPU backends of `vpdsr bench`: names and flags resolve to the runner options (checked everywhere); on a
machine without CUDA they are skipped rows with the reason, in the same report as the CPU rows."""
from __future__ import annotations

import json

import pytest
import torch

from tests.bench.test_bench_command import bench, no_clip  # noqa: F401 (a fixture)
from vpdsr.bench.backends import open_runner, resolve_backends, torch_spec, with_torch_options
from vpdsr.errors import InputError
from vpdsr.runtimes.torch_runner import TorchRunner

NO_CUDA = not torch.cuda.is_available()


def test_torch_names_carry_compile_and_cuda_graphs():
    spec = torch_spec("torch-fp16-compiled-graphs", "tiny", "cuda:1", compile_mode="max-autotune-no-cudagraphs")
    assert spec.precision == "fp16" and spec.device == "cuda:1"
    assert spec.extra == {"compile": "max-autotune-no-cudagraphs", "cuda_graphs": True}
    assert torch_spec("torch-bf16-compiled", "tiny", "cpu").extra == {"compile": "default"}
    assert torch_spec("torch-fp8", "tiny", "cuda").precision == "fp8"
    runner = open_runner(torch_spec("torch-fp16-compiled-graphs", "tiny", "cuda"))  # built, not activated
    assert isinstance(runner, TorchRunner) and runner.compile == "default" and runner.cuda_graphs
    assert runner.name == "torch-fp16-compiled-graphs"


@pytest.mark.parametrize("name, message", [("torch-fp16-graphs", "CUDA graphs need `--device cuda"),
                                           ("torch-fp16-graphs-compiled", "unknown torch backend"),
                                           ("torch-int4", "unknown torch backend")])
def test_bad_torch_names_are_input_errors(name, message):
    with pytest.raises(InputError, match=message):
        torch_spec(name, "tiny", "cpu")


def test_flags_turn_every_torch_backend_but_the_reference_into_its_variant():
    assert with_torch_options("torch-fp16", "torch-fp32", "max-autotune", True) == "torch-fp16-compiled-graphs"
    assert with_torch_options("torch-fp16-graphs", "torch-fp32", "default", False) == "torch-fp16-compiled-graphs"
    assert with_torch_options("torch-fp32", "torch-fp32", "default", True) == "torch-fp32"
    assert with_torch_options("onnx", "torch-fp32", "default", True) == "onnx"
    specs = resolve_backends("tiny", None, ["torch-fp16", "torch-bf16"], "torch-fp32", "cuda", "max-autotune", True)
    assert [s.name for s in specs] == ["torch-fp32", "torch-fp16-compiled-graphs", "torch-bf16-compiled-graphs"]
    assert specs[0].extra == {} and specs[1].extra == {"compile": "max-autotune", "cuda_graphs": True}


def test_onnx_artifacts_on_onnxruntime_gpu_providers(bench_artifacts):
    specs = resolve_backends("tiny", bench_artifacts, ["onnx@cuda", "onnx@tensorrt-ep"], "torch-fp32", "cuda:1")
    cuda, trt = specs[1:]
    assert (cuda.name, cuda.device, cuda.extra) == ("onnx@cuda", "cuda:1", {"providers": ["cuda"]})
    assert (trt.name, trt.extra) == ("onnx@tensorrt-ep", {"providers": ["tensorrt", "cuda"]})
    runner = open_runner(cuda)  # not activated: no GPU needed to build it
    assert runner.providers[0][0] == "CUDAExecutionProvider" and runner.providers[0][1]["device_id"] == 1
    with pytest.raises(InputError, match="expected an ONNX artifact"):
        resolve_backends("tiny", bench_artifacts, ["onnx@rocm"], "torch-fp32")


@pytest.mark.skipif(not NO_CUDA, reason="checks the rows of a machine without CUDA")
def test_gpu_rows_are_skipped_with_the_reason_beside_the_cpu_rows(bench_model_dir, bench_images, bench_artifacts,
                                                                  tmp_path, no_clip):
    out = tmp_path / "report"
    rc = bench(bench_model_dir, bench_images, out, "--artifacts", bench_artifacts,
               "--backends", "onnx,onnx@cuda,torch-fp8")
    assert rc == 0
    rows = {b["name"]: b for b in json.loads((out / "report.json").read_text())["backends"]}
    assert list(rows) == ["torch-fp32", "onnx", "onnx@cuda", "torch-fp8"]
    assert rows["onnx"]["status"] == "ok" and rows["onnx"]["device"] == "cpu"
    assert rows["onnx@cuda"]["status"] == "skipped" and "CUDAExecutionProvider" in rows["onnx@cuda"]["reason"]
    assert rows["torch-fp8"]["status"] == "skipped" and "compute capability >= 8.9" in rows["torch-fp8"]["reason"]
    assert rows["torch-fp32"]["runner_options"]["compile"] is None  # what the torch runner applied


def test_cuda_graphs_without_a_cuda_device_is_exit_2_in_one_line(bench_model_dir, bench_images, tmp_path, capsys):
    rc = bench(bench_model_dir, bench_images, tmp_path / "r", "--backends", "torch-fp16", "--cuda-graphs")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "CUDA graphs need `--device cuda" in err and "\n" not in err
    rc = bench(bench_model_dir, bench_images, tmp_path / "r", "--torch-compile", "fastest")
    assert rc == 2 and "`--torch-compile` must be one of" in capsys.readouterr().err
