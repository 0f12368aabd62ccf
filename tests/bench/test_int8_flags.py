"""INT8 slower than fp32: flagged with what the engine really runs; the ORT format chosen by a CPU probe."""
from __future__ import annotations

import numpy as np
import pytest

from tests.runtimes.tiny_artifacts import export_fused_onnx, inputs
from vpdsr.bench.int8_flags import collect_kernels, flag_int8_rows, int8_reasons
from vpdsr.runtimes.int8_formats import MATRIX_OPS, choose_format, fallback_format, ort_int8_format

ort = pytest.importorskip("onnxruntime", reason="pip install 'vpdsr[onnx]'")


def quantized(tmp_path, name: str, **format_args):
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    from vpdsr.export.calibration import make_reader

    src = export_fused_onnx(tmp_path / "fp32.onnx")
    out = tmp_path / f"{name}.onnx"
    feeds = [inputs(1, 16, 16, seed=s) for s in range(2)]
    quantize_static(str(src), str(out), make_reader(feeds), per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax, **format_args)
    return out


def row(name, backend, precision, p50, kernels=None):
    return {"name": name, "backend": backend, "precision": precision, "status": "ok", "latency_ms": {"p50": p50},
            "kernels": kernels}


@pytest.mark.parametrize("u8, s8, activations, symmetric", [
    (225.0, 13.0, "uint8", False),  # MLAS on x86 (as measured on an AVX512-VNNI EPYC): u8 x s8 is the fast kernel
    (40.0, 90.0, "int8", True),  # e.g. ARM with `sdot`: s8 x s8 wins, symmetric activations
])
def test_the_faster_kernel_of_the_probe_decides_the_format(u8, s8, activations, symmetric):
    fmt = choose_format(u8, s8)
    assert (fmt.activations, fmt.symmetric_activations, fmt.op_types) == (activations, symmetric, MATRIX_OPS)
    assert f"{max(u8, s8):.0f} vs" in fmt.reason and "GOP/s" in fmt.reason
    args = fmt.quantize_static_args()
    assert args["op_types_to_quantize"] == list(MATRIX_OPS) and args["extra_options"]["WeightSymmetric"] is True
    assert args["extra_options"]["ActivationSymmetric"] is symmetric


@pytest.mark.parametrize("machine, activations", [("x86_64", "uint8"), ("AMD64", "uint8"), ("aarch64", "int8")])
def test_without_a_probe_the_platform_default(machine, activations):
    fmt = fallback_format(machine, "probe failed (RuntimeError)")
    assert fmt.activations == activations and fmt.symmetric_activations == (activations == "int8")
    assert fmt.reason == f"probe failed (RuntimeError); {machine} default"


def test_this_machine_probe_gives_one_of_the_two_formats():
    fmt = ort_int8_format()  # a real measurement: which one wins is this CPU's business (benchmarks/)
    assert fmt.activations in ("uint8", "int8") and fmt.op_types == MATRIX_OPS and "GOP/s" in fmt.reason


def test_kernel_summary_shows_fused_int8_kernels_and_leftover_qdq(tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType

    from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    fmt = ort_int8_format()
    chosen = quantized(tmp_path, "chosen", **fmt.quantize_static_args())
    every_op = quantized(tmp_path, "s8-all", quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                         weight_type=QuantType.QInt8, extra_options={"ActivationSymmetric": True})
    with OnnxRuntimeRunner(chosen, threads=1) as r:
        good = collect_kernels(r)
        assert np.isfinite(r.infer(inputs(1, 16, 16))["sr"]).all()
    with OnnxRuntimeRunner(every_op, threads=1) as r:
        bad = collect_kernels(r)
    assert good["engine"] == "onnxruntime" and good["int8_ops"] > 0
    assert good["activation_types"] == {fmt.activations: good["activation_types"][fmt.activations]}
    assert bad["activation_types"].get("int8", 0) > 0 and bad["qdq_nodes"] > good["qdq_nodes"]

    peaks = {"figures": [{"op": "MatMulInteger u8s8", "gflops": 200.0}, {"op": "MatMulInteger s8s8", "gflops": 15.0}]}
    rows = [row("onnx", "onnxruntime", "fp32", 10.0), row("ort-int8", "onnxruntime", "int8", 12.0, bad),
            row("fast-int8", "onnxruntime", "int8", 7.0, good)]
    flag_int8_rows(rows, peaks, cpu_flags={"avx2", "avx512_vnni"})
    slow, fast = rows[1], rows[2]
    assert not fast.get("flags")
    (flag,) = slow["flags"]
    assert flag["vs"] == "onnx" and flag["ratio"] == pytest.approx(1.2)
    assert "s8 activations" in flag["reason"] and "QuantizeLinear/DequantizeLinear" in flag["reason"]
    assert "VNNI" not in flag["reason"]  # this CPU (as told) has VNNI


def test_reasons_name_a_cpu_without_vnni_and_unfused_float_convolutions():
    kernels = {"engine": "onnxruntime", "int8_ops": 0, "float_matrix_ops": 35, "qdq_nodes": 150, "activation_types": {}}
    reasons = int8_reasons(kernels, None, {"avx2", "fma"})
    assert any("no VNNI" in r for r in reasons) and any("runs 35 in float" in r for r in reasons)
    ov = {"engine": "openvino", "layers": {"Convolution f32": 30, "Convolution u8": 5}}
    assert any("30 of 35 convolutions" in r for r in int8_reasons(ov, None, {"avx512_vnni"}))
    rows = [row("openvino", "openvino", "fp32", 5.0), row("openvino-int8", "openvino", "int8", 6.0, None)]
    flag_int8_rows(rows, None, cpu_flags={"avx512_vnni"})
    assert rows[1]["flags"][0]["reason"].startswith("no cause found")
