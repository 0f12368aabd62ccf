"""Which INT8 format onnxruntime runs fastest on this CPU, chosen by a measurement (used by `ort-int8`).

onnxruntime's x86 int8 GEMM/convolution kernels (MLAS) multiply u8 activations by s8 weights (VNNI
`vpdpbusd`, or AVX2 `vpmaddubsw` without VNNI); s8 activations take a slower path. Measured here
(AMD EPYC, AVX512-VNNI, 1 thread): MatMulInteger u8 x s8 225 GOP/s, s8 x s8 13 GOP/s. On the tiny
student (128x128 LR, 1 thread, ms, PSNR vs fp32):

    fp32                               490
    QDQ s8s8, every op type, symmetric 458   45.7 dB   (what `ort-int8` was: TensorRT-style)
    QDQ s8s8, Conv/Gemm/MatMul only    380   53.9 dB
    QDQ u8s8, every op type            331   49.3 dB
    QDQ u8s8, Conv/Gemm/MatMul only    322   55.1 dB
    QOperator u8s8, Conv/Gemm/MatMul   322   55.4 dB   (the same kernels: ORT fuses QDQ into QLinearConv)

Quantizing the elementwise ops too leaves Q/DQ pairs around every Add/Mul/Sigmoid (onnxruntime has
no fused int8 kernel for most of them: 645 Q/DQ nodes left in the optimised tiny graph), each a full
pass over a tensor, and costs quality. So: QDQ (portable, and what the float policy's node names
address), s8 symmetric per-channel weights, activations u8 and asymmetric where this CPU's u8 x s8
kernel is faster than s8 x s8 (x86), s8 symmetric otherwise (e.g. ARM with `sdot`), and only the
matrix ops quantized.
"""
from __future__ import annotations

import functools
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np

MATRIX_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class OrtInt8Format:
    """Attributes:
        activations: "uint8" or "int8".
        symmetric_activations: symmetric activation ranges (zero point 0); weights are always symmetric.
        op_types: the op types quantized.
        reason: why, with the probe's figures.
    """

    activations: str
    symmetric_activations: bool
    op_types: tuple[str, ...]
    reason: str

    def quantize_static_args(self) -> dict:
        """The format's keyword arguments of `onnxruntime.quantization.quantize_static`."""
        from onnxruntime.quantization import QuantFormat, QuantType

        return {"quant_format": QuantFormat.QDQ, "weight_type": QuantType.QInt8,
                "activation_type": QuantType.QUInt8 if self.activations == "uint8" else QuantType.QInt8,
                "op_types_to_quantize": list(self.op_types),
                "extra_options": {"ActivationSymmetric": self.symmetric_activations, "WeightSymmetric": True}}

    def to_dict(self) -> dict:
        return {**asdict(self), "op_types": list(self.op_types)}


def _matmul_integer_rate(activations: str, n: int = 512, runs: int = 5) -> float:
    """GOP/s of onnxruntime's MatMulInteger (1 thread, best of `runs`) with u8 or s8 activations, s8 weights."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    a_type = TensorProto.UINT8 if activations == "uint8" else TensorProto.INT8
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.integers(-127, 128, (n, n)).astype(np.int8), "W")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "W"], ["Y"])], "probe",
                              [helper.make_tensor_value_info("A", a_type, [n, n])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])], [w])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    a = (rng.integers(0, 256, (n, n)).astype(np.uint8) if activations == "uint8"
         else rng.integers(-127, 128, (n, n)).astype(np.int8))
    session.run(None, {"A": a})
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {"A": a})
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


@functools.lru_cache(maxsize=1)
def ort_int8_format() -> OrtInt8Format:
    """The format for this CPU (the probe takes well under a second; its result is kept for the process)."""
    try:
        u8, s8 = _matmul_integer_rate("uint8"), _matmul_integer_rate("int8")
    except Exception as e:  # no onnxruntime, or a probe failure: the platform's known fast path
        return fallback_format(platform.machine(), f"probe failed ({type(e).__name__})")
    return choose_format(u8, s8)


def fallback_format(machine: str, why: str) -> OrtInt8Format:
    """Without a probe: u8 x s8 on x86 (MLAS's fast kernels there), s8 x s8 symmetric elsewhere."""
    x86 = machine.lower() in ("x86_64", "amd64", "i686", "x86")
    return OrtInt8Format("uint8" if x86 else "int8", not x86, MATRIX_OPS, f"{why}; {machine} default")


def choose_format(u8: float, s8: float) -> OrtInt8Format:
    """The format of the faster MatMulInteger kernel: `u8`/`s8` are its GOP/s with u8 or s8 activations."""
    if u8 >= s8:
        return OrtInt8Format("uint8", False, MATRIX_OPS,
                             f"u8 x s8 is onnxruntime's fast int8 kernel here (MatMulInteger {u8:.0f} vs s8 x s8 "
                             f"{s8:.0f} GOP/s, 1 thread)")
    return OrtInt8Format("int8", True, MATRIX_OPS,
                         f"s8 x s8 is faster here (MatMulInteger {s8:.0f} vs u8 x s8 {u8:.0f} GOP/s, 1 thread)")
